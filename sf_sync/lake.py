"""The raw-event lake: every message exactly as received, as Parquet, by topic and event date.

Files are named after the exact offset range they hold, ``p<partition>-<start>-<end>.parquet``,
and written atomically (temporary file, then rename), so re-running a range rewrites the same
file with the same content. A file left by a run that crashed before its warehouse commit is an
*orphan*: its range is not in ``ingested_ranges``; the next writer of that partition deletes it
before writing, so the lake never holds an offset twice.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

from sf_sync.decode import RAW_VIEW
from sf_sync.ranges import OffsetRange

_FILE = re.compile(r"^p(\d+)-(\d+)-(\d+)\.parquet$")


def raw_dir(lake: Path) -> Path:
    return lake / "raw_events"


def lake_files(lake: Path, topic: str, partition: int) -> list[tuple[Path, int, int]]:
    """Lake files of one partition, with the offset range each holds."""
    out = []
    for path in raw_dir(lake).glob(f"topic={topic}/event_date=*/p{partition}-*.parquet"):
        m = _FILE.match(path.name)
        if m:
            out.append((path, int(m.group(2)), int(m.group(3))))
    return out


def remove_orphans(lake: Path, topic: str, partition: int, recorded: set[tuple[int, int]]) -> int:
    """Deletes files of a partition whose range the warehouse never recorded."""
    removed = 0
    for path, start, end in lake_files(lake, topic, partition):
        if (start, end) not in recorded:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_ranges(
    con: duckdb.DuckDBPyConnection, lake: Path, ranges: list[OffsetRange]
) -> list[Path]:
    """Writes the batch's messages of each range to its files, one per event date.

    Needs the batch's Arrow table registered as ``batch_arrow`` (``decode.RAW_VIEW``, done by
    the decoder) and the temp table ``batch_event_dates`` (topic, partition, offset,
    event_date). Messages that could not be decoded are dated by their Kafka timestamp.
    """
    written: list[Path] = []
    for r in ranges:
        dates = con.execute(
            """SELECT DISTINCT event_date FROM batch_event_dates
               WHERE topic = ? AND kafka_partition = ? AND kafka_offset >= ? AND kafka_offset < ?
               ORDER BY 1""",
            [r.topic, r.partition, r.start, r.end],
        ).fetchall()
        for (day,) in dates:
            folder = raw_dir(lake) / f"topic={r.topic}" / f"event_date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"p{r.partition}-{r.start}-{r.end}.parquet"
            tmp = folder / f".{final.name}.{os.getpid()}.tmp"
            # The usual range holds one date: then no join with the dates is needed.
            dated = (
                ""
                if len(dates) == 1
                else f"""SEMI JOIN (SELECT topic, kafka_partition, kafka_offset
                               FROM batch_event_dates WHERE event_date = '{day}') d
                      USING (topic, kafka_partition, kafka_offset)"""
            )
            con.execute(
                f"""COPY (
                    SELECT b.topic, b.kafka_partition, b.kafka_offset, b.kafka_timestamp,
                           b.key, b.value
                    FROM {RAW_VIEW} b {dated}
                    WHERE b.topic = $topic AND b.kafka_partition = $part
                      AND b.kafka_offset >= $start AND b.kafka_offset < $end
                    ORDER BY b.kafka_offset
                ) TO '{_sql_path(tmp)}' (FORMAT parquet, COMPRESSION zstd)""",
                {"topic": r.topic, "part": r.partition, "start": r.start, "end": r.end},
            )
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            written.append(final)
    return written


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
