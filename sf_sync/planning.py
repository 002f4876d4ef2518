"""What the sensor hands out: capped offset ranges, grouped into runs by event day.

Only offsets are asked of the broker (``ListOffsets``), never messages. Ranges are mapped to
daily partitions through ``offsets_for_times``: the first offset at or after each UTC midnight
splits a partition's pending range into days, so Dagster's storage grows by one partition per
day rather than one per range, and a backfill of a day re-reads exactly that day's offsets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from confluent_kafka.admin import AdminClient

from sf_sync.config import Settings
from sf_sync.kafka import client as kc
from sf_sync.ranges import Cursor, OffsetRange, advance, pending_ranges, split_at, split_capped


@dataclass(frozen=True)
class RunPlan:
    """One run to launch: a day partition and at most one range per topic partition.

    ``lost`` are offsets that retention deleted before they were read (see
    :func:`retention_losses`); the run records each as a ``RETENTION_LOSS`` gap.
    """

    day: str
    ranges: tuple[OffsetRange, ...]
    lost: tuple[OffsetRange, ...] = ()

    @property
    def messages(self) -> int:
        return sum(r.size for r in self.ranges)


def _midnight_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def day_boundaries(
    admin: AdminClient,
    pending: list[OffsetRange],
    ends: Mapping[kc.TP, int],
    today: date,
    lookback_days: int,
) -> dict[kc.TP, list[tuple[date, int]]]:
    """For each pending partition, ``(day, first offset of that day)``, newest day first.

    Walks back from today only as far as some pending range still starts before the boundary,
    so a caught-up stream costs one ``ListOffsets`` call.
    """
    tps = [(r.topic, r.partition) for r in pending]
    starts = {(r.topic, r.partition): r.start for r in pending}
    out: dict[kc.TP, list[tuple[date, int]]] = defaultdict(list)
    for back in range(lookback_days + 1):
        day = today - timedelta(days=back)
        offs = kc.offsets_at(admin, tps, _midnight_ms(day), ends)
        for tp, off in offs.items():
            out[tp].append((day, off))
        tps = [tp for tp in tps if starts[tp] < offs[tp]]
        if not tps:
            break
    return out


def _day_of(start: int, bounds: list[tuple[date, int]], oldest: date) -> date:
    for day, first in bounds:  # newest first
        if start >= first:
            return day
    return oldest


def retention_losses(
    positions: Mapping[kc.TP, int], earliest: Mapping[kc.TP, int]
) -> list[OffsetRange]:
    """``[position, earliest)`` for each partition whose next offset to ingest was deleted."""
    return [
        OffsetRange(tp[0], tp[1], pos, earliest[tp])
        for tp, pos in sorted(positions.items())
        if tp in earliest and pos < earliest[tp]
    ]


def plan_runs(
    settings: Settings,
    cursor: Cursor,
    *,
    now: datetime | None = None,
    admin: AdminClient | None = None,
) -> tuple[list[RunPlan], Cursor]:
    """Plans the runs for everything past the cursor and returns the advanced cursor.

    Partitions the cursor does not know yet start at the consumer group's committed offset (so
    a reset sensor resumes where the data is durable), else at the earliest retained offset.
    When the next offset to ingest (cursor or committed offset) is below the earliest retained
    one, retention deleted messages before they were read: reading resumes at the earliest
    offset and the lost range travels with the first plan (a plan of its own when nothing is
    left to read), so that the run records it as a gap.
    Raises :class:`sf_sync.kafka.client.BrokerUnavailable` when the broker does not answer.
    """
    now = now or datetime.now(UTC)
    admin = admin or kc.admin_client(settings.bootstrap)
    tps = kc.topic_partitions(admin, settings.topics)
    ends = kc.end_offsets(admin, tps)
    unknown = [tp for tp in tps if tp[1] not in cursor.get(tp[0], {})]
    # One more ListOffsets (earliest) for every partition: retention may have deleted past
    # the cursor as well as past the group's committed offset.
    earliest = kc.start_offsets(admin, tps)
    positions = {tp: cursor[tp[0]][tp[1]] for tp in tps if tp not in unknown}
    starts: dict[kc.TP, int] = {tp: earliest[tp] for tp in unknown}
    if unknown:
        committed = kc.committed_offsets(admin, settings.group_id, unknown)
        positions.update(committed)
        for tp, off in committed.items():
            starts[tp] = max(starts[tp], off)
    lost = retention_losses(positions, earliest)
    # Partitions seen for the first time enter the cursor even when empty, so later ticks
    # need no group-offset lookups for them; a loss moves the cursor to the earliest offset.
    known = advance(cursor, [OffsetRange(t, p, off, off) for (t, p), off in starts.items()])
    known = advance(known, [OffsetRange(r.topic, r.partition, r.end, r.end) for r in lost])
    pending = pending_ranges(known, starts, ends)
    if not pending:
        if lost:
            return [RunPlan(now.astimezone(UTC).date().isoformat(), (), tuple(lost))], known
        return [], known
    today = now.astimezone(UTC).date()
    oldest = today - timedelta(days=settings.lookback_days)
    bounds = day_boundaries(admin, pending, ends, today, settings.lookback_days)
    by_day: dict[date, list[OffsetRange]] = defaultdict(list)
    for r in pending:
        tp = (r.topic, r.partition)
        cuts = [off for _, off in bounds.get(tp, [])]
        for piece in split_at(r, cuts):
            by_day[_day_of(piece.start, bounds.get(tp, []), oldest)].append(piece)
    plans: list[RunPlan] = []
    for day in sorted(by_day):
        chunks = [split_capped(r, settings.max_range_messages) for r in by_day[day]]
        for i in range(max(len(c) for c in chunks)):
            ranges = tuple(c[i] for c in chunks if i < len(c))
            plans.append(RunPlan(day.isoformat(), ranges))
    if lost:
        plans[0] = replace(plans[0], lost=tuple(lost))
    return plans, advance(known, pending)


def day_ranges(
    settings: Settings, first_day: date, last_day: date, admin: AdminClient | None = None
) -> list[OffsetRange]:
    """The offsets whose Kafka timestamps fall in ``[first_day, last_day]`` (for backfills)."""
    admin = admin or kc.admin_client(settings.bootstrap)
    tps = kc.topic_partitions(admin, settings.topics)
    ends = kc.end_offsets(admin, tps)
    lo = kc.offsets_at(admin, tps, _midnight_ms(first_day), ends)
    hi = kc.offsets_at(admin, tps, _midnight_ms(last_day + timedelta(days=1)), ends)
    out = []
    for tp in tps:
        if hi[tp] > lo[tp]:
            out.extend(
                split_capped(OffsetRange(tp[0], tp[1], lo[tp], hi[tp]), settings.max_range_messages)
            )
    return out
