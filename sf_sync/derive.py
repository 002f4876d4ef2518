"""Derives SCD2 versions from a base state and a replay of changes, in arrays.

This is the arithmetic of the fold (``fold.py`` decides *what* to replay and writes the result).
It used to be SQL, one ``last_value(... IGNORE NULLS)`` window per field; the same result comes
from a handful of NumPy passes over index arrays, an order of magnitude faster, because every
question the fold asks is "what was the last value set at or before this row, within this
record?" and that is a running maximum of row numbers:

* the replay is sorted by record, then commit order; ``start[i]`` is the first row of row
  ``i``'s record;
* for a field, ``last[i] = max(j <= i where row j sets the field)`` is
  ``np.maximum.accumulate``; when ``last[i] < start[i]`` no change of this record set it yet and
  the state is the base's value.

Values are never touched one by one: each field's state column is one ``take`` from the
values it was set to, followed by the base values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Replay columns (one row per change, sorted by ``record_id`` then commit order).
REPLAY_COLUMNS = (
    "record_id",
    "commit_timestamp",
    "change_type",
    "event_key",
    "commit_user",
    "salesforce_id",
    "ord",
    "base_row",  # row of the record's base version in ``base``, -1 when it has none
)

_DELETED = {"DELETE": 1, "CREATE": 0, "UNDELETE": 0}  # UPDATE leaves is_deleted as it was


@dataclass(frozen=True)
class Derived:
    versions: pa.Table  # one row per replayed change, the version it creates (wide)
    field_changes: int  # sets whose value differs from the state before them


def derive(base: pa.Table, replay: pa.Table, values: pa.Table, fields: list[str]) -> Derived:
    """The versions the replayed changes make on top of their bases, and how many of their
    sets changed a value (``field_history``, a view, shows those rows).

    ``base`` holds the version each record starts from (``version``, ``is_deleted``,
    ``salesforce_id`` and one column per field); ``replay`` is described by
    ``REPLAY_COLUMNS``; ``values`` has ``row`` (into ``replay``, ascending within a field),
    ``field`` and ``value``: what each change set, set-to-NULL included.
    """
    missing = set(REPLAY_COLUMNS) - set(replay.column_names)
    if missing:
        raise ValueError(f"replay lacks {sorted(missing)}")
    n = replay.num_rows
    rows = np.arange(n, dtype=np.int64)
    start = _record_starts(replay["record_id"])
    base_row = replay["base_row"].to_numpy()

    base_version = _at_base(base["version"], base_row, 0).astype(np.int64)
    version = base_version + (rows - start) + 1

    ts = replay["commit_timestamp"].combine_chunks()
    ts_int = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
    is_last = np.ones(n, dtype=bool)
    is_last[:-1] = start[1:] != start[:-1]
    next_ts = np.empty(n, dtype=np.int64)
    next_ts[:-1] = ts_int[1:]
    valid_to = pa.array(next_ts, mask=is_last).cast(ts.type) if n else ts

    codes = _deleted_codes(replay["change_type"])
    sets = codes >= 0
    last = _last_set(sets, rows)
    base_deleted = _at_base(base["is_deleted"], base_row, False).astype(bool)
    is_deleted = np.where(last >= start, codes[np.maximum(last, 0)] == 1, base_deleted)

    versions = {
        "record_id": replay["record_id"],
        "version": pa.array(version, pa.int32()),
        "valid_from": ts,
        "valid_to": valid_to,
        "is_deleted": pa.array(is_deleted),
        "event_key": replay["event_key"],
        "change_type": replay["change_type"],
        "changed_by": replay["commit_user"],
        "salesforce_id": pc.coalesce(
            replay["salesforce_id"].combine_chunks(), _take(base["salesforce_id"], base_row)
        ),
        "ord": replay["ord"],
    }
    # A set is a field change when it differs from the state just before it (its record's
    # previous row, or the base); the warehouse's ``field_history`` view derives those rows
    # from the versions, so here they are only counted.
    field_changes = 0
    by_field = _split_by_field(values)
    for field in fields:
        base_values = _take(base[field], base_row)
        if field not in by_field:
            versions[field] = base_values
            continue
        set_rows, set_values = by_field[field]
        # Every state is a take from [the values set..., the base value of each row].
        pool = pa.concat_arrays([set_values, base_values])
        position = np.full(n, -1, dtype=np.int64)
        position[set_rows] = np.arange(len(set_rows))
        last = _last_set(position >= 0, rows)
        own = last >= start
        state_index = np.where(own, position[np.maximum(last, 0)], len(set_values) + rows)
        versions[field] = pool.take(pa.array(state_index))

        follows = set_rows > start[set_rows]
        before = np.where(follows, state_index[np.maximum(set_rows - 1, 0)], 0)
        old = pool.take(pa.array(np.where(follows, before, len(set_values) + set_rows)))
        field_changes += int(_distinct(old, set_values).sum())
    return Derived(versions=pa.table(versions), field_changes=field_changes)


def _record_starts(record_id: pa.ChunkedArray) -> np.ndarray:
    """For each row, the first row of its record (rows are sorted by record)."""
    ids = record_id.combine_chunks()
    n = len(ids)
    first = np.zeros(n, dtype=bool)
    if n:
        first[0] = True
        first[1:] = pc.not_equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)
    return np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, np.int64)


def _last_set(sets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The last row at or before each row that sets the value (-1 if none).

    One running maximum serves every record at once: rows are sorted by record, so a result
    below the row's ``start`` means that no change *of this record* set the value yet.
    """
    return np.maximum.accumulate(np.where(sets, rows, -1)) if len(rows) else rows


def _deleted_codes(change_type: pa.ChunkedArray) -> np.ndarray:
    """1 for DELETE, 0 for CREATE/UNDELETE (they set ``is_deleted``), -1 for UPDATE."""
    codes = np.full(len(change_type), -1, dtype=np.int8)
    for name, code in _DELETED.items():
        codes[pc.equal(change_type, name).to_numpy(zero_copy_only=False)] = code
    return codes


def _take(column: pa.ChunkedArray, index: np.ndarray) -> pa.Array:
    """``column[index]``, NULL where the index is -1."""
    return column.combine_chunks().take(pa.array(index, mask=index < 0))


def _at_base(column: pa.ChunkedArray, base_row: np.ndarray, default: object) -> np.ndarray:
    taken = _take(column, base_row)
    return taken.fill_null(default).to_numpy(zero_copy_only=False)


def _split_by_field(values: pa.Table) -> dict[str, tuple[np.ndarray, pa.Array]]:
    """Per field, the replay rows that set it (ascending) and the values they set."""
    if values.num_rows == 0:
        return {}
    encoded = values["field"].combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.lexsort((values["row"].to_numpy(), codes))
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
    all_values = values["value"].combine_chunks()
    all_rows = values["row"].to_numpy()
    out = {}
    for chunk in np.split(order, bounds):
        name = encoded.dictionary[int(codes[chunk[0]])].as_py()
        out[name] = (all_rows[chunk], all_values.take(pa.array(chunk)))
    return out


def _distinct(old: pa.Array, new: pa.Array) -> np.ndarray:
    """``old IS DISTINCT FROM new``, element-wise."""
    differs = pc.fill_null(pc.not_equal(old, new), True)
    both_null = pc.and_(pc.is_null(old), pc.is_null(new))
    return pc.and_not(differs, both_null).to_numpy(zero_copy_only=False)
