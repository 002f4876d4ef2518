"""``sf-sync up`` / ``down``: everything a newcomer needs to watch history fill in, started in
the background (broker, dev org, Dagster UI with its daemon, simulator) and stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

from sf_sync import processes
from sf_sync.config import Settings

REPO = Path(__file__).resolve().parent.parent


def _dagster_home(settings: Settings) -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or settings.home / "dagster")


def _spawn(name: str, argv: list[str], settings: Settings, env: dict[str, str]) -> int:
    """Starts ``argv`` in its own session (so it gets SIGTERM as a job would), logs to
    ``$SF_SYNC_HOME/<name>.log`` and records its PID in ``<name>.pid``."""
    pid_file = settings.home / f"{name}.pid"
    old = processes.read_pid(pid_file)
    if old is not None and processes.alive(old) and processes.cmdline(old):
        return old
    proc = processes.spawn_service(argv, settings.home / f"{name}.log", pid_file, cwd=REPO, env=env)
    return proc.pid


def _wait_http(url: str, timeout_s: float, pid: int) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not processes.alive(pid):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def up(settings: Settings, *, ui_port: int, rate: float, seed: int) -> int:
    from sf_sync.devorg import service
    from sf_sync.devorg.settings import devorg_settings
    from sf_sync.kafka import broker
    from sf_sync.kafka.admin import ensure_topics

    settings.home.mkdir(parents=True, exist_ok=True)
    port = int(settings.bootstrap.split(",")[0].rsplit(":", 1)[1])
    print(f"kafka:   {broker.start_broker(settings.kafka_dir, port=port).detail}", flush=True)
    ensure_topics(settings.bootstrap, settings.topics, partitions=3)
    ds = devorg_settings(settings)
    print(f"dev org: {service.start(ds).detail} at {ds.instance_url}", flush=True)

    env = dict(os.environ)
    home = _dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env["DAGSTER_HOME"] = str(home)
    bin_dir = Path(sys.executable).parent
    ui = _spawn(
        "dagster-dev",
        [str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
         "-p", str(ui_port)],
        settings, env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{ui_port}"
    if not _wait_http(f"{url}/server_info", 120, ui):
        print(f"dagster: did not come up; see {settings.home / 'dagster-dev.log'}")
        return 1
    print(f"dagster: UI at {url} (pid {ui}, DAGSTER_HOME={home})", flush=True)

    seeded = (settings.home / "simulator.seeded").exists()
    argv = [str(bin_dir / "sf-sync"), "simulate", "--rate", str(rate), "--seed", str(seed)]
    if not seeded:  # the first time, a starting book of customers
        argv += ["--accounts", "300", "--contacts", "150"]
        (settings.home / "simulator.seeded").touch()
    sim = _spawn("simulator", argv, settings, env)
    print(f"traffic: simulator pid {sim}, {rate:g} operations/s (log: "
          f"{settings.home / 'simulator.log'})")  # fmt: skip
    print(f"\nOpen {url}/assets: the sensor launches an ingest run every few seconds.")
    print("Stop everything with: ./scripts/down.sh  (or: sf-sync down)")
    return 0


def down(settings: Settings) -> int:
    from sf_sync.devorg import service
    from sf_sync.devorg.settings import devorg_settings
    from sf_sync.kafka import broker

    for name in ("simulator", "dagster-dev"):
        pid_file = settings.home / f"{name}.pid"
        pid = processes.read_pid(pid_file)
        if pid is not None and processes.alive(pid):
            print(f"{name}: stopped pid {pid} ({processes.terminate_group(pid, 20)})")
        else:
            print(f"{name}: not running")
        pid_file.unlink(missing_ok=True)
    print(f"dev org: {service.stop(devorg_settings(settings)).detail}")
    print(f"kafka:   {broker.stop_broker(settings.kafka_dir).detail}")
    return 0
