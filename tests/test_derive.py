"""The fold's arithmetic on a hand-made replay, checked against states worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from sf_sync.derive import derive

T0 = datetime(2024, 4, 26, 18, 0, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def replay_of(rows: list[tuple[str, int, str, int]]) -> pa.Table:
    """(record, minute, change type, base row) per change, already in record/commit order."""
    return pa.table(
        {
            "record_id": [r for r, _, _, _ in rows],
            "commit_timestamp": pa.array([at(m) for _, m, _, _ in rows], TS),
            "change_type": [c for _, _, c, _ in rows],
            "event_key": [f"{r}:{m}" for r, m, _, _ in rows],
            "commit_user": ["u"] * len(rows),
            "salesforce_id": pa.array([None] * len(rows), pa.string()),
            "ord": [{"off": i} for i in range(len(rows))],
            "base_row": pa.array([b for _, _, _, b in rows], pa.int64()),
        }
    )


BASE = pa.table(
    {
        "record_id": ["A"],
        "version": pa.array([3], pa.int32()),
        "is_deleted": [False],
        "salesforce_id": pa.array(["001A"], pa.string()),
        "Phone": ["1"],
        "Name": ["x"],
    }
)

REPLAY = replay_of(
    [
        ("A", 10, "UPDATE", 0),  # Phone 1 -> 2, Name set to x again (no change)
        ("A", 11, "DELETE", 0),
        ("A", 12, "UNDELETE", 0),  # Name x -> y
        ("A", 13, "UPDATE", 0),  # Phone 2 -> NULL
        ("B", 5, "CREATE", -1),  # Phone NULL -> 9
        ("B", 6, "UPDATE", -1),  # Name NULL -> NULL (no change)
    ]
)

VALUES = pa.table(
    {
        "row": pa.array([0, 0, 2, 3, 4, 5], pa.int64()),
        "field": ["Phone", "Name", "Name", "Phone", "Phone", "Name"],
        "value": pa.array(["2", "x", "y", None, "9", None], pa.string()),
    }
)


def test_states_follow_the_last_value_set_within_each_record() -> None:
    versions = derive(BASE, REPLAY, VALUES, ["Phone", "Name"]).versions.to_pylist()
    got = [
        (v["record_id"], v["version"], v["Phone"], v["Name"], v["is_deleted"], v["valid_to"])
        for v in versions
    ]
    assert got == [
        ("A", 4, "2", "x", False, at(11)),
        ("A", 5, "2", "x", True, at(12)),
        ("A", 6, "2", "y", False, at(13)),
        ("A", 7, None, "y", False, None),
        ("B", 1, "9", None, False, at(6)),
        ("B", 2, "9", None, False, None),
    ]
    assert [v["salesforce_id"] for v in versions] == ["001A"] * 4 + [None] * 2


def test_only_sets_that_change_the_value_count_as_field_changes() -> None:
    """A4 Phone 1->2, A6 Name x->y, A7 Phone 2->NULL, B1 Phone NULL->9; not the two no-ops.

    (The rows themselves come from the warehouse's ``field_history`` view, checked against
    the generator's own history in tests/test_fold.py.)"""
    assert derive(BASE, REPLAY, VALUES, ["Phone", "Name"]).field_changes == 4


def test_fields_no_change_sets_keep_their_base_values() -> None:
    versions = derive(BASE, REPLAY, VALUES.slice(0, 0), ["Phone", "Name"]).versions
    assert versions["Phone"].to_pylist() == ["1"] * 4 + [None] * 2
    assert versions["version"].to_pylist() == [4, 5, 6, 7, 1, 2]
