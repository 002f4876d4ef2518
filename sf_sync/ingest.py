"""One ingest: read exact offset ranges, keep the raw bytes, fold the changes into history.

This is the whole path a Dagster run (or ``sf-sync ingest``) executes. Its effect is
exactly-once although its input is at-least-once:

1. Ranges (or parts of them) already recorded in ``ingested_ranges`` are not read again.
2. Everything is decoded in bulk; bad messages go to ``dead_letters`` with their bytes.
3. The raw bytes go to the Parquet lake (atomic files named after their range).
4. One DuckDB transaction adds new change rows (duplicates skipped), gaps, dead letters, the
   folded history and the ranges; a crash before the commit leaves nothing behind but lake
   orphans, which the next writer removes.
5. The analysts' copy is republished; then the consumer group's offsets move forward.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from sf_sync import invariants, lake, warehouse
from sf_sync.config import Settings
from sf_sync.decode import RAW_VIEW, decode
from sf_sync.fold import fold_new_changes
from sf_sync.invariants import RETENTION_LOSS_SPANS
from sf_sync.kafka import client as kc
from sf_sync.kafka.client import RangeUnavailable, commit_offsets, read_ranges
from sf_sync.ranges import OffsetRange, batches, split_retained, subtract

CRASH_ENV = "SF_SYNC_CRASH_AT"


def crash_point(name: str) -> None:
    """Failpoint for the crash tests: the process kills itself (SIGKILL) at a named step.

    Inert unless ``$SF_SYNC_CRASH_AT`` names the step; it lets the tests hit the narrow windows
    (between lake and warehouse, warehouse and offsets) that random kills rarely find.
    """
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did; every figure becomes run metadata."""

    requested: tuple[OffsetRange, ...]
    read: tuple[OffsetRange, ...]
    lost: tuple[OffsetRange, ...] = ()  # deleted by retention before this run could read them
    messages: int = 0
    new_changes: int = 0
    duplicate_changes: int = 0
    dead_letters: int = 0
    gaps: int = 0
    versions: int = 0
    field_changes: int = 0
    late_records: int = 0
    lake_files: int = 0
    orphans_removed: int = 0
    isolated_by_bisection: int = 0
    decoded_columnar: int = 0  # messages the columnar fast path decoded (the rest: SQL)
    #: Each of ``invariants.RUN_RULES`` over what the run wrote: (violations, a sample).
    checks: dict[str, tuple[int, list]] = field(default_factory=dict)
    committed: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        requested, read, lost = (
            sum(r.size for r in rs) for rs in (self.requested, self.read, self.lost)
        )
        return (
            f"{self.messages} messages in {len(self.read)} ranges "
            f"({requested - read - lost} offsets done by earlier runs, {lost} found deleted by"
            " retention): "
            f"{self.new_changes} new changes, {self.duplicate_changes} duplicates, "
            f"{self.field_changes} field changes, {self.versions} versions "
            f"({self.late_records} records re-derived for late events), "
            f"{self.gaps} gaps, {self.dead_letters} dead letters"
        )


#: How often one run reads what is left of its ranges when retention deletes offsets while it
#: reads them (each time after a fresh look at the earliest offsets); then it fails.
READ_ATTEMPTS = 5


def ingest_ranges(
    settings: Settings,
    ranges: Sequence[OffsetRange],
    *,
    run_id: str | None = None,
    commit: bool = True,
    lost: Sequence[OffsetRange] = (),
) -> IngestReport:
    """Ingests ``ranges`` idempotently; running the same ranges again changes nothing.

    ``lost`` are offset ranges that retention deleted before they were read; each becomes a
    ``RETENTION_LOSS`` gap (once, however often the run is retried). Retention can also delete
    offsets after they were planned: before reading, one ``ListOffsets`` (earliest) splits
    what is left of ``ranges`` into the part already deleted, recorded like ``lost``, and the
    part still there, which is read. A read that meets deleted offsets all the same (retention
    racing it) keeps the batches stored so far, looks again and reads what is left, at most
    ``READ_ATTEMPTS`` times; out-of-range offsets that retention did not delete fail the run.
    Every requested offset thus ends up stored or in a recorded loss, never silently skipped.
    """
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    stats: Counter[str] = Counter()
    batch_times: list[datetime] = []  # when each batch was committed: what the run wrote
    with warehouse.writer(
        settings.home,
        publish=True,
        publish_every_s=settings.publish_every_s,
        memory_limit=settings.duckdb_memory_limit,
    ) as con:
        if lost:
            stats["gaps"] += record_retention_losses(con, settings, lost, datetime.now(UTC))
        left = _left_to_read(con, ranges)
        deleted: list[OffsetRange] = []
        pending = left
        failure: RangeUnavailable | None = None
        for _ in range(READ_ATTEMPTS):
            gone, retained = _split_retained(settings, pending)
            if failure is not None and not gone:
                raise RangeUnavailable(
                    f"{failure}; yet retention deleted none of the offsets left to read"
                    f" ({_listed(pending)}), so reading them again cannot help"
                ) from failure
            stats["gaps"] += record_retention_losses(con, settings, gone, datetime.now(UTC))
            deleted += gone
            try:
                _read_and_store(con, settings, retained, run_id, stats, clock, batch_times)
                break
            except RangeUnavailable as exc:  # deleted while read: look again, read the rest
                failure = exc
                pending = _left_to_read(con, ranges)
        else:
            raise RangeUnavailable(
                f"retention kept deleting offsets while they were read: after {READ_ATTEMPTS}"
                f" reads, {_listed(pending)} are still left ({failure})"
            ) from failure
        checks = check_written(con, batch_times, clock)
        crash_point("before_publish")
    crash_point("before_offset_commit")
    committed: dict[str, int] = {}
    if commit:
        ends: dict[tuple[str, int], int] = {}
        for r in (*ranges, *lost):
            ends[(r.topic, r.partition)] = max(ends.get((r.topic, r.partition), 0), r.end)
        committed = {
            f"{t}:{p}": o
            for (t, p), o in commit_offsets(settings.bootstrap, settings.group_id, ends).items()
        }
    clock["total"] = time.perf_counter() - t0
    read = [p for r in left for p in subtract(r, _spans(deleted, r))]
    return IngestReport(
        requested=tuple(ranges),
        read=tuple(read),
        lost=tuple(deleted),
        committed=committed,
        seconds=clock,
        checks=checks,
        **stats,
    )


def check_written(
    con: duckdb.DuckDBPyConnection, batch_times: Sequence[datetime], clock: dict[str, float]
) -> dict[str, tuple[int, list]]:
    """Checks the invariants over what the batches committed at ``batch_times`` wrote.

    Before the analysts' copy is published, on the writer's connection: the run's Dagster
    asset checks report these results, about exactly the rows the run wrote.
    """
    t0 = time.perf_counter()
    written = invariants.Written.of(con, batch_times)
    checks = {
        name: invariants.violations(con, rule, written=written)
        for name, rule in invariants.RUN_RULES.items()
    }
    clock["checks"] = time.perf_counter() - t0
    return checks


def _read_and_store(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    to_read: Sequence[OffsetRange],
    run_id: str | None,
    stats: Counter[str],
    clock: dict[str, float],
    batch_times: list[datetime],
) -> None:
    """Reads ``to_read`` batch by batch, storing each batch as soon as it is read; adds the
    time each batch is committed at (its rows' ``ingested_at``) to ``batch_times``."""
    stats["orphans_removed"] += remove_lake_orphans(con, settings, to_read)
    planned = batches(to_read, settings.batch_messages)
    for batch, decoded in _prefetched(con, settings, planned, clock):
        crash_point("after_kafka_read")
        t_store = time.perf_counter()
        now = datetime.now(UTC)
        stats.update(store_decoded(con, settings, decoded, batch, run_id, now=now))
        batch_times.append(now)
        clock["store"] = clock.get("store", 0.0) + time.perf_counter() - t_store


def _left_to_read(
    con: duckdb.DuckDBPyConnection, ranges: Sequence[OffsetRange]
) -> list[OffsetRange]:
    """The parts of ``ranges`` neither stored nor recorded as lost to retention."""
    out: list[OffsetRange] = []
    for r in _uncovered(con, ranges):
        lost = con.execute(
            f"""SELECT start_offset, end_offset FROM ({RETENTION_LOSS_SPANS})
                WHERE topic = ? AND kafka_partition = ? AND end_offset > ? AND start_offset < ?""",
            [r.topic, r.partition, r.start, r.end],
        ).fetchall()
        out.extend(subtract(r, lost))
    return out


def _split_retained(
    settings: Settings, ranges: Sequence[OffsetRange]
) -> tuple[list[OffsetRange], list[OffsetRange]]:
    """``(deleted, retained)`` parts of ``ranges``, after one ``ListOffsets`` (earliest)."""
    if not ranges:
        return [], []
    admin = kc.admin_client(settings.bootstrap)
    earliest = kc.start_offsets(admin, sorted({(r.topic, r.partition) for r in ranges}))
    return split_retained(ranges, earliest)


def _listed(ranges: Iterable[OffsetRange]) -> str:
    return ", ".join(r.encode() for r in ranges)


def _spans(ranges: Iterable[OffsetRange], within: OffsetRange) -> list[tuple[int, int]]:
    return [
        (r.start, r.end)
        for r in ranges
        if (r.topic, r.partition) == (within.topic, within.partition)
    ]


def retention_loss_key(r: OffsetRange) -> str:
    """The ``gap_key`` of a retention loss: one per lost range, whatever run records it."""
    return f"retention:{r.topic}:{r.partition}:{r.start}-{r.end}/*/RETENTION_LOSS"


def record_retention_losses(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    lost: Sequence[OffsetRange],
    now: datetime,
) -> int:
    """Records each lost range as a ``RETENTION_LOSS`` gap, once; returns how many are new.

    The gap names no record (object ``*``, ``record_id`` NULL); its ``source`` is that of the
    topic's stream, ``kafka_offset`` the first lost offset, ``event_key`` the half-open range
    ``topic:partition:[from,to)``, and ``commit_timestamp`` the time the loss was recorded (no
    event time survives). Its own transaction, before the batches: a crash after it leaves the
    row, and the retried run finds it (``gap_key`` is derived from the range).
    """
    sources = {s.topic: s.source for s in settings.streams}
    rows = [
        (
            retention_loss_key(r),
            sources.get(r.topic, "kafka"),
            f"{r.topic}:{r.partition}:[{r.start},{r.end})",
            r.topic,
            r.partition,
            r.start,
        )
        for r in lost
        if r.size > 0
    ]
    if not rows:
        return 0
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE lost_ranges (gap_key VARCHAR, source VARCHAR,"
            " event_key VARCHAR, topic VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT)"
        )
        con.executemany("INSERT INTO lost_ranges VALUES (?, ?, ?, ?, ?, ?)", rows)
        ((new,),) = con.execute(
            """
            INSERT INTO gaps
            SELECT l.gap_key, l.source, '*', NULL, 'RETENTION_LOSS', []::VARCHAR[], $now, NULL,
                   l.event_key, l.topic, l.kafka_partition, l.kafka_offset, $now, NULL
            FROM lost_ranges l ANTI JOIN gaps g USING (gap_key)
            """,
            {"now": now},
        ).fetchall()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return new


def _prefetched(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    planned: Iterable[list[OffsetRange]],
    clock: dict[str, float],
) -> Iterator[tuple[list[OffsetRange], DecodedBatch]]:
    """Yields each batch of ranges decoded, reading and decoding the next batch meanwhile.

    Storing batch n needs the warehouse as batch n-1 left it; reading, decoding and writing
    the lake files of batch n+1 need nothing of it. So a worker thread does those for n+1
    (librdkafka, pyarrow and a second DuckDB connection, all releasing the GIL) while batch n
    is folded and written: on two cores the two halves overlap. At most two batches are in
    memory. Nothing is recorded in the warehouse before its own read, decode and lake files
    have finished, so the exactly-once argument is unchanged (lake files of a batch never
    stored are orphans, removed by the next run). A read error surfaces when its batch is
    due (the batches before it are stored, as they would be without the prefetch).
    ``read_decode_wait`` in ``clock`` is the time spent *waiting* for the worker, i.e. what
    the overlap did not hide.
    """
    decoder = warehouse.cursor(con)  # its own temp tables; DuckDB runs both at once

    def read_and_decode(batch: list[OffsetRange]) -> DecodedBatch:
        raw = read_ranges(
            settings.bootstrap,
            settings.group_id,
            batch,
            stall_timeout_s=settings.read_stall_timeout_s,
        )
        return decode_apart(decoder, raw, settings, batch)

    pending = iter(planned)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sf-sync-read") as pool:
            batch = next(pending, None)
            future = pool.submit(read_and_decode, batch) if batch is not None else None
            while batch is not None and future is not None:
                t_wait = time.perf_counter()
                decoded = future.result()
                waited = time.perf_counter() - t_wait
                clock["read_decode_wait"] = clock.get("read_decode_wait", 0.0) + waited
                following = next(pending, None)
                future = pool.submit(read_and_decode, following) if following is not None else None
                yield batch, decoded
                batch = following
    finally:
        decoder.close()


def _uncovered(con: duckdb.DuckDBPyConnection, ranges: Sequence[OffsetRange]) -> list[OffsetRange]:
    out: list[OffsetRange] = []
    for r in ranges:
        covered = con.execute(
            """SELECT start_offset, end_offset FROM ingested_ranges
               WHERE topic = ? AND kafka_partition = ? AND end_offset > ? AND start_offset < ?""",
            [r.topic, r.partition, r.start, r.end],
        ).fetchall()
        out.extend(subtract(r, covered))
    return out


@dataclass(frozen=True)
class DecodedBatch:
    """One batch decoded apart from the warehouse, its lake files written.

    ``tables`` are Arrow tables the store registers under their names (``DECODED_TABLES``),
    so the store's SQL reads them as the decoder's temp tables.
    """

    raw: pa.Table
    tables: dict[str, pa.Table]
    isolated_by_bisection: int
    decoded_columnar: int
    lake_files: tuple[Path, ...]


#: What the store reads of a decode.
DECODED_TABLES = ("batch_errors", "batch_gaps", "batch_changes", "batch_fields")


def decode_apart(
    decoder: duckdb.DuckDBPyConnection,
    raw: pa.Table,
    settings: Settings,
    ranges: list[OffsetRange],
) -> DecodedBatch:
    """Decodes ``raw`` on a connection of its own, writes its lake files (``ranges``, dated
    by the decode) and hands the results over as Arrow.

    Lake files before the warehouse commit that records their ranges: a crash in between
    leaves orphans, which the next run removes before it reads (``remove_lake_orphans``).
    """
    try:
        report = decode(decoder, raw, settings)
        decoder.execute(
            """
            CREATE OR REPLACE TEMP TABLE batch_event_dates AS
            SELECT r.topic, r.kafka_partition, r.kafka_offset,
                   CAST(coalesce(d.commit_timestamp, make_timestamptz(r.kafka_timestamp * 1000))
                        AS DATE) AS event_date
            FROM batch_raw r LEFT JOIN (
                SELECT topic, kafka_partition, kafka_offset, any_value(commit_timestamp)
                    AS commit_timestamp
                FROM batch_decoded GROUP BY ALL) d USING (topic, kafka_partition, kafka_offset)
            """
        )
        files = lake.write_ranges(decoder, settings.lake_dir, raw, ranges)
        crash_point("after_lake_write")
        tables = {
            name: decoder.sql(f"SELECT * FROM {name}").to_arrow_table() for name in DECODED_TABLES
        }
    finally:
        # Let the decode's memory go with it (the parsed bodies are the bulk of it) rather
        # than when the next batch replaces them: the writer works meanwhile.
        decoder.unregister(RAW_VIEW)
        for (name,) in decoder.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary"
        ).fetchall():
            decoder.execute(f"DROP TABLE {warehouse.quote_ident(name)}")
    return DecodedBatch(raw, tables, report.isolated, report.fast, tuple(files))


def store_batch(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    raw: pa.Table,
    ranges: list[OffsetRange],
    run_id: str | None,
) -> dict[str, int]:
    """Decodes and stores one batch (the run pipelines the two: ``_prefetched``)."""
    orphans = remove_lake_orphans(con, settings, ranges)
    decoder = warehouse.cursor(con)
    try:
        decoded = decode_apart(decoder, raw, settings, ranges)
    finally:
        decoder.close()
    return {**store_decoded(con, settings, decoded, ranges, run_id), "orphans_removed": orphans}


def remove_lake_orphans(
    con: duckdb.DuckDBPyConnection, settings: Settings, ranges: Sequence[OffsetRange]
) -> int:
    """Deletes the lake files of these ranges' partitions that no committed batch recorded.

    Called before a run (or a lone batch) writes lake files, never while its worker writes
    them: every file it finds unrecorded then was left by a run that crashed before its
    warehouse commit.
    """
    removed = 0
    for topic, part in sorted({(r.topic, r.partition) for r in ranges}):
        recorded = set(
            con.execute(
                "SELECT start_offset, end_offset FROM ingested_ranges"
                " WHERE topic = ? AND kafka_partition = ?",
                [topic, part],
            ).fetchall()
        )
        removed += lake.remove_orphans(settings.lake_dir, topic, part, recorded)
    return removed


def store_decoded(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    decoded: DecodedBatch,
    ranges: list[OffsetRange],
    run_id: str | None,
    *,
    now: datetime | None = None,
) -> dict[str, int]:
    """Stores one decoded batch (lake files written) in one warehouse transaction; its rows'
    ``ingested_at`` is ``now`` (the time of the call if not given)."""
    tables = dict(decoded.tables)
    unnumbered = tables["batch_changes"]
    changes = unnumbered.append_column(  # numbered, for ``_new_changes``
        "row", pa.array(np.arange(unnumbered.num_rows, dtype=np.int64))
    )
    tables["batch_changes"] = changes
    for name, table in tables.items():
        con.register(name, table)
    try:
        now = now or datetime.now(UTC)
        return _store_decoded(con, settings, decoded, changes, ranges, run_id, now)
    finally:
        for name in (*tables, "new_changes"):
            con.unregister(name)


def _store_decoded(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    decoded: DecodedBatch,
    changes: pa.Table,
    ranges: list[OffsetRange],
    run_id: str | None,
    now: datetime,
) -> dict[str, int]:
    raw = decoded.raw
    con.execute("BEGIN TRANSACTION")
    try:
        counts = _insert_batch(con, changes, now)
        fold = fold_new_changes(con)
        con.executemany(
            "INSERT INTO ingested_ranges VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (r.topic, r.partition, r.start, r.end, lake.count_in(raw, r), run_id, now)
                for r in ranges
            ],
        )
        warehouse.refresh_views(con, settings.lake_dir)
        crash_point("before_warehouse_commit")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return dict(
        messages=raw.num_rows,
        lake_files=len(decoded.lake_files),
        versions=fold.versions,
        field_changes=fold.field_changes,
        late_records=fold.late_records,
        isolated_by_bisection=decoded.isolated_by_bisection,
        decoded_columnar=decoded.decoded_columnar,
        **counts,
    )


def _insert_batch(
    con: duckdb.DuckDBPyConnection, changes: pa.Table, now: datetime
) -> dict[str, int]:
    """Adds dead letters, gaps and new change rows (registered as ``new_changes``)."""
    con.execute(
        """
        INSERT INTO dead_letters
        SELECT e.topic, e.kafka_partition, e.kafka_offset, e.error, e.raw_value,
               e.kafka_timestamp, $now
        FROM batch_errors e ANTI JOIN dead_letters d USING (topic, kafka_partition, kafka_offset)
        """,
        {"now": now},
    )
    ((dead,),) = con.execute("SELECT count(*) FROM batch_errors").fetchall()
    con.execute(
        """
        INSERT INTO gaps
        SELECT g.event_key || '/' || coalesce(g.record_id, '*') || '/' || g.gap_type AS gap_key,
               g.source, g.object, g.record_id, g.gap_type, g.fields, g.commit_timestamp,
               g.transaction_key, g.event_key, g.topic, g.kafka_partition, g.kafka_offset,
               $now, NULL
        FROM batch_gaps g
        WHERE gap_key NOT IN (SELECT gap_key FROM gaps)
        QUALIFY row_number() OVER (PARTITION BY gap_key ORDER BY g.kafka_offset) = 1
        """,
        {"now": now},
    )
    ((gaps,),) = con.execute(
        "SELECT count(DISTINCT event_key || coalesce(record_id, '*') || gap_type) FROM batch_gaps"
    ).fetchall()
    new = _new_changes(con, changes, now)
    con.register("new_changes", new)
    con.execute("INSERT INTO change_events BY NAME SELECT * EXCLUDE (ev, row) FROM new_changes")
    return {
        "dead_letters": dead,
        "gaps": gaps,
        "new_changes": new.num_rows,
        "duplicate_changes": changes.num_rows - new.num_rows,
    }


def _new_changes(con: duckdb.DuckDBPyConnection, changes: pa.Table, now: datetime) -> pa.Table:
    """The batch's change rows (``changes``, registered as ``batch_changes``) not stored yet.

    Of the copies of one change inside the batch the first read is kept; a copy of a stored
    change carries the same commit time, so the anti-join only needs the stored rows inside
    the batch's commit-time window, which DuckDB's zone maps prune to a few row groups: the
    cost follows the batch, not the history. Only row numbers come out of DuckDB; the rows
    themselves are taken from the Arrow table (copying them into a temp table cost more than
    the deduplication itself).
    """
    ((lo, hi),) = con.execute(
        "SELECT min(commit_timestamp), max(commit_timestamp) FROM batch_changes"
    ).fetchall()
    rows = con.execute(
        """
        SELECT u.row FROM (
            SELECT source, event_key, record_id,
                   arg_min(row, (topic, kafka_partition, kafka_offset)) AS row
            FROM batch_changes GROUP BY ALL) u
        ANTI JOIN (
            SELECT source, event_key, record_id FROM change_events
            WHERE commit_timestamp BETWEEN $lo AND $hi) c USING (source, event_key, record_id)
        ORDER BY u.row
        """,
        {"lo": lo, "hi": hi},
    ).fetchnumpy()["row"]
    new = changes.take(pa.array(rows, pa.int64()))
    ord_parts = {
        "ts": "commit_timestamp",
        "tx": "transaction_key",
        "seq": "sequence_number",
        "topic": "topic",
        "part": "kafka_partition",
        "off": "kafka_offset",
    }
    ord_ = pa.StructArray.from_arrays(
        [new[column].combine_chunks() for column in ord_parts.values()], names=list(ord_parts)
    )
    ingested_at = pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), new.num_rows)
    return new.append_column("ingested_at", ingested_at).append_column("ord", ord_)
