"""Background services we start ourselves (the Kafka broker, the dev org): PID files,
liveness, ports and stopping by PID, never by name."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

# Children started by this process, so their exit status is collected (no zombies).
_children: dict[int, subprocess.Popen[bytes]] = {}


def adopt(proc: subprocess.Popen[bytes]) -> None:
    _children[proc.pid] = proc


def forget(pid: int) -> None:
    _children.pop(pid, None)


def spawn_service(
    argv: list[str],
    log_path: Path,
    pid_file: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Starts a background service as the leader of its own session (so it and its children
    can be stopped as one group, and it gets SIGTERM as a job would), appending its output to
    ``log_path`` and recording its PID in ``pid_file``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    adopt(proc)
    atomic_write(pid_file, f"{proc.pid}\n")
    return proc


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (an exited child nobody has reaped yet)."""
    _reap(pid)
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so it does not linger as a zombie."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _children[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_exit(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``pid`` to exit; True if it did."""
    child = _children.get(pid)
    if child is not None:
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        _children.pop(pid, None)
        return True
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(pid: int, timeout_s: float) -> str:
    """SIGTERM, wait ``timeout_s``, then SIGKILL only if needed; says which it took."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_exit(pid, timeout_s):
        return "SIGTERM"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_exit(pid, 10):
        raise RuntimeError(f"pid {pid} survived SIGKILL")
    return f"SIGKILL after {timeout_s:.0f} s without exiting on SIGTERM"


def group_members(pgid: int) -> list[int]:
    """Live processes of the process group ``pgid`` (a session we started with that leader)."""
    members = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and alive(proc.pid):
                members.append(proc.pid)
    return members


def terminate_group(pid: int, timeout_s: float) -> str:
    """Stops a service we started as the leader of its own session, and what it spawned.

    The leader goes first (so it can shut its children down itself); whatever of its group is
    still alive after that gets SIGTERM, then SIGKILL. Only that one group is ever signalled.
    """
    how = terminate(pid, timeout_s)
    left = group_members(pid)
    if left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while group_members(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if group_members(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        how += f", then {len(left)} leftover child process(es) of its group"
    return how


def cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def port_free(host: str, port: int) -> bool:
    """True if host:port can be bound (SO_REUSEADDR, like the JVM, so TIME_WAIT is ok)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections at host:port (one quick attempt)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file + rename, so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Exclusive flock, so two concurrent starts cannot launch two servers on one state."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
