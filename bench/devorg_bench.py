"""Shared set-up for the dev org benchmarks: an org on a free port over a temporary state folder,
pre-filled with accounts written straight into its SQLite file (the benchmarks measure reads or
the client's writes, not how the accounts got there). No Kafka needed: nothing is published
during set-up, and change events of the measured writes wait in the org's outbox."""

from __future__ import annotations

import os
import random
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from sf_sync.config import load_settings
from sf_sync.devorg import service
from sf_sync.devorg.metadata import build_schema
from sf_sync.devorg.settings import DevorgSettings, devorg_settings
from sf_sync.devorg.store import OrgStore, q
from sf_sync.devorg.values import format_datetime, now_utc
from sf_sync.salesforce_ids import make_id

FIELDS = ["Id", "Name", "Industry", "Rating", "NumberOfEmployees", "AnnualRevenue",
          "BillingCity", "BillingCountry", "Phone", "CreatedDate", "LastModifiedDate"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(path: Path, count: int, config: dict) -> list[str]:
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
    return [make_id("001", n, pod="7Dv") for n in range(1, count + 1)]


@contextmanager
def bench_org(accounts: int) -> Iterator[tuple[DevorgSettings, list[str]]]:
    """A running dev org holding ``accounts`` accounts; yields its settings and their Ids."""
    root = Path(tempfile.mkdtemp(prefix="sf-sync-bench-"))
    repo = Path(__file__).parent.parent
    config = yaml.safe_load((repo / "sf_sync/default-config.yaml").read_text())
    config["home"] = str(root / "state")
    config["kafka"]["bootstrap"] = "127.0.0.1:1"  # nothing needs to reach Kafka here
    config["devorg"]["port"] = free_port()
    (root / "sf-sync.yaml").write_text(yaml.safe_dump(config))
    os.environ["SF_SYNC_CONFIG"] = str(root / "sf-sync.yaml")
    ds = devorg_settings(load_settings())
    ds.state_dir.mkdir(parents=True, exist_ok=True)
    ids = fill(ds.database, accounts, config)
    print(f"{accounts:,} accounts written to {ds.database}")
    service.start(ds)
    try:
        yield ds, ids
    finally:
        service.stop(ds)
