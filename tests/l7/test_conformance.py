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
from .conformance import (
    APP,
    INFRA,
    WEB,
    Expect,
    all_conditions_current,
    condition_must,
    expect_equal,
    find,
    gateway_conditions,
    gateway_must,
    listener_status,
    listeners_must,
    no_parents_must,
    record,
    route_must,
)
from .test_l7_net import wait_for

pytestmark = pytest.mark.net


def v(n: int, path: str = "/", **kw) -> Expect:
    return Expect(path=path, backend=f"infra-backend-v{n}", **kw)


def not_found(path: str, **kw) -> Expect:
    return Expect(path=path, status=404, **kw)


INTERSECTION = "httproute-hostname-intersection"
INTERSECTION_ALL = "httproute-hostname-intersection-all"

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
    ("HTTPRouteRequestHeaderModifier", "httproute-request-header-modifier.yaml", [
        v(1, "/set", headers={"Some-Other-Header": "val"},
          seen_headers={"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
        v(1, "/set", headers={"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
          seen_headers={"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
        v(1, "/add", headers={"Some-Other-Header": "val"},
          seen_headers={"Some-Other-Header": "val", "X-Header-Add": "add-appends-values"}),
        v(1, "/add", headers={"Some-Other-Header": "val", "X-Header-Add": "some-other-value"},
          seen_headers={"Some-Other-Header": "val", "X-Header-Add": "some-other-value,add-appends-values"}),
        v(1, "/remove", headers={"X-Header-Remove": "val"}, seen_headers={"X-Header-Remove": None}),
        v(1, "/multiple", headers={"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2",
                                   "X-Header-Remove-2": "remove-val-2", "Another-Header": "another-header-val"},
          seen_headers={"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2",
                        "X-Header-Add-1": "header-add-1", "X-Header-Add-2": "add-val-2,header-add-2",
                        "X-Header-Add-3": "header-add-3", "Another-Header": "another-header-val",
                        "X-Header-Remove-1": None, "X-Header-Remove-2": None}),
        # The filter names headers canonically; the request sends them in lower case.
        v(1, "/case-insensitivity", headers={"x-header-set": "original-val-set", "x-header-add": "original-val-add",
                                             "x-header-remove": "original-val-remove",
                                             "Another-Header": "another-header-val"},
          seen_headers={"X-Header-Set": "header-set", "X-Header-Add": "original-val-add,header-add",
                        "Another-Header": "another-header-val", "X-Header-Remove": None})]),
    ("HTTPRouteHostnameIntersection", "httproute-hostname-intersection.yaml", [
        # A port in Host plays no part in matching; the backend sees Host as sent.
        *[Expect(path, f"infra-backend-v{n}", host=host, gateway=INTERSECTION) for path, n, host in (
            ("/s1", 1, "very.specific.com"), ("/s1", 1, "very.specific.com:1234"),
            ("/s2", 2, "foo.wildcard.io"), ("/s2", 2, "bar.wildcard.io"), ("/s2", 2, "foo.bar.wildcard.io"),
            ("/s3", 3, "very.specific.com"),
            ("/s4", 1, "foo.anotherwildcard.io"), ("/s4", 1, "bar.anotherwildcard.io"),
            ("/s4", 1, "foo.bar.anotherwildcard.io"))],
        *[not_found(path, host=host, gateway=INTERSECTION) for path, host in (
            ("/s1", "non.matching.com"), ("/s1", "foo.nonmatchingwildcard.io"), ("/s1", "foo.wildcard.io"),
            ("/non-matching-prefix", "very.specific.com"),
            ("/s2", "non.matching.com"), ("/s2", "wildcard.io"), ("/s2", "very.specific.com"),
            ("/non-matching-prefix", "foo.wildcard.io"),
            ("/s3", "non.matching.com"), ("/s3", "foo.specific.com"), ("/s3", "foo.wildcard.io"),
            ("/s4", "anotherwildcard.io"), ("/s4", "foo.wildcard.io"), ("/s4", "very.specific.com"),
            ("/non-matching-prefix", "foo.anotherwildcard.io"),
            ("/s5", "specific.but.wrong.com"), ("/s5", "wildcard.io"))],
        *[Expect("/", "infra-backend-v2", host=host, gateway=INTERSECTION_ALL)
          for host in ("first.com", "sub.first.com", "second.com", "sub.second.com")],
        not_found("/", host="third.com", gateway=INTERSECTION_ALL),
        not_found("/", host="sub.third.com", gateway=INTERSECTION_ALL)]),
    ("HTTPRouteMultipleGateways", "httproute-multiple-gateways.yaml", [
        v(1, "/shared"), v(1, "/shared", gateway="all-namespaces"), v(2, "/"), v(3, "/", gateway="all-namespaces")]),
    ("HTTPRouteInvalidBackendRefUnknownKind", "httproute-invalid-backendref-unknown-kind.yaml", [
        Expect("/v2", status=500)]),
    ("HTTPRouteInvalidCrossNamespaceBackendRef", "httproute-invalid-cross-namespace-backend-ref.yaml", [
        Expect("/", status=500)]),
    ("HTTPRouteInvalidReferenceGrant", "httproute-invalid-reference-grant.yaml", [Expect("/", status=500)]),
    ("HTTPRoutePartiallyInvalidViaInvalidReferenceGrant", "httproute-partially-invalid-via-invalid-reference-grant.yaml",
     [Expect("/v2", status=500), Expect("/", "app-backend-v1", namespace=APP)]),
]


def refs_unresolved(route: str, reason: str):
    """Accepted, ResolvedRefs=False with this reason."""
    return lambda objects: _problems(route_must, objects, route, ("True", "Accepted"), ("False", reason))


def _problems(check, *args, **kw) -> list[str]:
    problems: list[str] = []
    check(problems, *args, **kw)
    return problems


def check_hostname_intersection(objects) -> list[str]:
    p: list[str] = []
    for route in ("specific-host-matches-listener-specific-host", "specific-host-matches-listener-wildcard-host",
                  "wildcard-host-matches-listener-specific-host", "wildcard-host-matches-listener-wildcard-host",
                  "httproute-hostname-intersection-all"):
        route_must(p, objects, route, ("True", "Accepted"), ("True", "ResolvedRefs"))
    route_must(p, objects, "no-intersecting-hosts", ("False", "NoMatchingListenerHostname"))
    listeners_must(p, objects, INTERSECTION, {
        name: {"attached": n, "kinds": ["HTTPRoute"], "Accepted": ("True", None), "ResolvedRefs": ("True", None)}
        for name, n in (("listener-1", 2), ("listener-2", 1), ("listener-3", 1))})
    return p


# Route status each case must show besides traffic (default: every route accepted, RR True).
STATUS = {
    "HTTPRouteInvalidNonExistentBackendRef": refs_unresolved("invalid-nonexistent-backend-ref", "BackendNotFound"),
    "HTTPRouteInvalidBackendRefUnknownKind": refs_unresolved("invalid-backend-ref-unknown-kind", "InvalidKind"),
    "HTTPRouteInvalidCrossNamespaceBackendRef": refs_unresolved("invalid-cross-namespace-backend-ref", "RefNotPermitted"),
    "HTTPRouteInvalidReferenceGrant": refs_unresolved("reference-grant", "RefNotPermitted"),
    "HTTPRoutePartiallyInvalidViaInvalidReferenceGrant": refs_unresolved("invalid-reference-grant", "RefNotPermitted"),
    "HTTPRouteHostnameIntersection": check_hostname_intersection,
}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name,manifest,expects", CASES, ids=[c[0] for c in CASES])
def test_http_core(replay, name, manifest, expects):
    docs = replay.apply(manifest)
    gateways = {e.gateway for e in expects}
    problems = replay.programmed(*gateways)
    problems += STATUS[name](replay.agent.objects()) if name in STATUS else replay.routes_accepted(docs)
    problems += conf.replay(replay.send_batch, expects)
    record(name, problems)


def check_attached_routes(objects) -> list[str]:
    p: list[str] = []
    listeners_must(p, objects, "gateway-with-one-attached-route", {
        "http": {"attached": 1, "kinds": ["HTTPRoute"], "Accepted": ("True", None), "ResolvedRefs": ("True", None)}})
    listeners_must(p, objects, "gateway-with-two-attached-routes", {
        "http": {"attached": 2, "kinds": ["HTTPRoute"], "Accepted": ("True", None), "ResolvedRefs": ("True", None)}})
    for route in ("http-route-1", "http-route-2", "http-route-3"):
        route_must(p, objects, route, ("True", "Accepted"), ("True", "ResolvedRefs"))
    route_must(p, objects, "http-route-not-accepted", ("False", "NoMatchingListenerHostname"))
    listeners_must(p, objects, "unresolved-gateway-with-one-attached-unresolved-route", {
        "tls": {"attached": 1, "kinds": ["HTTPRoute"], "Programmed": ("False", None), "ResolvedRefs": ("False", None)}})
    route_must(p, objects, "http-route-4", ("True", "Accepted"), ("False", "BackendNotFound"))
    return p


def check_parent_ref_section_name(objects) -> list[str]:
    p: list[str] = []
    no_parents_must(p, objects, "httproute-listener-not-matching-section-name", "NoMatchingParent")
    listeners_must(p, objects, "same-namespace", {"http": {"attached": 0}})
    return p


def check_cross_namespace_parent_ref(objects) -> list[str]:
    p: list[str] = []
    no_parents_must(p, objects, "invalid-cross-namespace-parent-ref", "NotAllowedByListeners", resolved_true=True)
    listeners_must(p, objects, "same-namespace", {"http": {"attached": 0}})
    return p


HTTP_STATUS_CASES = [
    ("GatewayWithAttachedRoutes", "gateway-with-attached-routes.yaml", check_attached_routes),
    ("HTTPRouteInvalidParentRefNotMatchingSectionName", "httproute-invalid-parentref-not-matching-section-name.yaml",
     check_parent_ref_section_name),
    ("HTTPRouteInvalidCrossNamespaceParentRef", "httproute-invalid-cross-namespace-parent-ref.yaml",
     check_cross_namespace_parent_ref),
]


def status_eventually(replay, check, timeout: float = 30.0) -> list[str]:
    """Upstream polls status until it holds: the problems left after timeout."""
    wait_for(lambda: not check(replay.agent.objects()), timeout=timeout)
    return check(replay.agent.objects())


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name,manifest,check", HTTP_STATUS_CASES, ids=[c[0] for c in HTTP_STATUS_CASES])
def test_http_core_status(replay, name, manifest, check):
    replay.apply(manifest)
    record(name, status_eventually(replay, check))


@pytest.mark.timeout(900)
def test_http_core_reference_grant(replay):
    """HTTPRouteReferenceGrant: granted, `/` reaches web-backend; once the test deletes
    the grant, `/` answers 500."""
    docs = replay.apply("httproute-reference-grant.yaml")
    problems = replay.programmed("same-namespace") + replay.routes_accepted(docs)
    problems += conf.replay(replay.send_batch, [Expect("/", "web-backend", namespace=WEB)])
    replay.write([d for d in docs if d["kind"] != "ReferenceGrant"])
    problems += conf.replay(replay.send_batch, [Expect("/", status=500)])
    record("HTTPRouteReferenceGrant", problems)


@pytest.mark.timeout(900)
def test_http_core_service_types(replay):
    """HTTPRouteServiceTypes: the test fills the manual EndpointSlices (IPv4 and IPv6) with
    infra-backend-v1's pod addresses; a cluster's endpoint controller writes the headless
    Service's slice from its selector (app: infra-backend-v1)."""
    docs = replay.apply("httproute-service-types.yaml")
    key = ("infra-backend-v1", INFRA)
    for doc in docs:
        if doc["kind"] == "EndpointSlice" and doc["metadata"]["name"].endswith(("-ip4", "-ip6")):
            addresses = replay.pod_addresses(key) if doc["addressType"] == "IPv4" else replay.pod_addresses6(key)
            doc["endpoints"] = [{"addresses": [a], "conditions": {"ready": True}} for a in addresses]
    headless = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "headless")
    docs.append(conf.endpoint_slice(headless, replay.pod_addresses(key)))
    replay.write(docs)
    problems = replay.programmed("same-namespace") + replay.routes_accepted(docs)
    problems += conf.replay(replay.send_batch, [
        v(1, "/manual-endpointslices"), v(1, "/headless"), v(1, "/headless-manual-endpointslices")])
    record("HTTPRouteServiceTypes", problems)


def bump(replay, docs: list[dict], kind: str, name: str, edit) -> tuple[list[str], list[dict]]:
    """Edits one object's spec in the config directory, as a client updates it through the
    API server; returns a problem if its generation did not move, and the documents written."""
    before = find(replay.agent.objects(), kind, name)["metadata"]["generation"]
    docs = json.loads(json.dumps(docs))
    edit(next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)["spec"])
    replay.write(docs)
    after = find(replay.agent.objects(), kind, name)["metadata"]["generation"]
    moved = [] if after > before else [f"{name}: generation {before} -> {after} after the spec changed"]
    return moved, docs


@pytest.mark.timeout(600)
def test_gatewayclass_observed_generation_bump(replay):
    name = "gatewayclass-observed-generation-bump"
    docs = replay.apply("gatewayclass-observed-generation-bump.yaml")

    def accepted_and_current(objects) -> list[str]:
        gc = find(objects, "GatewayClass", name)
        p: list[str] = []
        condition_must(p, name, gc["status"]["conditions"], "Accepted", ("True", None), gc["metadata"]["generation"])
        return p + all_conditions_current(gc)

    problems = status_eventually(replay, accepted_and_current)
    moved, _ = bump(replay, docs, "GatewayClass", name, lambda spec: spec.update(description="new"))
    problems += moved
    problems += status_eventually(replay, accepted_and_current)
    record("GatewayClassObservedGenerationBump", problems)


@pytest.mark.timeout(600)
def test_gateway_observed_generation_bump(replay):
    name = "gateway-observed-generation-bump"
    docs = replay.apply("gateway-observed-generation-bump.yaml")

    def accepted_programmed_current(objects) -> list[str]:
        p: list[str] = []
        gateway_must(p, objects, name, {"Accepted": ("True", None), "Programmed": ("True", None)})
        return p + all_conditions_current(find(objects, "Gateway", name))

    problems = status_eventually(replay, accepted_programmed_current)
    alternate = {"name": "alternate", "port": 80, "protocol": "HTTP", "hostname": "foo.com",
                 "allowedRoutes": {"namespaces": {"from": "All"}}}
    moved, _ = bump(replay, docs, "Gateway", name, lambda spec: spec["listeners"].append(alternate))
    problems += moved
    problems += status_eventually(replay, accepted_programmed_current)
    record("GatewayObservedGenerationBump", problems)


@pytest.mark.timeout(600)
def test_httproute_observed_generation_bump(replay):
    """After the backend is patched to infra-backend-v2: accepted, RR True, conditions
    current. Beyond upstream (which sends no traffic here): `/` then reaches v2."""
    name = "observed-generation-bump"
    docs = replay.apply("httproute-observed-generation-bump.yaml")

    def accepted_current(objects) -> list[str]:
        p: list[str] = []
        route_must(p, objects, name, ("True", "Accepted"), ("True", "ResolvedRefs"))
        return p + all_conditions_current(find(objects, "HTTPRoute", name))

    problems = status_eventually(replay, accepted_current) + replay.programmed("same-namespace")
    problems += conf.replay(replay.send_batch, [v(1)])

    def to_v2(spec: dict) -> None:
        spec["rules"][0]["backendRefs"][0]["name"] = "infra-backend-v2"

    moved, _ = bump(replay, docs, "HTTPRoute", name, to_v2)
    problems += moved
    problems += status_eventually(replay, accepted_current)
    problems += conf.replay(replay.send_batch, [v(2)])
    record("HTTPRouteObservedGenerationBump", problems)


@pytest.mark.timeout(600)
def test_gateway_modify_listeners(replay):
    """GatewayModifyListeners: an `http` listener (data.test.com) added beside `https`
    on one Gateway, the `https` listener removed from another; each time the generation
    moves, the conditions follow, and the listeners' status is exactly the new set, the
    route attached to each. Beyond upstream (status only): data.test.com then reaches v1
    through the added listener."""
    docs = replay.apply("gateway-modify-listeners.yaml")
    http_listener = {"kinds": ["HTTPRoute"], "Accepted": ("True", None), "ResolvedRefs": ("True", None),
                     "attached": 1}

    def current(gateway: str, listeners: dict[str, dict]):
        def check(objects) -> list[str]:
            p: list[str] = []
            gateway_must(p, objects, gateway, {"Accepted": ("True", None)})
            listeners_must(p, objects, gateway, listeners)
            return p + all_conditions_current(find(objects, "Gateway", gateway))
        return check

    problems = status_eventually(replay, current("gateway-add-listener", {"https": http_listener}))
    problems += status_eventually(replay, current("gateway-remove-listener",
                                                  {"https": http_listener, "http": http_listener}))
    added = {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "data.test.com",
             "allowedRoutes": {"namespaces": {"from": "All"}}}
    moved, docs = bump(replay, docs, "Gateway", "gateway-add-listener", lambda spec: spec["listeners"].append(added))
    problems += moved
    problems += status_eventually(replay, current("gateway-add-listener",
                                                  {"https": http_listener, "http": http_listener}))
    problems += replay.programmed("gateway-add-listener")
    problems += conf.replay(replay.send_batch, [v(1, host="data.test.com", gateway="gateway-add-listener")])

    def remove_https(spec: dict) -> None:
        spec["listeners"] = [entry for entry in spec["listeners"] if entry["name"] == "http"]

    moved, docs = bump(replay, docs, "Gateway", "gateway-remove-listener", remove_https)
    problems += moved
    problems += status_eventually(replay, current("gateway-remove-listener", {"http": http_listener}))
    record("GatewayModifyListeners", problems)


@pytest.mark.timeout(900)
def test_http_core_weight(replay):
    """HTTPRouteWeight: 70/30/0 on v1/v2/v3; of 500 requests, 10 at a time with a random
    X-Jitter header, each share within 5 points and v3 none; up to 10 tries."""
    docs = replay.apply("httproute-weight.yaml")
    assert wait_for(lambda: replay.listeners_programmed("same-namespace"), timeout=60)
    assert not replay.routes_accepted(docs)
    net = replay.agent.net
    counts: dict[str, int] = {}
    for attempt in range(10):
        done = net.run(net.client.ns, net.python_argv(
            "lab.httpclient", "spread", "--url", f"http://{replay.addresses['same-namespace']}/",
            "--count", 500, "--parallel", 10, "--jitter"), timeout=300)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        counts = {f"v{n}": sum(c for pod, c in report["pods"].items() if pod.startswith(f"infra-backend-v{n}-"))
                  for n in (1, 2, 3)}
        ok = (report["codes"] == {"200": 500} and abs(counts["v1"] / 500 - 0.7) <= 0.05
              and abs(counts["v2"] / 500 - 0.3) <= 0.05 and counts["v3"] == 0)
        if ok:
            break
    conf.RESULTS["HTTPRouteWeight"] = "pass" if ok else f"fail: {counts}"
    print(f"CONFORMANCE HTTPRouteWeight: {conf.RESULTS['HTTPRouteWeight']} {counts}")
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
    problems = replay.programmed(*gateways)
    if name != "GRPCRouteListenerHostnameMatching":  # that test checks listener conditions only
        problems += replay.routes_accepted(docs)
    problems += conf.replay_grpc(replay.send_grpc, expects)
    record(name, problems)


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
    conf.RESULTS["GRPCRouteWeight"] = "pass" if ok else f"fail: {counts}"
    print(f"CONFORMANCE GRPCRouteWeight: {conf.RESULTS['GRPCRouteWeight']} {counts}")
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
    objects = replay.agent.objects()
    problems = check(objects)
    for doc in conf.load(conf.TESTS / manifest):  # the test's Gateways: conditions observe the generation
        if doc["kind"] == "Gateway":
            problems += all_conditions_current(find(objects, "Gateway", doc["metadata"]["name"]))
    record(name, problems)
