"""The sensor against the real broker: fixed, capped ranges; day partitions; a clear skip."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import yaml

from sensors.kafka_offsets import UNREACHABLE, kafka_offsets_sensor
from sf_sync.ranges import OffsetRange, decode_cursor
from sf_sync.resources import SfSyncResource
from tests.conftest import Project


def tick(cursor: str | None = None, **resource):
    with dg.build_sensor_context(
        cursor=cursor, resources={"sf_sync": SfSyncResource(**resource)}
    ) as context:
        return kafka_offsets_sensor(context)


def ranges_of(result) -> list[list[OffsetRange]]:
    return [
        [
            OffsetRange.decode(r)
            for r in rr.run_config["ops"]["ingest_kafka_ranges"]["config"]["ranges"]
        ]
        for rr in result.run_requests
    ]


def _cap(project: Project, cap: int) -> None:
    path = project.root / "sf-sync.yaml"
    config = yaml.safe_load(path.read_text())
    config["kafka"]["max_range_messages"] = cap
    path.write_text(yaml.safe_dump(config))


def test_unreachable_broker_is_a_skip_with_a_reason() -> None:
    started = time.monotonic()
    result = tick(kafka_bootstrap="127.0.0.1:9")
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message.startswith(UNREACHABLE) and "127.0.0.1:9" in result.skip_message
    assert time.monotonic() - started < 30  # well inside Dagster's 60 s tick timeout


def test_ranges_are_capped_contiguous_and_the_cursor_holds_the_next_start(
    project: Project,
) -> None:
    _cap(project, 300)
    topic = project.account_topic
    project.produce(topic, [(None, b"{}", 0)] * 1000 + [(None, b"{}", 1)] * 10)

    first = tick()

    runs = ranges_of(first)
    assert len(runs) == 4 and all(
        len({(r.topic, r.partition) for r in run}) == len(run) for run in runs
    )
    by_partition: dict[int, list[OffsetRange]] = {}
    for run in runs:
        for r in run:
            if r.topic == topic:
                assert r.size <= 300
                by_partition.setdefault(r.partition, []).append(r)
    assert [(r.start, r.end) for r in by_partition[0]] == [
        (0, 300),
        (300, 600),
        (600, 900),
        (900, 1000),
    ]
    assert [(r.start, r.end) for r in by_partition[1]] == [(0, 10)]
    cursor = decode_cursor(first.cursor)
    assert cursor[topic] == {0: 1000, 1: 10, 2: 0}

    again = tick(first.cursor)
    assert not again.run_requests and decode_cursor(again.cursor) == cursor

    project.produce(topic, [(None, b"{}", 0)] * 5)
    later = tick(first.cursor)
    assert ranges_of(later) == [[OffsetRange(topic, 0, 1000, 1005)]]


def test_offsets_are_grouped_into_days_of_their_kafka_timestamps(project: Project) -> None:
    topic = project.account_topic
    now = datetime.now(UTC)
    two_days_ago = int((now - timedelta(days=2)).timestamp() * 1000)
    project.produce(topic, [(None, b"{}", 0)] * 7, timestamp_ms=two_days_ago)
    project.produce(topic, [(None, b"{}", 0)] * 3)

    result = tick()

    days = {rr.partition_key: ranges_of_one(rr) for rr in result.run_requests}
    old_day = (now - timedelta(days=2)).date().isoformat()
    assert days == {
        old_day: [OffsetRange(topic, 0, 0, 7)],
        now.date().isoformat(): [OffsetRange(topic, 0, 7, 10)],
    }


def ranges_of_one(request: dg.RunRequest) -> list[OffsetRange]:
    return [
        OffsetRange.decode(r)
        for r in request.run_config["ops"]["ingest_kafka_ranges"]["config"]["ranges"]
    ]
