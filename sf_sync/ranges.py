"""Offset ranges: the unit of work a sensor hands out and a run reads, exactly.

Pure functions, no Kafka and no Dagster, so the planning rules are easy to test.
A range is half-open, ``[start, end)``, for one topic partition.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class OffsetRange:
    topic: str
    partition: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"bad range {self}")

    @property
    def size(self) -> int:
        return self.end - self.start

    def encode(self) -> str:
        """``topic:partition:start:end``, the form used in run config and tags."""
        return f"{self.topic}:{self.partition}:{self.start}:{self.end}"

    @classmethod
    def decode(cls, text: str) -> OffsetRange:
        topic, partition, start, end = text.rsplit(":", 3)
        return cls(topic, int(partition), int(start), int(end))


Cursor = dict[str, dict[int, int]]  # topic -> partition -> next start offset


def encode_cursor(cursor: Cursor) -> str:
    return json.dumps(
        {t: {str(p): o for p, o in sorted(ps.items())} for t, ps in sorted(cursor.items())},
        separators=(",", ":"),
    )


def decode_cursor(text: str | None) -> Cursor:
    if not text:
        return {}
    return {t: {int(p): int(o) for p, o in ps.items()} for t, ps in json.loads(text).items()}


def split_capped(r: OffsetRange, cap: int) -> list[OffsetRange]:
    """Cuts a range into pieces of at most ``cap`` messages."""
    if cap <= 0:
        raise ValueError("cap must be positive")
    return [
        OffsetRange(r.topic, r.partition, s, min(s + cap, r.end))
        for s in range(r.start, r.end, cap)
    ]


def split_at(r: OffsetRange, boundaries: Iterable[int]) -> list[OffsetRange]:
    """Cuts a range at the given offsets (those strictly inside it)."""
    cuts = sorted({b for b in boundaries if r.start < b < r.end})
    edges = [r.start, *cuts, r.end]
    return [OffsetRange(r.topic, r.partition, a, b) for a, b in itertools.pairwise(edges)]


def subtract(r: OffsetRange, covered: Iterable[tuple[int, int]]) -> list[OffsetRange]:
    """The parts of ``r`` not inside any of the ``covered`` half-open intervals."""
    pieces = [(r.start, r.end)]
    for cs, ce in sorted(covered):
        nxt = []
        for s, e in pieces:
            if ce <= s or cs >= e:
                nxt.append((s, e))
                continue
            if s < cs:
                nxt.append((s, cs))
            if ce < e:
                nxt.append((ce, e))
        pieces = nxt
    return [OffsetRange(r.topic, r.partition, s, e) for s, e in pieces if e > s]


def split_retained(
    ranges: Iterable[OffsetRange], earliest: Mapping[tuple[str, int], int]
) -> tuple[list[OffsetRange], list[OffsetRange]]:
    """``(deleted, retained)``: each range cut at its partition's earliest retained offset.

    The deleted parts are what retention removed before they were read; partitions missing
    from ``earliest`` are taken as whole.
    """
    deleted: list[OffsetRange] = []
    retained: list[OffsetRange] = []
    for r in ranges:
        first = earliest.get((r.topic, r.partition), 0)
        for piece in split_at(r, [first]):
            (deleted if piece.end <= first else retained).append(piece)
    return deleted, retained


def pending_ranges(
    cursor: Mapping[str, Mapping[int, int]],
    starts: Mapping[tuple[str, int], int],
    ends: Mapping[tuple[str, int], int],
) -> list[OffsetRange]:
    """What lies between the cursor (or ``starts`` for partitions it lacks) and the end offsets."""
    out = []
    for (topic, partition), end in sorted(ends.items()):
        start = cursor.get(topic, {}).get(partition)
        if start is None:
            start = starts.get((topic, partition), 0)
        if end > start:
            out.append(OffsetRange(topic, partition, start, end))
    return out


def advance(cursor: Cursor, ranges: Iterable[OffsetRange]) -> Cursor:
    """The cursor after handing out ``ranges`` (next start = the furthest end)."""
    new = {t: dict(ps) for t, ps in cursor.items()}
    for r in ranges:
        parts = new.setdefault(r.topic, {})
        parts[r.partition] = max(parts.get(r.partition, 0), r.end)
    return new


def batches(ranges: Iterable[OffsetRange], budget: int) -> list[list[OffsetRange]]:
    """Cuts ranges into batches of at most ``budget`` messages, each a slice of every range.

    Bounds a run's memory whatever its ranges: each batch is read, decoded and committed
    before the next is read. Batch ``i`` of ``k`` holds the ``i``-th ``k``-th of *each* range,
    not the next ``budget`` offsets of the first: a run's ranges cover the same stretch of time
    in every partition, so a batch then holds the changes of one stretch of time. Read
    partition after partition instead, a record whose events sit in two partitions (an event
    listing several records is keyed by the first) meets its changes from the second
    partition after versions from far later, and each of them sends the fold down its
    late-event path, re-deriving versions. With more ranges than ``budget`` (a slice per range
    would not fit) the ranges are packed one after the other.
    """
    if budget <= 0:
        raise ValueError("budget must be positive")
    ranges = [r for r in ranges if r.size > 0]
    total = sum(r.size for r in ranges)
    if total == 0:
        return []
    if len(ranges) > budget:
        return _packed(ranges, budget)
    k = -(-total // budget)
    while True:  # rounding can put up to len(ranges) more than total/k in one batch
        cuts = [[r.start + r.size * i // k for i in range(k + 1)] for r in ranges]
        out = [
            [
                OffsetRange(r.topic, r.partition, c[i], c[i + 1])
                for r, c in zip(ranges, cuts, strict=True)
                if c[i + 1] > c[i]
            ]
            for i in range(k)
        ]
        if max(sum(r.size for r in b) for b in out) <= budget:
            return out
        k += 1


def _packed(ranges: list[OffsetRange], budget: int) -> list[list[OffsetRange]]:
    """Ranges one after the other, cut where needed, ``budget`` messages per batch."""
    out: list[list[OffsetRange]] = []
    current: list[OffsetRange] = []
    room = budget
    for r in ranges:
        start = r.start
        while start < r.end:
            take = min(room, r.end - start)
            current.append(OffsetRange(r.topic, r.partition, start, start + take))
            start += take
            room -= take
            if room == 0:
                out.append(current)
                current, room = [], budget
    if current:
        out.append(current)
    return out
