"""Invariants of the history, as SQL: each query returns the rows that break the rule.

Used by the Dagster asset checks and by the tests; an empty result means the rule holds.
"""

from __future__ import annotations

import duckdb

DUPLICATE_CHANGES = """
SELECT source, event_key, record_id, count(*) AS copies
FROM change_events GROUP BY ALL HAVING count(*) > 1
UNION ALL
SELECT source, event_key, record_id || '.' || field, count(*)
FROM field_history GROUP BY source, event_key, record_id, field HAVING count(*) > 1
"""

RANGE_HOLES = """
WITH r AS (
    SELECT topic, kafka_partition, start_offset, end_offset,
           max(end_offset) OVER (PARTITION BY topic, kafka_partition
                                 ORDER BY start_offset, end_offset
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
    FROM ingested_ranges)
SELECT topic, kafka_partition, prev_end AS expected_start, start_offset AS found_start,
       CASE WHEN start_offset > prev_end THEN 'hole' ELSE 'overlap' END AS problem
FROM r WHERE prev_end IS NOT NULL AND start_offset <> prev_end
"""

VALIDITY_BREAKS = """
WITH v AS (
    SELECT source, object, record_id, version, valid_from, valid_to FROM versions_closed
    UNION ALL
    SELECT source, object, record_id, version, valid_from, valid_to FROM versions_open),
w AS (
    SELECT *, lead(valid_from) OVER k AS next_from, lead(version) OVER k AS next_version
    FROM v WINDOW k AS (PARTITION BY source, object, record_id ORDER BY version))
SELECT source, object, record_id, version,
    CASE WHEN next_version IS NULL AND valid_to IS NOT NULL THEN 'latest version is closed'
         WHEN next_version IS NOT NULL AND valid_to IS NULL THEN 'open version is not latest'
         WHEN next_version <> version + 1 THEN 'version numbers skip'
         WHEN valid_to <> next_from THEN 'valid_to does not meet the next valid_from'
         WHEN valid_to < valid_from THEN 'interval ends before it starts'
    END AS problem
FROM w WHERE problem IS NOT NULL
UNION ALL
SELECT source, object, record_id, NULL, 'several open versions'
FROM versions_open GROUP BY ALL HAVING count(*) > 1
"""


def violations(con: duckdb.DuckDBPyConnection, query: str, limit: int = 20) -> tuple[int, list]:
    """How many rows break the rule, and the first ``limit`` of them."""
    (count,) = con.execute(f"SELECT count(*) FROM ({query})").fetchone()
    sample = con.execute(f"SELECT * FROM ({query}) LIMIT {int(limit)}").fetchall() if count else []
    return count, sample
