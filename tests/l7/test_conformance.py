"""Upstream GATEWAY-HTTP Core conformance tests replayed with real traffic through
`gwctl run`, the kernel handoff and Envoy (see tests/l7/conformance.py for what the
replay adds to the manifests). Each test swaps the config directory: base manifests +
the test's manifests + static EndpointSlices; then checks the status conditions and
sends the test's requests (each expectation 3 times in a row within 30 s).

The measured results are printed (`-s`) and summarised in docs/conformance.md."""

from __future__ import annotations

import json

import pytest

from . import conformance as conf
from .conformance import WEB, Expect, condition, expect_equal, find, gateway_conditions, listener_status
from .test_l7_net import wait_for

pytestmark = pytest.mark.net


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


def g(n: int, method: str = "Echo", **kw) -> conf.GrpcExpect:
    return conf.GrpcExpect(method=method, backend=f"grpc-infra-backend-v{n}", **kw)


def unimplemented(method: str = "Echo", **kw) -> conf.GrpcExpect:
    return conf.GrpcExpect(method=method, code="UNIMPLEMENTED", **kw)


HOSTNAMES = "grpcroute-listener-hostname-matching"
GRPC_CASES: list[tuple[str, str, list[conf.GrpcExpect]]] = [
    ("GRPCExactMethodMatching", "grpcroute-exact-method-matching.yaml", [
        g(1, "Echo"), g(2, "EchoTwo"), unimplemented("EchoThree")]),
    ("GRPCRouteHeaderMatching", "grpcroute-header-matching.yaml", [
        g(1, metadata={"version": "one"}), g(2, metadata={"version": "two"}),
        g(1, metadata={"version": "two", "color": "orange"}), g(2, metadata={"version": "two", "color": "blue"}),
        g(1, metadata={"color": "blue"}), g(1, metadata={"color": "green"}), g(2, metadata={"color": "red"}),
        g(2, metadata={"color": "yellow"}), unimplemented(metadata={"color": "orange"}),
        unimplemented(metadata={"color": "purple"}), unimplemented(metadata={"some-other-header": "one"})]),
    ("GRPCRouteListenerHostnameMatching", "grpcroute-listener-hostname-matching.yaml", [
        g(1, authority="bar.com", gateway=HOSTNAMES), g(2, authority="foo.bar.com", gateway=HOSTNAMES),
        *[g(3, authority=h, gateway=HOSTNAMES) for h in
          ("baz.bar.com", "boo.bar.com", "multiple.prefixes.bar.com", "multiple.prefixes.foo.com")],
        unimplemented(authority="foo.com", gateway=HOSTNAMES),
        unimplemented(authority="no.matching.host", gateway=HOSTNAMES)]),
]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name,manifest,expects", GRPC_CASES, ids=[c[0] for c in GRPC_CASES])
def test_grpc_core(replay, name, manifest, expects):
    docs = replay.apply(manifest)
    gateways = {e.gateway for e in expects}
    programmed = wait_for(lambda: all(replay.listeners_programmed(gw) for gw in gateways), timeout=60)
    problems = [] if programmed else [f"listeners of {sorted(gateways)} not Programmed"]
    if name != "GRPCRouteListenerHostnameMatching":  # that test checks listener conditions only
        problems += replay.routes_accepted(docs)
    problems += conf.replay_grpc(replay.send_grpc, expects)
    RESULTS[name] = "pass" if not problems else "fail: " + "; ".join(problems[:3])
    print(f"CONFORMANCE {name}: {RESULTS[name]}")
    assert not problems, problems


@pytest.mark.timeout(900)
def test_grpc_core_weight(replay):
    """GRPCRouteWeight: 70/30/0; 500 Echo calls, each on a new connection; shares within
    5 points, v3 none; up to 10 tries."""
    docs = replay.apply("grpcroute-weight.yaml")
    assert wait_for(lambda: replay.listeners_programmed("same-namespace"), timeout=60)
    assert not replay.routes_accepted(docs)
    counts: dict[str, int] = {}
    ok = False
    for attempt in range(10):
        answers = replay.send_grpc([conf.GrpcExpect()], repeat=500)[0]
        counts = {f"v{n}": sum(1 for a in answers if a.get("pod", "").startswith(f"grpc-infra-backend-v{n}-"))
                  for n in (1, 2, 3)}
        codes = {a["code"] for a in answers}
        ok = (codes == {"OK"} and abs(counts["v1"] / 500 - 0.7) <= 0.05
              and abs(counts["v2"] / 500 - 0.3) <= 0.05 and counts["v3"] == 0)
        if ok:
            break
    RESULTS["GRPCRouteWeight"] = "pass" if ok else f"fail: {counts}"
    print(f"CONFORMANCE GRPCRouteWeight: {RESULTS['GRPCRouteWeight']} {counts}")
    assert ok, counts


# -- the Gateway tests shared by all three profiles: status only --------------------------

def check_unsupported_protocol(objects) -> list[str]:
    p: list[str] = []
    expect_equal(p, "only-invalid Accepted", gateway_conditions(objects, "gateway-only-unsupported-protocols").get("Accepted"),
                 ("False", "ListenersNotValid"))
    only = find(objects, "Gateway", "gateway-only-unsupported-protocols")["status"]["listeners"]
    for entry in only:
        s = listener_status(objects, "gateway-only-unsupported-protocols", entry["name"])
        expect_equal(p, f"{entry['name']} Accepted", s["conditions"].get("Accepted"), ("False", "UnsupportedProtocol"))
        expect_equal(p, f"{entry['name']} supportedKinds", s["kinds"], [])
        expect_equal(p, f"{entry['name']} attachedRoutes", s["attached"], 0)
    both = "gateway-supported-and-unsupported-protocols"
    expect_equal(p, "mixed Accepted", gateway_conditions(objects, both).get("Accepted"), ("True", "ListenersNotValid"))
    http = next(e["name"] for e in find(objects, "Gateway", both)["status"]["listeners"]
                if listener_status(objects, both, e["name"])["conditions"].get("Accepted", ("",))[0] == "True")
    s = listener_status(objects, both, http)
    expect_equal(p, "http listener Accepted", s["conditions"].get("Accepted"), ("True", "Accepted"))
    if "HTTPRoute" not in s["kinds"]:
        p.append(f"http listener supportedKinds {s['kinds']}")
    return p


def check_invalid_parameters_ref(objects) -> list[str]:
    p: list[str] = []
    expect_equal(p, "Accepted", gateway_conditions(objects, "gateway-invalid-parameters-ref").get("Accepted"),
                 ("False", "InvalidParameters"))
    return p


def check_invalid_route_kind(objects) -> list[str]:
    p: list[str] = []
    for gateway, kinds in (("gateway-only-invalid-route-kind", []),
                           ("gateway-supported-and-invalid-route-kind", ["HTTPRoute"])):
        for entry in find(objects, "Gateway", gateway)["status"]["listeners"]:
            s = listener_status(objects, gateway, entry["name"])
            expect_equal(p, f"{gateway} ResolvedRefs", s["conditions"].get("ResolvedRefs"), ("False", "InvalidRouteKinds"))
            expect_equal(p, f"{gateway} supportedKinds", s["kinds"], kinds)
            expect_equal(p, f"{gateway} attachedRoutes", s["attached"], 0)
    return p


def check_invalid_tls_configuration(objects) -> list[str]:
    p: list[str] = []
    for gateway in ("gateway-certificate-nonexistent-secret", "gateway-certificate-unsupported-group",
                    "gateway-certificate-unsupported-kind", "gateway-certificate-malformed-secret"):
        for entry in find(objects, "Gateway", gateway)["status"]["listeners"]:
            s = listener_status(objects, gateway, entry["name"])
            expect_equal(p, f"{gateway} ResolvedRefs", s["conditions"].get("ResolvedRefs"), ("False", "InvalidCertificateRef"))
            if "HTTPRoute" not in s["kinds"]:
                p.append(f"{gateway} supportedKinds {s['kinds']}")
            expect_equal(p, f"{gateway} attachedRoutes", s["attached"], 0)
    return p


GATEWAY_CASES = [
    ("GatewayListenerUnsupportedProtocol", "gateway-invalid-listeners-unsupported-protocol.yaml", check_unsupported_protocol),
    ("GatewayInvalidParametersRef", "gateway-invalid-parameters-ref.yaml", check_invalid_parameters_ref),
    ("GatewayInvalidRouteKind", "gateway-invalid-route-kind.yaml", check_invalid_route_kind),
    ("GatewayInvalidTLSConfiguration", "gateway-invalid-tls-configuration.yaml", check_invalid_tls_configuration),
]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name,manifest,check", GATEWAY_CASES, ids=[c[0] for c in GATEWAY_CASES])
def test_gateway_core(replay, name, manifest, check):
    replay.apply(manifest)
    problems = check(replay.agent.objects())
    RESULTS[name] = "pass" if not problems else "fail: " + "; ".join(problems[:3])
    print(f"CONFORMANCE {name}: {RESULTS[name]}")
    assert not problems, problems
