"""The floor of the store path: the least DuckDB work any bulk decoder of these messages does.

    .venv/bin/python bench/parse_floor.py --events 100000

Builds the same in-memory CometD batch as ``profile_store.py`` and times, each alone, with the
DuckDB settings of the writer: one JSON parse per message (the cheapest useful one), the
unnest of every body into (event, field, value) rows, writing those rows into a table (no
ord, no index), and the raw bytes to a Parquet file. The sum is a lower bound for any design
that keeps bulk SQL in DuckDB; compare it with the raw consume rate of ``ingest_throughput``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.profile_store import raw_batches  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=100_000)
    args = p.parse_args()
    (raw,) = raw_batches(args.events, 1)
    with tempfile.TemporaryDirectory(prefix="sf-sync-floor-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "floor.duckdb"))
        con.execute("SET memory_limit = '700MB'")
        con.register("batch_arrow", raw)
        steps = {
            "decode bytes to text (no parse)": "CREATE OR REPLACE TEMP TABLE t AS"
            " SELECT kafka_offset, decode(value) AS text FROM batch_arrow",
            "json_valid only (a scan of every byte)": "SELECT count(*) FROM t"
            " WHERE json_valid(text)",
            "one parse: document to MAP(VARCHAR, JSON)": "CREATE OR REPLACE TEMP TABLE m AS"
            " SELECT kafka_offset, json_transform(text, '\"MAP(VARCHAR, JSON)\"') AS top FROM t",
            "one parse: payload to a MAP, event typed": "CREATE OR REPLACE TEMP TABLE s AS"
            ' SELECT kafka_offset, json_transform(text, \'{"payload": "MAP(VARCHAR, JSON)",'
            ' "event": {"replayId": "BIGINT"}}\') AS doc FROM t',
            "unnest bodies to (event, field, value)": "CREATE OR REPLACE TEMP TABLE kv AS"
            " SELECT kafka_offset, unnest(map_keys(doc.payload)) AS field,"
            " unnest(map_values(doc.payload)) AS value FROM s",
            "insert those rows into a table": "CREATE OR REPLACE TABLE cv AS SELECT * FROM kv",
            "CHECKPOINT (the table was written in the WAL)": "CHECKPOINT",
            "raw bytes to Parquet (zstd)": f"COPY (SELECT * FROM batch_arrow) TO '{tmp}/l.parquet'"
            " (FORMAT parquet, COMPRESSION zstd)",
        }
        total = 0.0
        for label, sql in steps.items():
            t0 = time.perf_counter()
            con.execute(sql)
            dt = time.perf_counter() - t0
            # Two steps are for comparison only: a bare scan, and the parse the floor replaces.
            if not label.startswith(("json_valid", "one parse: document")):
                total += dt
            print(f"{dt:7.3f}s  {label}")
        (rows,) = con.execute("SELECT count(*) FROM kv").fetchone()
        print(f"{rows:,} body values; floor (decode, one parse, unnest, insert, checkpoint,")
        print(f"  parquet) {total:.2f}s per {args.events:,} = {args.events / total:,.0f} events/s")


if __name__ == "__main__":
    main()
