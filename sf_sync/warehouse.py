"""The DuckDB warehouse: schema, connections, and the analyst-facing views.

Layout (the public contract is ``docs/contract.md``):

* ``change_events``, ``field_history``, ``gaps``, ``dead_letters``, ``ingested_ranges``:
  append-mostly tables.
* ``versions_closed`` (every superseded version) and ``versions_open`` (the latest version of
  each record) hold the SCD2 history. Splitting them keeps a batch's cost proportional to the
  batch: the fold reads and rewrites only open rows, and appends closed ones.
* ``<object>_versions`` / ``<object>_current`` are views with the object's flat field names.

There are deliberately no primary keys: DuckDB's ART-index upserts cost seconds per 10,000 rows
here, while an anti-join restricted to the batch's commit-time window (pruned by zone maps)
costs milliseconds. Uniqueness is enforced by the writer and verified by asset checks.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

ORD_TYPE = "STRUCT(ts TIMESTAMPTZ, tx VARCHAR, seq BIGINT, topic VARCHAR, part INTEGER, off BIGINT)"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS change_events (
    event_key VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    object VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    change_type VARCHAR NOT NULL,
    commit_timestamp TIMESTAMPTZ NOT NULL,
    transaction_key VARCHAR,
    sequence_number BIGINT,
    change_origin VARCHAR,
    commit_user VARCHAR,
    changed_fields VARCHAR[],
    topic VARCHAR NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL,
    field_values MAP(VARCHAR, VARCHAR),
    salesforce_id VARCHAR,
    replay_id VARCHAR,
    ord {ORD_TYPE} NOT NULL
);
CREATE TABLE IF NOT EXISTS field_history (
    object VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    field VARCHAR NOT NULL,
    old_value VARCHAR,
    new_value VARCHAR,
    changed_at TIMESTAMPTZ NOT NULL,
    change_type VARCHAR NOT NULL,
    changed_by VARCHAR,
    source VARCHAR NOT NULL,
    event_key VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    ord {ORD_TYPE} NOT NULL
);
CREATE TABLE IF NOT EXISTS versions_open (
    source VARCHAR NOT NULL,
    object VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    valid_from TIMESTAMPTZ NOT NULL,
    valid_to TIMESTAMPTZ,
    is_deleted BOOLEAN NOT NULL,
    state MAP(VARCHAR, VARCHAR) NOT NULL,
    event_key VARCHAR NOT NULL,
    change_type VARCHAR NOT NULL,
    changed_by VARCHAR,
    salesforce_id VARCHAR,
    ord {ORD_TYPE} NOT NULL
);
CREATE TABLE IF NOT EXISTS versions_closed AS SELECT * FROM versions_open LIMIT 0;
CREATE TABLE IF NOT EXISTS gaps (
    gap_key VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    object VARCHAR NOT NULL,
    record_id VARCHAR,
    gap_type VARCHAR NOT NULL,
    fields VARCHAR[],
    commit_timestamp TIMESTAMPTZ NOT NULL,
    transaction_key VARCHAR,
    event_key VARCHAR NOT NULL,
    topic VARCHAR NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL,
    detected_at TIMESTAMPTZ NOT NULL,
    repaired_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS dead_letters (
    topic VARCHAR NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL,
    error VARCHAR NOT NULL,
    raw_value BLOB,
    kafka_timestamp BIGINT,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS ingested_ranges (
    topic VARCHAR NOT NULL,
    kafka_partition INTEGER NOT NULL,
    start_offset BIGINT NOT NULL,
    end_offset BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    run_id VARCHAR,
    ingested_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS object_fields (
    source VARCHAR NOT NULL,
    object VARCHAR NOT NULL,
    field VARCHAR NOT NULL
);
"""

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class WarehouseBusy(RuntimeError):
    """Another writer held the warehouse longer than we were willing to wait."""


def quote_ident(name: str) -> str:
    """Quotes an identifier for DuckDB (names come from data, so never paste them raw)."""
    return '"' + name.replace('"', '""') + '"'


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Opens a DuckDB file with the session settings every sf-sync connection uses."""
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    return con


@contextmanager
def writer(
    home: Path, *, timeout_s: float = 600.0, publish: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The one writer connection, serialised across processes by a lock file.

    Dagster's concurrency pool already runs one ingest at a time; the lock also covers the
    CLI and tests running beside the daemon. The connection is closed (and so checkpointed)
    on exit, which releases DuckDB's own file lock for the next writer. With ``publish``
    the analysts' copy is refreshed after a clean exit, still under the lock.
    """
    home.mkdir(parents=True, exist_ok=True)
    lock_path = home / "warehouse.lock"
    deadline = time.monotonic() + timeout_s
    with open(lock_path, "a+") as lock:
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WarehouseBusy(f"{lock_path} held for more than {timeout_s}s") from None
                time.sleep(0.1)
        try:
            con = connect(home / "warehouse.duckdb")
            try:
                con.execute(SCHEMA)
                yield con
            finally:
                con.close()
            if publish:
                publish_snapshot(home)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def object_view_name(source: str, obj: str, suffix: str) -> str:
    """``account_versions`` for Salesforce, ``webapp_account_versions`` for the other system."""
    base = obj.lower()
    return f"{base}_{suffix}" if source == "salesforce" else f"{source.lower()}_{base}_{suffix}"


def refresh_views(con: duckdb.DuckDBPyConnection, lake_dir: Path | None = None) -> list[str]:
    """(Re)creates ``<object>_versions`` and ``<object>_current`` with one column per field.

    Fields come from ``object_fields`` (every field ever seen), so a new field appears as a
    column without a migration.
    """
    fields: dict[tuple[str, str], list[str]] = {}
    for source, obj, field in con.execute(
        "SELECT source, object, field FROM object_fields ORDER BY ALL"
    ).fetchall():
        if _IDENT.match(field) and field != "Id":
            fields.setdefault((source, obj), []).append(field)
    created = []
    for (source, obj), names in fields.items():
        id_col = "Id" if source == "salesforce" else "record_key"
        cols = ",\n  ".join(
            f"state[{_literal(f)}] AS {quote_ident(f)}" for f in names if f != id_col
        )
        sf_id = "" if source == "salesforce" else "salesforce_id,\n  "
        select = f"""SELECT record_id AS {quote_ident(id_col)},
  {sf_id}{cols},
  valid_from, valid_to, valid_to IS NULL AS is_current, is_deleted, version,
  event_key, change_type, changed_by
FROM {{table}} WHERE source = {_literal(source)} AND object = {_literal(obj)}"""
        versions = object_view_name(source, obj, "versions")
        current = object_view_name(source, obj, "current")
        con.execute(
            f"CREATE OR REPLACE VIEW {quote_ident(versions)} AS "
            + select.format(table="versions_closed")
            + " UNION ALL "
            + select.format(table="versions_open")
        )
        con.execute(
            f"CREATE OR REPLACE VIEW {quote_ident(current)} AS "
            + select.format(table="versions_open")
        )
        created += [versions, current]
    if lake_dir is not None and any(
        (lake_dir / "raw_events").glob("topic=*/event_date=*/*.parquet")
    ):
        pattern = _literal(str(lake_dir / "raw_events" / "*" / "*" / "*.parquet"))
        con.execute(
            "CREATE OR REPLACE VIEW raw_events AS SELECT * FROM read_parquet("
            f"{pattern}, hive_partitioning = true)"
        )
        created.append("raw_events")
    return created


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def publish_snapshot(home: Path) -> Path:
    """Copies the closed warehouse to ``history.duckdb`` for analysts, atomically.

    Readers open ``history.duckdb`` read-only; the writer never opens it, so a query never meets
    the writer's lock and ingestion never waits for an analyst. Readers holding the old file
    keep reading the old copy until they reconnect (rename keeps their inode alive).
    """
    src = home / "warehouse.duckdb"
    dst = home / "history.duckdb"
    for stale in home.glob(".history.*.tmp"):  # left by a writer killed mid-copy
        stale.unlink(missing_ok=True)
    tmp = home / f".history.{os.getpid()}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


def connect_history(home: Path) -> duckdb.DuckDBPyConnection:
    """A read-only analyst connection to the latest published history."""
    return connect(home / "history.duckdb", read_only=True)
