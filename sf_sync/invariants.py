"""Invariants of the history, as SQL: each query returns the rows that break the rule.

Used by the Dagster asset checks and by the tests; an empty result means the rule holds.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from sf_sync.warehouse import all_version_tables, literal, quote_ident

_DUPLICATE_VERSIONS = """
SELECT {source}, event_key, record_id || ' (versions)', count(*)
FROM (SELECT record_id, event_key FROM {closed} UNION ALL SELECT record_id, event_key FROM {open})
GROUP BY ALL HAVING count(*) > 1
"""


def duplicate_changes(con: duckdb.DuckDBPyConnection) -> str:
    """Changes stored twice, or that made two versions of their record.

    ``field_history`` and ``change_values`` are views over the versions, so a change made
    into two versions would show its field changes twice: this rule covers them too.
    """
    parts = [
        "SELECT source, event_key, record_id, count(*) AS copies"
        " FROM change_events GROUP BY ALL HAVING count(*) > 1"
    ] + [
        _DUPLICATE_VERSIONS.format(open=quote_ident(o), closed=quote_ident(c), source=literal(s))
        for s, _obj, o, c in all_version_tables(con)
    ]
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


def validity_breaks(con: duckdb.DuckDBPyConnection) -> str:
    """Versions of a record that overlap, leave holes, or are not numbered 1, 2, 3...

    One query per object's version tables, joined; built from the registry of those tables.
    """
    parts = [
        _VALIDITY_BREAKS.format(
            open=quote_ident(o), closed=quote_ident(c), source=literal(s), object=literal(obj)
        )
        for s, obj, o, c in all_version_tables(con)
    ]
    return " UNION ALL ".join(f"({p})" for p in parts) or (
        "SELECT NULL AS source, NULL AS object, NULL AS record_id, NULL AS version,"
        " NULL AS problem WHERE false"
    )


Rule = str | Callable[[duckdb.DuckDBPyConnection], str]


def violations(con: duckdb.DuckDBPyConnection, rule: Rule, limit: int = 20) -> tuple[int, list]:
    """How many rows break the rule, and the first ``limit`` of them."""
    query = rule(con) if callable(rule) else rule
    (count,) = con.execute(f"SELECT count(*) FROM ({query})").fetchone()
    sample = con.execute(f"SELECT * FROM ({query}) LIMIT {int(limit)}").fetchall() if count else []
    return count, sample
