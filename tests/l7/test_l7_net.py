"""L7 through Envoy with real traffic: `gwctl run` in the lab's gateway namespace starts
Envoy and serves it over ADS; the kernel hands the Gateway address's HTTP port to Envoy;
echo pods in the backend namespaces answer. One agent serves the module; each test
swaps the config directory's files."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from l7sidecar.envoy import RunPaths, running_envoy
from lab import echo, netlab
from tests.net.test_agent_net import Agent, remove_agent_state
from tests.net.test_dataplane_net import _missing

pytestmark = pytest.mark.net

INFRA = "gateway-conformance-infra"
# name -> (backend index, pod addresses' last octets)
PODS = {"infra-backend-v1": (0, (100, 101)), "infra-backend-v2": (1, (100,))}


class L7Agent(Agent):
    """The net tier's agent; its first start compiles the BPF programs, which on a
    shared 2-core machine can take minutes."""

    def wait_ready(self, timeout: float = 300) -> None:
        super().wait_ready(timeout)


@contextmanager
def l7_agent(net: netlab.Lab, config: Path, log: Path) -> Iterator[L7Agent]:
    """An L7Agent in the lab; on the way out it stops the agent and its Envoy and removes
    the run directory, the programs and the pins, even when the agent failed to start."""
    agent = None
    try:
        agent = L7Agent(net, config, log)
        agent.run_paths = RunPaths(Path("/run") / net.prefix)  # the agent's private run directory
        yield agent
    finally:
        try:
            if agent is not None:
                agent.stop()
        finally:
            remove_agent_state(net)


def pod_address(backend: netlab.Backend, octet: int) -> str:
    return str(backend.net4.network_address + octet)


@pytest.fixture(scope="module")
def l7(tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("l7")
    config = work / "config"
    config.mkdir()
    (config / "base.yaml").write_text(base_config())
    with netlab.lab(backends=2) as net:
        echoes = []
        for service, (index, octets) in PODS.items():
            backend = net.backends[index]
            pods = []
            for k, octet in enumerate(octets):
                address = pod_address(backend, octet)
                net.run(backend.ns, ["ip", "addr", "add", f"{address}/24", "dev", backend.ifname])
                pods += ["--pod", f"{service}-{k}:{INFRA}:{address}"]
            proc = net.popen(backend.ns, net.python_argv("lab.echo", *pods, "--http", 3000),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            assert proc.stdout.readline().strip() == b"ready"
            echo.drain(proc.stdout)
            echoes.append(proc)
        with l7_agent(net, config, work / "agent.log") as agent:
            yield agent
    assert not netlab.leftovers(net.prefix)


def base_config() -> str:
    docs = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "xdp-gateway"},
         "spec": {"controllerName": "xdp-gateway.io/gateway-controller"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INFRA}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "web", "namespace": INFRA},
         "spec": {"gatewayClassName": "xdp-gateway",
                  "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}},
    ]
    for service, (index, octets) in PODS.items():
        net4 = netlab.backend_net4(index)
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": INFRA},
                     "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": 3000, "protocol": "TCP"}]}})
        docs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"{service}-1", "namespace": INFRA,
                                  "labels": {"kubernetes.io/service-name": service}},
                     "addressType": "IPv4", "ports": [{"name": "http", "port": 3000, "protocol": "TCP"}],
                     "endpoints": [{"addresses": [str(net4.network_address + o)], "conditions": {"ready": True}}
                                   for o in octets]})
    return "\n---\n".join(json.dumps(d) for d in docs)


def split_route(v1: int = 80, v2: int = 20, header_value: str = "two", set_header: str | None = None) -> str:
    filters = [] if set_header is None else [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-share", "value": set_header}]}}]
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "split", "namespace": INFRA},
        "spec": {"parentRefs": [{"name": "web"}], "rules": [
            {"matches": [{"headers": [{"name": "version", "value": header_value}]}],
             "backendRefs": [{"name": "infra-backend-v2", "port": 8080}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "filters": filters,
             "backendRefs": [{"name": "infra-backend-v1", "port": 8080, "weight": v1},
                             {"name": "infra-backend-v2", "port": 8080, "weight": v2}]},
        ]},
    }
    return json.dumps(route)


def configure(agent, route: str) -> None:
    agent.replace_config({"base.yaml": base_config(), "route.yaml": route})


def http(agent, *args, count: int = 1, path: str = "/") -> dict:
    """lab.httpclient spread in the client namespace, to the Gateway address."""
    done = agent.net.run(agent.net.client.ns, agent.net.python_argv(
        "lab.httpclient", "spread", "--url", f"http://{agent.net.vip4}{path}", "--count", count, *args),
        timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def find(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def condition(conditions: list[dict], kind: str) -> dict:
    return next(c for c in conditions if c["type"] == kind)


def listener_programmed(agent) -> dict:
    gateway = find(agent.objects(), "Gateway", "web")
    return condition(gateway["status"]["listeners"][0]["conditions"], "Programmed")


def wait_for(check, timeout: float = 30.0, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def test_weighted_split_and_header_match_through_envoy(l7):
    configure(l7, split_route())
    assert wait_for(lambda: listener_programmed(l7)["status"] == "True"), listener_programmed(l7)
    assert running_envoy(l7.run_paths) is not None
    report = wait_for(lambda: (r := http(l7, count=400)) and r["codes"].get("200") == 400 and r)
    assert report, http(l7, count=5)
    v1 = sum(n for pod, n in report["pods"].items() if pod.startswith("infra-backend-v1-"))
    v2 = sum(n for pod, n in report["pods"].items() if pod.startswith("infra-backend-v2-"))
    assert v1 + v2 == 400
    assert abs(v1 / 400 - 0.8) <= 0.08, report["pods"]
    assert {"infra-backend-v1-0", "infra-backend-v1-1"} <= set(report["pods"])  # EDS: both pods
    seen = report["first"]["body"]
    assert seen["namespace"] == INFRA and seen["host"] == str(l7.net.vip4)
    # The client's own address reaches the backend (the handoff keeps it; Envoy appends it).
    assert seen["headers"]["X-Forwarded-For"] == [str(l7.net.client.v4)]
    # A client-sent X-Forwarded-For is not trusted (0 trusted hops): the real one is appended.
    spoofed = http(l7, "--header", "x-forwarded-for:203.0.113.9")["first"]["body"]["headers"]
    assert spoofed["X-Forwarded-For"] == [f"203.0.113.9,{l7.net.client.v4}"]
    # The header match wins over the catch-all split.
    matched = http(l7, "--header", "version:two", count=50)
    assert set(matched["pods"]) == {"infra-backend-v2-0"} and matched["pods"]["infra-backend-v2-0"] == 50
    routes = l7.net.run(l7.net.client.ns, [sys.executable, "-m", "ctl.cli", "get", "routes", "-A", "--agent",
                                           f"http://{l7.api}:9480"], check=False,
                        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})  # wide: no wrapped cells
    assert routes.returncode == 0, routes.stderr
    assert re.search(r"HTTPRoute\s+split\s+True \(Accepted\)\s+True \(ResolvedRefs\)\s+True", routes.stdout), routes.stdout


def test_handoff_is_a_local_address_and_l4_frontends_untouched(l7):
    configure(l7, split_route())
    wait_for(lambda: listener_programmed(l7)["status"] == "True")
    local = l7.net.run(l7.net.gw.ns, ["ip", "route", "show", "table", "local", "proto", "88"]).stdout
    assert f"local {l7.net.vip4} dev lo" in local, local
    # The XDP program has no frontend for port 80: the kernel passed the packets up.
    done = subprocess.run([sys.executable, "-m", "ctl.cli", "status", "--pin-dir", l7.pin_dir, "-o", "json"],
                          capture_output=True, text=True, check=True)
    assert not any(":80" in fe["frontend"] for fe in json.loads(done.stdout)["frontends"]), done.stdout


def test_nack_shows_in_status_and_last_good_config_keeps_serving(l7):
    configure(l7, split_route())
    assert wait_for(lambda: listener_programmed(l7)["status"] == "True")
    # Valid Gateway API (a header value is any string) that Envoy refuses: '%' starts one
    # of its substitution commands.
    configure(l7, split_route(v1=0, v2=100, set_header="50%"))

    def route_refused():
        route = find(l7.objects(), "HTTPRoute", "split")
        accepted = condition(route["status"]["parents"][0]["conditions"], "Accepted")
        return accepted if accepted["status"] == "False" else None

    accepted = wait_for(route_refused)
    assert accepted, find(l7.objects(), "HTTPRoute", "split")
    assert "Envoy rejected" in accepted["message"] and "50%" in accepted["message"]
    assert listener_programmed(l7)["status"] == "False"
    assert "50%" in listener_programmed(l7)["message"]
    assert l7.events("xds_nack")
    # The last good routes (80/20) keep serving, not the refused 0/100.
    report = http(l7, count=200)
    assert report["codes"] == {"200": 200}
    assert sum(n for pod, n in report["pods"].items() if pod.startswith("infra-backend-v1-")) > 100
    # A good configuration again: programmed, accepted.
    configure(l7, split_route(set_header="fifty percent"))
    assert wait_for(lambda: listener_programmed(l7)["status"] == "True"), listener_programmed(l7)
    route = find(l7.objects(), "HTTPRoute", "split")
    assert condition(route["status"]["parents"][0]["conditions"], "Accepted")["status"] == "True"


def stream_while(l7, action) -> dict:
    """lab.httpclient stream (keep-alive and new connections alternating, no pause) from
    the client namespace while action() runs; its report."""
    client = l7.net.popen(l7.net.client.ns, l7.net.python_argv(
        "lab.httpclient", "stream", "--url", f"http://{l7.net.vip4}/", "--duration", 1500),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert client.stdout.readline().strip() == b"started"
        action()
        time.sleep(1)
    finally:
        client.send_signal(signal.SIGTERM)
        out, _ = client.communicate(timeout=30)
    return json.loads(out.decode().strip().splitlines()[-1])


@pytest.mark.timeout(1200)
def test_hitless_under_100_route_edits(l7):
    configure(l7, split_route())
    assert wait_for(lambda: listener_programmed(l7)["status"] == "True")

    def edit():
        for n in range(100):
            configure(l7, split_route(v1=50 + n % 40, v2=10 + n % 7, header_value=f"v{n}"))

    report = stream_while(l7, edit)
    print(f"hitless, 100 edits: {report['sent']} requests, {report['failed']} failed", report)
    assert report["sent"] > 200
    assert report["failed"] == 0, report


@pytest.mark.timeout(1800)  # each agent restart compiles the BPF programs again
def test_hitless_under_100_edits_and_3_agent_restarts(l7):
    configure(l7, split_route())
    assert wait_for(lambda: listener_programmed(l7)["status"] == "True")
    envoy_pid = running_envoy(l7.run_paths)

    def edit_and_restart():
        for n in range(100):
            configure(l7, split_route(v1=50 + n % 40, v2=10 + n % 7, header_value=f"v{n}"))
            if n in (25, 50, 75):
                l7.stop()
                l7.start()
                assert running_envoy(l7.run_paths) == envoy_pid  # adopted, not restarted

    report = stream_while(l7, edit_and_restart)
    print(f"hitless, 100 edits and 3 restarts: {report['sent']} requests, {report['failed']} failed", report)
    assert l7.events("envoy_adopted")
    assert report["sent"] > 200
    assert report["failed"] == 0, report
