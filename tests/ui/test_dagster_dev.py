"""`dagster dev -w workspace.yaml`, as `sf-sync up` starts it, loads the code location cleanly:
the webserver's GraphQL API (what the UI reads) shows the location, the ingest asset with its
checks, and the Kafka sensor running by default."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sf_sync import processes
from tests.conftest import REPO, Project, _free_port

QUERY = """
{
  workspaceOrError { ... on Workspace { locationEntries {
      name loadStatus
      locationOrLoadError { __typename ... on PythonError { message } }
  } } }
  sensorsOrError(repositorySelector: {repositoryLocationName: "sf_sync",
                                      repositoryName: "__repository__"}) {
    ... on Sensors { results { name sensorState { status } } }
  }
  assetNodes { assetKey { path } hasAssetChecks }
}
"""


@pytest.fixture
def dagster_ui(project: Project, tmp_path: Path) -> Iterator[str]:
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    dagster = str(Path(sys.executable).parent / "dagster")
    log = (tmp_path / "dagster-dev.log").open("wb")
    proc = subprocess.Popen(
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    processes.adopt(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "dagster-dev.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        yield url
    finally:
        processes.terminate_group(proc.pid, 20)


def test_code_location_loads_with_assets_checks_and_sensor(dagster_ui: str) -> None:
    deadline = time.monotonic() + 60
    while True:  # the location loads in the background after the server answers
        data = requests.post(f"{dagster_ui}/graphql", json={"query": QUERY}, timeout=30).json()
        (entry,) = data["data"]["workspaceOrError"]["locationEntries"]
        if entry["loadStatus"] == "LOADED" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert entry["name"] == "sf_sync" and entry["loadStatus"] == "LOADED"
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
    sensors = {s["name"]: s["sensorState"]["status"]
               for s in data["data"]["sensorsOrError"]["results"]}  # fmt: skip
    assert sensors.get("kafka_offsets_sensor") == "RUNNING"
    checked = [a["assetKey"]["path"] for a in data["data"]["assetNodes"] if a["hasAssetChecks"]]
    assert checked, data["data"]["assetNodes"]
