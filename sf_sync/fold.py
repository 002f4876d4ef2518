"""Folds new change rows into SCD2 versions (``field_history`` is a view over them).

The fold touches only the records a batch changes. For each of them it takes a *base* (the
version just before the batch's earliest change to that record) and *replays* every change from
there on, in commit order: in the usual case that is only the batch itself; when a late event
lands before versions we already have, the record's later versions are derived again, so the
history (and ``field_history``, a view over the versions) equals what in-order delivery would
have given.

Each object's versions live in wide tables (one column per field, see ``warehouse``). SQL
picks the base and the replay and writes the result; the states themselves are derived over
Arrow arrays (``derive``).

Input: ``new_changes`` (rows just added to ``change_events``, with ``ev``, the number of their
event in the batch) and ``batch_fields`` (what each event set: ``ev``, ``field``, ``value``).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from sf_sync.derive import Derived, derive
from sf_sync.warehouse import (
    field_columns,
    field_value,
    literal,
    quote_ident,
    version_tables,
)

_DATA_CHANGES = "('CREATE', 'UPDATE', 'DELETE', 'UNDELETE')"


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
    try:
        for source, obj in groups:
            total = total + _fold_object(con, source, obj)
    finally:
        for name in ("fold_base_rows", "fold_seq", "fold_versions"):
            con.unregister(name)
    return total


def _fold_object(con: duckdb.DuckDBPyConnection, source: str, obj: str) -> FoldStats:
    key = {"source": source, "object": obj}
    new_fields = [
        f
        for (f,) in con.execute(
            "SELECT DISTINCT field FROM batch_fields WHERE ev IN (SELECT ev FROM new_changes"
            " WHERE source = $source AND object = $object) ORDER BY field",
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
    # Two steps: a join reading every open row would decompress every column of the whole
    # open table (1.1 s at a million records); finding the rows by their ``record_id`` alone
    # and then fetching them by ``rowid`` reads the wide columns of those rows only (0.25 s).
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE fold_open_rows AS SELECT o.rowid AS open_row"
        f" FROM {open_t} o SEMI JOIN fold_affected USING (record_id)"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE fold_open AS SELECT o.* FROM {open_t} o"
        " WHERE o.rowid IN (SELECT open_row FROM fold_open_rows)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE fold_late AS SELECT a.* FROM fold_affected a"
        " JOIN fold_open o USING (record_id) WHERE o.ord > a.min_ord"
    )
    ((records,),) = con.execute("SELECT count(*) FROM fold_affected").fetchall()
    ((late,),) = con.execute("SELECT count(*) FROM fold_late").fetchall()
    if late:
        _prepare_late(con, key, closed_t, fields)
    else:
        # Read once each by ``_derive``: views, not copies.
        con.execute("CREATE OR REPLACE TEMP VIEW fold_base AS SELECT * FROM fold_open")
        con.execute(
            "CREATE OR REPLACE TEMP VIEW fold_replay AS SELECT * FROM new_changes"
            f" WHERE source = {literal(source)} AND object = {literal(obj)}"
            f" AND change_type IN {_DATA_CHANGES}"
        )
    derived = _derive(con, fields, late=bool(late))
    _write(con, open_t, closed_t, late=bool(late))
    return FoldStats(records, late, derived.versions.num_rows, derived.field_changes)


def _prepare_late(
    con: duckdb.DuckDBPyConnection, key: dict, closed_t: str, fields: list[str]
) -> None:
    """Base and replay when some records received changes older than their latest version.

    The values of the stored changes to replay are read back from their versions: a version
    is its change applied, so each field the change set (``changed_fields``) holds the value
    it set. (Until the columnar fold they were kept apart, in a ``change_values`` table.)
    """
    ((min_late_ts,),) = con.execute("SELECT min(min_ord.ts) FROM fold_late").fetchall()
    params = {**key, "ts": min_late_ts}
    # Views (as in the usual path) cannot take parameters: the same values as literals.
    source, obj = literal(key["source"]), literal(key["object"])
    since = f"{literal(min_late_ts.isoformat())}::TIMESTAMPTZ"
    # A late record's base is the closed version its late change falls in: the one after it
    # starts at or after the change, so the base ends (``valid_to``) no earlier than the
    # earliest late change, which lets DuckDB skip the row groups of older versions.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fold_late_base AS
        SELECT v.* FROM {closed_t} v JOIN fold_late l USING (record_id)
        WHERE v.ord < l.min_ord AND v.valid_to >= $ts
        QUALIFY row_number() OVER (PARTITION BY record_id ORDER BY v.ord DESC) = 1
        """,
        {"ts": min_late_ts},
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW fold_base AS"
        " SELECT o.* FROM fold_open o ANTI JOIN fold_late USING (record_id)"
        " UNION ALL BY NAME SELECT * FROM fold_late_base"
    )
    # The batch's own changes among them keep their ``ev`` (their values are in the batch).
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE fold_late_changes AS
        SELECT c.*, n.ev FROM change_events c JOIN fold_late l USING (record_id)
        LEFT JOIN (SELECT record_id, event_key, ev FROM new_changes
                   WHERE source = $source AND object = $object) n USING (record_id, event_key)
        WHERE c.source = $source AND c.object = $object AND c.commit_timestamp >= $ts
          AND c.ord >= l.min_ord AND c.change_type IN {_DATA_CHANGES}
        """,
        params,
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW fold_replay AS
        SELECT n.* FROM new_changes n ANTI JOIN fold_late USING (record_id)
        WHERE n.source = {source} AND n.object = {obj} AND n.change_type IN {_DATA_CHANGES}
        UNION ALL BY NAME
        SELECT * FROM fold_late_changes
        """
    )
    # The values of the stored changes replayed (a change is one record and event_key; the
    # batch's own are read by ``ev``), from the versions they made; the commit time only
    # lets DuckDB skip the row groups of older versions.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW fold_stored_values AS
        SELECT s.record_id, s.field, {field_value("s.field", "v", fields)} AS value, s.event_key
        FROM (SELECT c.record_id, c.event_key, unnest(c.changed_fields) AS field
              FROM fold_late_changes c WHERE c.ev IS NULL) s
        JOIN (SELECT v.* FROM {closed_t} v SEMI JOIN fold_late USING (record_id)
              WHERE v.valid_from >= {since}
              UNION ALL BY NAME
              SELECT o.* FROM fold_open o SEMI JOIN fold_late USING (record_id)) v
        USING (record_id, event_key)
        """
    )


def _derive(con: duckdb.DuckDBPyConnection, fields: list[str], *, late: bool) -> Derived:
    """Derives ``fold_versions`` from the base and the replay.

    SQL sorts the replay into versions (by record, then commit order) and ties each value to
    its change's row: the batch's by ``ev``, and with ``late`` also the stored changes'
    (``fold_stored_values``); the arithmetic is ``derive.derive`` over Arrow arrays. Its
    results are registered under the names ``_write`` reads (and unregistered by
    ``fold_new_changes``).
    """
    base = con.sql("SELECT * FROM fold_base").to_arrow_table()
    con.register(
        "fold_base_rows",
        pa.table({"record_id": base["record_id"], "base_row": np.arange(base.num_rows)}),
    )
    replay = con.sql(
        """
        SELECT r.record_id, r.commit_timestamp, r.change_type, r.event_key, r.commit_user,
            r.salesforce_id, r.ord, r.ev, coalesce(b.base_row, -1) AS base_row
        FROM fold_replay r LEFT JOIN fold_base_rows b USING (record_id)
        ORDER BY r.record_id, r.ord
        """
    ).to_arrow_table()
    # A replayed change's row is its position in that order (Arrow keeps it; no temp table).
    con.register(
        "fold_seq",
        pa.table(
            {
                "record_id": replay["record_id"],
                "event_key": replay["event_key"],
                "ev": replay["ev"],
                "row": np.arange(replay.num_rows),
            }
        ),
    )
    stored = (
        " UNION ALL SELECT s.row, v.field, v.value FROM fold_stored_values v"
        " JOIN fold_seq s USING (record_id, event_key)"
    )
    values = con.sql(
        "SELECT s.row, f.field, f.value FROM fold_seq s JOIN batch_fields f USING (ev)"
        + (stored if late else "")
    ).to_arrow_table()
    derived = derive(base, replay, values, fields)
    con.register("fold_versions", derived.versions)
    return derived


def _write(con: duckdb.DuckDBPyConnection, open_t: str, closed_t: str, *, late: bool) -> None:
    """Replaces the affected records' open rows and appends closed ones."""
    if late:
        con.execute(
            f"""
            DELETE FROM {closed_t} v USING fold_late l
            WHERE v.record_id = l.record_id
              AND v.ord >= coalesce((SELECT b.ord FROM fold_late_base b
                                     WHERE b.record_id = l.record_id), l.min_ord)
            """
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
