"""Warehouses written by older sf-sync are migrated when the writer opens them.

``change_values`` (until the columnar fold) and ``field_history`` (until the views over the
versions) were tables, the latter with an ``ord`` struct before perf2. Both are views now: the
versions hold the same values (see tests/test_fold.py for those equalities). The test makes a
warehouse of today old, by turning both views into tables of the rows they show, and checks
that the writer puts the views back with the same rows.
"""

from __future__ import annotations

from pathlib import Path

from sf_sync import synth, warehouse
from tests.test_fold import deliver

ORD = (
    "{'ts': TIMESTAMPTZ '2024-04-26 18:38:05+00', 'tx': 't1', 'seq': 1, 'topic': 'x',"
    " 'part': 0, 'off': 7}"
)
FIELD_HISTORY = "SELECT * FROM field_history ORDER BY ALL"
CHANGE_VALUES = "SELECT * EXCLUDE (commit_timestamp) FROM change_values ORDER BY ALL"


def make_old(home: Path) -> None:
    """Replaces the two views by tables holding their rows, as older writers left them."""
    with warehouse.writer(home) as con:
        for view, extra in (("field_history", f", {ORD} AS ord"), ("change_values", "")):
            con.execute(f"CREATE TABLE old_{view} AS SELECT *{extra} FROM {view}")
            con.execute(f"DROP VIEW {view}")
            con.execute(f"ALTER TABLE old_{view} RENAME TO {view}")


def test_old_files_are_migrated_once(tmp_path: Path) -> None:
    events = synth.generate(seed=3, records=5, events=60)
    deliver(tmp_path, [[v for _, v in synth.messages(events)]])
    with warehouse.writer(tmp_path) as con:
        history = con.execute(FIELD_HISTORY).fetchall()
        values = con.execute(CHANGE_VALUES).fetchall()
    assert history and values

    make_old(tmp_path)
    with warehouse.writer(tmp_path) as con:
        assert con.execute(
            "SELECT count(*) FROM duckdb_tables()"
            " WHERE table_name IN ('field_history', 'change_values')"
        ).fetchone() == (0,)
        assert con.execute(FIELD_HISTORY).fetchall() == history
        assert con.execute(CHANGE_VALUES).fetchall() == values
        assert warehouse.migrate(con) == []  # already current: nothing to do

    with warehouse.writer(tmp_path) as con:  # the migration survived the checkpoint
        assert warehouse.migrate(con) == []
        assert con.execute(FIELD_HISTORY).fetchall() == history
