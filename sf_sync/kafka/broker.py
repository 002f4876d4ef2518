"""Run a real single-node Apache Kafka (KRaft) broker for local development and tests.

There is no Docker and no packaged Kafka on the project's machines, but Java 17, Maven and
Maven Central are available, so the broker is run straight from the ``kafka_2.13`` jars
(see ``pom.xml`` next to this file). Everything the broker needs or writes lives under one
state folder, ``<state>/kafka``, so a checkout can own several independent brokers and a
``rm -rf`` of the state folder is a full reset.

The lifecycle is deliberately simple and PID-file based:

* :func:`start_broker` fetches the jars once, formats the data folder once, regenerates
  ``server.properties`` (so the port can change between runs), launches ``kafka.Kafka`` as a
  detached process and waits until a metadata request succeeds. It is idempotent.
* :func:`stop_broker` sends SIGTERM to the PID in the PID file (never by process name, so an
  unrelated Kafka on the machine is never touched), and SIGKILL only as a last resort.
* :func:`broker_status` reports PID liveness plus a quick metadata request.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sf_sync import processes

__all__ = [
    "BrokerError",
    "BrokerPaths",
    "BrokerStatus",
    "broker_status",
    "start_broker",
    "stop_broker",
    "wait_until_ready",
]

_PACKAGE_DIR = Path(__file__).resolve().parent
_POM = _PACKAGE_DIR / "pom.xml"
_LOG4J_CONFIG = _PACKAGE_DIR / "log4j2.properties"
_MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
_HOST = "127.0.0.1"  # not "localhost": avoids an IPv6 (::1) detour in the clients
_LOG_TAIL_LINES = 40
_MVN_TIMEOUT_S = 900.0  # first fetch downloads ~43 MB; later runs copy from ~/.m2
_JAVA_TOOL_TIMEOUT_S = 120.0
_STATUS_PROBE_S = 2.0
# Same JVM flags kafka-server-start.sh / kafka-run-class.sh use, with a small fixed heap.
_JVM_OPTS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)

# Popen handles of brokers started by this Python process. Keeping them lets stop_broker reap
# the child (otherwise it stays a zombie until this process exits) and avoids the
# "subprocess is still running" ResourceWarning when a handle is garbage-collected.


class BrokerError(RuntimeError):
    """The local broker could not be fetched, formatted, started or stopped."""


@dataclass(frozen=True)
class BrokerPaths:
    """Where one local broker keeps its files; everything is under ``root`` (<state>/kafka).

    Keeping every file under a single root makes the broker relocatable and trivially reset,
    and lets the PID check match the exact ``server.properties`` path on the command line.
    """

    root: Path

    @classmethod
    def for_state(cls, state_dir: Path) -> BrokerPaths:
        """Paths for the broker of ``state_dir``; absolute, because they end up in a cmdline."""
        return cls(root=Path(state_dir).expanduser().resolve() / "kafka")

    @property
    def libs_dir(self) -> Path:
        """Jars copied from Maven (``kafka_2.13`` and its dependencies)."""
        return self.root / "libs"

    @property
    def data_dir(self) -> Path:
        """``log.dirs``: topic data and the KRaft metadata log (formatted once)."""
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        """``server.log`` (log4j) and ``broker.out`` (the JVM's stdout/stderr)."""
        return self.root / "logs"

    @property
    def pid_file(self) -> Path:
        """PID of the running broker; the only way stop_broker finds the process."""
        return self.root / "broker.pid"

    @property
    def server_properties(self) -> Path:
        """Broker config, regenerated on every start so the port can change."""
        return self.root / "server.properties"

    @property
    def cluster_id_file(self) -> Path:
        """Cluster id used for formatting, kept so restarts and re-formats agree."""
        return self.root / "cluster.id"

    @property
    def server_log(self) -> Path:
        """log4j output of the broker (path set by ``-Dkafka.logs.dir``)."""
        return self.logs_dir / "server.log"

    @property
    def console_log(self) -> Path:
        """stdout/stderr of the JVM: catches failures before log4j is up."""
        return self.logs_dir / "broker.out"

    @property
    def lock_file(self) -> Path:
        """flock target that serialises concurrent start_broker calls on one state folder."""
        return self.root / ".lock"


@dataclass(frozen=True)
class BrokerStatus:
    """Snapshot of one local broker.

    ``running`` is about our process (the PID file names a live Kafka using our config);
    ``ready`` is about the protocol (a metadata request at ``bootstrap`` succeeded). The two
    differ while the broker boots, or when something else owns the port.
    """

    running: bool
    pid: int | None
    bootstrap: str
    ready: bool
    detail: str


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


#: How long a port may stay taken before start gives up: the listening socket of a broker
#: killed a moment ago (SIGKILL, a crash) lingers for up to a second or two after it exits.
PORT_RELEASE_WAIT_S = 10.0


def _port_frees_up(port: int, wait_s: float = PORT_RELEASE_WAIT_S) -> bool:
    deadline = time.monotonic() + wait_s
    while not processes.port_free(_HOST, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def start_broker(
    state_dir: Path,
    port: int = 9092,
    controller_port: int | None = None,
    timeout_s: float = 90,
) -> BrokerStatus:
    """Start the broker of ``state_dir`` on ``127.0.0.1:port`` and wait until it serves metadata.

    Idempotent: if our broker is already running on the same port, its status is returned
    and no second process is started. ``controller_port`` defaults to ``port + 1000``.
    ``timeout_s`` bounds the wait for readiness after launch (fetching jars has its own,
    longer limit because the first run downloads them).

    Raises BrokerError when java/mvn are missing, a port is taken, the broker exits during
    start-up (the message carries the last lines of its logs), or it is not ready in time
    (then it is left running, stop_broker cleans it up).
    """
    paths = BrokerPaths.for_state(state_dir)
    ctrl_port = port + 1000 if controller_port is None else controller_port
    if port == ctrl_port:
        raise BrokerError(f"port and controller port must differ (both {port})")
    bootstrap = f"{_HOST}:{port}"
    paths.logs_dir.mkdir(parents=True, exist_ok=True)

    with processes.locked(paths.lock_file):
        notes: list[str] = []
        pid = _read_pid(paths)
        if pid is not None and _is_our_broker(pid, paths):
            running_port = _configured_port(paths)
            if running_port is not None and running_port != port:
                raise BrokerError(
                    f"the broker of {paths.root} is already running (pid {pid}) on port "
                    f"{running_port}, not {port}; stop it first"
                )
            try:
                _wait_ready(bootstrap, time.monotonic() + timeout_s, lambda: processes.alive(pid))
            except (_BrokerDied, TimeoutError) as exc:
                raise BrokerError(
                    f"broker already running (pid {pid}) but not ready at {bootstrap}: "
                    f"{exc or 'it exited'}\n" + _log_tail(paths)
                ) from None
            return BrokerStatus(True, pid, bootstrap, True, f"already running (pid {pid})")
        if pid is not None:
            paths.pid_file.unlink(missing_ok=True)
            notes.append(f"replaced stale pid file (pid {pid} is not our broker)")

        java = _find_java()
        _ensure_jars(paths)
        for p in (port, ctrl_port):
            if not _port_frees_up(p):
                raise BrokerError(f"port {_HOST}:{p} is already in use by another process")
        _write_server_properties(paths, port, ctrl_port)
        _ensure_formatted(paths, java)

        log_sizes = _log_sizes(paths)
        started = time.monotonic()
        proc = _launch(paths, java)
        _write_pid(paths, proc.pid)

        def alive() -> bool:
            return proc.poll() is None

        try:
            _wait_ready(bootstrap, started + timeout_s, alive)
        except _BrokerDied:
            processes.forget(proc.pid)
            paths.pid_file.unlink(missing_ok=True)
            raise BrokerError(
                f"broker exited during start-up with code {proc.returncode}\n"
                + _log_tail(paths, log_sizes)
            ) from None
        except TimeoutError as exc:
            raise BrokerError(
                f"broker (pid {proc.pid}) not ready at {bootstrap} after {timeout_s:.0f} s: "
                f"{exc}; it is left running, use stop_broker\n" + _log_tail(paths, log_sizes)
            ) from None
        notes.append(f"started pid {proc.pid}, ready in {time.monotonic() - started:.1f} s")
        return BrokerStatus(True, proc.pid, bootstrap, True, "; ".join(notes))


def stop_broker(state_dir: Path, timeout_s: float = 30) -> BrokerStatus:
    """Stop the broker of ``state_dir``: SIGTERM, wait ``timeout_s``, SIGKILL only if needed.

    SIGTERM gives Kafka a controlled shutdown (clean logs, no recovery on the next start);
    SIGKILL is the fallback for a hung JVM. Only the PID from the PID file is signalled, and
    only after checking it is a Kafka using our config, so PID reuse cannot hit a stranger.
    Stopping a broker that is not running is a no-op that says so.
    """
    paths = BrokerPaths.for_state(state_dir)
    bootstrap = f"{_HOST}:{_configured_port(paths) or '?'}"
    pid = _read_pid(paths)
    if pid is None:
        return BrokerStatus(False, None, bootstrap, False, "not running (no pid file)")
    if not _is_our_broker(pid, paths):
        paths.pid_file.unlink(missing_ok=True)
        return BrokerStatus(
            False, None, bootstrap, False, f"not running (removed stale pid file, pid {pid})"
        )

    began = time.monotonic()
    try:
        how = processes.terminate(pid, timeout_s)
    except RuntimeError as exc:
        raise BrokerError(f"broker {exc}") from None
    paths.pid_file.unlink(missing_ok=True)
    took = time.monotonic() - began
    return BrokerStatus(False, None, bootstrap, False, f"stopped pid {pid} ({how}, {took:.1f} s)")


def broker_status(state_dir: Path, port: int = 9092) -> BrokerStatus:
    """Report whether our broker runs (PID liveness) and answers (a 2 s metadata request).

    When our broker runs, the port comes from its ``server.properties`` (the truth) rather
    than from ``port``; otherwise ``port`` is probed, so a foreign broker is still visible.
    """
    paths = BrokerPaths.for_state(state_dir)
    pid = _read_pid(paths)
    ours = pid is not None and _is_our_broker(pid, paths)
    if ours:
        port = _configured_port(paths) or port
    bootstrap = f"{_HOST}:{port}"
    if not processes.port_open(_HOST, port):  # nothing listens: answer at once, not after 2 s
        ready, why = False, "port not open"
    else:
        try:
            wait_until_ready(bootstrap, _STATUS_PROBE_S)
            ready, why = True, "metadata ok"
        except TimeoutError as exc:
            ready, why = False, str(exc)
    if ours:
        detail = f"running (pid {pid}), {why}"
    elif ready:
        detail = f"our broker is not running, but another Kafka answers at {bootstrap}"
    else:
        stale = f", stale pid file (pid {pid})" if pid is not None else ""
        detail = f"not running{stale}"
    return BrokerStatus(ours, pid if ours else None, bootstrap, ready, detail)


def wait_until_ready(bootstrap: str, timeout_s: float) -> None:
    """Block until a metadata request to ``bootstrap`` succeeds, or raise TimeoutError.

    A TCP accept is not enough: the listener can accept before the broker has joined the
    KRaft quorum and registered, and early requests then fail. So this waits for the port,
    then for ``AdminClient.list_topics`` to return at least one broker.
    """
    _wait_ready(bootstrap, time.monotonic() + timeout_s, lambda: True)


# --------------------------------------------------------------------------------------------
# Readiness
# --------------------------------------------------------------------------------------------


class _BrokerDied(Exception):
    """Internal: the process being waited on exited."""


def _wait_ready(bootstrap: str, deadline: float, alive: Callable[[], bool]) -> None:
    """Poll ``bootstrap`` until ready; raise _BrokerDied as soon as ``alive()`` turns False."""
    host, _, port_s = bootstrap.rpartition(":")
    port = int(port_s)
    last = "port not open"
    while True:  # phase 1: cheap TCP probe, no client noise while the JVM boots
        if not alive():
            raise _BrokerDied
        try:
            with socket.create_connection((host, port), timeout=0.5):
                break
        except OSError as exc:
            last = f"connect: {exc.strerror or exc}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{bootstrap}: {last}")
        time.sleep(0.1)

    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "log_level": 0,  # connection errors during boot are expected, not news
            "error_cb": lambda _err: None,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,  # default 10 s would delay readiness detection
        }
    )
    while True:  # phase 2: a real metadata round trip
        if not alive():
            raise _BrokerDied
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{bootstrap}: {last}")
        try:
            md = admin.list_topics(timeout=min(max(remaining, 0.1), 5.0))
            if md.brokers:
                return
            last = "metadata without brokers"
        except KafkaException as exc:
            last = f"metadata: {exc.args[0] if exc.args else exc}"
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# Processes and PID file
# --------------------------------------------------------------------------------------------


def _read_pid(paths: BrokerPaths) -> int | None:
    return processes.read_pid(paths.pid_file)


def _write_pid(paths: BrokerPaths, pid: int) -> None:
    processes.atomic_write(paths.pid_file, f"{pid}\n")


def _is_our_broker(pid: int, paths: BrokerPaths) -> bool:
    """True if ``pid`` is a live java running kafka.Kafka with *our* server.properties.

    This guards against PID reuse and against another state folder's broker.
    """
    if not processes.alive(pid):
        return False
    cmd = processes.cmdline(pid)
    return (
        bool(cmd)
        and Path(cmd[0]).name.startswith("java")
        and _MAIN_CLASS in cmd
        and str(paths.server_properties) in cmd
    )


def _java_command(
    paths: BrokerPaths, java: str, main_class: str, *args: str, heap: bool = False
) -> list[str]:
    """``java`` with the Kafka jars and our log4j settings; the broker's JVM flags if ``heap``."""
    return [
        java,
        *(_JVM_OPTS if heap else ()),
        f"-Dkafka.logs.dir={paths.logs_dir}",
        f"-Dlog4j2.configurationFile={_LOG4J_CONFIG}",
        "-cp",
        f"{paths.libs_dir}/*",
        main_class,
        *args,
    ]


def _launch(paths: BrokerPaths, java: str) -> subprocess.Popen[bytes]:
    """Start kafka.Kafka detached (own session), so it outlives this process and its terminal."""
    cmd = _java_command(paths, java, _MAIN_CLASS, str(paths.server_properties), heap=True)
    with paths.console_log.open("ab") as out:
        out.write(f"\n--- start {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=paths.root,
        )
    processes.adopt(proc)
    return proc


def _log_sizes(paths: BrokerPaths) -> dict[Path, int]:
    """Current sizes of the broker logs, so an error can show only what this start wrote."""
    sizes = {}
    for log in (paths.console_log, paths.server_log):
        with contextlib.suppress(FileNotFoundError):
            sizes[log] = log.stat().st_size
    return sizes


def _log_tail(
    paths: BrokerPaths, since: dict[Path, int] | None = None, lines: int = _LOG_TAIL_LINES
) -> str:
    """Last lines of the JVM console and of server.log (after ``since`` offsets) for errors.

    Both logs are appended across restarts, so without ``since`` an error could show an
    older run's lines; the console part matters when the JVM dies before log4j is up.
    """
    parts = []
    for log in (paths.console_log, paths.server_log):
        try:
            with log.open("rb") as fh:
                fh.seek((since or {}).get(log, 0))
                data = fh.read().decode(errors="replace")
        except FileNotFoundError:
            continue
        text = [ln for ln in data.splitlines() if ln.strip() and not ln.startswith("--- start ")]
        if text:
            text = text[-lines:]
            parts.append(f"--- last {len(text)} lines of {log} ---\n" + "\n".join(text))
    return "\n".join(parts) or f"(nothing in the broker logs in {paths.logs_dir})"


# --------------------------------------------------------------------------------------------
# Jars, config, formatting
# --------------------------------------------------------------------------------------------


def _find_java() -> str:
    """java from $JAVA_HOME (as kafka-run-class.sh does), else from PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java not found (set JAVA_HOME or install a JDK >= 17)")
    return java


def _ensure_jars(paths: BrokerPaths) -> None:
    """Copy kafka_2.13 and its dependencies (pom.xml, with the log4j SLF4J binding) into libs/.

    Maven runs on a copy of pom.xml in a scratch folder so nothing is written next to the
    package sources; the jars land in a temporary folder renamed into place at the end, so an
    interrupted fetch never leaves a half-filled libs/ that would be mistaken for complete.
    """
    if any(paths.libs_dir.glob("kafka_2.13-*.jar")) and any(
        paths.libs_dir.glob("log4j-slf4j*-impl-*.jar")
    ):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("mvn not found; Maven is needed once to fetch the Kafka jars")
    paths.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="libs-fetch-", dir=paths.root) as tmp:
        work = Path(tmp)
        shutil.copy2(_POM, work / "pom.xml")
        out_dir = work / "libs"
        _run_mvn(mvn, work, "dependency:copy-dependencies", f"-DoutputDirectory={out_dir}")
        if not any(out_dir.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"mvn ran but copied no kafka_2.13 jar into {out_dir}")
        if paths.libs_dir.exists():  # an older or partial fetch
            shutil.rmtree(paths.libs_dir)
        out_dir.rename(paths.libs_dir)


def _run_mvn(mvn: str, work: Path, *args: str) -> None:
    """Run Maven quietly in ``work``; raise BrokerError with its output tail on failure."""
    cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(work / "pom.xml"), *args]
    try:
        res = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=_MVN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BrokerError(f"mvn {args[0]} did not finish in {_MVN_TIMEOUT_S:.0f} s") from None
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-_LOG_TAIL_LINES:])
        raise BrokerError(f"mvn {args[0]} failed (exit {res.returncode}):\n{tail}")


def _write_server_properties(paths: BrokerPaths, port: int, ctrl_port: int) -> None:
    """Write a combined broker+controller config; regenerated each start (ports may change)."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{_HOST}:{ctrl_port}",
        "listeners": f"PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{ctrl_port}",
        "advertised.listeners": f"PLAINTEXT://{_HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(paths.data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "log.retention.hours": "168",
        # single node: internal topics cannot have more than one replica
        "offsets.topic.replication.factor": "1",
        # A single local broker: few offsets partitions, so the first group operation on a new
        # broker does not wait for 50 partitions to be created.
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # no 3 s pause before the first consumer-group rebalance
        "group.initial.rebalance.delay.ms": "0",
    }
    body = "# Generated by sf_sync.kafka.broker on every start; edits are overwritten.\n"
    body += "".join(f"{k}={v}\n" for k, v in settings.items())
    processes.atomic_write(paths.server_properties, body)


def _configured_port(paths: BrokerPaths) -> int | None:
    """The PLAINTEXT port in the current server.properties, if any."""
    try:
        lines = paths.server_properties.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "listeners":
            for listener in value.split(","):
                name, _, address = listener.strip().partition("://")
                if name == "PLAINTEXT":
                    with contextlib.suppress(ValueError):
                        return int(address.rpartition(":")[2])
    return None


def _ensure_formatted(paths: BrokerPaths, java: str) -> None:
    """Format the data folder once (KRaft needs it), reusing the stored cluster id.

    A data folder that already has meta.properties is left alone, which saves a JVM start
    on every warm start; ``--ignore-formatted`` keeps a racing or repeated format harmless.
    """
    meta = paths.data_dir / "meta.properties"
    cluster_id = _cluster_id(paths, java, meta)
    if meta.exists():
        return
    _run_java_tool(
        paths,
        java,
        [
            "format",
            "-t",
            cluster_id,
            "-c",
            str(paths.server_properties),
            "--ignore-formatted",
        ],
    )


def _cluster_id(paths: BrokerPaths, java: str, meta: Path) -> str:
    """Stored cluster id; else the one in an existing meta.properties; else a new random one."""
    with contextlib.suppress(FileNotFoundError):
        stored = paths.cluster_id_file.read_text().strip()
        if stored:
            return stored
    cluster_id = ""
    with contextlib.suppress(FileNotFoundError):
        for line in meta.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                cluster_id = value.strip()
    if not cluster_id:
        cluster_id = _run_java_tool(paths, java, ["random-uuid"]).strip().splitlines()[-1]
    processes.atomic_write(paths.cluster_id_file, cluster_id + "\n")
    return cluster_id


def _run_java_tool(paths: BrokerPaths, java: str, args: list[str]) -> str:
    """Run kafka.tools.StorageTool with ``args``; return stdout, raise with its output on error."""
    cmd = _java_command(paths, java, _STORAGE_TOOL, *args)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=_JAVA_TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BrokerError(f"StorageTool {args[0]} timed out") from None
    if res.returncode != 0:
        raise BrokerError(
            f"StorageTool {args[0]} failed (exit {res.returncode}):\n{res.stdout}{res.stderr}"
        )
    return res.stdout


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
