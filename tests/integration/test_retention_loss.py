"""Offsets deleted by Kafka's retention before they were read become a recorded gap.

Against the real broker: ``delete_records`` removes the beginning of a partition (what
retention does, deterministically), the sensor plans past it, and the run writes one
``RETENTION_LOSS`` row into ``gaps``, once, however often it runs.
"""

from __future__ import annotations

import dagster as dg
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from sf_sync.ranges import OffsetRange, decode_cursor
from sf_sync.resources import SfSyncResource
from tests.conftest import Project


def _tick(cursor: str | None = None):
    from sensors.kafka_offsets import kafka_offsets_sensor

    with dg.build_sensor_context(cursor=cursor, resources={"sf_sync": SfSyncResource()}) as ctx:
        return kafka_offsets_sensor(ctx)


def _delete_before(project: Project, topic: str, partition: int, offset: int) -> None:
    admin = AdminClient({"bootstrap.servers": project.bootstrap})
    futures = admin.delete_records([TopicPartition(topic, partition, offset)])
    for future in futures.values():
        assert future.result(timeout=30).low_watermark == offset


def _execute(instance: dg.DagsterInstance, request: dg.RunRequest) -> None:
    from definitions import defs

    result = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config=request.run_config, partition_key=request.partition_key, instance=instance
    )
    assert result.success


def _retention_gaps(project: Project) -> list[tuple]:
    with project.history() as con:
        return con.execute(
            """SELECT source, object, record_id, gap_type, event_key, topic, kafka_partition,
                      kafka_offset, commit_timestamp IS NOT NULL, detected_at IS NOT NULL
               FROM gaps WHERE gap_type = 'RETENTION_LOSS' ORDER BY ALL"""
        ).fetchall()


def test_offsets_deleted_past_the_cursor_are_recorded_once_by_the_run(project: Project) -> None:
    topic = project.account_topic
    project.produce(topic, [(None, b"{}", 0)] * 10)
    first = _tick()
    assert decode_cursor(first.cursor)[topic][0] == 10
    # The sensor only reads offsets: nothing of the warehouse exists yet.
    assert not (project.settings.home / "warehouse.duckdb").exists()
    instance = dg.DagsterInstance.ephemeral()
    for run in first.run_requests:
        _execute(instance, run)
    project.produce(topic, [(None, b"{}", 0)] * 10)
    _delete_before(project, topic, 0, 15)  # offsets 10..14 were never read

    second = _tick(first.cursor)

    (request,) = second.run_requests
    config = request.run_config["ops"]["ingest_kafka_ranges"]["config"]
    assert [OffsetRange.decode(r) for r in config["ranges"]] == [OffsetRange(topic, 0, 15, 20)]
    assert config["lost_ranges"] == [f"{topic}:0:10:15"]
    assert decode_cursor(second.cursor)[topic][0] == 20
    assert _retention_gaps(project) == []  # planning wrote nothing

    _execute(instance, request)
    _execute(instance, request)  # a retried run records the same loss once

    expected = (
        "salesforce", "*", None, "RETENTION_LOSS", f"{topic}:0:[10,15)", topic, 0, 10, True, True,
    )  # fmt: skip
    assert _retention_gaps(project) == [expected]
    with project.history() as con:
        (stored,) = con.execute(
            "SELECT count(*) FROM ingested_ranges WHERE topic = ? AND kafka_partition = 0",
            [topic],
        ).fetchone()
    assert stored == 2  # [0,10) and [15,20): the lost offsets are a gap, not a range


def test_offsets_deleted_past_the_committed_offset_are_recorded(project: Project) -> None:
    topic = project.account_topic
    project.produce(topic, [(None, b"{}", 1)] * 8)
    project.ingest()  # the group's committed offset of partition 1 is now 8
    project.produce(topic, [(None, b"{}", 1)] * 4)
    _delete_before(project, topic, 1, 12)  # everything not yet read is gone

    project.ingest()  # a fresh sensor (no cursor) starts from the committed offset
    project.ingest()  # nothing new: no run, no second row

    assert [g[4] for g in _retention_gaps(project)] == [f"{topic}:1:[8,12)"]
    from sf_sync.kafka import client as kc

    admin = kc.admin_client(project.bootstrap)
    committed = kc.committed_offsets(admin, project.settings.group_id, [(topic, 1)])
    assert committed == {(topic, 1): 12}  # the run moved the group past the loss
