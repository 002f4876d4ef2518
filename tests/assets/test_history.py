"""The code location loads, and a day partition can be backfilled without a sensor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from definitions import defs
from sf_sync import synth, warehouse
from tests.conftest import Project

RUN_CHECK_NAMES = {"no_duplicate_changes", "contiguous_offset_ranges", "non_overlapping_versions"}
WHOLE_HISTORY_CHECK_NAMES = {
    "no_duplicate_changes_in_history",
    "non_overlapping_versions_in_history",
}


def test_definitions_load_with_job_sensor_and_checks() -> None:
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("ingest_job")
    assert job.partitions_def is not None
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {*RUN_CHECK_NAMES, *WHOLE_HISTORY_CHECK_NAMES}
    # A run checks what it wrote; the whole history is checked by a daily job of its own.
    assert {key.name for key in job.asset_layer.asset_graph.asset_check_keys} == RUN_CHECK_NAMES
    daily = defs.resolve_job_def("history_checks_job")
    assert {k.name for k in daily.asset_layer.asset_graph.asset_check_keys} == (
        WHOLE_HISTORY_CHECK_NAMES
    )
    schedule = defs.resolve_schedule_def("history_checks_schedule")
    assert schedule.job_name == "history_checks_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_a_run_reports_what_its_checks_found_in_what_it_wrote(project: Project) -> None:
    events = synth.generate(seed=6, records=3, events=30)
    msgs = [(k, v, 0) for k, v in synth.messages(events)]
    job = defs.resolve_job_def("ingest_job")
    today = datetime.now(UTC).date().isoformat()
    project.produce(project.account_topic, msgs[:15])
    with dg.instance_for_test() as instance:
        first = job.execute_in_process(partition_key=today, instance=instance)
        assert _evaluations(first) == dict.fromkeys(RUN_CHECK_NAMES, True)
        # Every record's last closed version now overlaps its open one.
        with warehouse.writer(project.settings.home) as con:
            (closed,) = con.execute("SELECT closed_table FROM version_tables").fetchone()
            (broken,) = con.execute(
                f"UPDATE {closed} SET valid_to = TIMESTAMPTZ '2100-01-01'"
                f" WHERE (record_id, version) IN"
                f" (SELECT record_id, max(version) FROM {closed} GROUP BY ALL)"
            ).fetchone()
        assert broken > 0
        project.produce(project.account_topic, msgs[15:])
        second = job.execute_in_process(
            partition_key=today, instance=instance, raise_on_error=False
        )
        # The daily job checks the whole published history (the failed run published).
        daily = defs.resolve_job_def("history_checks_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert not second.success  # a blocking check failed
    assert _evaluations(second) == {
        "no_duplicate_changes": True,
        "contiguous_offset_ranges": True,
        "non_overlapping_versions": False,
    }
    assert _evaluations(daily) == {
        "no_duplicate_changes_in_history": True,
        "non_overlapping_versions_in_history": False,
    }


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


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
