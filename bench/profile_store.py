"""Statement-level profile of ``store_batch``: where does one batch's time go?

    .venv/bin/python bench/profile_store.py --events 100000 --batches 2

Builds CometD batches from the synthetic stream in memory (no broker: this looks at the store
path only), stores them one after the other into a fresh warehouse through a thin proxy that
times every ``execute``/``executemany``/``sql`` call, and prints the slowest statements of the
last batch (the first one also pays for creating tables). The proxy only forwards calls, so the
code measured is the code the run executes.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sf_sync import synth, warehouse  # noqa: E402
from sf_sync.config import load_settings  # noqa: E402
from sf_sync.decode import RAW_SCHEMA  # noqa: E402
from sf_sync.ingest import store_batch  # noqa: E402
from sf_sync.ranges import OffsetRange  # noqa: E402

TOPIC = "salesforce.cdc.Account"


class TimedConnection:
    """Forwards everything to a DuckDB connection, timing the statement-running calls."""

    def __init__(self, con: Any, times: dict[str, float]) -> None:
        self._con = con
        self._times = times

    def _timed(self, name: str, sql: str, *args: Any, **kwargs: Any) -> Any:
        label = re.sub(r"\s+", " ", str(sql)).strip()[:110]
        t0 = time.perf_counter()
        out = getattr(self._con, name)(sql, *args, **kwargs)
        self._times[label] += time.perf_counter() - t0
        return out

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        return self._timed("execute", sql, *args, **kwargs)

    def executemany(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        return self._timed("executemany", sql, *args, **kwargs)

    def sql(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        return self._timed("sql", sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def raw_batches(events: int, batches: int) -> list[pa.Table]:
    """``batches`` consecutive slices of one synthetic stream, as Kafka would deliver them."""
    stream = synth.generate(1, records=max(1, events * batches // 10), events=events * batches)
    values = [v for _, v in synth.messages(stream)]
    out = []
    for b in range(batches):
        chunk = values[b * events : (b + 1) * events]
        n = len(chunk)
        out.append(
            pa.table(
                {
                    "topic": [TOPIC] * n,
                    "kafka_partition": [0] * n,
                    "kafka_offset": list(range(b * events, b * events + n)),
                    "kafka_timestamp": [1_714_156_685_000] * n,
                    "key": [None] * n,
                    "value": chunk,
                },
                schema=RAW_SCHEMA,
            )
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args()
    tables = raw_batches(args.events, args.batches)
    with tempfile.TemporaryDirectory(prefix="sf-sync-prof-") as tmp:
        home = Path(tmp)
        settings = replace(load_settings(), home=home)
        times: dict[str, float] = defaultdict(float)
        with warehouse.writer(home, memory_limit=settings.duckdb_memory_limit) as con:
            for i, raw in enumerate(tables):
                times.clear()
                start = i * args.events
                r = OffsetRange(TOPIC, 0, start, start + raw.num_rows)
                t0 = time.perf_counter()
                store_batch(TimedConnection(con, times), settings, raw, [r], None)  # type: ignore[arg-type]
                total = time.perf_counter() - t0
                print(f"batch {i}: {raw.num_rows} events in {total:.2f}s")
            t0 = time.perf_counter()
        print(f"close (checkpoint): {time.perf_counter() - t0:.2f}s")
    timed = sum(times.values())
    print(f"last batch: {timed:.2f}s in statements, {total - timed:.2f}s elsewhere")
    for label, sec in sorted(times.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{sec:7.3f}  {label}")


if __name__ == "__main__":
    main()
