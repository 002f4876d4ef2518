"""Reads through the dev org: REST ``query_all`` of 100,000 accounts and a Bulk API 2.0 query
of 1,000,000, each against the raw SQLite read of the same rows in the same run.

    .venv/bin/python bench/devorg_reads.py [--rest 100000] [--bulk 1000000]

The accounts are written straight into the org's SQLite file (the benchmark measures reads,
not the write path), then read back through simple-salesforce over HTTPS. Prints records/s,
API calls used and the ratio to the baseline. Needs no Kafka (nothing is changed).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sqlite3
import tempfile
import time
from pathlib import Path

import yaml

from sf_sync.config import load_settings
from sf_sync.devorg import service
from sf_sync.devorg.control import DevorgControl
from sf_sync.devorg.metadata import build_schema
from sf_sync.devorg.settings import devorg_settings
from sf_sync.devorg.store import OrgStore, q
from sf_sync.devorg.values import format_datetime, now_utc
from sf_sync.salesforce_ids import make_id

FIELDS = ["Id", "Name", "Industry", "Rating", "NumberOfEmployees", "AnnualRevenue",
          "BillingCity", "BillingCountry", "Phone", "CreatedDate", "LastModifiedDate"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(path: Path, count: int, config: dict) -> None:
    """``count`` accounts written directly, in the store's own layout."""
    store = OrgStore(path, build_schema(config["objects"]))
    names = [f.name for f in store.schema.get("Account").stored_fields]
    stamp = format_datetime(now_utc())
    rng = random.Random(1)
    user = store.user_id
    rows = []
    for n in range(1, count + 1):
        r = dict.fromkeys(names)
        r.update(
            Id=make_id("001", n, pod="7Dv"), IsDeleted=0, Name=f"Customer {n:07d}",
            Industry=rng.choice(["Banking", "Retail", "Energy"]), Rating="Warm",
            NumberOfEmployees=rng.randint(1, 5000), AnnualRevenue=rng.random() * 1e6,
            BillingCity="Riga", BillingCountry="Latvia", Phone="+371 20000000",
            CreatedDate=stamp, LastModifiedDate=stamp, SystemModstamp=stamp, CreatedById=user,
            LastModifiedById=user, OwnerId=user,
        )  # fmt: skip
        rows.append([r[k] for k in names])
        if len(rows) == 50_000 or n == count:
            store.conn.execute("BEGIN")
            store.conn.executemany(
                f"INSERT INTO {q('Account')} VALUES ({', '.join('?' * len(names))})", rows
            )
            store.conn.execute("COMMIT")
            rows = []
    store.conn.close()


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
    root = Path(tempfile.mkdtemp(prefix="sf-sync-bench-"))
    config = yaml.safe_load(
        (Path(__file__).parent.parent / "sf_sync/default-config.yaml").read_text()
    )
    config["home"] = str(root / "state")
    config["kafka"]["bootstrap"] = "127.0.0.1:1"  # nothing is published; no broker needed
    config["devorg"]["port"] = free_port()
    (root / "sf-sync.yaml").write_text(yaml.safe_dump(config))
    os.environ["SF_SYNC_CONFIG"] = str(root / "sf-sync.yaml")
    ds = devorg_settings(load_settings())
    ds.state_dir.mkdir(parents=True, exist_ok=True)
    fill(ds.database, max(args.rest, args.bulk), config)
    print(f"{max(args.rest, args.bulk):,} accounts written to {ds.database}")
    service.start(ds)
    try:
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
        out = root / "bulk"
        out.mkdir()
        t0 = time.perf_counter()
        results = sf.bulk2.Account.download(soql + f" LIMIT {args.bulk}", path=str(out),
                                            max_records=250_000)  # fmt: skip
        took = time.perf_counter() - t0
        got = sum(r["number_of_records"] for r in results)
        calls = control.status()["api_usage"]["used"] - used0
        print(f"Bulk 2.0 query {got:,}:      {got / took:>10,.0f} records/s "
              f"({took:.1f}s, {calls} API calls, {got / took / base:.1%} of baseline)")  # fmt: skip
    finally:
        service.stop(ds)


if __name__ == "__main__":
    main()
