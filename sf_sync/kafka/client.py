"""Kafka access for sf-sync: end offsets for the sensor, exact ranges for the runs.

The sensor side only ever asks the broker for offsets (``AdminClient.list_offsets``), never
for messages: it stays fast and cannot stall the daemon on a blocking ``poll``. The run side
reads a fixed ``[start, end)`` per partition with ``assign`` (no group rebalance), and commits
the consumer group's offsets only after the data is durable, so ``kafka-consumer-groups``
shows the true lag.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import pyarrow as pa
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from sf_sync.decode import RAW_SCHEMA
from sf_sync.ranges import OffsetRange

TP = tuple[str, int]
T = TypeVar("T")


class BrokerUnavailable(RuntimeError):
    """The broker did not answer in time; nothing was read or written."""


class RangeUnavailable(RuntimeError):
    """Part of a range can no longer be read (deleted by retention, or beyond the end)."""


#: Errors a young broker (or a new topic) gives while leaders and coordinators settle;
#: they pass within seconds.
_TRANSIENT = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
}


def _with_retries(action: Callable[[], T], *, attempts: int = 20, pause_s: float = 0.5) -> T:
    """Runs ``action``, retrying transient coordinator errors; others are raised at once."""
    for attempt in range(attempts):
        try:
            return action()
        except KafkaException as exc:
            err = exc.args[0]
            transient = isinstance(err, KafkaError) and err.code() in _TRANSIENT
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(pause_s)
    raise AssertionError("unreachable")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc.args[0]) if exc.args else type(exc).__name__


def admin_client(bootstrap: str, timeout_s: float = 5.0) -> AdminClient:
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.timeout.ms": int(timeout_s * 1000),
            "socket.connection.setup.timeout.ms": int(timeout_s * 1000),
            "reconnect.backoff.max.ms": 1000,
        }
    )


def topic_partitions(admin: AdminClient, topics: Sequence[str], timeout_s: float = 5.0) -> list[TP]:
    """Partitions of the given topics that exist (missing topics are skipped, not created)."""
    try:
        meta = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot reach Kafka: {exc.args[0]}") from None
    out: list[TP] = []
    for topic in topics:
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None:
            continue
        out.extend((topic, p) for p in sorted(tmeta.partitions))
    return out


def list_offsets(
    admin: AdminClient, tps: Iterable[TP], spec: OffsetSpec, timeout_s: float = 5.0
) -> dict[TP, int]:
    """One ``ListOffsets`` request for many partitions: earliest, latest or for a timestamp."""
    request = {TopicPartition(t, p): spec for t, p in tps}
    if not request:
        return {}

    def ask() -> dict[TP, int]:
        futures = admin.list_offsets(request, request_timeout=timeout_s)
        return {
            (tp.topic, tp.partition): f.result(timeout=timeout_s + 1).offset
            for tp, f in futures.items()
        }

    try:
        return _with_retries(ask, attempts=8)
    except (KafkaException, TimeoutError) as exc:
        raise BrokerUnavailable(f"cannot list offsets: {_reason(exc)}") from None


def end_offsets(admin: AdminClient, tps: Iterable[TP], timeout_s: float = 5.0) -> dict[TP, int]:
    return list_offsets(admin, tps, OffsetSpec.latest(), timeout_s)


def start_offsets(admin: AdminClient, tps: Iterable[TP], timeout_s: float = 5.0) -> dict[TP, int]:
    return list_offsets(admin, tps, OffsetSpec.earliest(), timeout_s)


def offsets_at(
    admin: AdminClient,
    tps: Iterable[TP],
    ts_ms: int,
    ends: Mapping[TP, int],
    timeout_s: float = 5.0,
) -> dict[TP, int]:
    """First offset whose timestamp is at or after ``ts_ms`` (the end offset when none is)."""
    found = list_offsets(admin, tps, OffsetSpec.for_timestamp(ts_ms), timeout_s)
    return {tp: (off if off >= 0 else ends[tp]) for tp, off in found.items()}


def consumer(bootstrap: str, group_id: str, *, read_ahead: int = 100_000) -> Consumer:
    """A consumer tuned for reading large fixed ranges quickly; it never commits on its own.

    ``read_ahead`` is how many messages per partition librdkafka keeps fetched ahead of the
    reader (``queued.min.messages``). A consumer reading fixed ranges needs no more than the
    longest range: a read of a slice of three partitions with librdkafka's default kept
    fetching up to 64 MB per partition past the slice's end (the next batch reads those
    offsets again with its own consumer) and raised the run's peak memory by ~400 MB.
    """
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 4 * 1024 * 1024,
            "queued.min.messages": max(1, read_ahead),
            # Read-ahead in librdkafka: a batch's read waits on the store, not the broker, so
            # 64 MB keeps it fed; 256 MB only raised the run's peak memory.
            "queued.max.messages.kbytes": 64 * 1024,
            "fetch.wait.max.ms": 50,
            "socket.timeout.ms": 10000,
            "reconnect.backoff.max.ms": 1000,
        }
    )


def read_ranges(
    bootstrap: str,
    group_id: str,
    ranges: Sequence[OffsetRange],
    *,
    stall_timeout_s: float = 30.0,
    batch: int = 10_000,
) -> pa.Table:
    """Reads exactly the given ranges into an Arrow table (``RAW_SCHEMA``).

    Raises :class:`BrokerUnavailable` when no message arrives for ``stall_timeout_s`` (the
    broker went away mid-read: the caller writes nothing and the run can be retried), and
    :class:`RangeUnavailable` when an offset is out of range.
    """
    pending = {(r.topic, r.partition): r for r in ranges if r.size > 0}
    ends = {tp: r.end for tp, r in pending.items()}
    if not pending:
        return RAW_SCHEMA.empty_table()
    batches: list[pa.RecordBatch] = []
    c = consumer(bootstrap, group_id, read_ahead=max(r.size for r in pending.values()))
    try:
        c.assign([TopicPartition(t, p, r.start) for (t, p), r in pending.items()])
        last_progress = time.monotonic()
        while pending:
            if time.monotonic() - last_progress > stall_timeout_s:
                raise BrokerUnavailable(
                    f"no data for {stall_timeout_s:.0f}s while reading {sorted(pending)}"
                )
            msgs = c.consume(num_messages=batch, timeout=0.5)
            errors = [m for m in msgs if m.error() is not None]
            data = [m for m in msgs if m.error() is None] if errors else msgs
            done = _handle_errors(errors, pending)
            if data:
                last_progress = time.monotonic()  # only data counts: errors can repeat forever
                record_batch, last_offsets = _to_record_batch(data, ends)
                batches.append(record_batch)
                done += [tp for tp, off in last_offsets.items() if off >= ends.get(tp, -1) - 1]
            for tp in done:
                if pending.pop(tp, None) is not None:
                    c.pause([TopicPartition(*tp)])
    finally:
        c.close()
    return pa.Table.from_batches(batches, schema=RAW_SCHEMA)


def _to_record_batch(msgs: list, ends: Mapping[TP, int]) -> tuple[pa.RecordBatch, dict[TP, int]]:
    """Columns of one consumed batch, built with comprehensions (no per-message appends).

    Messages past a range's end (prefetched before the partition was paused) are dropped.
    """
    topics = [m.topic() for m in msgs]
    parts = [m.partition() for m in msgs]
    offsets = [m.offset() for m in msgs]
    last = dict(zip(zip(topics, parts, strict=True), offsets, strict=True))
    columns = [
        pa.array(topics, pa.string()),
        pa.array(parts, pa.int32()),
        pa.array(offsets, pa.int64()),
        pa.array([m.timestamp()[1] for m in msgs], pa.int64()),
        pa.array([m.key() for m in msgs], pa.binary()),
        pa.array([m.value() for m in msgs], pa.binary()),
    ]
    rb = pa.RecordBatch.from_arrays(columns, schema=RAW_SCHEMA)
    if any(off >= ends.get(tp, -1) for tp, off in last.items()):
        keep = [o < ends.get((t, p), -1) for t, p, o in zip(topics, parts, offsets, strict=True)]
        rb = rb.filter(pa.array(keep))
    return rb, last


def _handle_errors(errors: list, pending: Mapping[TP, OffsetRange]) -> list[TP]:
    """Partition EOFs mark partitions done; other errors are raised or (if retriable) waited out."""
    done: list[TP] = []
    for m in errors:
        err = m.error()
        tp = (m.topic(), m.partition())
        r = pending.get(tp)
        if err.code() == KafkaError._PARTITION_EOF:
            if r is not None and m.offset() >= r.end:
                done.append(tp)
            elif r is not None:
                raise RangeUnavailable(f"{tp} ends at {m.offset()}, before the range end {r.end}")
            continue
        if err.code() == KafkaError._AUTO_OFFSET_RESET or "out of range" in str(err):
            raise RangeUnavailable(f"{tp}: {err.str()}")
        if err.fatal() or not err.retriable():
            raise KafkaException(err)
    return done


def committed_offsets(admin: AdminClient, group_id: str, tps: Iterable[TP]) -> dict[TP, int]:
    """The group's committed offsets (partitions without one are left out).

    Through the admin API, with timeouts: a consumer's ``committed``/``commit``/``close`` can
    block indefinitely while no coordinator answers.
    """
    request = [ConsumerGroupTopicPartitions(group_id, [TopicPartition(t, p) for t, p in tps])]
    if not request[0].topic_partitions:
        return {}

    def ask() -> dict[TP, int]:
        future = admin.list_consumer_group_offsets(request, request_timeout=30)[group_id]
        got = future.result(timeout=31).topic_partitions
        return {(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0}

    try:
        return _with_retries(ask, attempts=6)
    except (KafkaException, TimeoutError) as exc:
        raise BrokerUnavailable(f"cannot read committed offsets: {_reason(exc)}") from None


def commit_offsets(bootstrap: str, group_id: str, ends: Mapping[TP, int]) -> dict[TP, int]:
    """Moves the group's committed offsets forward to ``ends`` (never backwards).

    Returns what was committed. Backfills of old ranges therefore leave the group's position
    alone, and standard Kafka tools keep showing the live lag.
    """
    if not ends:
        return {}
    admin = admin_client(bootstrap)
    current = committed_offsets(admin, group_id, ends)
    forward = [
        TopicPartition(t, p, off) for (t, p), off in ends.items() if current.get((t, p), -1) < off
    ]
    if not forward:
        return {}

    def commit() -> None:
        future = admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group_id, forward)], request_timeout=30
        )[group_id]
        for tp in future.result(timeout=31).topic_partitions:
            if tp.error is not None:
                raise KafkaException(tp.error)

    try:
        _with_retries(commit)
    except (KafkaException, TimeoutError) as exc:
        raise BrokerUnavailable(f"cannot commit offsets: {_reason(exc)}") from None
    return {(tp.topic, tp.partition): tp.offset for tp in forward}
