"""Folding a 10,000-event batch into a small and a large history: the cost must follow the batch.

    .venv/bin/python bench/history_growth.py --small 100000 --large 10000000

For each size N it builds a warehouse holding N versions (N/10 accounts with ten versions each,
and as many rows in change_events; ``field_history`` is a view over both), all committed before
the batch, then times ``store_batch`` (decode + dedupe + fold + write, in one transaction, exactly
the run's path minus Kafka) plus the checkpoint that makes it part of the database file, for
the same 10,000 CometD events touching 1,000 of those accounts (spread over the whole history).
Each size is measured on fresh, flushed copies, three batches each; the median is reported,
and the ratio large/small (target: at most 1.5). After each fold it also times the invariants
the run checks over what it wrote (``ingest.check_written``) and the same rules over the
whole history, which every run checked until they were scoped.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from sf_sync import invariants, synth, warehouse
from sf_sync.config import load_settings
from sf_sync.decode import RAW_SCHEMA
from sf_sync.ingest import check_written, store_batch
from sf_sync.ranges import OffsetRange

TOPIC = "salesforce.cdc.Account"
#: Every field the synthetic stream sets, so the history's tables already have their columns
#: (a real history has them after its first day; adding a column rewrites a table).
FIELDS = [
    *synth.SCALARS,
    "OwnerId",
    "CreatedById",
    "CreatedDate",
    "LastModifiedById",
    "LastModifiedDate",
    *(f"Billing{p}" for p in synth.ADDRESS_PARTS),
]


def build(home: Path, versions: int) -> None:
    records = max(1, versions // 10)
    with warehouse.writer(home) as con:
        open_t, closed_t = warehouse.version_tables(con, "salesforce", "Account", FIELDS)
        ids = "(SELECT i, 'x' || lpad((i % {r})::VARCHAR, 14, '0') AS rid FROM range({n}) t(i))"
        ord_ = (
            "{'ts': TIMESTAMPTZ '2023-01-01' + to_seconds(i), 'tx': 't' || i, 'seq': 1,"
            " 'topic': 'h', 'part': 0, 'off': i}"
        )
        con.execute(f"""
            INSERT INTO change_events
            SELECT 'Account:t' || i || ':1', 'salesforce', 'Account', rid, 'UPDATE',
                   TIMESTAMPTZ '2023-01-01' + to_seconds(i), 't' || i, 1, NULL, 'u', ['Phone'],
                   'h', 0, i, now(), NULL, NULL, {ord_}
            FROM {ids.format(n=versions, r=records)}""")
        cols = (
            "record_id, version, valid_from, valid_to, is_deleted, event_key, change_type,"
            " changed_by, salesforce_id, ord, " + ", ".join(f'"{f}"' for f in FIELDS)
        )
        vals = ", ".join(f"'{f}' || i" for f in FIELDS)
        con.execute(f"""
            INSERT INTO {closed_t} ({cols})
            SELECT 'x' || lpad((i % {records})::VARCHAR, 14, '0'), i // {records} + 1,
                   TIMESTAMPTZ '2023-01-01' + to_seconds(i),
                   TIMESTAMPTZ '2023-01-01' + to_seconds(i + {records}), false,
                   'k' || i, 'UPDATE', 'u', NULL, {ord_}, {vals}
            FROM range({versions - records}) t(i)""")
        con.execute(f"""
            INSERT INTO {open_t} ({cols})
            SELECT 'x' || lpad((i % {records})::VARCHAR, 14, '0'), 10,
                   TIMESTAMPTZ '2023-01-01' + to_seconds(i), NULL, false,
                   'k' || i, 'UPDATE', 'u', NULL, {ord_}, {vals}
            FROM range({versions - records}, {versions}) t(i)""")
        con.execute("CHECKPOINT")


def history_id(i: int) -> str:
    """Record Id ``i`` of the built history (15 alphanumerics, a valid Salesforce-style Id)."""
    return "x" + str(i).rjust(14, "0")


def batch(seed: int, history_records: int) -> pa.Table:
    """10,000 synthetic events about 1,000 records that already exist in the built history.

    The synthetic stream names its own records; they are renamed to history records spread
    evenly over the history (so over every row group of the open table), which is the case
    the target is about: a batch superseding open versions of old records, not adding new ones.
    """
    events = synth.generate(seed, records=1000, events=10_000, start_ms=1_714_156_685_000)
    values = [v for _, v in synth.messages(events)]
    step = max(1, history_records // 1000)
    renamed: dict[bytes, bytes] = {}

    def rename(m: re.Match[bytes]) -> bytes:
        sf_id = m.group(0)
        if sf_id not in renamed:
            renamed[sf_id] = history_id((len(renamed) * step) % history_records).encode()
        return renamed[sf_id]

    values = [re.sub(rb"001[0-9A-Za-z]{15}", rename, v) for v in values]
    n = len(values)
    return pa.table(
        {
            "topic": [TOPIC] * n,
            "kafka_partition": [0] * n,
            "kafka_offset": list(range(n)),
            "kafka_timestamp": [1_714_156_685_000] * n,
            "key": [None] * n,
            "value": values,
        },
        schema=RAW_SCHEMA,
    )


def time_fold(base: Path, work: Path, raw: pa.Table) -> tuple[float, float, float, float]:
    """Seconds to store ``raw`` into a fresh copy of ``base``, its checkpoint included; then
    seconds to check the invariants over what it wrote (what the run does next) and over the
    whole history (what every run did before, and the daily job does now); then seconds to
    publish the analysts' copy (a copy of the whole file, what a run does last).

    The copy is flushed to disk (``os.sync``) before the clock starts: otherwise the first
    fsync of the fold (at the checkpoint) also writes back the whole freshly copied file, and
    the figure grows with the database size for a reason no real run has. The checkpoint is
    timed with the fold because commits leave their data in the WAL (see
    ``warehouse.CHECKPOINT_THRESHOLD``); the run pays for it when the writer closes.
    """
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(base, work)
    os.sync()
    settings = replace(load_settings(), home=work)
    with warehouse.writer(work, memory_limit=settings.duckdb_memory_limit) as con:
        t0 = time.perf_counter()
        store_batch(con, settings, raw, [OffsetRange(TOPIC, 0, 0, raw.num_rows)], None)
        con.execute("CHECKPOINT")
        fold = time.perf_counter() - t0
        (batch_time,) = con.execute("SELECT max(ingested_at) FROM ingested_ranges").fetchone()
        clock: dict[str, float] = {}
        found = check_written(con, [batch_time], clock)
        assert all(count == 0 for count, _ in found.values()), found
        t0 = time.perf_counter()
        for rule in invariants.RUN_RULES.values():
            invariants.violations(con, rule)
        whole = time.perf_counter() - t0
    t0 = time.perf_counter()
    warehouse.publish_snapshot(work)
    return fold, clock["checks"], whole, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--small", type=int, default=100_000)
    p.add_argument("--large", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--keep",
        type=Path,
        help="folder to keep built histories in (base-<N>) and reuse them from: 10M takes minutes",
    )
    args = p.parse_args()
    results: dict[int, float] = {}
    checks: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="sf-sync-growth-") as tmp:
        for size in (args.small, args.large):
            base = (args.keep or Path(tmp)) / f"base-{size}"
            if base.exists():
                print(f"reusing the history of {size:,} versions in {base}")
            else:
                t0 = time.perf_counter()
                build(base, size)
                print(f"built a history of {size:,} versions in {time.perf_counter() - t0:.1f}s")
            records = max(1, size // 10)
            batches = [batch(seed, records) for seed in range(1, args.repeat + 1)]
            measured = [time_fold(base, Path(tmp) / "work", raw) for raw in batches]
            times = [fold for fold, _, _, _ in measured]
            results[size] = statistics.median(times)
            checks[size] = statistics.median(run for _, run, _, _ in measured)
            whole = statistics.median(whole for _, _, whole, _ in measured)
            publish = statistics.median(copy for _, _, _, copy in measured)
            print(
                f"  fold of 10,000 events: median {results[size]:.2f}s "
                f"({', '.join(f'{t:.2f}' for t in times)})"
            )
            print(
                f"  invariants over what the batch wrote: median {checks[size]:.2f}s;"
                f" over the whole history: median {whole:.2f}s"
            )
            print(f"  publication (a copy of the whole file): median {publish:.2f}s")
            if args.keep is None:
                shutil.rmtree(base)
    ratio = results[args.large] / results[args.small]
    print(f"ratio large/small: {ratio:.2f} (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")
    print(f"the run's own checks, ratio large/small: {checks[args.large] / checks[args.small]:.2f}")


if __name__ == "__main__":
    main()
