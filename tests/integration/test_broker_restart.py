"""The broker stops in the middle of a run and comes back: the run fails cleanly (or
finishes), nothing is lost, and the next ingest catches up to the exact history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sf_sync import synth
from sf_sync.kafka import broker
from sf_sync.kafka.admin import ensure_topics
from sf_sync.kafka.produce import produce
from tests.conftest import REPO, _free_port, write_config
from tests.integration.history_compare import assert_same_history, stored_history


@pytest.fixture
def own_broker(tmp_path: Path):
    """A broker this test may stop and start (the shared one must stay up)."""
    state = tmp_path / "kafka-own"
    status = broker.start_broker(state, port=_free_port())
    yield state, status.bootstrap
    broker.stop_broker(state)


def test_broker_stop_mid_run_loses_nothing(
    own_broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, bootstrap = own_broker
    port = int(bootstrap.rsplit(":", 1)[1])
    suffix = uuid.uuid4().hex[:8]
    config = write_config(tmp_path, bootstrap, suffix, partitions_cap=300)
    raw = yaml.safe_load(config.read_text())
    raw["kafka"]["read_stall_timeout_s"] = 4
    config.write_text(yaml.safe_dump(raw))
    for var in ("SF_SYNC_HOME", "SF_SYNC_KAFKA_BOOTSTRAP", "SF_SYNC_KAFKA_GROUP"):
        monkeypatch.delenv(var, raising=False)  # this test's broker, not the session's
    monkeypatch.setenv("SF_SYNC_CONFIG", str(config))
    topic = f"cdc.Account.{suffix}"
    ensure_topics(bootstrap, [topic], partitions=3)
    events = synth.generate(seed=8, records=50, events=4000)
    produce(bootstrap, topic, synth.messages(events))

    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sf_sync.cli", "ingest"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    history = tmp_path / "state" / "history.duckdb"
    deadline = time.monotonic() + 120
    while not history.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first run has landed; later ones are in flight
    # The broker dies at once (SIGKILL): a controlled shutdown takes a second or two, long
    # enough for a fast ingest to finish every run before the broker is gone.
    pid = broker.broker_status(state, port=port).pid
    assert pid is not None, "the test's own broker should be running"
    os.kill(pid, signal.SIGKILL)
    broker.stop_broker(state)  # reaps it and clears the PID file
    try:
        out = proc.communicate(timeout=120)[0].decode()
    finally:
        proc.kill()  # only if it hung: then the assertion below reports it
    assert proc.returncode != 0, f"the ingest should have failed without a broker:\n{out[-3000:]}"

    broker.start_broker(state, port=port)
    from sensors.runner import run_until_caught_up

    with dg.instance_for_test() as instance:
        report = run_until_caught_up(instance)
        assert report.runs, f"no runs after the restart: {report.skip_reason}\n{out[-3000:]}"
        assert all(
            instance.get_run_by_id(r).status == dg.DagsterRunStatus.SUCCESS for r in report.runs
        )
    from sf_sync.config import load_settings
    from sf_sync.warehouse import connect_history

    con = connect_history(load_settings(config).home)
    assert_same_history(stored_history(con), synth.expected_history(events))
    (lake_rows,) = con.execute("SELECT count(*) FROM raw_events").fetchone()
    assert lake_rows == len(events)
