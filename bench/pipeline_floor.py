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
2. the current decode of a synthetic batch (same generator as the topic's), its lake files
   (timed apart), the JSON parse of pyarrow alone, and a compiled parser of the same batch
   (``bench/compiled_parse``, Rust and simd-json, built here with cargo when cargo exists);
3. the store of that batch into a warehouse already holding ``--batches - 1`` batches, and the
   run's checks over it; and the same store into a second warehouse with the fold swapped for
   what sparse versions (option (c)) would write instead: the values each change set, keyed by
   record and event;
4. the batch's versions written again, once as a DuckDB table and once as a Parquet file
   through pyarrow: what appending the same rows costs in each; and the values its events set,
   (event, field, value) rows, as a DuckDB table.

It then prints, for today's store and the sparse one, the writer's share of the wall-clock
budget and the sum of the stages with today's decoder and with a compiled one (the compiled
parse and the lake files in place of the decode, nothing for the glue a real decoder needs):
a sum over the budget is a design that cannot reach the target. Needs the broker
(``sf-sync kafka start``) and a topic of at least ``--events`` messages.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest_throughput import run_child  # noqa: E402
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
SPARSE = "store, sparse versions (c)"


def cpu_seconds() -> float:
    """User + system CPU of this process, every thread."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process (the broker), from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def measured(into: dict[str, float], name: str) -> Iterator[None]:
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


def timing_lake_writes(into: dict[str, float]) -> Callable[[], None]:
    """Counts the CPU of ``lake.write_ranges`` (called inside ``decode_apart``) apart; returns
    the undo. The function itself runs unchanged."""
    original = lake.write_ranges

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        with measured(into, "lake files"):
            return original(*args, **kwargs)

    lake.write_ranges = counted  # type: ignore[assignment]
    return lambda: setattr(lake, "write_ranges", original)


def consume(bootstrap: str, topic: str, events: int, broker_pid: int | None) -> dict[str, float]:
    broker_before = process_cpu_seconds(broker_pid) if broker_pid else 0.0
    base = run_child("--child", "baseline", bootstrap, topic, str(events))
    broker = process_cpu_seconds(broker_pid) - broker_before if broker_pid else float("nan")
    scale = PER / base["messages"]
    return {
        "rate": base["rate"],
        "consume": base["cpu_seconds"] * scale,
        "broker": broker * scale,
    }


def compiled_parse(values: list[bytes], rounds: int) -> float | None:
    """Median seconds of the compiled parser over the batch (one thread: CPU = wall)."""
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
    assert result["parsed"] == len(values), result
    seconds = sorted(result["seconds"])
    return seconds[len(seconds) // 2]


def store_stages(events: int, batches: int) -> tuple[dict[str, float], list[bytes], int, int]:
    """CPU of decoding and storing the last of ``batches`` synthetic batches; that batch's
    messages, how many versions it made and how many values its events set."""
    tables = raw_batches(events, batches)
    last = tables[-1]
    cpu: dict[str, float] = {}
    undo = timing_lake_writes(cpu)
    try:
        with tempfile.TemporaryDirectory(prefix="sf-sync-floor-") as tmp:
            home, sparse_home = Path(tmp) / "today", Path(tmp) / "sparse"
            settings = replace(load_settings(), home=home)
            limit = settings.duckdb_memory_limit
            with (
                warehouse.writer(home, memory_limit=limit) as con,
                warehouse.writer(sparse_home, memory_limit=limit) as sparse,
            ):
                for i, raw in enumerate(tables):
                    cpu.clear()
                    r = OffsetRange(TOPIC, 0, i * events, i * events + raw.num_rows)
                    decoder = warehouse.cursor(con)
                    with measured(cpu, "decode + lake (current)"):
                        decoded = decode_apart(decoder, raw, settings, [r])
                    decoder.close()
                    now = datetime.now(UTC)
                    with measured(cpu, "store (current)"):
                        store_decoded(con, settings, decoded, [r], None, now=now)
                    with measured(cpu, "run checks"):
                        check_written(con, [now], {})
                    with folding_sparse(), measured(cpu, SPARSE):
                        store_decoded(sparse, settings, decoded, [r], None, now=now)
                versions = con.sql(
                    "SELECT * FROM account_versions WHERE valid_from >= ("
                    " SELECT min(commit_timestamp) FROM change_events WHERE ingested_at = $now)",
                    params={"now": now},
                ).to_arrow_table()
                with measured(cpu, "versions as a DuckDB table"):
                    con.register("batch_versions", versions)
                    con.execute("CREATE TABLE floor_versions AS SELECT * FROM batch_versions")
                    con.execute("CHECKPOINT")
                with measured(cpu, "versions as Parquet (pyarrow)"):
                    pq.write_table(versions, home / "versions.parquet", compression="zstd")
                # What sparse versions (option (c)) would append instead: the values each
                # event set, (event, field, value) rows, without any record key (a bound).
                with measured(cpu, "set values as a DuckDB table"):
                    con.register("batch_set_values", decoded.tables["batch_fields"])
                    con.execute("CREATE TABLE floor_values AS SELECT * FROM batch_set_values")
                    con.execute("CHECKPOINT")
                set_values = decoded.tables["batch_fields"].num_rows
    finally:
        undo()
    values = last["value"].to_pylist()
    with measured(cpu, "JSON parse (pyarrow)"):
        pj.read_json(pa.py_buffer(b"\n".join(values)))
    scale = PER / events
    return {k: v * scale for k, v in cpu.items()}, values, versions.num_rows, set_values


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--topic", required=True, help="a topic of ingest_throughput.py (CometD)")
    p.add_argument("--events", type=int, default=1_000_000, help="messages consumed")
    p.add_argument("--batch", type=int, default=100_000, help="events per synthetic batch")
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5, help="rounds of the compiled parser")
    p.add_argument(
        "--bootstrap", default=os.environ.get("SF_SYNC_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    args = p.parse_args()
    broker_pid = processes.read_pid(BrokerPaths.for_state(load_settings().kafka_dir).pid_file)
    cores = os.cpu_count() or 1

    raw = consume(args.bootstrap, args.topic, args.events, broker_pid)
    stages, values, versions, set_values = store_stages(args.batch, args.batches)
    compiled = compiled_parse(values, args.rounds)
    wall = PER / (TARGET_SHARE * raw["rate"])  # seconds per PER events at the target
    budget = cores * wall

    print(f"raw consume: {raw['rate']:,.0f} msg/s on {cores} cores")
    print(
        f"budget at {TARGET_SHARE:.0%} of it: {wall:.2f} s, so {budget:.2f} core-s,"
        f" per {PER:,} events"
    )
    print(f"CPU per {PER:,} events (core-s):")
    rows = {
        "consume (confluent-kafka loop)": raw["consume"],
        "broker serving the reads": raw["broker"],
        **stages,
        "compiled parse (Rust, simd-json)": compiled if compiled is not None else float("nan"),
    }
    for name, value in rows.items():
        print(f"  {name:<34} {value:6.2f}")
    print(f"  (the batch's versions: {versions:,}; values its events set: {set_values:,})")
    reading = raw["consume"] + raw["broker"]
    decoders = {"today's decoder": stages["decode + lake (current)"]}
    if compiled is not None:  # the compiled parse in place of the decode, no glue counted
        decoders["a compiled decoder"] = compiled + stages["lake files"]
    stores = {"today's store": stages["store (current)"], "sparse versions": stages[SPARSE]}
    # The run's checks as today's for both stores: sparse versions would check other rules.
    for store, store_cpu in stores.items():
        writer = store_cpu + stages["run checks"]
        print(
            f"{store}, the writer (store + checks, one batch at a time): {writer:.2f} core-s"
            f" = {writer / wall:.1f}x the wall-clock budget"
        )
        for decoder, decoder_cpu in decoders.items():
            total = reading + decoder_cpu + writer
            print(f"{store} with {decoder}: {total:.2f} core-s = {total / budget:.1f}x the budget")


if __name__ == "__main__":
    main()
