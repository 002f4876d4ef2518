"""Reads through the dev org: REST ``query_all`` of 100,000 accounts and a Bulk API 2.0 query
of 1,000,000, each against the raw SQLite read of the same rows in the same run.

    .venv/bin/python bench/devorg_reads.py [--rest 100000] [--bulk 1000000]

The accounts are written straight into the org's SQLite file (the benchmark measures reads,
not the write path), then read back through simple-salesforce over HTTPS. Prints records/s,
API calls used and the ratio to the baseline. Needs no Kafka (nothing is changed).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from devorg_bench import FIELDS, bench_org

from sf_sync.devorg.control import DevorgControl
from sf_sync.devorg.store import q


def baseline(path: Path) -> float:
    """Rows/s of reading the same columns from the same SQLite file, no HTTP, no JSON."""
    con = sqlite3.connect(path)
    t0 = time.perf_counter()
    n = sum(1 for _ in con.execute(f"SELECT {', '.join(map(q, FIELDS))} FROM Account"))
    took = time.perf_counter() - t0
    con.close()
    return n / took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rest", type=int, default=100_000)
    parser.add_argument("--bulk", type=int, default=1_000_000)
    args = parser.parse_args()
    with bench_org(max(args.rest, args.bulk)) as (ds, _ids):
        control = DevorgControl(ds)
        sf = control.salesforce(client="bench")
        soql = f"SELECT {', '.join(FIELDS)} FROM Account"

        base = baseline(ds.database)
        print(f"baseline sqlite read:            {base:>10,.0f} rows/s")

        used0 = control.status()["api_usage"]["used"]
        t0 = time.perf_counter()
        got = sum(1 for _ in sf.query_all_iter(soql + f" LIMIT {args.rest}"))
        took = time.perf_counter() - t0
        calls = control.status()["api_usage"]["used"] - used0
        print(f"REST query_all {got:,}:        {got / took:>10,.0f} records/s "
              f"({took:.1f}s, {calls} API calls, {got / took / base:.1%} of baseline)")  # fmt: skip

        used0 = control.status()["api_usage"]["used"]
        out = Path(tempfile.mkdtemp(prefix="sf-sync-bulk-"))
        t0 = time.perf_counter()
        results = sf.bulk2.Account.download(soql + f" LIMIT {args.bulk}", path=str(out),
                                            max_records=250_000)  # fmt: skip
        took = time.perf_counter() - t0
        got = sum(r["number_of_records"] for r in results)
        calls = control.status()["api_usage"]["used"] - used0
        print(f"Bulk 2.0 query {got:,}:      {got / took:>10,.0f} records/s "
              f"({took:.1f}s, {calls} API calls, {got / took / base:.1%} of baseline)")  # fmt: skip


if __name__ == "__main__":
    main()
