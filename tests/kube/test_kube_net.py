"""Network tier in Kubernetes mode: `gwctl run --kubernetes` in the lab's gateway
namespace, reading the API emulator, with real traffic to the lab's backends.

The emulator listens twice on one state: inside the gateway namespace (for the agent,
which cannot reach the root namespace's loopback) and in the root namespace (for the
test). Services and EndpointSlices in the emulator point at the lab's backends; the
agent writes status back to the emulator as it would to a cluster."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ctl.agent.progress import NODE_LEASE_PREFIX, PROGRAMMED_ANNOTATION
from ctl.dataplane.pinned import PinnedMaps
from lab import netlab
from lab.kubeapi import KubeApi

from ..net.test_agent_net import (SCENARIOS, Agent, assert_conformance_traffic, conformance_files,
                                 dns_answer_through_the_udp_listener, remove_agent_state, spread)
from ..net.test_dataplane_net import _missing
from .test_kube_source import wait_for

pytestmark = pytest.mark.net
GROUP = "gateway.networking.k8s.io"
NODE = "lab-node"
NAMESPACE = "xdp-gateway"
KUBE_PORT = 6443
# Objects every scenario starts from and never removes.
BASELINE = {("Namespace", "", "default"), ("Namespace", "", "kube-system"), ("Namespace", "", NAMESPACE)}


def key_of(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc["metadata"]
    namespace = "" if doc["kind"] in ("Namespace", "GatewayClass") else meta.get("namespace", "default")
    return doc["kind"], namespace, meta["name"]


class KubeAgent(Agent):
    """The same agent process, in Kubernetes mode."""

    def __init__(self, net: netlab.Lab, kube: KubeApi, kubeconfig: Path, log_path: Path):
        self.kube = kube
        self.kubeconfig = kubeconfig
        self.applied: dict[tuple[str, str, str], dict[str, Any]] = {}
        super().__init__(net, kubeconfig.parent, log_path)

    def start(self) -> None:
        net = self.net
        argv = [sys.executable, "-m", "ctl.cli", "run", "--kubernetes", "--kubeconfig", self.kubeconfig,
                "--node-name", NODE, "--namespace", NAMESPACE, "--lease-duration", 3,
                "--interface", "front", *[a for b in net.backends for a in ("--interface", b.gw_ifname)],
                "--address", net.vip4, "--pin-dir", self.pin_dir, "--listen", f"{self.api}:9480"]
        self.proc = net.popen(net.gw.ns, argv, host_mounts=True, stdout=subprocess.DEVNULL,
                              stderr=self.log_path.open("a"))
        self.wait_ready()

    def wait_ready(self, timeout: float = 240) -> None:
        # Compiling the programs takes long on a busy machine. /readyz needs a first programming, which needs something in the cluster.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            if self.get("/healthz").get("status") == 200 and self.reporting():
                return
            time.sleep(0.3)
        raise TimeoutError(f"agent not up:\n{self.log_path.read_text()}")

    def reporting(self) -> bool:
        """The agent reached the cluster: its node report exists."""
        leases = self.kube.objects("coordination.k8s.io", "leases", NAMESPACE)
        return any(lease["metadata"]["name"] == f"{NODE_LEASE_PREFIX}{NODE}" for lease in leases)

    def apply(self, docs: list[dict[str, Any]], timeout: float = 10) -> None:
        """Makes the cluster hold exactly these objects (plus the baseline), as a GitOps
        tool would, and waits for the agent to reconcile them."""
        before = self.reconciles()
        wanted = {key_of(doc): doc for doc in docs}
        changed = False
        for key, doc in list(self.applied.items()):
            if key not in wanted and key not in BASELINE:
                self.kube.remove(doc)
                del self.applied[key]
                changed = True
        for key, doc in wanted.items():
            if self.applied.get(key) != doc:
                self.kube.put(doc)
                self.applied[key] = copy.deepcopy(doc)
                changed = True
        if not changed:
            return
        # The objects arrive one by one, as from a real API server, so the agent may
        # reconcile an intermediate state first: wait until it has been quiet well past
        # its settle window (0.5 s at most; a busy machine delays watch events too).
        deadline = time.monotonic() + timeout
        last, quiet_since = before, time.monotonic()
        while time.monotonic() < deadline:
            count = self.reconciles()
            if count != last:
                last, quiet_since = count, time.monotonic()
            elif count > before and not self.problems() and time.monotonic() - quiet_since > 2.0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"agent did not reconcile; problems: {self.problems()}\n{self.log_path.read_text()[-3000:]}")

    def replace_config(self, files: dict[str, str], expect_problems: bool = False, timeout: float = 10) -> None:
        self.apply([doc for text in files.values() for doc in yaml.safe_load_all(text) if doc], timeout)


@pytest.fixture(scope="module")
def kube_agent(tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("kube-agent")
    with netlab.lab(backends=3) as net:
        net.start_servers(tcp_ports=(3000, 8080), udp_ports=(8080, 5353))
        kube = KubeApi()
        kube.listen("127.0.0.1", 0)  # the test's side
        inside = kube.listen("127.0.0.1", KUBE_PORT, netns=net.gw.ns)  # the agent's side
        kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(json.dumps(kube.kubeconfig(inside)))
        running = KubeAgent(net, kube, kubeconfig, work / "agent.log")
        try:
            yield running
        finally:
            try:
                running.stop()
            finally:
                kube.close()
                remove_agent_state(net)
    assert not netlab.leftovers(net.prefix)


def documents(files: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for text in files.values() for doc in yaml.safe_load_all(text) if doc]


# -- the L4 conformance scenarios, read from the cluster --------------------------------
def forget_flows(pin_dir: Path) -> None:
    """Empties the conntrack maps. A scenario counts where new flows go; a UDP "flow" of an
    earlier scenario whose 5-tuple a new client socket happens to reuse would still go
    to the backend it chose then (as it should), and be miscounted here."""
    with PinnedMaps.open(pin_dir) as maps:
        for name in ("ct_fwd", "ct_rev"):
            for key in maps.keys(name):
                maps.delete(name, key)


@pytest.mark.parametrize("case", list(SCENARIOS))
def test_conformance_traffic_from_the_cluster(kube_agent, case):
    forget_flows(kube_agent.pin_dir)
    assert_conformance_traffic(kube_agent, case)


def test_statuses_reach_the_cluster_and_programmed_follows_the_node(kube_agent):
    kube = kube_agent.kube
    kube_agent.replace_config(conformance_files("tcproute-multiple-routes-attachment"))
    gateway_name = "tcp-multi-route-attach-gateway"
    namespace = next(ns for kind, ns, name in kube_agent.applied if kind == "Gateway" and name == gateway_name)

    def gateway() -> dict:
        return kube.read(GROUP, "gateways", namespace, gateway_name)

    def programmed() -> dict | None:
        return next((c for c in (gateway().get("status") or {}).get("conditions") or [] if c["type"] == "Programmed"), None)

    wait_for(lambda: (p := programmed()) and p["status"] == "True", timeout=15, what="Programmed=True")
    assert [listener["attachedRoutes"] for listener in gateway()["status"]["listeners"]] == [2]
    for route in ("tcproute-attach-older", "tcproute-attach-newer"):
        status = kube.read(GROUP, "tcproutes", namespace, route)["status"]
        (parent,) = status["parents"]
        accepted = next(c for c in parent["conditions"] if c["type"] == "Accepted")
        assert accepted["status"] == "True" and accepted["observedGeneration"] == 1, (route, accepted)
    metrics = kube_agent.get("/metrics")["text"]
    assert re.search(r"^xdpgw_status_writer 1\.0$", metrics, re.M), "the only agent holds the writer Lease"
    assert re.search(r"^xdpgw_status_writes_total [1-9]", metrics, re.M)
    assert re.search(r"^xdpgw_kubernetes_synced 1\.0$", metrics, re.M)
    lease = kube.read("coordination.k8s.io", "leases", NAMESPACE, f"{NODE_LEASE_PREFIX}{NODE}")
    report = json.loads(lease["metadata"]["annotations"][PROGRAMMED_ANNOTATION])
    assert report["error"] == "" and report["generations"][f"Gateway/{namespace}/{gateway_name}"] == 1


# -- endpoints: scaling a Service's EndpointSlice ---------------------------------------
def web_config(net: netlab.Lab, endpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"apiVersion": f"{GROUP}/v1", "kind": "GatewayClass", "metadata": {"name": "xdp-gateway"},
         "spec": {"controllerName": "xdp-gateway.io/gateway-controller"}},
        {"apiVersion": f"{GROUP}/v1", "kind": "Gateway", "metadata": {"name": "edge", "namespace": "default"},
         "spec": {"gatewayClassName": "xdp-gateway", "addresses": [{"type": "IPAddress", "value": str(net.vip4)}],
                  "listeners": [{"name": "web", "protocol": "TCP", "port": 80}]}},
        {"apiVersion": f"{GROUP}/v1alpha2", "kind": "TCPRoute", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "edge"}], "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"ports": [{"name": "tcp", "port": 8080, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"name": "tcp", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints},
    ]


def endpoint(net: netlab.Lab, index: int, ready: bool = True, terminating: bool = False) -> dict[str, Any]:
    return {"addresses": [str(net.backends[index].v4)],
            "conditions": {"ready": ready, "serving": True, "terminating": terminating}}


def edit_slice(agent: KubeAgent, endpoints: list[dict[str, Any]]) -> float:
    """Writes the slice straight to the cluster; returns when it was written."""
    doc = web_config(agent.net, endpoints)[-1]
    agent.kube.put(doc)
    agent.applied[key_of(doc)] = doc
    return time.monotonic()


def test_scaling_an_endpoint_slice_moves_new_flows_within_a_second_and_keeps_live_ones(kube_agent):
    net = kube_agent.net
    kube_agent.apply(web_config(net, [endpoint(net, 0)]))
    assert spread(kube_agent, "tcp", 80, count=20)["counts"] == {"be0": 20}
    session = net.start_tcp_session(net.vip4, 80, "--interval-ms", 20)
    try:
        # Scale up: new flows reach every backend within a second.
        written = edit_slice(kube_agent, [endpoint(net, i) for i in range(3)])
        time.sleep(max(0.0, 1.0 - (time.monotonic() - written)))
        up = spread(kube_agent, "tcp", 80, count=300)
        assert set(up["counts"]) == {"be0", "be1", "be2"} and up["timeout"] == 0, up
        # Scale down: be0 is serving but terminating; new flows leave it, the live one stays.
        written = edit_slice(kube_agent, [endpoint(net, 0, ready=False, terminating=True), endpoint(net, 1), endpoint(net, 2)])
        time.sleep(max(0.0, 1.0 - (time.monotonic() - written)))
        down = spread(kube_agent, "tcp", 80, count=200)
        assert set(down["counts"]) == {"be1", "be2"} and down["timeout"] == 0, down
        time.sleep(0.5)
    finally:
        report = session.stop()
    assert report["errors"] == [] and report["exchanges"] >= 50, report
    assert report["backend"] == "be0", report


def test_a_map_entry_deleted_behind_the_agents_back_is_restored_while_the_cluster_is_quiet(kube_agent):
    """As standalone: edits are planned against what the agent wrote, and while nothing
    changes in the cluster it reads the maps back now and then, so drift is repaired
    without waiting for the next change."""
    from ipaddress import ip_address

    from ctl.agent.run import REPAIR_INTERVAL
    from ctl.dataplane import writer
    from ctl.model import FrontendKey, Protocol

    net = kube_agent.net
    kube_agent.apply(web_config(net, [endpoint(net, 0), endpoint(net, 1)]))
    edit_slice(kube_agent, [endpoint(net, 1)])
    wait_for(lambda: spread(kube_agent, "tcp", 80, count=10)["counts"] == {"be1": 10}, timeout=10,
             what="the edited slice programmed")
    key = writer.frontend_key_struct(FrontendKey(ip_address(net.vip4), 80, Protocol.TCP))
    repaired_before = len(kube_agent.events("repaired"))
    with PinnedMaps.open(kube_agent.pin_dir) as maps:
        assert maps.delete("frontends", key)
        wait_for(lambda: maps.get("frontends", key) is not None, timeout=REPAIR_INTERVAL + 20,
                 what="the deleted frontend restored")
    # The log line follows the write (after the collector's pass): wait for it too.
    wait_for(lambda: len(kube_agent.events("repaired")) > repaired_before, timeout=10, what="the repair logged")
    assert spread(kube_agent, "tcp", 80, count=20)["counts"] == {"be1": 20}


def test_the_api_server_away_for_ten_seconds_keeps_traffic_and_converges_after(kube_agent):
    net = kube_agent.net
    kube_agent.apply(web_config(net, [endpoint(net, 0), endpoint(net, 1)]))
    kube = kube_agent.kube
    kube.go_down()
    went_down = time.monotonic()
    try:
        session = net.start_tcp_session(net.vip4, 80, "--interval-ms", 50)
        during = spread(kube_agent, "tcp", 80, count=100)
        assert set(during["counts"]) == {"be0", "be1"} and during["timeout"] == 0, during
        # A change made while the agent cannot see it (as on an API server restored elsewhere).
        doc = web_config(net, [endpoint(net, 2)])[-1]
        kube.put(doc)
        kube_agent.applied[key_of(doc)] = doc
        time.sleep(max(0.0, 10.0 - (time.monotonic() - went_down)))
        still = spread(kube_agent, "tcp", 80, count=50)
        assert set(still["counts"]) == {"be0", "be1"} and still["timeout"] == 0, still
        assert kube_agent.get("/readyz").get("status") == 200, "the agent stays ready while the API server is away"
    finally:
        kube.come_back()
    report = session.stop()
    assert report["errors"] == [], report
    # Converges: the watch reconnects (backoff ceiling 10 s) and sees the change.
    try:
        wait_for(lambda: spread(kube_agent, "tcp", 80, count=20)["counts"] == {"be2": 20}, timeout=30,
                 what="convergence after the API server came back")
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{kube_agent.log_path.read_text()[-4000:]}") from None
    assert kube_agent.events("watch-error"), "the agent noticed the API server was away"


@pytest.mark.parametrize("case", ["tcproute-invalid-cross-namespace-backend-ref", "tcproute-invalid-backendref-nonexistent"])
def test_conformance_invalid_tcp_backends_are_refused_and_reported_in_the_cluster(kube_agent, case):
    kube_agent.replace_config(conformance_files(case))
    port = 9321 if "cross" in case else 9300
    def connect() -> dict:
        return kube_agent.net.run_client("tcp-connect-once", "--addr", kube_agent.net.vip4, "--port", port,
                                         "--timeout", 5)

    # A deadline, not a figure: on a loaded machine one attempt alone can take 5 s.
    wait_for(lambda: connect()["result"] == "refused", timeout=30, what="the listener refusing")
    # Once programmed, the refusal is a reset to the first SYN, not a drop: the first
    # refusal above may still have met the old state and come from a retransmission.
    result = connect()
    assert result["result"] == "refused" and result["elapsed_ms"] < 500, result
    (kind, namespace, name), = [key for key in kube_agent.applied if key[0] == "TCPRoute"]

    def resolved() -> dict | None:
        parents = (kube_agent.kube.read(GROUP, "tcproutes", namespace, name).get("status") or {}).get("parents") or []
        return next((c for p in parents for c in p["conditions"] if c["type"] == "ResolvedRefs"), None)

    condition = wait_for(resolved, timeout=10, what="ResolvedRefs in the cluster")
    assert condition["status"] == "False"
    assert condition["reason"] == ("RefNotPermitted" if "cross" in case else "BackendNotFound")


@pytest.mark.parametrize("case", ["udproute-invalid-cross-namespace-backend-ref", "udproute-invalid-backendref-nonexistent"])
def test_conformance_invalid_udp_backends_drop(kube_agent, case):
    kube_agent.replace_config(conformance_files(case))
    report = spread(kube_agent, "udp", 5300, count=10, timeout=0.5)
    assert report["timeout"] == 10, report


def test_conformance_dns_query_through_the_udp_listener(kube_agent):
    if shutil.which("dnsmasq") is None:
        pytest.skip("needs dnsmasq (scripts/setup.sh installs dnsmasq-base)")
    answer = dns_answer_through_the_udp_listener(kube_agent)
    assert answer["answers"] == ["192.0.2.123"], answer
