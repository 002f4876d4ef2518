"""The SQL decoder alone vs the columnar fast path, on the same in-memory batch, back to back.

    .venv/bin/python bench/decode_paths.py --events 100000 --repeat 3

Builds the CometD batch of ``profile_store.py`` (``raw_batches``: no broker), opens a warehouse
writer as a run does (same memory limit, so the decoder's temp tables live where they do in a
run), and decodes the batch with ``decode.decode(..., sql_only=True)`` then with the fast
path, ``--repeat`` times, alternately, on that one connection. Prints each time, the medians
and their ratio, and checks that both paths made the same number of rows. ``--bad N`` breaks N
messages spread over the batch (each costs the fast path a second read of its piece).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.profile_store import raw_batches  # noqa: E402
from sf_sync import decode, warehouse  # noqa: E402
from sf_sync.config import load_settings  # noqa: E402

COUNTED = ("batch_decoded", "batch_errors", "batch_changes", "batch_fields", "batch_gaps")


def with_bad_messages(raw: pa.Table, bad: int) -> pa.Table:
    """``bad`` messages, evenly spread, cut short (still starting with ``{``, ending with ``}``)."""
    if not bad:
        return raw
    values = raw["value"].to_pylist()
    for i in range(0, len(values), max(1, len(values) // bad))[:bad]:
        values[i] = values[i][:-20] + b"}"
    return raw.set_column(raw.schema.get_field_index("value"), "value", pa.array(values))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--bad", type=int, default=0)
    args = p.parse_args()
    (raw,) = raw_batches(args.events, 1)
    raw = with_bad_messages(raw, args.bad)
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="sf-sync-decode-") as tmp:
        settings = replace(load_settings(), home=Path(tmp))
        with warehouse.writer(settings.home, memory_limit=settings.duckdb_memory_limit) as con:
            counts = {}
            for i in range(args.repeat):
                for sql_only in (True, False):
                    t0 = time.perf_counter()
                    report = decode.decode(con, raw, settings, sql_only=sql_only)
                    times[sql_only].append(time.perf_counter() - t0)
                    counts[sql_only] = [
                        con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in COUNTED
                    ]
                    label = "SQL only" if sql_only else "fast path"
                    print(f"run {i + 1} {label:9s} {times[sql_only][-1]:6.2f}s  {report}")
    assert counts[True] == counts[False], counts
    sql, fast = statistics.median(times[True]), statistics.median(times[False])
    print(f"{args.events:,} CometD messages ({args.bad} broken), rows per table {counts[True]}")
    print(f"SQL only:  median {sql:.2f}s ({', '.join(f'{t:.2f}' for t in times[True])})")
    print(f"fast path: median {fast:.2f}s ({', '.join(f'{t:.2f}' for t in times[False])})")
    print(f"ratio: {sql / fast:.1f}x")


if __name__ == "__main__":
    main()
