"""A warehouse written before perf2 (``ord`` structs in field_history and change_values) is
migrated when the writer opens it: values kept, ``ord`` gone, commit time kept for values."""

from __future__ import annotations

from pathlib import Path

import duckdb

from sf_sync import warehouse

ORD = "STRUCT(ts TIMESTAMPTZ, tx VARCHAR, seq BIGINT, topic VARCHAR, part INTEGER, off BIGINT)"
OLD_TABLES = f"""
CREATE TABLE field_history (
    object VARCHAR NOT NULL, record_id VARCHAR NOT NULL, field VARCHAR NOT NULL,
    old_value VARCHAR, new_value VARCHAR, changed_at TIMESTAMPTZ NOT NULL,
    change_type VARCHAR NOT NULL, changed_by VARCHAR, source VARCHAR NOT NULL,
    event_key VARCHAR NOT NULL, version INTEGER NOT NULL, ord {ORD} NOT NULL);
CREATE TABLE change_values (
    source VARCHAR NOT NULL, object VARCHAR NOT NULL, record_id VARCHAR NOT NULL,
    event_key VARCHAR NOT NULL, field VARCHAR NOT NULL, value VARCHAR, ord {ORD} NOT NULL);
"""
ORD_VALUE = (
    "{'ts': TIMESTAMPTZ '2024-04-26 18:38:05+00', 'tx': 't1', 'seq': 1, 'topic': 'x',"
    " 'part': 0, 'off': 7}"
)


def test_old_files_are_migrated_once(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute(OLD_TABLES)
        con.execute(
            "INSERT INTO field_history VALUES ('Account', '0015f0000000001AAA', 'Phone', NULL,"
            f" '1', TIMESTAMPTZ '2024-04-26 18:38:05+00', 'CREATE', 'u', 'salesforce', 'k', 1,"
            f" {ORD_VALUE})"
        )
        con.execute(
            "INSERT INTO change_values VALUES ('salesforce', 'Account', '0015f0000000001AAA',"
            f" 'k', 'Phone', '1', {ORD_VALUE})"
        )

    with warehouse.writer(tmp_path) as con:
        assert "ord" not in warehouse.table_columns(con, "field_history")
        assert warehouse.table_columns(con, "change_values") == [
            "source", "object", "record_id", "event_key", "field", "value", "commit_timestamp",
        ]  # fmt: skip
        assert con.execute(
            "SELECT field, value, epoch(commit_timestamp) FROM change_values"
        ).fetchall() == [("Phone", "1", 1714156685.0)]
        assert con.execute("SELECT new_value, version FROM field_history").fetchall() == [("1", 1)]
        assert warehouse.migrate(con) == []  # already current: nothing to do

    with warehouse.writer(tmp_path) as con:  # the migration survived the checkpoint
        assert warehouse.migrate(con) == []
