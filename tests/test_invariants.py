"""The invariant queries find what they are meant to find (so the asset checks can fail)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from sf_sync import invariants, synth, warehouse
from sf_sync.config import load_settings
from sf_sync.ingest import store_batch
from sf_sync.ranges import OffsetRange
from tests.test_fold import TOPIC, deliverable

T = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def con(tmp_path) -> duckdb.DuckDBPyConnection:
    c = warehouse.connect(tmp_path / "w.duckdb")
    c.execute(warehouse.SCHEMA)
    return c


def _version(con, record: str, version: int, start: int, end: int | None, which: str) -> None:
    open_t, closed_t = warehouse.version_tables(con, "salesforce", "Account", ["Name"])
    con.execute(
        f"INSERT INTO {open_t if which == 'open' else closed_t} VALUES (?, ?, ?, ?, false, 'k',"
        " 'UPDATE', NULL, NULL, {'ts': ?, 'tx': 'x', 'seq': ?, 'topic': 't', 'part': 0,"
        " 'off': 0}, 'n')",
        [
            record,
            version,
            T.replace(hour=start),
            None if end is None else T.replace(hour=end),
            T.replace(hour=start),
            version,
        ],
    )


def test_tiled_versions_pass_and_overlaps_fail(con) -> None:
    _version(con, "a", 1, 1, 2, "closed")
    _version(con, "a", 2, 2, None, "open")
    assert invariants.violations(con, invariants.validity_breaks) == (0, [])
    _version(con, "b", 1, 1, 5, "closed")
    _version(con, "b", 2, 3, None, "open")  # starts before the first one ends
    count, sample = invariants.violations(con, invariants.validity_breaks)
    assert count == 1 and "does not meet" in sample[0][-1]


def test_duplicate_changes_are_found(con) -> None:
    row = (
        "k1",
        "salesforce",
        "Account",
        "a",
        "UPDATE",
        T,
        "tx",
        1,
        None,
        None,
        [],
        "t",
        0,
        0,
        T,
        None,
        None,
        {"ts": T, "tx": "tx", "seq": 1, "topic": "t", "part": 0, "off": 0},
    )
    con.execute(
        "INSERT INTO change_events VALUES " + "(" + ", ".join(["?"] * len(row)) + ")", list(row)
    )
    assert invariants.violations(con, invariants.duplicate_changes)[0] == 0
    con.execute(
        "INSERT INTO change_events VALUES " + "(" + ", ".join(["?"] * len(row)) + ")", list(row)
    )
    assert invariants.violations(con, invariants.duplicate_changes)[0] == 1


def test_a_change_made_into_two_versions_is_a_duplicate(con) -> None:
    """``field_history`` is a view over the versions: it would show such a change twice."""
    _version(con, "a", 1, 1, 2, "closed")
    assert invariants.violations(con, invariants.duplicate_changes)[0] == 0
    _version(con, "a", 2, 2, None, "open")  # same event_key 'k' as version 1
    count, sample = invariants.violations(con, invariants.duplicate_changes)
    assert count == 1 and sample[0][2] == "a (versions)"


def test_range_holes_and_overlaps_are_found(con) -> None:
    con.execute(
        "INSERT INTO ingested_ranges VALUES ('t', 0, 0, 10, 10, NULL, now()),"
        " ('t', 0, 10, 20, 10, NULL, now())"
    )
    assert invariants.violations(con, invariants.RANGE_HOLES)[0] == 0
    con.execute(
        "INSERT INTO ingested_ranges VALUES ('t', 0, 25, 30, 5, NULL, now()),"
        " ('t', 0, 28, 40, 12, NULL, now())"
    )
    count, sample = invariants.violations(con, invariants.RANGE_HOLES)
    assert count == 2 and {s[-1] for s in sample} == {"hole", "overlap"}


def test_recorded_retention_losses_count_as_covered_offsets(con) -> None:
    """Offsets retention deleted are a recorded gap, not a hole; stored ones must not overlap."""

    def loss(start: int, end: int) -> None:
        con.execute(
            "INSERT INTO gaps VALUES (?, 'salesforce', '*', NULL, 'RETENTION_LOSS', [], now(),"
            " NULL, ?, 'my.topic', 0, ?, now(), NULL)",
            [f"retention:my.topic:0:{start}-{end}/*/RETENTION_LOSS", f"my.topic:0:[{start},{end})",
             start],
        )  # fmt: skip

    con.execute(
        "INSERT INTO ingested_ranges VALUES ('my.topic', 0, 0, 10, 10, NULL, now()),"
        " ('my.topic', 0, 25, 30, 5, NULL, now())"
    )
    count, sample = invariants.violations(con, invariants.RANGE_HOLES)
    assert (count, sample[0][2:]) == (1, (10, 25, "hole"))
    loss(10, 14)
    loss(14, 25)
    assert invariants.violations(con, invariants.RANGE_HOLES) == (0, [])
    spans = f"SELECT * FROM ({invariants.RETENTION_LOSS_SPANS}) ORDER BY ALL"
    assert con.execute(spans).fetchall() == [("my.topic", 0, 10, 14), ("my.topic", 0, 14, 25)]
    loss(28, 35)  # a loss inside stored offsets is an overlap
    count, sample = invariants.violations(con, invariants.RANGE_HOLES)
    assert (count, sample[0][2:]) == (1, (30, 28, "overlap"))


def _deliver(home: Path, values: list[bytes], offset: int) -> invariants.Written:
    """Stores one batch as a run would; returns what it wrote."""
    settings = replace(load_settings(), home=home)
    r = OffsetRange(TOPIC, 0, offset, offset + len(values))
    with warehouse.writer(home) as con:
        store_batch(con, settings, deliverable(values, offset), [r], None)
        (batch_time,) = con.execute("SELECT max(ingested_at) FROM ingested_ranges").fetchone()
        return invariants.Written.of(con, [batch_time])


def test_a_run_checks_the_rows_it_wrote_and_not_older_ones(tmp_path: Path) -> None:
    events = synth.generate(seed=5, records=4, events=40)
    values = [v for _, v in synth.messages(events)]
    first = _deliver(tmp_path, values[:20], 0)
    second = _deliver(tmp_path, values[20:], 20)
    con = warehouse.connect(tmp_path / "warehouse.duckdb")
    for rule in invariants.RUN_RULES.values():
        for scope in (None, first, second):
            assert invariants.violations(con, rule, written=scope) == (0, [])

    # A copy of a change of the first batch: the whole history and the first run see it.
    con.execute(
        "INSERT INTO change_events SELECT * FROM change_events"
        " WHERE ingested_at = ? ORDER BY kafka_offset LIMIT 1",
        [first.batches[0]],
    )
    rule = invariants.duplicate_changes
    assert invariants.violations(con, rule)[0] == 1
    assert invariants.violations(con, rule, written=first)[0] == 1
    assert invariants.violations(con, rule, written=second)[0] == 0

    # A version the second batch closed now overlaps the next one: that run sees it.
    (closed_t,) = con.execute("SELECT closed_table FROM version_tables").fetchone()
    (record,) = con.execute(
        f"SELECT record_id FROM {closed_t} WHERE valid_to >= ? ORDER BY valid_to DESC LIMIT 1",
        [second.lo],
    ).fetchone()
    con.execute(
        f"UPDATE {closed_t} SET valid_to = valid_to + INTERVAL 1 SECOND"
        " WHERE record_id = ? AND valid_to >= ?",
        [record, second.lo],
    )
    rule = invariants.validity_breaks
    whole = invariants.violations(con, rule)[0]
    assert whole > 0
    assert invariants.violations(con, rule, written=second)[0] == whole


def test_a_run_that_wrote_nothing_has_nothing_to_break(con) -> None:
    nothing = invariants.Written.of(con, [])
    for rule in invariants.RUN_RULES.values():
        assert invariants.violations(con, rule, written=nothing) == (0, [])


def test_checking_leaves_no_result_open_on_the_connection(tmp_path: Path) -> None:
    """The run checks on the writer's connection; DuckDB refuses a relation (``con.sql``)
    while a result of ``execute`` is unfinished, so the checks must fetch theirs whole."""
    events = synth.generate(seed=6, records=3, events=12)
    written = _deliver(tmp_path, [v for _, v in synth.messages(events)], 0)
    con = warehouse.connect(tmp_path / "warehouse.duckdb")
    written = invariants.Written.of(con, list(written.batches))
    assert con.sql("SELECT count(*) FROM change_events").fetchall() == [(12,)]
    for rule in invariants.RUN_RULES.values():
        invariants.violations(con, rule, written=written)
        assert con.sql("SELECT count(*) FROM change_events").fetchall() == [(12,)]
