"""Starting, stopping and probing the dev org process (``sf-sync devorg start|stop|status``).

Like the broker: one process per state folder, its PID in a file, start is idempotent, ready
means an HTTPS request verified against our CA succeeds, stop signals only that PID.
"""

from __future__ import annotations

import ssl
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sf_sync import processes
from sf_sync.devorg.settings import DevorgSettings

_MODULE = "sf_sync.devorg.server"


@dataclass(frozen=True)
class DevorgStatus:
    running: bool
    pid: int | None
    ready: bool
    detail: str
    instance_url: str
    ca_file: Path


def _status(settings: DevorgSettings, pid: int | None, ready: bool, detail: str) -> DevorgStatus:
    return DevorgStatus(
        pid is not None, pid, ready, detail, settings.instance_url, settings.ca_file
    )


def _pid_file(settings: DevorgSettings) -> Path:
    return settings.state_dir / "devorg.pid"


def _is_ours(pid: int) -> bool:
    return processes.alive(pid) and _MODULE in processes.cmdline(pid)


def probe(settings: DevorgSettings, timeout_s: float = 2.0) -> bool:
    """True if the API answers over TLS verified against the dev org's own CA."""
    if not settings.ca_file.exists():
        return False
    context = ssl.create_default_context(cafile=str(settings.ca_file))
    try:
        url = f"{settings.instance_url}/services/data/"
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as resp:
            return resp.status == 200
    except OSError:
        return False


def status(settings: DevorgSettings) -> DevorgStatus:
    pid = processes.read_pid(_pid_file(settings))
    ours = pid is not None and _is_ours(pid)
    ready = ours and probe(settings)
    detail = (
        f"running (pid {pid}), {'answering' if ready else 'not answering'}"
        if ours
        else "not running"
    )
    return _status(settings, pid if ours else None, ready, detail)


def start(settings: DevorgSettings, timeout_s: float = 60) -> DevorgStatus:
    """Starts the dev org in the background unless it already runs; waits until it answers."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with processes.locked(settings.state_dir / "devorg.lock"):
        current = status(settings)
        if current.running:
            return current
        if not processes.port_free(settings.host, settings.port):
            raise RuntimeError(f"port {settings.port} is taken by another process")
        proc = processes.spawn_service(
            [sys.executable, "-m", _MODULE, "--port", str(settings.port)],
            settings.state_dir / "devorg.log", _pid_file(settings),
        )  # fmt: skip
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            if proc.poll() is not None:
                _pid_file(settings).unlink(missing_ok=True)
                tail = (settings.state_dir / "devorg.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"dev org exited with {proc.returncode}:\n{tail}")
            if probe(settings, timeout_s=1):
                took = time.monotonic() - began
                detail = f"started pid {proc.pid}, ready in {took:.1f} s"
                return _status(settings, proc.pid, True, detail)
            time.sleep(0.2)
        processes.terminate(proc.pid, 10)
        raise RuntimeError(f"dev org did not answer within {timeout_s:.0f} s")


def stop(settings: DevorgSettings) -> DevorgStatus:
    pid = processes.read_pid(_pid_file(settings))
    if pid is None or not _is_ours(pid):
        _pid_file(settings).unlink(missing_ok=True)
        return _status(settings, None, False, "not running")
    how = processes.terminate(pid, 15)
    _pid_file(settings).unlink(missing_ok=True)
    return _status(settings, None, False, f"stopped pid {pid} ({how})")
