"""Folds new change rows into field history and SCD2 versions, in SQL.

The fold touches only the records a batch changes. For each of them it takes a *base* (the
version just before the batch's earliest change to that record) and *replays* every change from
there on, in commit order: in the usual case that is only the batch itself; when a late event
lands before versions we already have, the record's later versions and field-history rows are
derived again, so the history equals what in-order delivery would have given.

Input: temp table ``new_changes`` (rows just added to ``change_events``, data changes only).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

_KEY = "source, object, record_id"
_DATA_CHANGES = "('CREATE', 'UPDATE', 'DELETE', 'UNDELETE')"


@dataclass(frozen=True)
class FoldStats:
    records: int
    late_records: int
    versions: int
    field_changes: int


def fold_new_changes(con: duckdb.DuckDBPyConnection) -> FoldStats:
    """Applies ``new_changes`` to ``versions_*`` and ``field_history`` (inside the caller's txn)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fold_affected AS
        SELECT {_KEY}, min(ord) AS min_ord FROM new_changes
        WHERE change_type IN {_DATA_CHANGES} GROUP BY ALL;
        CREATE OR REPLACE TEMP TABLE fold_open AS
        SELECT o.* FROM versions_open o SEMI JOIN fold_affected USING ({_KEY});
        CREATE OR REPLACE TEMP TABLE fold_late AS
        SELECT a.* FROM fold_affected a JOIN fold_open o USING ({_KEY}) WHERE o.ord > a.min_ord;
        """
    )
    (records,) = con.execute("SELECT count(*) FROM fold_affected").fetchone()
    (late,) = con.execute("SELECT count(*) FROM fold_late").fetchone()
    if records == 0:
        return FoldStats(0, 0, 0, 0)
    if late:
        _prepare_late(con)
    else:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE fold_base AS SELECT * FROM fold_open;"
            " CREATE OR REPLACE TEMP TABLE fold_replay AS SELECT * FROM new_changes"
            f" WHERE change_type IN {_DATA_CHANGES}"
        )
    _derive(con)
    _write(con, late=bool(late))
    (versions,) = con.execute("SELECT count(*) FROM fold_versions").fetchone()
    (changes,) = con.execute("SELECT count(*) FROM fold_field_history").fetchone()
    return FoldStats(records, late, versions, changes)


def _prepare_late(con: duckdb.DuckDBPyConnection) -> None:
    """Base and replay when some records received changes older than their latest version."""
    (min_late_ts,) = con.execute("SELECT min(min_ord.ts) FROM fold_late").fetchone()
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fold_late_base AS
        SELECT v.* FROM versions_closed v JOIN fold_late l USING ({_KEY})
        WHERE v.ord < l.min_ord
        QUALIFY row_number() OVER (PARTITION BY {_KEY} ORDER BY v.ord DESC) = 1;
        CREATE OR REPLACE TEMP TABLE fold_base AS
        SELECT o.* FROM fold_open o ANTI JOIN fold_late USING ({_KEY})
        UNION ALL SELECT * FROM fold_late_base;
        CREATE OR REPLACE TEMP TABLE fold_replay AS
        SELECT n.* FROM new_changes n ANTI JOIN fold_late USING ({_KEY})
        WHERE n.change_type IN {_DATA_CHANGES}
        UNION ALL BY NAME
        SELECT c.* FROM change_events c JOIN fold_late l USING ({_KEY})
        WHERE c.commit_timestamp >= $ts AND c.ord >= l.min_ord
          AND c.change_type IN {_DATA_CHANGES};
        """,
        {"ts": min_late_ts},
    )


def _derive(con: duckdb.DuckDBPyConnection) -> None:
    """Numbers the replayed changes into versions and derives states and field changes."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fold_seq AS
        SELECT r.*, coalesce(b.version, 0) + row_number() OVER w AS version,
            lead(r.commit_timestamp) OVER w AS next_ts,
            coalesce(last_value(CASE r.change_type WHEN 'DELETE' THEN true
                                                   WHEN 'UPDATE' THEN NULL ELSE false END
                                IGNORE NULLS) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING
                                                         AND CURRENT ROW),
                     b.is_deleted, false) AS now_deleted
        FROM fold_replay r LEFT JOIN fold_base b USING ({_KEY})
        WINDOW w AS (PARTITION BY {_KEY} ORDER BY r.ord);

        CREATE OR REPLACE TEMP TABLE fold_sets AS
        SELECT {_KEY}, version, ord, kv.key AS field, kv.value AS value
        FROM (SELECT {_KEY}, version, ord, unnest(map_entries(field_values)) AS kv FROM fold_seq);

        CREATE OR REPLACE TEMP TABLE fold_field_history AS
        SELECT s.object, s.record_id, s.field,
            CASE WHEN lag(s.version) OVER f IS NULL THEN b.state[s.field]
                 ELSE lag(s.value) OVER f END AS old_value,
            s.value AS new_value, q.commit_timestamp AS changed_at, q.change_type,
            q.commit_user AS changed_by, s.source, q.event_key, s.version, s.ord
        FROM fold_sets s
        JOIN fold_seq q USING ({_KEY}, version)
        LEFT JOIN fold_base b
          ON b.source = s.source AND b.object = s.object AND b.record_id = s.record_id
        WINDOW f AS (PARTITION BY s.source, s.object, s.record_id, s.field ORDER BY s.ord)
        QUALIFY old_value IS DISTINCT FROM new_value;

        CREATE OR REPLACE TEMP TABLE fold_overlay AS
        WITH fields AS (SELECT DISTINCT {_KEY}, field FROM fold_sets),
        grid AS (
            SELECT q.source, q.object, q.record_id, q.version, f.field,
                last_value(CASE WHEN s.field IS NOT NULL THEN {{'v': s.value}} END IGNORE NULLS)
                    OVER (PARTITION BY q.source, q.object, q.record_id, f.field
                          ORDER BY q.version ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                    AS latest
            FROM fold_seq q JOIN fields f USING ({_KEY})
            LEFT JOIN fold_sets s USING ({_KEY}, version, field))
        SELECT {_KEY}, version,
            map_from_entries(list({{'key': field, 'value': latest.v}} ORDER BY field)) AS overlay
        FROM grid WHERE latest IS NOT NULL GROUP BY ALL;

        CREATE OR REPLACE TEMP TABLE fold_versions AS
        SELECT q.source, q.object, q.record_id, q.version, q.commit_timestamp AS valid_from,
            q.next_ts AS valid_to, q.now_deleted AS is_deleted,
            map_concat(coalesce(b.state, MAP {{}}::MAP(VARCHAR, VARCHAR)),
                       coalesce(o.overlay, MAP {{}}::MAP(VARCHAR, VARCHAR))) AS state,
            q.event_key, q.change_type, q.commit_user AS changed_by,
            coalesce(q.salesforce_id, b.salesforce_id) AS salesforce_id, q.ord
        FROM fold_seq q
        LEFT JOIN fold_base b
          ON b.source = q.source AND b.object = q.object AND b.record_id = q.record_id
        LEFT JOIN fold_overlay o
          ON o.source = q.source AND o.object = q.object AND o.record_id = q.record_id
         AND o.version = q.version;
        """
    )


def _write(con: duckdb.DuckDBPyConnection, *, late: bool) -> None:
    """Replaces the affected records' open rows, appends closed ones and field changes."""
    if late:
        con.execute(
            """
            DELETE FROM versions_closed v USING fold_late l
            WHERE v.source = l.source AND v.object = l.object AND v.record_id = l.record_id
              AND v.ord >= coalesce((SELECT b.ord FROM fold_late_base b
                                     WHERE b.source = l.source AND b.object = l.object
                                       AND b.record_id = l.record_id), l.min_ord);
            DELETE FROM field_history h USING fold_late l
            WHERE h.source = l.source AND h.object = l.object AND h.record_id = l.record_id
              AND h.ord >= l.min_ord;
            """
        )
    con.execute(
        f"""
        DELETE FROM versions_open o USING fold_affected a
        WHERE o.source = a.source AND o.object = a.object AND o.record_id = a.record_id;
        INSERT INTO versions_closed
        SELECT b.* REPLACE (f.first_ts AS valid_to)
        FROM fold_base b JOIN (SELECT {_KEY}, min(valid_from) AS first_ts FROM fold_versions
                               GROUP BY ALL) f USING ({_KEY});
        INSERT INTO versions_closed SELECT * FROM fold_versions WHERE valid_to IS NOT NULL;
        INSERT INTO versions_open SELECT * FROM fold_versions WHERE valid_to IS NULL;
        INSERT INTO field_history SELECT * FROM fold_field_history;
        INSERT INTO object_fields
        SELECT DISTINCT source, object, field FROM fold_sets
        EXCEPT SELECT source, object, field FROM object_fields;
        """
    )
