"""SIGKILL the ingest process anywhere, run it again: the lake and the history end identical
to an uninterrupted run, with nothing lost and nothing doubled."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import yaml

from sf_sync import synth
from tests.conftest import REPO, Project

CRASH_POINTS = [
    "after_kafka_read",
    "after_lake_write",
    "before_warehouse_commit",
    "before_publish",
    "before_offset_commit",
]


def _twin_config(project: Project, name: str) -> Path:
    """Same topics, own state folder and consumer group."""
    config = yaml.safe_load((project.root / "sf-sync.yaml").read_text())
    config["home"] = f"state-{name}"
    config["kafka"]["group_id"] = f"{config['kafka']['group_id']}-{name}"
    config["kafka"]["max_range_messages"] = 150  # many small runs: many places to die
    # Several batches per run, so the worker reads, decodes and writes the lake files of the
    # next batch while one is stored: kills land in both threads.
    config["kafka"]["batch_messages"] = 40
    path = project.root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _ingest(config: Path, crash_at: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SF_SYNC_")}
    env["SF_SYNC_CONFIG"] = str(config)
    if crash_at:
        env["SF_SYNC_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "sf_sync.cli", "ingest"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _snapshot(home: Path) -> dict[str, list]:
    con = duckdb.connect(str(home / "history.duckdb"), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    out = {
        "change_events": con.execute(
            "SELECT * EXCLUDE (ingested_at) FROM change_events ORDER BY ALL"
        ).fetchall(),
        "field_history": con.execute("SELECT * FROM field_history ORDER BY ALL").fetchall(),
        "versions": con.execute("SELECT * FROM account_versions ORDER BY ALL").fetchall(),
        "change_values": con.execute("SELECT * FROM change_values ORDER BY ALL").fetchall(),
        "dead_letters": con.execute(
            "SELECT * EXCLUDE (received_at) FROM dead_letters ORDER BY ALL"
        ).fetchall(),
        "lake": con.execute(
            f"SELECT topic, kafka_partition, kafka_offset, value FROM read_parquet("
            f"'{home}/lake/raw_events/*/*/*.parquet') ORDER BY ALL"
        ).fetchall(),
    }
    con.close()
    return out


def test_sigkill_anywhere_then_rerun_equals_uninterrupted(project: Project) -> None:
    events = synth.generate(seed=21, records=60, events=1500)
    project.produce(project.account_topic, synth.messages(events))
    project.produce(project.account_topic, [(b"bad", b"{broken")])

    clean = _twin_config(project, "clean")
    assert _ingest(clean).wait(timeout=300) == 0

    crashy = _twin_config(project, "crashy")
    for point in CRASH_POINTS:  # each narrow window once, deterministically
        proc = _ingest(crashy, crash_at=point)
        assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    rnd = random.Random(5)
    for _ in range(4):  # and at arbitrary moments
        proc = _ingest(crashy)
        time.sleep(rnd.uniform(1.0, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    final = _ingest(crashy)
    output = final.communicate(timeout=300)[0].decode()
    assert final.returncode == 0, output[-3000:]

    want = _snapshot(project.root / "state-clean")
    got = _snapshot(project.root / "state-crashy")
    assert len(want["lake"]) == len(events) + 1
    for table in want:
        assert got[table] == want[table], f"{table} differs after crashes"
