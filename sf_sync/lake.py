"""The raw-event lake: every message exactly as received, as Parquet, by topic and event date.

Files are named after the exact offset range they hold, ``p<partition>-<start>-<end>.parquet``,
and written atomically (temporary file, then rename), so re-running a range rewrites the same
file with the same content. A file left by a run that crashed before its warehouse commit is an
*orphan*: its range is not in ``ingested_ranges``; the next run deletes the orphans of its
partitions before it reads (``ingest.remove_lake_orphans``), so the lake never holds an offset
twice once that run is done.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sf_sync.ranges import OffsetRange

#: A lake file's columns: the message exactly as Kafka delivered it.
LAKE_COLUMNS = ("topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "key", "value")

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


def rows_of(raw: pa.Table, r: OffsetRange) -> pa.ChunkedArray:
    """Which of a batch's messages belong to the range ``r``."""
    offsets = raw["kafka_offset"]
    return pc.and_(
        pc.and_(pc.equal(raw["topic"], r.topic), pc.equal(raw["kafka_partition"], r.partition)),
        pc.and_(pc.greater_equal(offsets, r.start), pc.less(offsets, r.end)),
    )


def count_in(raw: pa.Table, r: OffsetRange) -> int:
    """How many of a batch's messages belong to the range ``r``."""
    return pc.sum(rows_of(raw, r).cast(pa.int64())).as_py() or 0


def write_ranges(
    con: duckdb.DuckDBPyConnection, lake: Path, raw: pa.Table, ranges: list[OffsetRange]
) -> list[Path]:
    """Writes the batch's messages (``raw``) of each range to its files, one per event date.

    Needs the temp table ``batch_event_dates`` (topic, partition, offset, event_date);
    messages that could not be decoded are dated by their Kafka timestamp. The bytes go from
    the Arrow table to Parquet through pyarrow, without a copy into DuckDB (about 5x faster
    than DuckDB's ``COPY`` of the same BLOBs here).
    """
    written: list[Path] = []
    for r in ranges:
        dates = con.execute(
            """SELECT DISTINCT event_date FROM batch_event_dates
               WHERE topic = ? AND kafka_partition = ? AND kafka_offset >= ? AND kafka_offset < ?
               ORDER BY 1""",
            [r.topic, r.partition, r.start, r.end],
        ).fetchall()
        offsets = raw["kafka_offset"]
        in_range = rows_of(raw, r)
        for (day,) in dates:
            folder = raw_dir(lake) / f"topic={r.topic}" / f"event_date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"p{r.partition}-{r.start}-{r.end}.parquet"
            tmp = folder / f".{final.name}.{os.getpid()}.tmp"
            selected = in_range
            if len(dates) > 1:  # the usual range holds one date and needs no lookup
                ((dated,),) = con.execute(  # fetchall: leaves no result open
                    """SELECT list(kafka_offset) FROM batch_event_dates
                       WHERE topic = ? AND kafka_partition = ? AND event_date = ?
                         AND kafka_offset >= ? AND kafka_offset < ?""",
                    [r.topic, r.partition, day, r.start, r.end],
                ).fetchall()
                selected = pc.and_(in_range, pc.is_in(offsets, pa.array(dated, pa.int64())))
            rows = raw.filter(selected)
            rows = rows.take(pc.sort_indices(rows, [("kafka_offset", "ascending")]))
            pq.write_table(
                rows.select(list(LAKE_COLUMNS)),
                tmp,
                compression="zstd",
                use_dictionary=["topic"],
            )
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            written.append(final)
    return written
