"""The code location loads, and a day partition can be backfilled without a sensor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from definitions import defs
from sf_sync import synth
from tests.conftest import Project


def test_definitions_load_with_job_sensor_and_checks() -> None:
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("ingest_job")
    assert job.partitions_def is not None
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {
        "no_duplicate_changes",
        "contiguous_offset_ranges",
        "non_overlapping_versions",
    }


def test_backfilling_a_day_reads_exactly_that_days_offsets(project: Project) -> None:
    events = synth.generate(seed=4, records=5, events=30)
    msgs = list(synth.messages(events))
    yesterday = datetime.now(UTC) - timedelta(days=1)
    project.produce(
        project.account_topic,
        [(k, v, 0) for k, v in msgs[:20]],
        timestamp_ms=int(yesterday.timestamp() * 1000),
    )
    project.produce(project.account_topic, [(k, v, 0) for k, v in msgs[20:]])

    job = defs.resolve_job_def("ingest_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            partition_key=yesterday.date().isoformat(), instance=instance
        )
    assert result.success
    con = project.history()
    assert con.execute(
        "SELECT min(kafka_offset), max(kafka_offset) FROM raw_events"
    ).fetchone() == (0, 19)
