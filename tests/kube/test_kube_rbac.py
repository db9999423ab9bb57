"""The chart's RBAC grants exactly what the agent uses: every request of a full agent
run against the emulator is allowed by the ClusterRole or the Role, and every verb they
grant is used. The used set comes from the emulator's request log, never by hand.

The run covers every path that talks to the API server: the first list and the watches
of every kind, Secrets named by certificateRefs, the node report (created, then
patched), the writer election (created, then read and renewed), a status write of every
Gateway API kind, a 409 on each kind's status (re-read, retried), an Event for an
invalid object and one for a programming failure."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import yaml

from ctl.dataplane.plan import PlanError
from lab.kubeapi import Request

from .test_kube_source import example_documents, wait_for
from .test_kube_status import GROUP, NAMESPACE, Node

ROOT = Path(__file__).resolve().parents[2]
STATUS_KINDS = ("gatewayclasses", "gateways", "tcproutes", "udproutes", "tlsroutes", "httproutes", "grpcroutes")


def chart_rules() -> list[dict]:
    try:
        import helm_python  # noqa: F401
    except ImportError:
        pytest.skip("needs helm-python-sdk (Helm's library; the dev extra, scripts/setup.sh)")
    spec = importlib.util.spec_from_file_location("render_manifests", ROOT / "scripts" / "render_manifests.py")
    renderer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(renderer)
    objects = renderer.documents(renderer.render(namespace=NAMESPACE))
    return [rule for obj in objects if obj["kind"] in ("ClusterRole", "Role") for rule in obj["rules"]]


def resource_of(request: Request) -> str:
    return f"{request.resource}/{request.subresource}" if request.subresource else request.resource


def allowed(request: Request, rules: list[dict]) -> bool:
    return any(
        request.group in rule["apiGroups"] and resource_of(request) in rule["resources"]
        and request.verb in rule["verbs"]
        and (not rule.get("resourceNames") or request.name in rule["resourceNames"])
        for rule in rules
    )


def full_run(api, url) -> list[Request]:
    l7 = [d for d in yaml.safe_load_all((ROOT / "tests/golden/l7-routes/input.yaml").read_text()) if d]
    for doc in [*example_documents(), *l7]:
        api.put(doc)
    gateway = next(d for d in l7 if d["kind"] == "Gateway")
    for listener in gateway["spec"]["listeners"]:
        for ref in (listener.get("tls") or {}).get("certificateRefs") or []:
            api.put({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                     "metadata": {"name": ref["name"], "namespace": ref.get("namespace", "default")},
                     "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}})
    api.conflict_next_status_write(*STATUS_KINDS)
    node = Node(url, "node-a")
    try:
        def written(plural: str) -> bool:
            return any(r.resource == plural and r.subresource == "status" and r.verb == "update"
                       for r in api.requests_since())

        wait_for(lambda: all(written(kind) for kind in STATUS_KINDS), timeout=30, what="a status write of every kind")
        # An invalid object: an Event from the status writer.
        route = next(copy.deepcopy(d) for d in example_documents() if d["kind"] == "TCPRoute")
        route["spec"]["rules"][0]["backendRefs"][0]["port"] = 70000
        api.put(route)
        # A programming failure: an Event from the node.
        node.datapath.error = PlanError("5000 frontends exceed the data path's capacity of 4096")
        udp = next(copy.deepcopy(d) for d in example_documents() if d["kind"] == "UDPRoute")
        udp["spec"]["rules"][0]["backendRefs"][0]["weight"] = 51
        api.put(udp)
        reasons = lambda: {e["reason"] for e in api.objects("events.k8s.io", "events")}  # noqa: E731
        wait_for(lambda: {"InvalidObject", "ProgrammingFailed"} <= reasons(), timeout=15, what="both Events")
        wait_for(lambda: sum(r.verb == "patch" and r.resource == "leases" for r in api.requests_since()) >= 2,
                 timeout=15, what="a node report renewed")
    finally:
        node.kill()
    return [r for r in api.requests_since() if r.user_agent.startswith("xdp-gateway/")]


def test_the_chart_grants_exactly_what_a_full_agent_run_uses(kubeapi):
    rules = chart_rules()
    used = full_run(*kubeapi)
    assert len({(r.group, resource_of(r), r.verb) for r in used}) >= 20, "the run covers the agent's paths"

    denied = sorted({(r.group, resource_of(r), r.verb, r.name) for r in used if not allowed(r, rules)})
    assert denied == [], f"the agent would be forbidden: {denied}"

    used_verbs = {(r.group, resource_of(r), r.verb) for r in used}
    granted = {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    unused = sorted(granted - used_verbs)
    assert unused == [], f"granted but never used (least privilege): {unused}"
