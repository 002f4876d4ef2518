"""Ingest throughput against the raw confluent-kafka consume rate of the same topic.

    .venv/bin/python bench/ingest_throughput.py --events 1000000

Produces N synthetic CDC events of about 1 KB (CometD JSON; 1 create per 10 events, the rest
updates, deletes and undeletes) to a new 3-partition topic, then in the same run:

1. baseline: a plain confluent-kafka consumer reads the whole topic (values touched, nothing
   else), in a child process;
2. sf-sync: the sensor's planning and ``ingest_ranges`` (exactly what the Dagster run does) into
   a fresh lake and history, in a child process whose peak RSS is reported.

Prints events/s for both and their ratio. Needs the broker (``sf-sync kafka start``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu_seconds() -> float:
    """User + system CPU of this process so far, every thread."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def produce_topic(bootstrap: str, topic: str, events: int, seed: int) -> float:
    from sf_sync import synth
    from sf_sync.kafka.admin import ensure_topics
    from sf_sync.kafka.produce import produce

    ensure_topics(bootstrap, [topic], partitions=3)
    stream = synth.generate(seed, records=max(1, events // 10), events=events)
    total = 0

    def counted():
        nonlocal total
        for key, value in synth.messages(stream):
            total += len(value)
            yield key, value

    produce(bootstrap, topic, counted())
    return total / events


def child_baseline(bootstrap: str, topic: str, expected: int) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "queued.max.messages.kbytes": 256 * 1024,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(3)])
    seen = size = 0
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    while seen < expected:
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if m.error() is None:
                seen += 1
                size += len(m.value())
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    c.close()
    return {
        "messages": seen,
        "seconds": elapsed,
        "rate": seen / elapsed,
        "cpu_seconds": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child_ingest(config: str) -> dict:
    from sf_sync.config import load_settings
    from sf_sync.ingest import ingest_ranges
    from sf_sync.planning import plan_runs

    settings = load_settings(config)
    t0 = time.perf_counter()
    plans, _cursor = plan_runs(settings, {})
    messages = 0
    seconds: dict[str, float] = {}
    for plan in plans:
        report = ingest_ranges(settings, plan.ranges)
        messages += report.messages
        for k, v in report.seconds.items():
            seconds[k] = seconds.get(k, 0.0) + v
    elapsed = time.perf_counter() - t0
    return {
        "messages": messages,
        "runs": len(plans),
        "seconds": elapsed,
        "rate": messages / elapsed,
        "phases": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--batch-messages", type=int, default=None, help="the run's batch size (default: config)"
    )
    p.add_argument(
        "--bootstrap", default=os.environ.get("SF_SYNC_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    p.add_argument("--topic", help="reuse this topic of an earlier run instead of producing")
    p.add_argument("--child", nargs="+")
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        result = (
            child_baseline(rest[0], rest[1], int(rest[2]))
            if kind == "baseline"
            else child_ingest(rest[0])
        )
        print(json.dumps(result))
        return

    if args.topic:  # produced by an earlier run with the same --events and --seed
        topic = args.topic
        print(f"reusing {topic} ({args.events} events)")
    else:
        topic = f"bench.cdc.Account.{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        avg = produce_topic(args.bootstrap, topic, args.events, args.seed)
        print(
            f"produced {args.events} events to {topic}, {avg:.0f} bytes on average,"
            f" in {time.perf_counter() - t0:.1f}s"
        )
    with tempfile.TemporaryDirectory(prefix="sf-sync-bench-") as tmp:
        config = Path(tmp) / "sf-sync.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "home": str(Path(tmp) / "state"),
                    "kafka": {
                        "bootstrap": args.bootstrap,
                        "group_id": f"bench-{uuid.uuid4().hex[:6]}",
                        **({"batch_messages": args.batch_messages} if args.batch_messages else {}),
                    },
                    "objects": {
                        "Account": {
                            "field_types": {
                                "CreatedDate": "datetime",
                                "LastModifiedDate": "datetime",
                            }
                        }
                    },
                    "streams": [{"name": "accounts", "topic": topic, "format": "cometd"}],
                }
            )
        )
        base = run_child("--child", "baseline", args.bootstrap, topic, str(args.events))
        ours = run_child("--child", "ingest", str(config))
    print(
        f"raw confluent-kafka consume: {base['rate']:>10,.0f} msg/s "
        f"({base['seconds']:.1f}s, peak RSS {base['peak_rss_mb']:.0f} MB)"
    )
    print(
        f"sf-sync ingest (lake+history): {ours['rate']:>8,.0f} events/s "
        f"({ours['seconds']:.1f}s over {ours['runs']} runs, peak RSS {ours['peak_rss_mb']:.0f} MB)"
    )
    print(f"ratio: {ours['rate'] / base['rate']:.1%} of the raw consume rate")
    print("phases (s): " + ", ".join(f"{k}={v:.1f}" for k, v in ours["phases"].items()))


if __name__ == "__main__":
    main()
