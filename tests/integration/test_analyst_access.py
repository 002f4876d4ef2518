"""An analyst queries the history from another process while ingestion runs: no lock errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import yaml

from sf_sync import synth
from tests.conftest import Project

ANALYST = textwrap.dedent(
    """
    import sys, time, duckdb
    path, seconds = sys.argv[1], float(sys.argv[2])
    ok = errors = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            con = duckdb.connect(path, read_only=True)
            con.execute("SELECT count(*) FROM field_history").fetchone()
            con.execute("SELECT count(*) FROM account_current").fetchone()
            con.close()
            ok += 1
        except duckdb.IOException as exc:  # the history is not published yet
            if "No such file" not in str(exc) and "does not exist" not in str(exc):
                errors += 1; print("ERROR", exc, flush=True)
        except duckdb.CatalogException:
            pass  # first run not published yet: tables come with it
        except Exception as exc:
            errors += 1; print("ERROR", type(exc).__name__, exc, flush=True)
        time.sleep(0.01)
    print(f"ok={ok} errors={errors}")
    """
)


def test_queries_never_meet_the_writers_lock(project: Project) -> None:
    path = project.root / "sf-sync.yaml"
    config = yaml.safe_load(path.read_text())
    config["kafka"]["max_range_messages"] = 100  # many runs, many publishes
    path.write_text(yaml.safe_dump(config))
    events = synth.generate(seed=12, records=30, events=1500)
    project.produce(project.account_topic, synth.messages(events))
    history = project.settings.history_path

    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(history), "25"], stdout=subprocess.PIPE, text=True
    )
    runs = project.ingest()
    out = analyst.communicate(timeout=120)[0]

    assert len(runs) >= 5
    assert "errors=0" in out, out
    assert int(out.split("ok=")[1].split()[0]) > 20, out
