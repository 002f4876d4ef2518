"""Offsets deleted by Kafka's retention before they were read become a recorded gap.

Against the real broker: ``delete_records`` removes the beginning of a partition (what
retention does, deterministically), the sensor plans past it, and the run writes one
``RETENTION_LOSS`` row into ``gaps``, once, however often it runs. Deleted after planning
(before the run, or while it reads), the run finds the loss itself and records it the same way.
"""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from sf_sync import ingest, warehouse
from sf_sync.ingest import READ_ATTEMPTS, ingest_ranges
from sf_sync.invariants import RANGE_HOLES, violations
from sf_sync.kafka import client as kc
from sf_sync.kafka.client import RangeUnavailable
from sf_sync.ranges import OffsetRange, decode_cursor, encode_cursor
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
    # The asset checks ran too; contiguity counts recorded losses as covered offsets.
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(
        ["no_duplicate_changes", "contiguous_offset_ranges", "non_overlapping_versions"], True
    )


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
    admin = kc.admin_client(project.bootstrap)
    committed = kc.committed_offsets(admin, project.settings.group_id, [(topic, 1)])
    assert committed == {(topic, 1): 12}  # the run moved the group past the loss


# Retention racing the run: the offsets were there when the sensor planned them and are gone
# (in part or in full) when the run reads them. The run finds out itself.


def _state(project: Project, topic: str) -> dict[str, list[tuple]]:
    """Everything a re-run could change for the topic, timestamps included."""
    with project.history() as con:
        return {
            "gaps": con.execute(
                "SELECT * FROM gaps WHERE topic = ? ORDER BY ALL", [topic]
            ).fetchall(),
            "ranges": con.execute(
                "SELECT * FROM ingested_ranges WHERE topic = ? ORDER BY ALL", [topic]
            ).fetchall(),
            "raw": con.execute(
                "SELECT kafka_partition, kafka_offset FROM raw_events WHERE topic = ? ORDER BY ALL",
                [topic],
            ).fetchall(),
        }


def _spans(project: Project, topic: str, partition: int) -> tuple[list[tuple], list[tuple]]:
    """``(ingested, lost)`` half-open offset spans of a partition, in offset order."""
    with project.history() as con:
        return _spans_in(con, topic, partition)


def _spans_in(con, topic: str, partition: int) -> tuple[list[tuple], list[tuple]]:
    ingested = con.execute(
        """SELECT start_offset, end_offset FROM ingested_ranges
           WHERE topic = ? AND kafka_partition = ? ORDER BY ALL""",
        [topic, partition],
    ).fetchall()
    lost = con.execute(
        """SELECT kafka_offset, event_key FROM gaps
           WHERE gap_type = 'RETENTION_LOSS' AND topic = ? AND kafka_partition = ?
           ORDER BY ALL""",
        [topic, partition],
    ).fetchall()
    return ingested, [(off, int(key.rsplit(",", 1)[1].rstrip(")"))) for off, key in lost]


def _covered(ingested: list[tuple], lost: list[tuple]) -> list[int]:
    """Every offset stored or recorded as lost, with repeats (an offset in both is a bug)."""
    return sorted(o for a, b in ingested + lost for o in range(a, b))


def _contiguous(project: Project) -> tuple[int, list]:
    with project.history() as con:
        return violations(con, RANGE_HOLES)


def _committed(project: Project, topic: str, partition: int) -> int | None:
    admin = kc.admin_client(project.bootstrap)
    got = kc.committed_offsets(admin, project.settings.group_id, [(topic, partition)])
    return got.get((topic, partition))


def _planned_after_first_ten(project: Project, instance: dg.DagsterInstance) -> dg.RunRequest:
    """Offsets 0..9 ingested, 10..19 produced and planned (not yet run) on partition 0."""
    topic = project.account_topic
    project.produce(topic, [(None, b"{}", 0)] * 10)
    first = _tick()
    for run in first.run_requests:
        _execute(instance, run)
    project.produce(topic, [(None, b"{}", 0)] * 10)
    second = _tick(first.cursor)
    (request,) = second.run_requests
    config = request.run_config["ops"]["ingest_kafka_ranges"]["config"]
    assert [OffsetRange.decode(r) for r in config["ranges"]] == [OffsetRange(topic, 0, 10, 20)]
    assert "lost_ranges" not in config  # nothing was missing when the sensor planned
    return request


def test_head_deleted_after_planning_is_a_gap_and_the_rest_is_read(project: Project) -> None:
    topic = project.account_topic
    instance = dg.DagsterInstance.ephemeral()
    request = _planned_after_first_ten(project, instance)
    _delete_before(project, topic, 0, 14)  # between planning and the run

    _execute(instance, request)

    expected = (
        "salesforce", "*", None, "RETENTION_LOSS", f"{topic}:0:[10,14)", topic, 0, 10, True, True,
    )  # fmt: skip
    assert _retention_gaps(project) == [expected]
    assert _spans(project, topic, 0) == ([(0, 10), (14, 20)], [(10, 14)])
    state = _state(project, topic)
    assert state["raw"] == [(0, o) for o in [*range(10), *range(14, 20)]]
    assert _contiguous(project) == (0, [])
    assert _committed(project, topic, 0) == 20

    _execute(instance, request)  # a retry, or a re-run by hand: nothing changes
    assert _state(project, topic) == state


def test_range_deleted_completely_after_planning_is_one_gap(project: Project) -> None:
    topic = project.account_topic
    instance = dg.DagsterInstance.ephemeral()
    request = _planned_after_first_ten(project, instance)
    _delete_before(project, topic, 0, 20)  # the whole planned range is gone

    _execute(instance, request)

    assert [g[4] for g in _retention_gaps(project)] == [f"{topic}:0:[10,20)"]
    assert _spans(project, topic, 0) == ([(0, 10)], [(10, 20)])
    assert _contiguous(project) == (0, [])
    assert _committed(project, topic, 0) == 20
    state = _state(project, topic)
    _execute(instance, request)
    assert _state(project, topic) == state

    # Reading goes on behind the loss, and the partition stays contiguous across it.
    project.produce(topic, [(None, b"{}", 0)] * 5)
    (after,) = _tick(encode_cursor({topic: {0: 20}})).run_requests
    _execute(instance, after)
    assert _spans(project, topic, 0) == ([(0, 10), (20, 25)], [(10, 20)])
    assert _contiguous(project) == (0, [])


def _deleting_while_storing(
    project: Project, monkeypatch: pytest.MonkeyPatch, ahead: int, last: int
) -> list[int]:
    """After each stored batch, retention (``delete_records``) deletes up to ``ahead`` offsets
    past it, no further than ``last``: the reads already under way or still to come meet
    offsets that were there when the run checked. Returns the offsets deleted up to."""
    store = ingest.store_decoded
    deleted_to: list[int] = []

    def store_then_delete(con, settings, decoded, ranges, run_id, **kwargs):
        counts = store(con, settings, decoded, ranges, run_id, **kwargs)
        target = min(max(r.end for r in ranges) + ahead, last)
        if target > (deleted_to[-1] if deleted_to else 0):
            _delete_before(project, project.account_topic, 0, target)
            deleted_to.append(target)
        return counts

    monkeypatch.setattr(ingest, "store_decoded", store_then_delete)
    return deleted_to


def test_offsets_deleted_while_the_run_reads_them_are_a_gap(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = project.account_topic
    project.produce(topic, [(None, b"{}", 0)] * 30)
    settings = replace(project.settings, batch_messages=10)  # batches [0,10) [10,20) [20,30)
    deleted_to = _deleting_while_storing(project, monkeypatch, ahead=15, last=25)
    requested = [OffsetRange(topic, 0, 0, 30)]

    report = ingest_ranges(settings, requested, run_id="race")

    # Storing [0,10) deleted up to 25; the read of [20,30) began after that and met the
    # deletion (so did the read of [10,20) if it was still under way): the run looked again.
    assert deleted_to == [25]
    ingested, lost = _spans(project, topic, 0)
    assert ingested[0] == (0, 10) and ingested[-1] == (25, 30)
    assert lost and lost[-1][1] == 25
    assert _covered(ingested, lost) == list(range(30))  # each offset once, stored or lost
    assert report.gaps == len(lost)
    assert sorted((r.start, r.end) for r in report.lost) == lost
    assert f"{sum(b - a for a, b in lost)} found deleted by retention" in report.summary()
    state = _state(project, topic)
    assert state["raw"] == [(0, o) for a, b in ingested for o in range(a, b)]
    assert _contiguous(project) == (0, [])
    assert _committed(project, topic, 0) == 30

    again = ingest_ranges(settings, requested, run_id="again")
    assert (again.read, again.lost, again.gaps, again.messages) == ((), (), 0, 0)
    assert "30 offsets done by earlier runs, 0 found deleted" in again.summary()
    assert _state(project, topic) == state


def test_retention_outrunning_the_reads_fails_the_run_after_bounded_attempts(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = project.account_topic
    project.produce(topic, [(None, b"{}", 0)] * 300)
    settings = replace(project.settings, batch_messages=10)
    store = ingest.store_decoded
    deleted_to = _deleting_while_storing(project, monkeypatch, ahead=15, last=300)
    requested = [OffsetRange(topic, 0, 0, 300)]

    with pytest.raises(RangeUnavailable, match=f"after {READ_ATTEMPTS} reads"):
        ingest_ranges(settings, requested, run_id="outrun")

    assert len(deleted_to) <= 2 * READ_ATTEMPTS  # one or two batches stored per read
    assert _committed(project, topic, 0) is None  # the group does not move past a failed run
    # What the failed run kept is consistent: its stored and lost spans tile a head.
    with warehouse.writer(settings.home) as con:  # a failed run publishes nothing
        ingested, lost = _spans_in(con, topic, 0)
        assert violations(con, RANGE_HOLES) == (0, [])
    assert lost and _covered(ingested, lost) == list(range(ingested[-1][1]))
    assert ingested[-1][1] < 300  # at most 35 offsets per read: 20 stored, 15 deleted ahead

    monkeypatch.setattr(ingest, "store_decoded", store)  # retention stops; a retry finishes
    ingest_ranges(project.settings, requested, run_id="retry")  # one batch
    assert _covered(*_spans(project, topic, 0)) == list(range(300))
    assert _contiguous(project) == (0, [])
    assert _committed(project, topic, 0) == 300


def test_out_of_range_offsets_retention_did_not_delete_fail_at_once(project: Project) -> None:
    topic = project.account_topic
    project.produce(topic, [(None, b"{}", 0)] * 10)

    with pytest.raises(RangeUnavailable, match="reading them again cannot help"):
        ingest_ranges(project.settings, [OffsetRange(topic, 0, 0, 50)])  # past the end

    with warehouse.writer(project.settings.home) as con:  # a failed run publishes nothing
        assert con.execute("SELECT count(*) FROM gaps").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM ingested_ranges").fetchone() == (0,)
    assert _committed(project, topic, 0) is None
