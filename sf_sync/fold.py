"""Folds new change rows into field history and SCD2 versions, in SQL.

The fold touches only the records a batch changes. For each of them it takes a *base* (the
version just before the batch's earliest change to that record) and *replays* every change from
there on, in commit order: in the usual case that is only the batch itself; when a late event
lands before versions we already have, the record's later versions and field-history rows are
derived again, so the history equals what in-order delivery would have given.

Each object's versions live in wide tables (one column per field, see ``warehouse``). A
version's state is, per field, the last value set at or before it, else the base's: one
``last_value(... IGNORE NULLS)`` window per column. Set-to-NULL is told apart from not-set by
coding NULL as ``chr(0)`` inside the window.

Input: temp tables ``new_changes`` (rows just added to ``change_events``) and ``new_values``
(the values those changes set, as in ``change_values``).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from sf_sync.warehouse import field_columns, quote_ident, version_tables

_DATA_CHANGES = "('CREATE', 'UPDATE', 'DELETE', 'UNDELETE')"
_NULL = "chr(0)"  # stands for "set to NULL" where NULL must mean "not set"


@dataclass(frozen=True)
class FoldStats:
    records: int = 0
    late_records: int = 0
    versions: int = 0
    field_changes: int = 0

    def __add__(self, other: FoldStats) -> FoldStats:
        return FoldStats(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, int, int, int]:
        return (self.records, self.late_records, self.versions, self.field_changes)


def fold_new_changes(con: duckdb.DuckDBPyConnection) -> FoldStats:
    """Applies ``new_changes`` to the version tables and ``field_history`` (caller's txn)."""
    groups = con.execute(
        f"SELECT DISTINCT source, object FROM new_changes WHERE change_type IN {_DATA_CHANGES}"
        " ORDER BY ALL"
    ).fetchall()
    total = FoldStats()
    for source, obj in groups:
        total = total + _fold_object(con, source, obj)
    return total


def _fold_object(con: duckdb.DuckDBPyConnection, source: str, obj: str) -> FoldStats:
    key = {"source": source, "object": obj}
    new_fields = [
        f
        for (f,) in con.execute(
            "SELECT DISTINCT field FROM new_values WHERE source = $source AND object = $object"
            " ORDER BY field",
            key,
        ).fetchall()
    ]
    open_name, closed_name = version_tables(con, source, obj, new_fields)
    fields = field_columns(con, open_name)
    open_t, closed_t = quote_ident(open_name), quote_ident(closed_name)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fold_affected AS
        SELECT record_id, min(ord) AS min_ord FROM new_changes
        WHERE source = $source AND object = $object AND change_type IN {_DATA_CHANGES}
        GROUP BY ALL
        """,
        key,
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE fold_open AS SELECT o.* FROM {open_t} o"
        " SEMI JOIN fold_affected USING (record_id)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE fold_late AS SELECT a.* FROM fold_affected a"
        " JOIN fold_open o USING (record_id) WHERE o.ord > a.min_ord"
    )
    (records,) = con.execute("SELECT count(*) FROM fold_affected").fetchone()
    (late,) = con.execute("SELECT count(*) FROM fold_late").fetchone()
    if late:
        _prepare_late(con, key, closed_t)
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE fold_base AS SELECT * FROM fold_open")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE fold_replay AS SELECT * FROM new_changes"
            f" WHERE source = $source AND object = $object AND change_type IN {_DATA_CHANGES}",
            key,
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE fold_values AS SELECT record_id, field, value,"
            " event_key FROM new_values WHERE source = $source AND object = $object",
            key,
        )
    _derive(con, fields)
    _write(con, open_t, closed_t, source, obj, late=bool(late))
    (versions,) = con.execute("SELECT count(*) FROM fold_versions").fetchone()
    (changes,) = con.execute("SELECT count(*) FROM fold_field_history").fetchone()
    return FoldStats(records, late, versions, changes)


def _prepare_late(con: duckdb.DuckDBPyConnection, key: dict, closed_t: str) -> None:
    """Base and replay when some records received changes older than their latest version."""
    (min_late_ts,) = con.execute("SELECT min(min_ord.ts) FROM fold_late").fetchone()
    params = {**key, "ts": min_late_ts}
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fold_late_base AS
        SELECT v.* FROM {closed_t} v JOIN fold_late l USING (record_id)
        WHERE v.ord < l.min_ord
        QUALIFY row_number() OVER (PARTITION BY record_id ORDER BY v.ord DESC) = 1
        """
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE fold_base AS"
        " SELECT o.* FROM fold_open o ANTI JOIN fold_late USING (record_id)"
        " UNION ALL BY NAME SELECT * FROM fold_late_base"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fold_late_changes AS
        SELECT c.* FROM change_events c JOIN fold_late l USING (record_id)
        WHERE c.source = $source AND c.object = $object AND c.commit_timestamp >= $ts
          AND c.ord >= l.min_ord AND c.change_type IN {_DATA_CHANGES}
        """,
        params,
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fold_replay AS
        SELECT n.* FROM new_changes n ANTI JOIN fold_late USING (record_id)
        WHERE n.source = $source AND n.object = $object AND n.change_type IN {_DATA_CHANGES}
        UNION ALL BY NAME
        SELECT * FROM fold_late_changes
        """,
        key,
    )
    # The values of exactly the replayed changes (a change is one record and event_key);
    # the commit time only lets DuckDB skip the row groups of older changes.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE fold_values AS
        SELECT n.record_id, n.field, n.value, n.event_key FROM new_values n
        ANTI JOIN fold_late USING (record_id)
        WHERE n.source = $source AND n.object = $object
        UNION ALL
        SELECT v.record_id, v.field, v.value, v.event_key FROM change_values v
        SEMI JOIN fold_late_changes c USING (record_id, event_key)
        WHERE v.source = $source AND v.object = $object AND v.commit_timestamp >= $ts
        """,
        params,
    )


def _derive(con: duckdb.DuckDBPyConnection, fields: list[str]) -> None:
    """Numbers the replayed changes into versions and derives states and field changes.

    Only ``fold_seq`` orders by ``ord`` (a six-field struct, costly to sort): every later
    window orders by the integer ``version`` it gives, which follows ``ord`` within a record.
    The windows also run over narrow rows; the wide base row is joined after them, so the
    sorts do not carry one column per field.
    """
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE fold_seq AS
        SELECT r.record_id, r.ord, r.commit_timestamp, r.change_type, r.event_key,
            r.commit_user, r.salesforce_id,
            coalesce(b.version, 0) + row_number() OVER w AS version,
            lead(r.commit_timestamp) OVER w AS next_ts,
            coalesce(last_value(CASE r.change_type WHEN 'DELETE' THEN true
                                                   WHEN 'UPDATE' THEN NULL ELSE false END
                                IGNORE NULLS) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING
                                                         AND CURRENT ROW),
                     b.is_deleted, false) AS is_deleted
        FROM fold_replay r LEFT JOIN fold_base b USING (record_id)
        WINDOW w AS (PARTITION BY r.record_id ORDER BY r.ord)
        """
    )
    # A change is one (record, event): event_key is unique per record within an object
    # (change_events is deduplicated on it), a cheaper join key than the ord struct.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE fold_vals AS
        SELECT v.record_id, v.field, v.value, q.version
        FROM fold_values v JOIN fold_seq q USING (record_id, event_key)
        """
    )
    base_of = (
        "CASE c.field " + " ".join(f"WHEN '{f}' THEN b.{quote_ident(f)}" for f in fields) + " END"
        if fields
        else "NULL"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fold_field_history AS
        WITH chained AS (
            SELECT record_id, field, version, value AS new_value,
                   lag(value) OVER f AS prev_value, lag(version) OVER f IS NULL AS first
            FROM fold_vals
            WINDOW f AS (PARTITION BY record_id, field ORDER BY version)),
        changes AS (
            SELECT c.record_id, c.field, c.version, c.new_value,
                   CASE WHEN c.first THEN {base_of} ELSE c.prev_value END AS old_value
            FROM chained c LEFT JOIN fold_base b ON c.first AND b.record_id = c.record_id)
        SELECT c.record_id, c.field, c.old_value, c.new_value,
            q.commit_timestamp AS changed_at, q.change_type, q.commit_user AS changed_by,
            q.event_key, q.version
        FROM changes c JOIN fold_seq q USING (record_id, version)
        WHERE c.old_value IS DISTINCT FROM c.new_value
        """
    )
    coded = ", ".join(
        f"max(CASE WHEN field = '{f}' THEN coalesce(value, {_NULL}) END) AS {quote_ident(f)}"
        for f in fields
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE fold_sets AS SELECT record_id, version"
        + (f", {coded}" if coded else "")
        + " FROM fold_vals GROUP BY record_id, version"
    )
    running = ", ".join(
        f"last_value(s.{quote_ident(f)} IGNORE NULLS) OVER w AS {quote_ident(f)}" for f in fields
    )
    states = ", ".join(
        f"CASE WHEN r.{quote_ident(f)} IS NULL THEN b.{quote_ident(f)}"
        f" ELSE nullif(r.{quote_ident(f)}, {_NULL}) END AS {quote_ident(f)}"
        for f in fields
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fold_versions AS
        WITH r AS (
            SELECT q.record_id, q.version, q.commit_timestamp, q.next_ts, q.is_deleted,
                q.event_key, q.change_type, q.commit_user, q.salesforce_id, q.ord
                {", " + running if running else ""}
            FROM fold_seq q
            LEFT JOIN fold_sets s USING (record_id, version)
            WINDOW w AS (PARTITION BY q.record_id ORDER BY q.version
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
        SELECT r.record_id, r.version, r.commit_timestamp AS valid_from, r.next_ts AS valid_to,
            r.is_deleted, r.event_key, r.change_type, r.commit_user AS changed_by,
            coalesce(r.salesforce_id, b.salesforce_id) AS salesforce_id, r.ord
            {", " + states if states else ""}
        FROM r LEFT JOIN fold_base b USING (record_id)
        """
    )


def _write(
    con: duckdb.DuckDBPyConnection, open_t: str, closed_t: str, source: str, obj: str, *, late: bool
) -> None:
    """Replaces the affected records' open rows, appends closed ones and field changes."""
    if late:
        con.execute(
            f"""
            DELETE FROM {closed_t} v USING fold_late l
            WHERE v.record_id = l.record_id
              AND v.ord >= coalesce((SELECT b.ord FROM fold_late_base b
                                     WHERE b.record_id = l.record_id), l.min_ord)
            """
        )
        # A record's versions follow its changes' order: the rows to derive again are those
        # of the versions after the base (all of them when the late change is the first).
        # Their commit time is at or after the earliest late change's, which prunes the scan.
        con.execute(
            """
            DELETE FROM field_history h USING fold_late l
            WHERE h.source = $source AND h.object = $object AND h.record_id = l.record_id
              AND h.changed_at >= (SELECT min(min_ord.ts) FROM fold_late)
              AND h.version > coalesce((SELECT b.version FROM fold_late_base b
                                        WHERE b.record_id = l.record_id), 0)
            """,
            {"source": source, "object": obj},
        )
    con.execute(f"DELETE FROM {open_t} o USING fold_affected a WHERE o.record_id = a.record_id")
    con.execute(
        f"""
        INSERT INTO {closed_t} BY NAME
        SELECT b.* REPLACE (f.first_ts AS valid_to)
        FROM fold_base b JOIN (SELECT record_id, min(valid_from) AS first_ts
                               FROM fold_versions GROUP BY ALL) f USING (record_id)
        """
    )
    con.execute(
        f"INSERT INTO {closed_t} BY NAME SELECT * FROM fold_versions WHERE valid_to IS NOT NULL"
    )
    con.execute(f"INSERT INTO {open_t} BY NAME SELECT * FROM fold_versions WHERE valid_to IS NULL")
    con.execute(
        """
        INSERT INTO field_history
        SELECT $object, record_id, field, old_value, new_value, changed_at, change_type,
               changed_by, $source, event_key, version
        FROM fold_field_history
        """,
        {"source": source, "object": obj},
    )
