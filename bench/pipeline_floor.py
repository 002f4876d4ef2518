"""CPU per 100,000 events, stage by stage, against the budget of the throughput target.

    .venv/bin/python bench/pipeline_floor.py --topic bench.cdc.Account.d794b780

The throughput target (35% of the raw confluent-kafka consume rate) is a wall-clock rate; on a
machine of ``cores`` cores it allows ``cores * 100,000 / (0.35 * raw rate)`` core-seconds per
100,000 events for everything: consuming, the broker serving the reads, decoding, the lake, the
store and the run's checks. This bench measures, in one run and each alone, what every stage
costs in CPU (user + system, all threads), so the budget and the stages come from the same
machine state:

1. the raw consume of ``--events`` messages of the topic (the baseline of
   ``ingest_throughput.py``, in a child process) and what the broker spent serving it;
2. today's decode of a synthetic batch (same generator as the topic's) with its lake files
   (those also apart, "of which"), pyarrow's JSON parse alone, and a compiled parser of the
   same batch (``bench/compiled_parse``, Rust and simd-json, built here with cargo when cargo
   exists);
3. today's store of that batch and the run's checks over it, into a warehouse already holding
   the ``--batches - 1`` batches before it (by default ten batches of the run's size, so the
   last lands where a 1M-event run spends its middle); the same store into a second warehouse
   with the fold swapped for what sparse versions (option (c)) would write instead, the values
   each change set, keyed by record and event; and each warehouse's closing checkpoint after
   the last batch, amortized over all of them (every run ends with one);
4. the batch's versions written again, once as a DuckDB table and once as a Parquet file
   through pyarrow, and the values its events set as a DuckDB table: what appending the same
   rows costs in each.

It then prints, for today's store and the sparse one, the writer's share of the wall-clock
budget (store, checks and closing run one batch at a time) and the sum of the stages with
today's decoder and with a compiled one (the compiled parse and the lake files in place of
the decode, nothing for the glue a real decoder needs): a sum over the budget is a design
that cannot reach the target. Needs the broker (``sf-sync kafka start``) and a topic of at
least ``--events`` messages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest_throughput import cpu_seconds, run_child  # noqa: E402
from bench.profile_store import TOPIC, raw_batches  # noqa: E402
from sf_sync import ingest, lake, processes, warehouse  # noqa: E402
from sf_sync.config import load_settings  # noqa: E402
from sf_sync.fold import FoldStats  # noqa: E402
from sf_sync.ingest import check_written, decode_apart, store_decoded  # noqa: E402
from sf_sync.kafka.broker import BrokerPaths  # noqa: E402
from sf_sync.ranges import OffsetRange  # noqa: E402

CRATE = ROOT / "bench" / "compiled_parse"
TARGET_SHARE = 0.35
PER = 100_000  # figures are per this many events

# The stages, as printed.
CONSUME = "consume (confluent-kafka loop)"
BROKER = "broker serving the reads"
DECODE = "decode + lake files (today)"
LAKE = "  of which lake files"
STORE = "store (today)"
CLOSE = "closing checkpoint (today), amortized"
CHECKS = "run checks"
SPARSE_STORE = "store, sparse versions (c)"
SPARSE_CLOSE = "closing checkpoint (sparse), amortized"
VERSIONS_TABLE = "batch's versions as a DuckDB table"
VERSIONS_PARQUET = "batch's versions as Parquet (pyarrow)"
SET_VALUES_TABLE = "values set, as a DuckDB table"
JSON_PARSE = "JSON parse (pyarrow)"
COMPILED = "compiled parse (Rust, simd-json)"


@dataclass
class Measured:
    """CPU per ``PER`` events of each stage, and the measured batch."""

    cpu: dict[str, float]
    values: list[bytes]  # the last batch's messages
    versions: int  # the versions it made
    set_values: int  # the values its events set


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process (the broker), from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def measured(into: dict[str, float], name: str) -> Iterator[None]:
    """Adds the CPU the block used to ``into[name]``; the bench runs one stage at a time, so
    the process's CPU is that stage's."""
    start = cpu_seconds()
    yield
    into[name] = into.get(name, 0.0) + cpu_seconds() - start


def sparse_fold(con: duckdb.DuckDBPyConnection) -> FoldStats:
    """What option (c) would write where the fold writes versions: the values each new change
    set, keyed by record and event (full rows and ``valid_to`` would be rebuilt when read)."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS sparse_values"
        " (record_id VARCHAR, event_key VARCHAR, field VARCHAR, value VARCHAR)"
    )
    con.execute(
        "INSERT INTO sparse_values SELECT n.record_id, n.event_key, f.field, f.value"
        " FROM new_changes n JOIN batch_fields f USING (ev)"
    )
    return FoldStats()


@contextmanager
def folding_sparse() -> Iterator[None]:
    """``store_decoded`` as it is, with the fold swapped for ``sparse_fold``."""
    original = ingest.fold_new_changes
    ingest.fold_new_changes = sparse_fold  # type: ignore[assignment]
    try:
        yield
    finally:
        ingest.fold_new_changes = original  # type: ignore[assignment]


@contextmanager
def timing_lake_writes(into: dict[str, float]) -> Iterator[None]:
    """Counts the CPU of ``lake.write_ranges`` (called inside ``decode_apart``, so part of
    its figure too) under ``LAKE``. The function itself runs unchanged."""
    original = lake.write_ranges

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        with measured(into, LAKE):
            return original(*args, **kwargs)

    lake.write_ranges = counted  # type: ignore[assignment]
    try:
        yield
    finally:
        lake.write_ranges = original  # type: ignore[assignment]


def consume(bootstrap: str, topic: str, events: int, broker_pid: int) -> tuple[float, dict]:
    """The raw consume rate, and the CPU of the consumer and of the broker per ``PER``."""
    broker_before = process_cpu_seconds(broker_pid)
    base = run_child("--child", "baseline", bootstrap, topic, str(events))
    broker = process_cpu_seconds(broker_pid) - broker_before
    scale = PER / base["messages"]
    return base["rate"], {CONSUME: base["cpu_seconds"] * scale, BROKER: broker * scale}


def compiled_parse(values: list[bytes], rounds: int) -> float | None:
    """CPU of the compiled parser per ``PER`` events: the median of its rounds over the batch
    (one thread, so its wall time is its CPU)."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).exists():
        return None
    subprocess.run(
        [cargo, "build", "--release", "--quiet"], cwd=CRATE, check=True, capture_output=True
    )
    with tempfile.NamedTemporaryFile(prefix="sf-sync-batch-", suffix=".bin") as batch:
        for value in values:
            batch.write(struct.pack("<I", len(value)))
            batch.write(value)
        batch.flush()
        out = subprocess.run(
            [str(CRATE / "target" / "release" / "compiled_parse"), batch.name, str(rounds)],
            check=True,
            capture_output=True,
            text=True,
        )
    result = json.loads(out.stdout)
    if result["parsed"] != len(values):
        raise RuntimeError(f"the compiled parser refused messages: {result}")
    seconds = sorted(result["seconds"])
    return seconds[len(seconds) // 2] * PER / len(values)


def store_stages(events: int, batches: int) -> Measured:
    """Decodes and stores ``batches`` synthetic batches of ``events`` into two warehouses,
    today's and the sparse one; measures the last batch's stages and, amortized over all of
    them, each warehouse's closing checkpoint (a run's ends with one)."""
    tables = raw_batches(events, batches)
    last: dict[str, float] = {}  # the last batch's stages (each batch starts it again)
    amortized: dict[str, float] = {}
    with (
        timing_lake_writes(last),
        tempfile.TemporaryDirectory(prefix="sf-sync-floor-") as tmp,
    ):
        home, sparse_home = Path(tmp) / "today", Path(tmp) / "sparse"
        settings = replace(load_settings(), home=home)
        limit = settings.duckdb_memory_limit
        with (
            warehouse.writer(home, memory_limit=limit) as con,
            warehouse.writer(sparse_home, memory_limit=limit) as sparse,
        ):
            for i, raw in enumerate(tables):
                last.clear()
                r = OffsetRange(TOPIC, 0, i * events, i * events + raw.num_rows)
                decoder = warehouse.cursor(con)
                with measured(last, DECODE):
                    decoded = decode_apart(decoder, raw, settings, [r])
                decoder.close()
                now = datetime.now(UTC)
                with measured(last, STORE):
                    store_decoded(con, settings, decoded, [r], None, now=now)
                with measured(last, CHECKS):
                    check_written(con, [now], {})
                with folding_sparse(), measured(last, SPARSE_STORE):
                    store_decoded(sparse, settings, decoded, [r], None, now=now)
            # What closing each writer would do; it also leaves nothing of the batches for
            # the one-off writes below to flush.
            with measured(amortized, CLOSE):
                con.execute("CHECKPOINT")
            with measured(amortized, SPARSE_CLOSE):
                sparse.execute("CHECKPOINT")
            versions = con.sql(
                "SELECT * FROM account_versions WHERE valid_from >= ("
                " SELECT min(commit_timestamp) FROM change_events WHERE ingested_at = $now)",
                params={"now": now},
            ).to_arrow_table()
            with measured(last, VERSIONS_TABLE):
                con.register("batch_versions", versions)
                con.execute("CREATE TABLE floor_versions AS SELECT * FROM batch_versions")
                con.execute("CHECKPOINT")
            with measured(last, VERSIONS_PARQUET):
                pq.write_table(versions, home / "versions.parquet", compression="zstd")
            set_values = decoded.tables["batch_fields"]
            with measured(last, SET_VALUES_TABLE):
                con.register("batch_set_values", set_values)
                con.execute("CREATE TABLE floor_values AS SELECT * FROM batch_set_values")
                con.execute("CHECKPOINT")
    values = tables[-1]["value"].to_pylist()
    with measured(last, JSON_PARSE):
        pj.read_json(pa.py_buffer(b"\n".join(values)))
    cpu = {k: v * PER / events for k, v in last.items()}
    cpu.update({k: v * PER / (events * batches) for k, v in amortized.items()})
    return Measured(cpu, values, versions.num_rows, set_values.num_rows)


def main() -> None:
    settings = load_settings()
    p = argparse.ArgumentParser()
    p.add_argument("--topic", required=True, help="a topic of ingest_throughput.py (CometD)")
    p.add_argument("--events", type=int, default=1_000_000, help="messages consumed")
    p.add_argument(
        "--batch", type=int, default=settings.batch_messages, help="events per synthetic batch"
    )
    p.add_argument(
        "--batches", type=int, default=10, help="batches stored (the last one is measured)"
    )
    p.add_argument("--rounds", type=int, default=5, help="rounds of the compiled parser")
    p.add_argument("--bootstrap", default=settings.bootstrap)
    args = p.parse_args()
    broker_pid = processes.read_pid(BrokerPaths.for_state(settings.kafka_dir).pid_file)
    if broker_pid is None:
        raise SystemExit(f"no broker PID under {settings.kafka_dir}: sf-sync kafka start")
    cores = os.cpu_count() or 1

    rate, reading = consume(args.bootstrap, args.topic, args.events, broker_pid)
    stages = store_stages(args.batch, args.batches)
    compiled = compiled_parse(stages.values, args.rounds)
    wall = PER / (TARGET_SHARE * rate)  # seconds per PER events at the target
    budget = cores * wall

    print(f"raw consume: {rate:,.0f} msg/s on {cores} cores")
    print(
        f"budget at {TARGET_SHARE:.0%} of it: {wall:.2f} s, so {budget:.2f} core-s,"
        f" per {PER:,} events"
    )
    print(
        f"CPU per {PER:,} events (core-s), batches of {args.batch:,}, the last into"
        f" {args.batch * (args.batches - 1):,} events:"
    )
    cpu = {**reading, **stages.cpu, COMPILED: compiled if compiled is not None else float("nan")}
    for name in (
        CONSUME,
        BROKER,
        DECODE,
        LAKE,
        STORE,
        CLOSE,
        CHECKS,
        SPARSE_STORE,
        SPARSE_CLOSE,
        VERSIONS_TABLE,
        VERSIONS_PARQUET,
        SET_VALUES_TABLE,
        JSON_PARSE,
        COMPILED,
    ):
        print(f"  {name:<40} {cpu[name]:6.2f}")
    print(f"  (the batch's versions: {stages.versions:,}; values set: {stages.set_values:,})")

    decoders = {"today's decoder": cpu[DECODE]}
    if compiled is not None:  # the compiled parse in place of the decode, no glue counted
        decoders["a compiled decoder"] = compiled + cpu[LAKE]
    # The run's checks as today's for both stores: sparse versions would check other rules.
    writers = {
        "today's store": cpu[STORE] + cpu[CLOSE] + cpu[CHECKS],
        "sparse versions": cpu[SPARSE_STORE] + cpu[SPARSE_CLOSE] + cpu[CHECKS],
    }
    for store, writer in writers.items():
        print(
            f"{store}, the writer (store, checks, closing; one batch at a time):"
            f" {writer:.2f} core-s = {writer / wall:.1f}x the wall-clock budget"
        )
        for decoder, decoding in decoders.items():
            total = cpu[CONSUME] + cpu[BROKER] + decoding + writer
            print(f"{store} with {decoder}: {total:.2f} core-s = {total / budget:.1f}x the budget")


if __name__ == "__main__":
    main()
