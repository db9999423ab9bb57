"""Upstream GATEWAY-HTTP Core conformance tests replayed with real traffic through
`gwctl run`, the kernel handoff and Envoy (see tests/l7/conformance.py for what the
replay adds to the manifests). Each test swaps the config directory: base manifests +
the test's manifests + static EndpointSlices; then checks the status conditions and
sends the test's requests (each expectation 3 times in a row within 30 s).

The measured results are printed (`-s`) and summarised in docs/conformance.md."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ctl.dataplane import loader
from l7sidecar.envoy import RunPaths, stop_envoy
from lab import netlab
from tests.net.test_dataplane_net import _missing

from . import conformance as conf
from .conformance import APP, INFRA, WEB, Expect
from .test_l7_net import L7Agent, condition, find, wait_for

pytestmark = pytest.mark.net


class Replay:
    def __init__(self, agent: L7Agent) -> None:
        self.agent = agent
        self.addresses: dict[str, object] = {}

    def pod_addresses(self, key) -> list[str]:
        index, octets = conf.PODS[key]
        backend = self.agent.net.backends[index]
        return [str(backend.net4.network_address + o) for o in octets]

    def apply(self, test_file: str) -> list[dict]:
        docs = conf.manifests(test_file, self.addresses, self.pod_addresses)
        self.agent.replace_config({"conformance.yaml": conf.dump(docs)}, timeout=120)
        return docs

    def send_batch(self, expects: list[Expect]) -> list[list[dict]]:
        requests = [{"url": f"http://{self.addresses[e.gateway]}{e.path}", "host": e.host,
                     "headers": e.headers} for e in expects]
        net = self.agent.net
        done = net.run(net.client.ns, net.python_argv("lab.httpclient", "batch", "--repeat", 3),
                       input=json.dumps(requests), timeout=300)
        return json.loads(done.stdout.strip().splitlines()[-1])

    def routes_accepted(self, docs: list[dict], names: list[str] | None = None) -> list[str]:
        """Each HTTPRoute (or those named) has a parent with Accepted=True and RR True."""
        problems = []
        objects = self.agent.objects()
        for doc in docs:
            if doc.get("kind") != "HTTPRoute" or (names and doc["metadata"]["name"] not in names):
                continue
            route = find(objects, "HTTPRoute", doc["metadata"]["name"])
            parents = route["status"].get("parents", [])
            if not parents:
                problems.append(f"{doc['metadata']['name']}: no parents")
            for parent in parents:
                for kind in ("Accepted", "ResolvedRefs"):
                    c = condition(parent["conditions"], kind)
                    if c["status"] != "True":
                        problems.append(f"{doc['metadata']['name']}: {kind} {c['status']} {c['reason']}")
        return problems

    def listeners_programmed(self, gateway: str) -> bool:
        gw = find(self.agent.objects(), "Gateway", gateway)
        return all(condition(entry["conditions"], "Programmed")["status"] == "True"
                   for entry in gw["status"].get("listeners", []))


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    reason = _missing() or conf.shared_missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("conformance")
    config = work / "config"
    config.mkdir()
    with netlab.lab(backends=3) as net:
        run_paths = RunPaths(Path("/run") / net.prefix)
        by_backend: dict[int, list[str]] = {}
        for (service, namespace), (index, octets) in conf.PODS.items():
            backend = net.backends[index]
            for k, octet in enumerate(octets):
                address = str(backend.net4.network_address + octet)
                net.run(backend.ns, ["ip", "addr", "add", f"{address}/24", "dev", backend.ifname])
                by_backend.setdefault(index, []).extend(["--pod", f"{service}-{k}:{namespace}:{address}"])
        for index, pods in by_backend.items():
            proc = net.popen(net.backends[index].ns, net.python_argv("lab.echo", *pods, "--http", 3000),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            assert proc.stdout.readline().strip() == b"ready"
        (config / "conformance.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                                  "metadata": {"name": INFRA}}))
        agent = None
        try:
            agent = L7Agent(net, config, work / "agent.log")
            yield Replay(agent)
        finally:
            try:
                if agent is not None:
                    agent.stop()
            finally:
                stop_envoy(run_paths)
            shutil.rmtree(run_paths.run_dir, ignore_errors=True)
            for ifindex in [net.gw.front_ifindex] + [b.gw_ifindex for b in net.backends]:
                loader.detach(ifindex, netns=net.gw.ns)
            shutil.rmtree(Path(f"/sys/fs/bpf/{net.prefix}"), ignore_errors=True)
    assert not netlab.leftovers(net.prefix)


def v(n: int, path: str = "/", **kw) -> Expect:
    return Expect(path=path, backend=f"infra-backend-v{n}", **kw)


def not_found(path: str, **kw) -> Expect:
    return Expect(path=path, status=404, **kw)


# (upstream test name, manifest file, the expectations)
CASES: list[tuple[str, str, list[Expect]]] = [
    ("HTTPRouteSimpleSameNamespace", "httproute-simple-same-namespace.yaml", [v(1)]),
    ("HTTPRouteExactPathMatching", "httproute-exact-path-matching.yaml", [
        v(1, "/one"), v(2, "/two"), not_found("/"), not_found("/one/example"), not_found("/two/"),
        not_found("/Two")]),
    ("HTTPRouteMatching", "httproute-matching.yaml", [
        v(1, "/"), v(1, "/example"), v(1, "/v2example"), v(1, "/foo/v2/example"),
        v(1, "/", headers={"version": "one"}), v(2, "/v2"), v(2, "/v2/"), v(2, "/v2/example"),
        v(2, "/", headers={"version": "two"})]),
    ("HTTPRouteMatchingAcrossRoutes", "httproute-matching-across-routes.yaml", [
        v(2, "/v2", host="example.com"), v(2, "/v2/example", host="example.com"),
        v(2, "/", host="example.com", headers={"version": "two"}), v(1, "/v2", host="example.net"),
        v(1, "/", host="example.com"), v(1, "/example", host="example.com"),
        v(1, "/example", host="example.com", headers={"version": "one"})]),
    ("HTTPRoutePathMatchOrder", "httproute-path-match-order.yaml", [
        v(1, "/match"), v(2, "/match/exact"), v(3, "/match/exact/one"), v(2, "/match/prefix/one/any"),
        v(1, "/match/prefix/any"), v(3, "/match/any")]),
    ("HTTPRouteHeaderMatching", "httproute-header-matching.yaml", [
        v(1, headers={"version": "one"}), v(2, headers={"version": "two"}),
        v(1, headers={"version": "two", "color": "orange"}), v(2, headers={"version": "two", "color": "blue"}),
        v(1, headers={"color": "blue"}), v(1, headers={"color": "green"}), v(2, headers={"color": "red"}),
        v(2, headers={"color": "yellow"}), not_found("/", headers={"color": "orange"}),
        not_found("/", headers={"color": "purple"}), not_found("/", headers={"some-other-header": "one"})]),
    ("HTTPRouteListenerHostnameMatching", "httproute-listener-hostname-matching.yaml", [
        Expect("/", "infra-backend-v1", host="bar.com", gateway="httproute-listener-hostname-matching"),
        Expect("/", "infra-backend-v2", host="foo.bar.com", gateway="httproute-listener-hostname-matching"),
        *[Expect("/", "infra-backend-v3", host=h, gateway="httproute-listener-hostname-matching")
          for h in ("baz.bar.com", "boo.bar.com", "multiple.prefixes.bar.com", "multiple.prefixes.foo.com")],
        not_found("/", host="foo.com", gateway="httproute-listener-hostname-matching"),
        not_found("/", host="no.matching.host", gateway="httproute-listener-hostname-matching")]),
    ("HTTPRouteCrossNamespace", "httproute-cross-namespace.yaml", [
        Expect("/", "web-backend", namespace=WEB, gateway="backend-namespaces")]),
    ("HTTPRouteInvalidNonExistentBackendRef", "httproute-invalid-nonexistent-backendref.yaml", [
        Expect("/", status=500)]),
    ("HTTPRouteNoBackendRefs", "httproute-omitted-backendrefs.yaml", [
        Expect("/omitted-no-forward", status=500), Expect("/empty-no-forward", status=500), v(1, "/forward")]),
    ("HTTPRouteRedirectHostAndStatus", "httproute-redirect-host-and-status.yaml", [
        Expect("/hostname-redirect", status=302,
               redirect={"scheme": "http", "host": "example.org", "port": (None, 80), "path": "/hostname-redirect"}),
        Expect("/host-and-status", status=301,
               redirect={"scheme": "http", "host": "example.org", "port": (None, 80), "path": "/host-and-status"})]),
]
# Route status each case must show besides traffic: None = every route accepted with RR True.
STATUS = {
    "HTTPRouteInvalidNonExistentBackendRef": ("ResolvedRefs", "False", "BackendNotFound"),
}

RESULTS: dict[str, str] = {}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name,manifest,expects", CASES, ids=[c[0] for c in CASES])
def test_http_core(replay, name, manifest, expects):
    docs = replay.apply(manifest)
    gateways = {e.gateway for e in expects}
    programmed = wait_for(lambda: all(replay.listeners_programmed(g) for g in gateways), timeout=60)
    problems = [] if programmed else [f"listeners of {sorted(gateways)} not Programmed"]
    if name in STATUS:
        kind, status, reason = STATUS[name]
        route = next(d for d in docs if d.get("kind") == "HTTPRoute")
        parent = find(replay.agent.objects(), "HTTPRoute", route["metadata"]["name"])["status"]["parents"][0]
        accepted = condition(parent["conditions"], "Accepted")
        c = condition(parent["conditions"], kind)
        if accepted["status"] != "True" or (c["status"], c["reason"]) != (status, reason):
            problems.append(f"route conditions: Accepted {accepted['status']}, {kind} {c['status']} {c['reason']}")
    else:
        problems += replay.routes_accepted(docs)
    problems += conf.replay(replay.send_batch, expects)
    RESULTS[name] = "pass" if not problems else "fail: " + "; ".join(problems[:3])
    print(f"CONFORMANCE {name}: {RESULTS[name]}")
    assert not problems, problems


@pytest.mark.timeout(900)
def test_http_core_weight(replay):
    """HTTPRouteWeight: 70/30/0 on v1/v2/v3; of 500 requests each share within 5 points."""
    docs = replay.apply("httproute-weight.yaml")
    assert wait_for(lambda: replay.listeners_programmed("same-namespace"), timeout=60)
    assert not replay.routes_accepted(docs)
    net = replay.agent.net
    counts: dict[str, int] = {}
    for attempt in range(10):
        done = net.run(net.client.ns, net.python_argv(
            "lab.httpclient", "spread", "--url", f"http://{replay.addresses['same-namespace']}/",
            "--count", 500), timeout=300)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        counts = {f"v{n}": sum(c for pod, c in report["pods"].items() if pod.startswith(f"infra-backend-v{n}-"))
                  for n in (1, 2, 3)}
        ok = (report["codes"] == {"200": 500} and abs(counts["v1"] / 500 - 0.7) <= 0.05
              and abs(counts["v2"] / 500 - 0.3) <= 0.05 and counts["v3"] == 0)
        if ok:
            break
    RESULTS["HTTPRouteWeight"] = "pass" if ok else f"fail: {counts}"
    print(f"CONFORMANCE HTTPRouteWeight: {RESULTS['HTTPRouteWeight']} {counts}")
    assert ok, counts
