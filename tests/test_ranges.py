from __future__ import annotations

import itertools

import pytest

from sf_sync.ranges import (
    OffsetRange,
    advance,
    decode_cursor,
    encode_cursor,
    pending_ranges,
    split_at,
    split_capped,
    split_retained,
    subtract,
)


def test_encode_round_trip_keeps_dots_and_colons_in_topic() -> None:
    r = OffsetRange("salesforce.cdc:Account", 2, 10, 20)
    assert OffsetRange.decode(r.encode()) == r


def test_bad_ranges_are_refused() -> None:
    with pytest.raises(ValueError):
        OffsetRange("t", 0, 5, 4)


def test_split_capped_covers_the_range_exactly() -> None:
    pieces = split_capped(OffsetRange("t", 0, 3, 1004), 250)
    assert [p.size for p in pieces] == [250, 250, 250, 250, 1]
    assert pieces[0].start == 3 and pieces[-1].end == 1004
    assert all(a.end == b.start for a, b in itertools.pairwise(pieces))


def test_split_at_ignores_cuts_outside() -> None:
    r = OffsetRange("t", 0, 10, 20)
    assert split_at(r, [5, 12, 12, 20, 25]) == [
        OffsetRange("t", 0, 10, 12),
        OffsetRange("t", 0, 12, 20),
    ]


def test_subtract_leaves_only_uncovered_offsets() -> None:
    r = OffsetRange("t", 1, 0, 100)
    assert subtract(r, [(10, 20), (15, 30), (90, 120)]) == [
        OffsetRange("t", 1, 0, 10),
        OffsetRange("t", 1, 30, 90),
    ]
    assert subtract(r, [(0, 100)]) == []


def test_split_retained_cuts_each_range_at_its_partitions_earliest_offset() -> None:
    ranges = [
        OffsetRange("t", 0, 10, 20),  # head deleted
        OffsetRange("t", 0, 30, 40),  # same partition, behind the earliest offset: kept
        OffsetRange("t", 1, 0, 5),  # deleted completely
        OffsetRange("t", 2, 7, 9),  # nothing deleted
        OffsetRange("u", 0, 3, 4),  # partition not asked: kept
    ]
    deleted, kept = split_retained(ranges, {("t", 0): 14, ("t", 1): 8, ("t", 2): 7})
    assert deleted == [OffsetRange("t", 0, 10, 14), OffsetRange("t", 1, 0, 5)]
    assert kept == [
        OffsetRange("t", 0, 14, 20),
        OffsetRange("t", 0, 30, 40),
        OffsetRange("t", 2, 7, 9),
        OffsetRange("u", 0, 3, 4),
    ]


def test_pending_uses_cursor_then_starts() -> None:
    ends = {("a", 0): 10, ("a", 1): 5, ("b", 0): 7}
    cursor = {"a": {0: 4}}
    assert pending_ranges(cursor, {("a", 1): 5, ("b", 0): 2}, ends) == [
        OffsetRange("a", 0, 4, 10),
        OffsetRange("b", 0, 2, 7),
    ]


def test_cursor_round_trip_and_advance_never_goes_back() -> None:
    cursor = advance({"a": {0: 50}}, [OffsetRange("a", 0, 10, 20), OffsetRange("b", 3, 0, 9)])
    assert cursor == {"a": {0: 50}, "b": {3: 9}}
    assert decode_cursor(encode_cursor(cursor)) == cursor
    assert decode_cursor(None) == {}


def assert_exact_cover(ranges: list[OffsetRange], out: list[list[OffsetRange]]) -> None:
    """Every offset of ``ranges`` in exactly one batch, in order within each partition."""
    for r in ranges:
        parts = [p for b in out for p in b if (p.topic, p.partition) == (r.topic, r.partition)]
        if r.size == 0:
            assert parts == []
            continue
        assert [p.start for p in parts] == [r.start] + [p.end for p in parts[:-1]]
        assert parts[-1].end == r.end


def test_batches_take_a_slice_of_every_range_within_the_budget() -> None:
    from sf_sync.ranges import batches

    ranges = [OffsetRange("a", 0, 0, 250), OffsetRange("a", 1, 10, 60), OffsetRange("b", 0, 5, 5)]
    out = batches(ranges, 100)
    assert all(sum(r.size for r in b) <= 100 for b in out)
    assert_exact_cover(ranges, out)
    assert len(out) == 4  # three would need 100 exactly in each; the cuts round
    # Each batch holds the same share of both partitions (the empty range holds none).
    assert [[(r.partition, r.size) for r in b] for b in out] == [
        [(0, 62), (1, 12)],
        [(0, 63), (1, 13)],
        [(0, 62), (1, 12)],
        [(0, 63), (1, 13)],
    ]


def test_batches_pack_ranges_when_there_are_more_ranges_than_budget() -> None:
    from sf_sync.ranges import batches

    ranges = [OffsetRange("a", p, 0, 3) for p in range(5)]
    out = batches(ranges, 4)
    assert [sum(r.size for r in b) for b in out] == [4, 4, 4, 3]
    assert_exact_cover(ranges, out)


def test_batches_of_nothing_are_none() -> None:
    from sf_sync.ranges import batches

    assert batches([OffsetRange("a", 0, 7, 7)], 10) == []
