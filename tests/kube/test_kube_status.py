"""Status that does not lie, against the API emulator: one writer chosen by a Lease,
takeover when it dies, 409s retried, other controllers' parents kept, observedGeneration
tracking edits, and Programmed following what every node reports it holds.

The agents here are the real Kubernetes mode (source, reconciler, node report, election,
status writer) with a recording data path in place of the kernel maps, so a node can be
made to lag or to fail on purpose; tests/kube/test_kube_net.py runs it on a real kernel."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import ip_address

import pytest
from kubernetes import client

from ctl.agent.cluster import ClusterStatus
from ctl.agent.kubernetes import KubernetesAgent
from ctl.agent.progress import NODE_LEASE_PREFIX, STATUS_LEASE_NAME
from ctl.agent.reconciler import Reconciler
from ctl.model import DesiredState
from ctl.dataplane.plan import DataplaneConfig, Plan, PlanError, PutConfig
from ctl.api import parse_object
from ctl.sources import LoadResult, Snapshot
from ctl.sources.kubernetes import KubernetesSource
from ctl.translate import TranslateConfig

from .conftest import api_client
from .test_kube_source import example_documents, wait_for

NAMESPACE = "xdp-gateway"
LEASE_SECONDS = 3
GROUP = "gateway.networking.k8s.io"
OURS = "xdp-gateway.io/gateway-controller"


@dataclass
class RecordingDataPath:
    """Answers like the map writer; `gate` cleared makes programming wait (a node that
    lags), `error` makes it fail (a node whose maps are full)."""

    error: Exception | None = None
    gate: threading.Event = field(default_factory=threading.Event)
    programmed: list[DesiredState] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gate.set()

    def program(self, desired: DesiredState) -> Plan:
        self.gate.wait()
        self.programmed.append(desired)
        if self.error is not None:
            raise self.error
        return Plan(ops=(PutConfig(DataplaneConfig()),), service_ids={}, backend_ids={})


class Node:
    """One agent in Kubernetes mode on its own thread."""

    def __init__(self, url: str, name: str):
        self.name = name
        self.datapath = RecordingDataPath()
        config = TranslateConfig(now=datetime.now(UTC), snat_addresses=(ip_address("10.99.10.1"),))
        reconciler = Reconciler(program=self.datapath.program, config=config)
        self.agent = KubernetesAgent(api_client(url), reconciler, name, NAMESPACE, lease_duration=LEASE_SECONDS)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.agent.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def kill(self) -> None:
        """Stops without handing anything over (the Lease stays as it was), like a crashed pod."""
        self.agent.cluster.stop()
        self.stop_event.set()
        self.datapath.gate.set()
        self.thread.join(timeout=15)


@pytest.fixture
def cluster(kubeapi):
    api, url = kubeapi
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    for doc in example_documents():
        api.put(doc)
    nodes: list[Node] = []

    def start(name: str) -> Node:
        node = Node(url, name)
        nodes.append(node)
        return node

    try:
        yield api, start
    finally:
        for node in nodes:
            node.kill()


def gateway(api) -> dict:
    return api.read(GROUP, "gateways", "default", "edge")


def condition(conditions: list[dict], kind: str) -> dict | None:
    return next((c for c in conditions or [] if c["type"] == kind), None)


def programmed(api) -> dict | None:
    return condition((gateway(api).get("status") or {}).get("conditions"), "Programmed")


def holder(api) -> str | None:
    try:
        return api.read("coordination.k8s.io", "leases", NAMESPACE, STATUS_LEASE_NAME)["spec"]["holderIdentity"]
    except Exception:  # noqa: BLE001 - not created yet
        return None


def status_writers(api, since: int = 0) -> set[str]:
    return {r.user_agent for r in api.requests_since(since) if r.subresource == "status" and r.verb in ("update", "patch")}


def edit_route(api, port: int) -> dict:
    route = next(copy.deepcopy(d) for d in example_documents() if d["kind"] == "TCPRoute")
    route["spec"]["rules"][0]["backendRefs"][0]["port"] = port
    return api.put(route)


def test_only_the_lease_holder_writes_and_another_takes_over_when_it_dies(cluster):
    api, start = cluster
    nodes = {name: start(name) for name in ("node-a", "node-b")}
    wait_for(lambda: (p := programmed(api)) and p["status"] == "True", timeout=20, what="Programmed=True")
    leader = holder(api)
    assert leader in nodes
    assert status_writers(api) == {f"xdp-gateway/{leader}"}, "only the Lease holder writes status"

    killed = time.monotonic()
    nodes[leader].kill()
    mark = len(api.requests_since())
    edited = edit_route(api, 8080 + 1)
    generation = edited["metadata"]["generation"]

    def route_observed() -> bool:
        route = api.read(GROUP, "tcproutes", "default", "db")
        parents = (route.get("status") or {}).get("parents") or []
        return any(c["observedGeneration"] == generation for p in parents for c in p["conditions"])

    wait_for(route_observed, timeout=4 * LEASE_SECONDS, what="the other node taking over")
    survivor = next(name for name in nodes if name != leader)
    assert holder(api) == survivor
    took = time.monotonic() - killed
    assert took < 2 * LEASE_SECONDS + 1, f"takeover took {took:.1f}s with a {LEASE_SECONDS}s lease"
    assert status_writers(api, mark) == {f"xdp-gateway/{survivor}"}
    transitions = api.read("coordination.k8s.io", "leases", NAMESPACE, STATUS_LEASE_NAME)["spec"]["leaseTransitions"]
    assert transitions == 1


def test_other_controllers_parents_are_kept_and_conflicts_retried(kubeapi):
    api, url = kubeapi
    for doc in example_documents():
        api.put(doc)
    theirs = {"parentRef": {"group": GROUP, "kind": "Gateway", "name": "elsewhere"},
              "controllerName": "example.com/other",
              "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                              "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    route = api.read(GROUP, "tcproutes", "default", "db")
    api.put({**route, "status": {"parents": [theirs]}})

    # The writer's parts, driven step by step.
    kube = api_client(url)
    source = KubernetesSource(kube)
    config = TranslateConfig(now=datetime.now(UTC), snat_addresses=(ip_address("10.99.10.1"),))
    reconciler = Reconciler(program=RecordingDataPath().program, config=config)
    writer = ClusterStatus(kube, source, "node-a", NAMESPACE, OURS, lambda: reconciler.statuses, lease_duration=LEASE_SECONDS)
    source.start()
    try:
        wait_for(lambda: source.synced, what="the first list")
        first = source.load()
        assert reconciler.reconcile(first).applied
        writer.reconciled(first.snapshot, True, ())
        assert writer.elect()
        writer.write_statuses()
    finally:
        source.stop()  # from here on the writer's copy of the route goes stale

    def parents() -> list[dict]:
        return (api.read(GROUP, "tcproutes", "default", "db").get("status") or {}).get("parents") or []

    assert parents()[0] == theirs and parents()[1]["controllerName"] == OURS and len(parents()) == 2

    # Another controller adds an entry after the writer's copy was taken ...
    second = copy.deepcopy(theirs)
    second["parentRef"]["name"] = "elsewhere-2"
    fresh = api.read(GROUP, "tcproutes", "default", "db")
    api.state.update(api.kind(GROUP, "tcproutes"), "default", "db",
                     {"status": {"parents": [theirs, second, fresh["status"]["parents"][1]]}}, "status")
    # ... and our status changes (the route now points at a port the Service lacks).
    edited = next(copy.deepcopy(d) for d in example_documents() if d["kind"] == "TCPRoute")
    edited["spec"]["rules"][0]["backendRefs"][0]["port"] = 9000
    loaded = source.load()
    routes = [parse_object(edited, filename="test", index=1) if r.name == "db" else r for r in loaded.snapshot.routes]
    others = [o for o in loaded.snapshot.objects() if o.KIND not in ("TCPRoute", "UDPRoute")]
    edited_snapshot = Snapshot.of([*others, *routes])
    assert reconciler.reconcile(LoadResult(edited_snapshot, ())).applied
    writer.reconciled(edited_snapshot, True, ())

    writer.write_statuses()
    assert writer.conflicts == 1, "the stale write got a 409 and was retried"
    final = parents()
    assert [p["controllerName"] for p in final] == ["example.com/other", "example.com/other", OURS]
    assert final[:2] == [theirs, second]
    resolved = condition(final[2]["conditions"], "ResolvedRefs")
    assert resolved["status"] == "False", final[2]


def test_observed_generation_tracks_edits(cluster):
    api, start = cluster
    start("node-a")

    def observed() -> set[int]:
        route = api.read(GROUP, "tcproutes", "default", "db")
        return {c["observedGeneration"] for p in (route.get("status") or {}).get("parents") or [] for c in p["conditions"]}

    wait_for(lambda: observed() == {1}, timeout=20, what="generation 1")
    for port in (8081, 8082):
        generation = edit_route(api, port)["metadata"]["generation"]
        wait_for(lambda g=generation: observed() == {g}, timeout=10, what=f"generation {generation}")
    assert generation == 3
    gw = gateway(api)
    assert {c["observedGeneration"] for c in gw["status"]["conditions"]} == {gw["metadata"]["generation"]}


def test_programmed_is_false_while_a_node_lags_and_names_a_failing_node(cluster):
    api, start = cluster
    a, b = start("node-a"), start("node-b")
    wait_for(lambda: (p := programmed(api)) and p["status"] == "True", timeout=20, what="Programmed=True")
    wait_for(lambda: holder(api) is not None, what="a writer")

    lagging = b if holder(api) == "node-a" else a
    lagging.datapath.gate.clear()  # this node's next programming waits
    edit_route(api, 8090)
    pending = wait_for(lambda: (p := programmed(api)) and p["status"] == "False" and p, timeout=15,
                       what="Programmed=False while a node lags")
    assert pending["reason"] == "Pending" and lagging.name in pending["message"], pending
    lagging.datapath.gate.set()
    wait_for(lambda: (p := programmed(api)) and p["status"] == "True", timeout=15, what="Programmed=True once caught up")

    lagging.datapath.error = PlanError("5000 frontends exceed the data path's capacity of 4096")
    edit_route(api, 8091)
    failed = wait_for(lambda: (p := programmed(api)) and p["status"] == "False" and p, timeout=15,
                      what="Programmed=False on a failing node")
    assert failed["reason"] == "Invalid", failed
    assert lagging.name in failed["message"] and "capacity of 4096" in failed["message"]
    events = api.objects("events.k8s.io", "events", NAMESPACE)
    assert any(e["reason"] == "ProgrammingFailed" and lagging.name in e["note"] for e in events)

    lagging.datapath.error = None
    edit_route(api, 8092)
    wait_for(lambda: (p := programmed(api)) and p["status"] == "True", timeout=15, what="recovery")
    reports = {lease["metadata"]["name"] for lease in api.objects("coordination.k8s.io", "leases", NAMESPACE)}
    assert {f"{NODE_LEASE_PREFIX}node-a", f"{NODE_LEASE_PREFIX}node-b", STATUS_LEASE_NAME} <= reports
