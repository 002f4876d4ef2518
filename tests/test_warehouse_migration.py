"""Warehouses written by older sf-sync are migrated when the writer opens them.

Before perf2, ``field_history`` and ``change_values`` carried ``ord`` structs; before the
columnar fold, ``change_values`` was a table (now a view over the versions, which hold the
same values: see tests/test_fold.py for that equality)."""

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
        assert con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall() == [("change_values",)]
        assert con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'change_values'"
        ).fetchone() == (0,)
        assert con.sql("SELECT * FROM change_values").columns == [
            "source", "object", "record_id", "event_key", "field", "value", "commit_timestamp",
        ]  # fmt: skip
        assert con.execute("SELECT new_value, version FROM field_history").fetchall() == [("1", 1)]
        assert warehouse.migrate(con) == []  # already current: nothing to do

    with warehouse.writer(tmp_path) as con:  # the migration survived the checkpoint
        assert warehouse.migrate(con) == []
