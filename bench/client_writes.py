"""The client's write path: 100,000 account updates through sObject Collections (200 a call)
and through Bulk API 2.0, against the same updates applied by the dev org's store in-process
(no HTTP, no client) in the same run.

    .venv/bin/python bench/client_writes.py [--records 100000]

Prints records/s, API calls used and the ratio to the baseline. Needs no Kafka: the change
events of the updates wait in the org's outbox.
"""

from __future__ import annotations

import argparse
import time

from devorg_bench import bench_org

from sf_sync.devorg.store import CallContext, OrgStore
from sf_sync.salesforce import Credentials, SalesforceClient
from sf_sync.salesforce.writes import update_records


def store_baseline(ds, ids: list[str]) -> float:
    """Updates/s of the org's own store, one transaction per 200 records, as Collections do."""
    store = OrgStore(ds.database, ds.schema)
    obj = ds.schema.get("Account")
    ctx = CallContext(store.user_id, "bench", "rest", ds.api_version)
    t0 = time.perf_counter()
    for start in range(0, len(ids), 200):
        with store.transaction(ctx) as tx:
            for rid in ids[start : start + 200]:
                tx.update(obj, rid, {"Rating": "Cold", "Phone": "+371 21111111"})
    took = time.perf_counter() - t0
    store.conn.close()
    return len(ids) / took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with bench_org(2 * args.records) as (ds, ids):
        base_ids, api_ids = ids[: args.records], ids[args.records :]
        c = ds.credentials
        creds = Credentials("client_credentials", login_url=ds.instance_url,
                            client_id=c.client_id, client_secret=c.client_secret)  # fmt: skip
        client = SalesforceClient(creds, ca_file=ds.ca_file, api_version=ds.api_version,
                                  client_name="bench", bulk_poll_wait_s=0.5)  # fmt: skip
        half = args.records // 2
        runs = [("Collections", api_ids[:half], 10**9), ("Bulk API 2.0", api_ids[half:], 0)]
        base = store_baseline(ds, base_ids)
        print(f"baseline store updates:       {base:>9,.0f} records/s")
        for label, chosen, threshold in runs:
            records = [{"Id": r, "Rating": "Hot", "Phone": "+371 22222222"} for r in chosen]
            calls0 = client.stats.api_calls
            t0 = time.perf_counter()
            report = update_records(client, "Account", records, bulk_threshold=threshold)
            took = time.perf_counter() - t0
            assert len(report.succeeded) == len(records), report.summary()
            calls = client.stats.api_calls - calls0
            rate = len(records) / took
            print(f"{label:<13} {len(records):,} updates: {rate:>9,.0f} records/s "
                  f"({took:.1f}s, {calls} API calls, {rate / base:.1%} of baseline)")  # fmt: skip


if __name__ == "__main__":
    main()
