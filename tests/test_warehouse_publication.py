"""The analysts' copy is refreshed after runs, at most every ``publish_every_s``; what runs
leave unpublished is published by the sensor's job or at the end of ``sf-sync ingest``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sf_sync import synth, warehouse
from tests.conftest import Project
from tests.integration.history_compare import assert_same_history, stored_history


def _write(home: Path, value: int, every_s: float) -> None:
    """One writer session that commits a row, publishing as a run does."""
    with warehouse.writer(home, publish=True, publish_every_s=every_s) as con:
        con.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
        con.execute("INSERT INTO t VALUES (?)", [value])


def _published_rows(home: Path) -> int:
    con = warehouse.connect_history(home)
    try:
        return con.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        con.close()


def test_every_run_publishes_by_default(tmp_path: Path) -> None:
    for value in range(3):
        _write(tmp_path, value, every_s=0)
        assert _published_rows(tmp_path) == value + 1
        assert not warehouse.publication_pending(tmp_path)


def test_runs_publish_at_most_every_interval_and_the_rest_is_published_later(
    tmp_path: Path,
) -> None:
    _write(tmp_path, 1, every_s=3600)  # nothing published yet: published at once
    assert _published_rows(tmp_path) == 1
    _write(tmp_path, 2, every_s=3600)  # published a moment ago: the copy waits
    assert _published_rows(tmp_path) == 1
    assert warehouse.publication_pending(tmp_path)
    assert not warehouse.publication_due(tmp_path, 3600)
    assert warehouse.publication_due(tmp_path, 0)
    assert warehouse.publish(tmp_path) is True
    assert _published_rows(tmp_path) == 2
    assert not warehouse.publication_pending(tmp_path)
    assert warehouse.publish(tmp_path) is False  # nothing new: no copy


def test_publication_is_due_once_the_copy_is_old_enough(tmp_path: Path) -> None:
    _write(tmp_path, 1, every_s=0.5)
    _write(tmp_path, 2, every_s=0.5)
    assert _published_rows(tmp_path) == 1
    time.sleep(0.6)
    assert warehouse.publication_due(tmp_path, 0.5)
    _write(tmp_path, 3, every_s=0.5)
    assert _published_rows(tmp_path) == 3


def test_a_lost_or_torn_marker_only_means_copying_again(tmp_path: Path) -> None:
    _write(tmp_path, 1, every_s=3600)
    marker = tmp_path / warehouse.PUBLISHED
    assert json.loads(marker.read_text())["made_from"] is not None
    marker.write_text("{not json")
    assert warehouse.publication_due(tmp_path, 3600)
    marker.unlink()
    assert warehouse.publish(tmp_path) is True


def test_the_sensor_asks_for_a_publication_run_when_one_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sf-sync.yaml"
    config.write_text(
        "home: state\nduckdb: {publish_every_s: 0.5}\nobjects: {Account: {}}\n"
        "streams: [{name: a, topic: t, format: cometd}]\n"
    )
    for var in ("SF_SYNC_HOME", "SF_SYNC_KAFKA_BOOTSTRAP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SF_SYNC_CONFIG", str(config))
    from definitions import defs
    from sf_sync.resources import SfSyncResource

    home = tmp_path / "state"
    sensor = defs.resolve_sensor_def("publish_history_sensor")

    def tick():
        with dg.build_sensor_context(resources={"sf_sync": SfSyncResource()}) as context:
            return sensor(context)

    assert isinstance(tick(), dg.SkipReason)  # no warehouse yet
    _write(home, 1, every_s=0.5)
    _write(home, 2, every_s=0.5)
    assert isinstance(tick(), dg.SkipReason)  # pending, but the copy is younger than 0.5 s
    time.sleep(0.6)
    with warehouse.writer(home):  # a run in progress publishes when it ends, if due
        assert warehouse.writer_active(home)
        assert isinstance(tick(), dg.SkipReason)
    assert not warehouse.writer_active(home)
    request = tick()
    assert isinstance(request, dg.RunRequest)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("publish_history_job").execute_in_process(instance=instance)
    assert result.success
    assert _published_rows(home) == 2
    assert isinstance(tick(), dg.SkipReason)


def test_sf_sync_ingest_ends_with_everything_published(project: Project) -> None:
    """Several runs, one publication at most per hour: the runner publishes the rest."""
    config_path = project.root / "sf-sync.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["kafka"]["max_range_messages"] = 10  # several runs
    config["duckdb"] = {"publish_every_s": 3600}
    config_path.write_text(yaml.safe_dump(config))
    events = synth.generate(seed=3, records=4, events=60)
    project.produce(project.account_topic, synth.messages(events))
    runs = project.ingest()
    assert len(runs) > 1
    home = project.settings.home
    assert not warehouse.publication_pending(home)
    with project.history() as con:
        assert_same_history(stored_history(con), synth.expected_history(events))
