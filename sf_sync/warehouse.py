"""The DuckDB warehouse: schema, connections, and the analyst-facing views.

Layout (the public contract is ``docs/contract.md``):

* ``change_events``, ``gaps``, ``dead_letters``, ``ingested_ranges``: append-mostly tables.
* ``field_history``: a view of every value that really changed, each set value against the
  version before (see ``_field_history_select``).
* ``change_values``: a view of every value each change set (no-ops included), read back from
  the versions: a version is its change applied, so the fields its change set
  (``change_events.changed_fields``) hold the values it set.
* Per source and object, ``sv_<source>_<object>_closed`` (every superseded version) and
  ``sv_<source>_<object>_open`` (the latest version of each record) hold the SCD2 history with
  one VARCHAR column per field (added as fields appear). Splitting open from closed keeps a
  batch's cost proportional to the batch: the fold reads and rewrites only open rows and
  appends closed ones. Wide columns, not a MAP per version: the fold derives each field's
  states as one column (``derive``), and the views read a field with one ``CASE``.
* ``<object>_versions`` / ``<object>_current`` are views with the object's flat field names.

There are deliberately no primary keys: DuckDB's ART-index upserts cost seconds per 10,000 rows
here, while an anti-join restricted to the batch's commit-time window (pruned by zone maps)
costs milliseconds. Uniqueness is enforced by the writer and verified by asset checks.
"""

from __future__ import annotations

import fcntl
import json
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
    salesforce_id VARCHAR,
    replay_id VARCHAR,
    ord {ORD_TYPE} NOT NULL
);
CREATE TABLE IF NOT EXISTS version_tables (
    source VARCHAR NOT NULL,
    object VARCHAR NOT NULL,
    open_table VARCHAR NOT NULL,
    closed_table VARCHAR NOT NULL
);
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
"""

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


#: WAL size that makes a commit checkpoint. DuckDB's default (16 MB) makes every batch's COMMIT
#: also a checkpoint, which rewrites the row groups the batch touched; a higher threshold leaves
#: committed batches in the (fsynced, durable) WAL and checkpoints once, when the writer closes
#: at the end of the run, before the analysts' copy is published.
CHECKPOINT_THRESHOLD = "1GB"


class WarehouseBusy(RuntimeError):
    """Another writer held the warehouse longer than we were willing to wait."""


def quote_ident(name: str) -> str:
    """Quotes an identifier for DuckDB (names come from data, so never paste them raw)."""
    return '"' + name.replace('"', '""') + '"'


#: Session settings every sf-sync connection uses (dates of TIMESTAMPTZ values depend on it).
SESSION_SETTINGS = "SET TimeZone = 'UTC'"


#: Rows per row group when sf-sync writes a DuckDB file. DuckDB writes an append of at least a
#: row group straight into the database file, compressed, while it runs ("optimistic
#: writes"); a smaller append is serialised into the WAL at commit and compressed again by the
#: next checkpoint. A batch appends about ``batch_messages`` rows to each table, below the
#: default of 122,880, so every batch went through the WAL: ~1.6 KB per event, 0.4-0.6 s of
#: each 50,000-event commit, ~4 s of checkpoint at the end of a 400,000-event run. With
#: 32,768, a default batch is written once, compressed, and its commit costs ~0.05 s. (16,384
#: was as fast, but a small batch replacing rows spread over a large open table then had
#: twice as many row groups to rewrite at the checkpoint: history growth ratio 1.47-1.74,
#: against 1.16-1.26 with 32,768; see docs/performance.md.)
ROW_GROUP_SIZE = 32_768

#: Names DuckDB reserves for its own catalogs: a file named so is attached under another name.
_RESERVED_CATALOGS = frozenset({"memory", "temp", "system", "main"})


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Opens a DuckDB file with the session settings every sf-sync connection uses.

    A writable file is attached to an in-memory database under its own name (as
    ``duckdb.connect(path)`` would name it), because the row group size is an option of
    ``ATTACH`` (``ROW_GROUP_SIZE``), not of ``connect``; temp tables live in memory either way.
    """
    if read_only:
        con = duckdb.connect(str(path), read_only=True)
    else:
        con = duckdb.connect()
        name = Path(path).stem
        if name.lower() in _RESERVED_CATALOGS:
            name += "_db"
        con.execute(
            f"ATTACH {literal(str(path))} AS {quote_ident(name)} (ROW_GROUP_SIZE {ROW_GROUP_SIZE})"
        )
        con.execute(f"USE {quote_ident(name)}")
    con.execute(SESSION_SETTINGS)
    return con


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A second connection to ``con``'s database (own temp tables), with the same settings."""
    other = con.cursor()
    ((catalog,),) = con.execute("SELECT current_database()").fetchall()  # leaves no result open
    other.execute(f"USE {quote_ident(catalog)}")
    other.execute(SESSION_SETTINGS)
    return other


@contextmanager
def writer(
    home: Path,
    *,
    timeout_s: float = 600.0,
    publish: bool = False,
    publish_every_s: float = 0.0,
    memory_limit: str | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The one writer connection, serialised across processes by a lock file.

    Dagster's concurrency pool already runs one ingest at a time; the lock also covers the
    CLI and tests running beside the daemon. The connection is closed (and so checkpointed)
    on exit, which releases DuckDB's own file lock for the next writer. With ``publish``
    the analysts' copy is refreshed after a clean exit, still under the lock, unless it was
    refreshed less than ``publish_every_s`` ago (``publication_due``).

    Code on this connection reads single rows with ``fetchall()``, never ``fetchone()``: the
    latter leaves the result unfinished, and DuckDB then refuses relations (``con.sql``) and
    registrations on the connection until it is.
    """
    with _exclusive(home, timeout_s):
        con = connect(home / "warehouse.duckdb")
        try:
            if memory_limit:
                con.execute("SET memory_limit = ?", [memory_limit])
            con.execute("SET checkpoint_threshold = ?", [CHECKPOINT_THRESHOLD])
            con.execute(SCHEMA)
            migrate(con)
            refresh_views(con)
            yield con
        finally:
            con.close()
        if publish and publication_due(home, publish_every_s):
            publish_snapshot(home)


@contextmanager
def _exclusive(home: Path, timeout_s: float) -> Iterator[None]:
    """Holds the writers' lock file of ``home`` (waiting at most ``timeout_s``)."""
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
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Brings a warehouse written by an older sf-sync to the current schema; returns the steps.

    * ``change_values`` (until the columnar fold) and ``field_history`` (until the views over
      the versions) were tables. Both are views now: the versions hold the same values, a
      version being its change applied. So the tables are dropped (``writer`` creates the
      views right after this, before anyone can read the file).

    One transaction: a crash leaves the old schema whole.
    """
    steps = [
        f"DROP TABLE {name}"
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary"
            " AND table_name IN ('change_values', 'field_history') ORDER BY ALL"
        ).fetchall()
    ]
    if steps:
        con.execute("BEGIN TRANSACTION")
        try:
            for step in steps:
                con.execute(step)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return steps


VERSION_COLUMNS = f"""
    record_id VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    valid_from TIMESTAMPTZ NOT NULL,
    valid_to TIMESTAMPTZ,
    is_deleted BOOLEAN NOT NULL,
    event_key VARCHAR NOT NULL,
    change_type VARCHAR NOT NULL,
    changed_by VARCHAR,
    salesforce_id VARCHAR,
    ord {ORD_TYPE} NOT NULL
"""
BASE_VERSION_COLUMNS = (
    "record_id",
    "version",
    "valid_from",
    "valid_to",
    "is_deleted",
    "event_key",
    "change_type",
    "changed_by",
    "salesforce_id",
    "ord",
)


def object_view_name(source: str, obj: str, suffix: str) -> str:
    """``account_versions`` for Salesforce, ``webapp_account_versions`` for the other system."""
    base = obj.lower()
    return f"{base}_{suffix}" if source == "salesforce" else f"{source.lower()}_{base}_{suffix}"


def version_tables(
    con: duckdb.DuckDBPyConnection, source: str, obj: str, fields: list[str]
) -> tuple[str, str]:
    """The (open, closed) tables of one object, created or widened to hold ``fields``."""
    if not (_IDENT.match(source) and _IDENT.match(obj)):
        raise ValueError(f"unsafe source or object name {source!r}/{obj!r}")
    found = con.execute(  # fetchall: see ``writer``
        "SELECT open_table, closed_table FROM version_tables WHERE source = ? AND object = ?",
        [source, obj],
    ).fetchall()
    if found:
        ((open_t, closed_t),) = found
    else:
        open_t = f"sv_{source}_{obj}_open".lower()
        closed_t = f"sv_{source}_{obj}_closed".lower()
        for table in (open_t, closed_t):
            con.execute(f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} ({VERSION_COLUMNS})")
        con.execute(
            "INSERT INTO version_tables VALUES (?, ?, ?, ?)", [source, obj, open_t, closed_t]
        )
    have = set(table_columns(con, open_t))
    for field in fields:
        if field not in have:
            for table in (open_t, closed_t):
                con.execute(
                    f"ALTER TABLE {quote_ident(table)} ADD COLUMN IF NOT EXISTS "
                    f"{quote_ident(field)} VARCHAR"
                )
    return open_t, closed_t


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [
        c
        for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
            [table],
        ).fetchall()
    ]


def field_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The field columns of a version table, in the order they first appeared."""
    return [c for c in table_columns(con, table) if c not in BASE_VERSION_COLUMNS]


def all_version_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, str]]:
    return con.execute(
        "SELECT source, object, open_table, closed_table FROM version_tables ORDER BY ALL"
    ).fetchall()


def refresh_views(con: duckdb.DuckDBPyConnection, lake_dir: Path | None = None) -> list[str]:
    """(Re)creates the views over the version tables and, with ``lake_dir``, the lake.

    ``<object>_versions`` and ``<object>_current`` per object, ``change_values`` and
    ``field_history`` over all of them, and ``raw_events`` once the lake holds a file.
    """
    created = []
    values: list[str] = []
    history: list[str] = []
    for source, obj, open_t, closed_t in all_version_tables(con):
        id_col = "Id" if source == "salesforce" else "record_key"
        columns = field_columns(con, open_t)
        fields = ", ".join(quote_ident(f) for f in columns if f != id_col)
        sf_id = "" if source == "salesforce" else "salesforce_id, "
        select = (
            f"SELECT record_id AS {quote_ident(id_col)}, {sf_id}{fields}{',' if fields else ''}"
            " valid_from, valid_to, valid_to IS NULL AS is_current, is_deleted, version,"
            " event_key, change_type, changed_by FROM {table}"
        )
        versions = object_view_name(source, obj, "versions")
        current = object_view_name(source, obj, "current")
        con.execute(
            f"CREATE OR REPLACE VIEW {quote_ident(versions)} AS "
            + select.format(table=quote_ident(closed_t))
            + " UNION ALL "
            + select.format(table=quote_ident(open_t))
        )
        con.execute(
            f"CREATE OR REPLACE VIEW {quote_ident(current)} AS "
            + select.format(table=quote_ident(open_t))
        )
        created += [versions, current]
        values.append(_change_values_select(source, obj, open_t, closed_t, columns))
        history.append(_field_history_select(source, obj, open_t, closed_t, columns))
    for name, selects, empty in (
        ("change_values", values, _EMPTY_CHANGE_VALUES),
        ("field_history", history, _EMPTY_FIELD_HISTORY),
    ):
        body = " UNION ALL ".join(selects) if selects else empty
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")
        created.append(name)
    if lake_dir is not None and any(
        (lake_dir / "raw_events").glob("topic=*/event_date=*/*.parquet")
    ):
        pattern = literal(str(lake_dir / "raw_events" / "*" / "*" / "*.parquet"))
        con.execute(
            "CREATE OR REPLACE VIEW raw_events AS SELECT * FROM read_parquet("
            f"{pattern}, hive_partitioning = true)"
        )
        created.append("raw_events")
    return created


_EMPTY_CHANGE_VALUES = (
    "SELECT NULL::VARCHAR AS source, NULL::VARCHAR AS object, NULL::VARCHAR AS record_id,"
    " NULL::VARCHAR AS event_key, NULL::VARCHAR AS field, NULL::VARCHAR AS value,"
    " NULL::TIMESTAMPTZ AS commit_timestamp LIMIT 0"
)
_EMPTY_FIELD_HISTORY = (
    "SELECT NULL::VARCHAR AS object, NULL::VARCHAR AS record_id, NULL::VARCHAR AS field,"
    " NULL::VARCHAR AS old_value, NULL::VARCHAR AS new_value, NULL::TIMESTAMPTZ AS changed_at,"
    " NULL::VARCHAR AS change_type, NULL::VARCHAR AS changed_by, NULL::VARCHAR AS source,"
    " NULL::VARCHAR AS event_key, NULL::INTEGER AS version LIMIT 0"
)


def _sets(source: str, obj: str) -> str:
    """One row per field each change of one object set (``changed_fields`` unnested)."""
    return f"""(SELECT source, object, record_id, event_key, commit_timestamp,
                       unnest(changed_fields) AS field
                FROM change_events
                WHERE source = {literal(source)} AND object = {literal(obj)})"""


def _all_versions(open_t: str, closed_t: str) -> str:
    return (
        f"(SELECT * FROM {quote_ident(closed_t)}"
        f" UNION ALL BY NAME SELECT * FROM {quote_ident(open_t)})"
    )


def _change_values_select(
    source: str, obj: str, open_t: str, closed_t: str, fields: list[str]
) -> str:
    """What each change of one object set: its ``changed_fields`` read from its version."""
    return f"""
        SELECT c.source, c.object, c.record_id, c.event_key, c.field,
               {field_value("c.field", "v", fields)} AS value,
               c.commit_timestamp
        FROM {_sets(source, obj)} c
        JOIN {_all_versions(open_t, closed_t)} v USING (record_id, event_key)"""


def _field_history_select(
    source: str, obj: str, open_t: str, closed_t: str, fields: list[str]
) -> str:
    """The field changes of one object: each set value against the version before its own.

    A record's versions are numbered 1, 2, ... in commit order and each is its change
    applied, so a change's old value is the field in version ``n - 1`` and its new value the
    field in version ``n``. Deriving the rows here, rather than storing them, keeps them
    right whenever late events make the fold derive versions again, and spares the writer
    about six rows per event (as much as the rest of a batch together).
    """
    return f"""
        SELECT * FROM (
            SELECT c.object, c.record_id, c.field,
                   {field_value("c.field", "p", fields)} AS old_value,
                   {field_value("c.field", "v", fields)} AS new_value,
                   v.valid_from AS changed_at, v.change_type, v.changed_by, c.source,
                   c.event_key, v.version
            FROM {_sets(source, obj)} c
            JOIN {_all_versions(open_t, closed_t)} v USING (record_id, event_key)
            LEFT JOIN {_all_versions(open_t, closed_t)} p
              ON p.record_id = v.record_id AND p.version = v.version - 1)
        WHERE old_value IS DISTINCT FROM new_value"""


def field_value(name: str, row: str, fields: list[str]) -> str:
    """SQL for the value of the field named by ``name`` in the wide version row ``row``."""
    if not fields:
        return "NULL::VARCHAR"
    whens = " ".join(f"WHEN {literal(f)} THEN {row}.{quote_ident(f)}" for f in fields)
    return f"CASE {name} {whens} END"


def literal(text: str) -> str:
    """Quotes a string as a SQL literal."""
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
    made_from = _file_state(src)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    marker = home / f".{PUBLISHED}.{os.getpid()}.tmp"
    marker.write_text(json.dumps({"made_from": made_from, "at": time.time()}))
    os.replace(marker, home / PUBLISHED)
    return dst


#: What the analysts' copy was made from (the warehouse file's size and mtime) and when:
#: written after each copy, so a crash in between only makes the next writer copy again.
PUBLISHED = "history.published.json"


def _file_state(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _published(home: Path) -> dict | None:
    try:
        return json.loads((home / PUBLISHED).read_text())
    except (FileNotFoundError, ValueError):
        return None


def publication_pending(home: Path) -> bool:
    """Whether the warehouse holds commits the analysts' copy lacks (it changed since)."""
    return _pending(home, _published(home))


def _pending(home: Path, published: dict | None) -> bool:
    state = _file_state(home / "warehouse.duckdb")
    return state is not None and (published is None or published.get("made_from") != state)


def publication_due(home: Path, every_s: float) -> bool:
    """Pending, and the last copy is at least ``every_s`` old (or there is none).

    Publishing copies the whole file: at ten million versions (1.7 GB) 0.9 s from the page
    cache, 4.6 s from disk, against 1.2 s to fold a 10,000-event batch. ``every_s`` bounds how
    much of the writer's time that takes.
    """
    published = _published(home)
    if not _pending(home, published):
        return False
    return every_s <= 0 or published is None or time.time() - published["at"] >= every_s


def writer_active(home: Path) -> bool:
    """Whether a writer holds the lock now (it will publish when due, if it finishes)."""
    if not (home / "warehouse.lock").exists():
        return False
    try:
        with _exclusive(home, timeout_s=0):
            return False
    except WarehouseBusy:
        return True


def publish(home: Path, *, timeout_s: float = 600.0) -> bool:
    """Publishes what runs left unpublished (``publish_every_s``), under the writers' lock;
    returns whether it copied."""
    with _exclusive(home, timeout_s):
        if not publication_pending(home):
            return False
        publish_snapshot(home)
        return True


def connect_history(home: Path) -> duckdb.DuckDBPyConnection:
    """A read-only analyst connection to the latest published history."""
    return connect(home / "history.duckdb", read_only=True)
