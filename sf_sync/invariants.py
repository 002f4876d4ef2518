"""Invariants of the history, as SQL: each query returns the rows that break the rule.

Every rule can look at the whole history or only at what one run wrote (``Written``): the
rows its batches added and the versions they made or closed, plus whatever those rows could
collide with. A run checks what it wrote (its cost follows the run, not the history: at ten
million versions the whole-history rules take seconds per run); the whole history is checked
on demand and on a schedule (``assets/checks.py``). An empty result means the rule holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb

from sf_sync.warehouse import all_version_tables, literal, quote_ident


@dataclass(frozen=True)
class Written:
    """What one run wrote: the commit times of its batches (``ingested_at`` of their rows).

    ``changes`` selects those change rows; ``lo``/``hi`` bound their commit timestamps, which
    is all the history a copy of one of them, or a version made from one, can be in.
    """

    batches: tuple[datetime, ...]
    lo: datetime | None = None
    hi: datetime | None = None

    @classmethod
    def of(cls, con: duckdb.DuckDBPyConnection, batches: Sequence[datetime]) -> Written:
        written = cls(tuple(sorted(set(batches))))
        if not written.batches:
            return written
        ((lo, hi),) = con.execute(  # fetchall: see ``warehouse.writer``
            f"SELECT min(commit_timestamp), max(commit_timestamp) FROM {written.changes}"
        ).fetchall()
        return cls(written.batches, lo, hi)

    @property
    def changes(self) -> str:
        """The run's change rows (DuckDB prunes to their row groups: appends carry the time)."""
        if not self.batches:
            return "(SELECT * FROM change_events WHERE false)"
        times = ", ".join(_ts(t) for t in self.batches)
        first, last = _ts(self.batches[0]), _ts(self.batches[-1])
        return (
            "(SELECT * FROM change_events"
            f" WHERE ingested_at BETWEEN {first} AND {last} AND ingested_at IN ({times}))"
        )

    @property
    def window(self) -> str:
        """``BETWEEN lo AND hi`` over the run's commit timestamps (false when it wrote none)."""
        if self.lo is None:
            return "BETWEEN NULL AND NULL"
        return f"BETWEEN {_ts(self.lo)} AND {_ts(self.hi)}"


def _ts(t: datetime) -> str:
    return f"{literal(t.isoformat())}::TIMESTAMPTZ"


_DUPLICATE_VERSIONS = """
SELECT {source}, event_key, record_id || ' (versions)', count(*)
FROM (SELECT record_id, event_key FROM {closed} UNION ALL SELECT record_id, event_key FROM {open})
GROUP BY ALL HAVING count(*) > 1
"""


def duplicate_changes(con: duckdb.DuckDBPyConnection, written: Written | None = None) -> str:
    """Changes stored twice, or that made two versions of their record.

    ``field_history`` and ``change_values`` are views over the versions, so a change made
    into two versions would show its field changes twice: this rule covers them too. With
    ``written``, only the run's changes are looked for: their copies share their commit
    timestamp, and so do the versions made from them (``valid_from``).
    """
    changes = "change_events"
    if written is not None:
        changes = (
            f"(SELECT * FROM change_events c SEMI JOIN {written.changes} w"
            f" USING (source, event_key, record_id) WHERE c.commit_timestamp {written.window})"
        )
    parts = [
        "SELECT source, event_key, record_id, count(*) AS copies"
        f" FROM {changes} GROUP BY ALL HAVING count(*) > 1"
    ]
    for s, obj, o, c in all_version_tables(con):
        closed, open_ = quote_ident(c), quote_ident(o)
        if written is not None:
            made = (
                f"SEMI JOIN (SELECT record_id, event_key FROM {written.changes}"
                f" WHERE source = {literal(s)} AND object = {literal(obj)}) w"
                f" USING (record_id, event_key) WHERE v.valid_from {written.window}"
            )
            closed, open_ = (f"(SELECT v.* FROM {t} v {made})" for t in (closed, open_))
        parts.append(_DUPLICATE_VERSIONS.format(open=open_, closed=closed, source=literal(s)))
    return " UNION ALL ".join(f"({p})" for p in parts)


#: Offsets that Kafka's retention deleted before they were read, one half-open span per
#: ``RETENTION_LOSS`` gap: it starts at ``kafka_offset`` and ``event_key`` ends in
#: ``[from,to)``. Repaired or not, these offsets are never in ``ingested_ranges``.
RETENTION_LOSS_SPANS = r"""
SELECT topic, kafka_partition, kafka_offset AS start_offset,
       CAST(regexp_extract(event_key, '\[(\d+),(\d+)\)$', 2) AS BIGINT) AS end_offset
FROM gaps WHERE gap_type = 'RETENTION_LOSS'
"""

#: Ingested ranges and recorded retention losses of a partition meet end to start: every
#: offset is either stored or a recorded loss, and none is both.
RANGE_HOLES = f"""
WITH spans AS (
    SELECT topic, kafka_partition, start_offset, end_offset FROM ingested_ranges
    UNION ALL ({RETENTION_LOSS_SPANS})),
r AS (
    SELECT topic, kafka_partition, start_offset, end_offset,
           max(end_offset) OVER (PARTITION BY topic, kafka_partition
                                 ORDER BY start_offset, end_offset
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
    FROM spans)
SELECT topic, kafka_partition, prev_end AS expected_start, start_offset AS found_start,
       CASE WHEN start_offset > prev_end THEN 'hole' ELSE 'overlap' END AS problem
FROM r WHERE prev_end IS NOT NULL AND start_offset <> prev_end
"""

_VALIDITY_BREAKS = """
WITH v AS (
    SELECT record_id, version, valid_from, valid_to FROM {closed}
    UNION ALL
    SELECT record_id, version, valid_from, valid_to FROM {open}),
w AS (
    SELECT *, lead(valid_from) OVER k AS next_from, lead(version) OVER k AS next_version
    FROM v WINDOW k AS (PARTITION BY record_id ORDER BY version))
SELECT {source} AS source, {object} AS object, record_id, version,
    CASE WHEN next_version IS NULL AND valid_to IS NOT NULL THEN 'latest version is closed'
         WHEN next_version IS NOT NULL AND valid_to IS NULL THEN 'open version is not latest'
         WHEN next_version <> version + 1 THEN 'version numbers skip'
         WHEN valid_to <> next_from THEN 'valid_to does not meet the next valid_from'
         WHEN valid_to < valid_from THEN 'interval ends before it starts'
    END AS problem
FROM w WHERE problem IS NOT NULL
UNION ALL
SELECT {source}, {object}, record_id, NULL, 'several open versions'
FROM {open} GROUP BY ALL HAVING count(*) > 1
"""


def validity_breaks(con: duckdb.DuckDBPyConnection, written: Written | None = None) -> str:
    """Versions of a record that overlap, leave holes, or are not numbered 1, 2, 3...

    One query per object's version tables, joined; built from the registry of those tables.
    With ``written``, only the records the run changed, from the version each of their changes
    closed (it ends at or after the run's earliest commit timestamp) on: the run made or
    rewrote no other version.
    """
    parts = []
    for s, obj, o, c in all_version_tables(con):
        closed, open_ = quote_ident(c), quote_ident(o)
        if written is not None:
            if written.lo is None:
                continue  # the run wrote no change
            records = (
                f"SEMI JOIN (SELECT record_id FROM {written.changes}"
                f" WHERE source = {literal(s)} AND object = {literal(obj)}) w USING (record_id)"
            )
            closed = f"(SELECT v.* FROM {closed} v {records} WHERE v.valid_to >= {_ts(written.lo)})"
            open_ = f"(SELECT v.* FROM {open_} v {records})"
        keys = {"source": literal(s), "object": literal(obj)}
        parts.append(_VALIDITY_BREAKS.format(open=open_, closed=closed, **keys))
    return " UNION ALL ".join(f"({p})" for p in parts) or (
        "SELECT NULL AS source, NULL AS object, NULL AS record_id, NULL AS version,"
        " NULL AS problem WHERE false"
    )


def range_holes(con: duckdb.DuckDBPyConnection, written: Written | None = None) -> str:
    """``RANGE_HOLES``; always over every range (the table has a row per batch slice)."""
    return RANGE_HOLES


Rule = str | Callable[[duckdb.DuckDBPyConnection, Written | None], str]

#: What a run checks over what it wrote, by the name of its Dagster asset check.
RUN_RULES: dict[str, Rule] = {
    "no_duplicate_changes": duplicate_changes,
    "contiguous_offset_ranges": range_holes,
    "non_overlapping_versions": validity_breaks,
}


def violations(
    con: duckdb.DuckDBPyConnection, rule: Rule, limit: int = 20, written: Written | None = None
) -> tuple[int, list]:
    """How many rows break the rule (over ``written`` only, if given), and the first ``limit``."""
    query = rule(con, written) if callable(rule) else rule
    ((count,),) = con.execute(f"SELECT count(*) FROM ({query})").fetchall()
    sample = con.execute(f"SELECT * FROM ({query}) LIMIT {int(limit)}").fetchall() if count else []
    return count, sample
