"""One sensor tick over 3 topics of 12 partitions each, against a bare metadata request.

    .venv/bin/python bench/sensor_tick.py

Creates the topics, puts a few messages in every partition (with timestamps over the last
three days, so the day split has work to do), then times in the same run:

* baseline: ``AdminClient.list_topics()`` (one metadata round trip);
* first tick: ``plan_runs`` with an empty cursor (start offsets, group offsets, day bounds);
* steady tick: ``plan_runs`` with the cursor the first tick returned and new messages.

Target: a tick under 2 s. Needs the broker (``sf-sync kafka start``).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from sf_sync.config import load_settings
from sf_sync.kafka.admin import delete_topics, ensure_topics
from sf_sync.kafka.client import admin_client
from sf_sync.kafka.produce import produce
from sf_sync.planning import plan_runs


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    bootstrap = os.environ.get("SF_SYNC_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    suffix = uuid.uuid4().hex[:6]
    topics = [f"bench.tick.{i}.{suffix}" for i in range(3)]
    ensure_topics(bootstrap, topics, partitions=12)
    now = datetime.now(UTC)
    for days_ago in (2, 1, 0):
        ts = int((now - timedelta(days=days_ago)).timestamp() * 1000)
        for topic in topics:
            produce(bootstrap, topic, [(None, b"{}", p) for p in range(12)], timestamp_ms=ts)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "sf-sync.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "home": tmp,
                    "kafka": {"bootstrap": bootstrap, "group_id": f"bench-{suffix}"},
                    "objects": {"Account": {}},
                    "streams": [
                        {"name": f"s{i}", "topic": t, "format": "cometd"}
                        for i, t in enumerate(topics)
                    ],
                }
            )
        )
        settings = load_settings(config)
        admin = admin_client(bootstrap)
        base, _ = timed(lambda: admin.list_topics(timeout=5))
        first, (plans, cursor) = timed(lambda: plan_runs(settings, {}))
        for topic in topics:
            produce(bootstrap, topic, [(None, b"{}", p) for p in range(12)])
        steady, (later, _) = timed(lambda: plan_runs(settings, cursor))
    delete_topics(bootstrap, topics)
    print(f"metadata request (baseline): {base * 1000:7.1f} ms")
    print(
        f"first tick, empty cursor:    {first * 1000:7.1f} ms  ({first / base:.0f}x baseline,"
        f" {len(plans)} runs over {sum(len(p.ranges) for p in plans)} ranges)"
    )
    print(
        f"steady tick, with cursor:    {steady * 1000:7.1f} ms  ({steady / base:.0f}x baseline,"
        f" {len(later)} runs)"
    )
    print(f"target < 2000 ms: {'met' if max(first, steady) < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
