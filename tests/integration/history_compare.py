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
    rel = con.sql(
        "SELECT * EXCLUDE (is_current, event_key, change_type, changed_by) FROM account_versions"
    )
    fields = [
        c for c in rel.columns if c not in ("Id", "valid_from", "valid_to", "is_deleted", "version")
    ]
    versions = []
    for row in rel.fetchall():
        r = dict(zip(rel.columns, row, strict=True))
        state = {f: r[f] for f in fields if r[f] is not None}
        versions.append(
            (
                r["Id"],
                r["version"],
                _ms(r["valid_from"]),
                _ms(r["valid_to"]),
                r["is_deleted"],
                state,
            )
        )
    return Expected(history, versions)


def _ms(ts) -> int | None:
    return None if ts is None else round(ts.timestamp() * 1000)


def assert_same_history(actual: Expected, expected: Expected) -> None:
    """Equal as multisets (row order is not part of the contract); clear diff on failure."""

    def key(row: tuple) -> tuple:
        return tuple("" if v is None else str(v) for v in row)

    got_h, want_h = sorted(actual.field_history, key=key), sorted(expected.field_history, key=key)
    missing = [r for r in want_h if r not in got_h][:5]
    extra = [r for r in got_h if r not in want_h][:5]
    assert got_h == want_h, f"field_history differs: missing {missing}, extra {extra}"
    got_v = sorted(actual.versions, key=key)
    want_v = sorted(expected.versions, key=key)
    assert len(got_v) == len(want_v), f"{len(got_v)} versions, expected {len(want_v)}"
    for got, want in zip(got_v, want_v, strict=True):
        assert got == want, f"version differs:\n got  {got}\n want {want}"
