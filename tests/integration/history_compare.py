"""Reads the stored history in the shape of ``sf_sync.synth.Expected`` for exact comparison."""

from __future__ import annotations

import duckdb

from sf_sync.synth import Expected


def stored_history(con: duckdb.DuckDBPyConnection) -> Expected:
    history = con.execute(
        """SELECT record_id, field, old_value, new_value, epoch_ms(changed_at), change_type,
                  changed_by
           FROM field_history WHERE source = 'salesforce' AND object = 'Account'"""
    ).fetchall()
    versions = con.execute(
        """SELECT record_id, version, epoch_ms(valid_from), epoch_ms(valid_to), is_deleted,
                  map_from_entries(list_filter(map_entries(state),
                                               lambda e: e.value IS NOT NULL))
           FROM (SELECT * FROM versions_closed UNION ALL SELECT * FROM versions_open)
           WHERE source = 'salesforce' AND object = 'Account'"""
    ).fetchall()
    return Expected(history, versions)


def assert_same_history(actual: Expected, expected: Expected) -> None:
    """Equal as multisets (row order is not part of the contract); clear diff on failure."""

    def key(row: tuple) -> tuple:
        return tuple("" if v is None else str(v) for v in row)

    got_h, want_h = sorted(actual.field_history, key=key), sorted(expected.field_history, key=key)
    missing = [r for r in want_h if r not in got_h][:5]
    extra = [r for r in got_h if r not in want_h][:5]
    assert got_h == want_h, f"field_history differs: missing {missing}, extra {extra}"
    got_v = sorted(((*r[:5], dict(r[5])) for r in actual.versions), key=key)
    want_v = sorted(expected.versions, key=key)
    assert len(got_v) == len(want_v), f"{len(got_v)} versions, expected {len(want_v)}"
    for got, want in zip(got_v, want_v, strict=True):
        assert got == want, f"version differs:\n got  {got}\n want {want}"
