"""Focused checks of the conformance facts and of translation's own rules. The golden
files cover whole scenarios; these pin the facts that matter most, independently."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ctl.api import ValidationProblem
from ctl.model import Endpoint, NatMode, Protocol
from ctl.sources import Snapshot, parse_documents
from ctl.translate import Condition, ObjectStatus, TranslateConfig, Translation, status_to_k8s, translate
from ctl.translate.hostnames import hostnames_intersect
from ctl.translate.selectors import matches, selector_error

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
CONFIG = TranslateConfig(
    now=NOW,
    addresses=(ipaddress.ip_address("192.0.2.10"),),
    snat_addresses=(ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8::1")),
)


def load(text: str) -> Snapshot:
    result = parse_documents(text, "test.yaml")
    assert not result.problems, [str(p) for p in result.problems]
    return Snapshot.of(result.objects)


def golden_input(case: str) -> Snapshot:
    return load((GOLDEN / case / "input.yaml").read_text())


def status_of(translation: Translation, kind: str, name: str) -> ObjectStatus:
    return next(s for s in translation.statuses if s.kind == kind and s.name == name)


def condition(conditions: Iterable[Condition], kind: str) -> Condition:
    return next(c for c in conditions if c.type == kind)


def backends(translation: Translation, port: int) -> dict[str, float]:
    service = next(s for s in translation.desired.services if s.frontend.port == port)
    return {str(b.endpoint): b.weight for b in service.backends}


# --- conformance facts ---------------------------------------------------------------


@pytest.mark.parametrize(("case", "protocol"), [("tcproute", Protocol.TCP), ("udproute", Protocol.UDP)])
def test_weighted_routing_is_70_30_0(case: str, protocol: Protocol) -> None:
    translation = translate(golden_input(f"conformance-{case}-weighted-routing"), CONFIG)
    [service] = translation.desired.services
    assert service.frontend.protocol is protocol
    assert [b.weight for b in service.backends] == [70, 30, 0]
    assert service.reject_weight == 0


@pytest.mark.parametrize("case", ["tcproute", "udproute"])
def test_multiple_routes_only_the_older_is_programmed(case: str) -> None:
    snapshot = golden_input(f"conformance-{case}-multiple-routes-attachment")
    translation = translate(snapshot, CONFIG)
    kind = "TCPRoute" if case == "tcproute" else "UDPRoute"
    for name in (f"{case}-attach-older", f"{case}-attach-newer"):
        [parent] = status_of(translation, kind, name).parents
        assert condition(parent.conditions, "Accepted").status == "True"
    [gateway] = [s for s in translation.statuses if s.kind == "Gateway"]
    assert gateway.listeners[0].attached_routes == 2
    [service] = translation.desired.services
    assert service.owner == f"{kind} gateway-conformance-infra/{case}-attach-older"
    older_slice = next(s for s in snapshot.endpoint_slices if s.service_name == f"{case[:3]}-attach-backend-1")
    assert [str(b.endpoint.address) for b in service.backends] == list(older_slice.endpoints[0].addresses)


def test_age_beats_name_order() -> None:
    """Rename the older route so that it sorts last by name: it must still win."""
    snapshot = golden_input("conformance-tcproute-multiple-routes-attachment")
    renamed = tuple(
        r.model_copy(update={"metadata": replace(r.metadata, name="zz-older")})
        if r.name == "tcproute-attach-older" else r
        for r in snapshot.tcp_routes
    )
    [service] = translate(replace(snapshot, tcp_routes=renamed), CONFIG).desired.services
    assert service.owner == "TCPRoute gateway-conformance-infra/zz-older"


def test_route_to_non_tcp_listener_is_not_allowed() -> None:
    translation = translate(golden_input("conformance-tcproute-invalid-non-tcp-listener"), CONFIG)
    [parent] = status_of(translation, "TCPRoute", "tcp-route").parents
    accepted = condition(parent.conditions, "Accepted")
    assert (accepted.status, accepted.reason) == ("False", "NotAllowedByListeners")
    gateway = status_of(translation, "Gateway", "tcp-mixed-protocol-gateway")
    assert [listener.attached_routes for listener in gateway.listeners] == [0]
    assert translation.desired.services == ()


@pytest.mark.parametrize(
    ("case", "route", "reason"),
    [
        ("tcproute-invalid-backendref-nonexistent", "tcp-route-invalid-backend-ref-nonexistent", "BackendNotFound"),
        ("udproute-invalid-backendref-nonexistent", "udp-route-invalid-backend-ref-nonexistent", "BackendNotFound"),
        ("tcproute-invalid-cross-namespace-backend-ref", "tcp-invalid-cross-namespace-backend-ref", "RefNotPermitted"),
        ("udproute-invalid-cross-namespace-backend-ref", "udp-route-invalid-cross-namespace-backend-ref", "RefNotPermitted"),
    ],
)
def test_invalid_backends_keep_their_share_as_rejects(case: str, route: str, reason: str) -> None:
    translation = translate(golden_input(f"conformance-{case}"), CONFIG)
    status = next(s for s in translation.statuses if s.name == route)
    [parent] = status.parents
    assert condition(parent.conditions, "Accepted").status == "True"
    resolved = condition(parent.conditions, "ResolvedRefs")
    assert (resolved.status, resolved.reason) == ("False", reason)
    [service] = translation.desired.services
    assert service.backends == () and service.reject_weight == 1


@pytest.mark.parametrize("case", ["tcproute-reference-grant", "udproute-reference-grant"])
def test_reference_grant_permits_cross_namespace_backends(case: str) -> None:
    translation = translate(golden_input(f"conformance-{case}"), CONFIG)
    [service] = translation.desired.services
    assert len(service.backends) == 1 and service.reject_weight == 0


def test_attach_all_programs_every_listener() -> None:
    translation = translate(golden_input("conformance-tcproute-parentref-attach-all"), CONFIG)
    assert [s.frontend.port for s in translation.desired.services] == [9310, 9311, 9312, 9313]


# --- translation rules --------------------------------------------------------------

GATEWAY_AND_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp-gateway}
spec: {controllerName: xdp-gateway.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, generation: 4}
spec:
  gatewayClassName: xdp-gateway
  listeners: [{name: tcp, protocol: TCP, port: 9000}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: r, generation: 7}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: %s, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [10.99.1.1]}, {addresses: [10.99.1.2]}]
"""


def test_observed_generation_is_the_objects_generation() -> None:
    translation = translate(load(GATEWAY_AND_ROUTE % "web"), CONFIG)
    gateway = status_of(translation, "Gateway", "gw")
    assert {c.observed_generation for c in gateway.conditions} == {4}
    assert {c.observed_generation for listener in gateway.listeners for c in listener.conditions} == {4}
    assert {c.observed_generation for c in status_of(translation, "TCPRoute", "r").parents[0].conditions} == {7}
    assert {c.observed_generation for c in status_of(translation, "GatewayClass", "xdp-gateway").conditions} == {1}


def test_weight_is_spread_over_endpoints() -> None:
    translation = translate(load(GATEWAY_AND_ROUTE % "web"), CONFIG)
    assert backends(translation, 9000) == {"10.99.1.1:8080": 0.5, "10.99.1.2:8080": 0.5}
    [service] = translation.desired.services
    assert (service.nat, str(service.snat_address), service.owner) == (NatMode.SNAT, "192.0.2.1", "TCPRoute default/r")


def test_transition_time_kept_while_meaning_is_unchanged() -> None:
    snapshot = load(GATEWAY_AND_ROUTE % "web")
    first = translate(snapshot, CONFIG)
    later = replace(CONFIG, now=NOW + timedelta(hours=1))
    again = translate(snapshot, later, previous=first.statuses)
    assert again.statuses == first.statuses  # nothing changed, so nothing moved

    broken = translate(load(GATEWAY_AND_ROUTE % "gone"), later, previous=first.statuses)
    [parent] = status_of(broken, "TCPRoute", "r").parents
    assert condition(parent.conditions, "Accepted").last_transition_time == NOW
    resolved = condition(parent.conditions, "ResolvedRefs")
    assert (resolved.reason, resolved.last_transition_time) == ("BackendNotFound", NOW + timedelta(hours=1))


def test_translation_is_deterministic_and_order_free() -> None:
    snapshot = golden_input("listener-conflicts")
    reordered = Snapshot.of(reversed(snapshot.objects()))
    assert translate(snapshot, CONFIG) == translate(reordered, CONFIG)


def test_status_stanza_wire_form() -> None:
    translation = translate(load(GATEWAY_AND_ROUTE % "web"), CONFIG)
    route = status_to_k8s(status_of(translation, "TCPRoute", "r"))
    assert route["parents"][0]["parentRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}
    assert route["parents"][0]["controllerName"] == "xdp-gateway.io/gateway-controller"
    assert route["parents"][0]["conditions"][0] == {
        "type": "Accepted",
        "status": "True",
        "observedGeneration": 7,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
        "reason": "Accepted",
        "message": 'Accepted by listener "tcp"',
    }
    gateway = status_to_k8s(status_of(translation, "Gateway", "gw"))
    assert gateway["addresses"] == [{"type": "IPAddress", "value": "192.0.2.10"}]
    assert [c["type"] for c in gateway["conditions"]] == ["Accepted", "Programmed"]
    listener = gateway["listeners"][0]
    assert listener["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}]
    assert listener["attachedRoutes"] == 1
    assert [c["type"] for c in listener["conditions"]] == ["Accepted", "Programmed", "ResolvedRefs", "Conflicted"]


def test_other_controllers_objects_get_nothing() -> None:
    text = (GATEWAY_AND_ROUTE % "web").replace("xdp-gateway.io/gateway-controller", "example.com/other")
    translation = translate(load(text), CONFIG)
    assert translation.statuses == () and translation.desired.services == ()


def test_oldest_route_wins_and_missing_timestamps_count_as_newest() -> None:
    text = GATEWAY_AND_ROUTE % "web" + """\
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: z-old, creationTimestamp: "2020-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
"""
    [service] = translate(load(text), CONFIG).desired.services
    assert service.owner == "TCPRoute default/z-old"


def test_ipv6_frontend_uses_ipv6_endpoints_and_snat() -> None:
    text = (GATEWAY_AND_ROUTE % "web").replace(
        "  listeners:", "  addresses: [{value: '2001:db8::10'}]\n  listeners:", 1
    ) + """\
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-2, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{port: 8080}]
endpoints: [{addresses: ['fd00::1']}]
"""
    [service] = translate(load(text), CONFIG).desired.services
    assert str(service.frontend) == "[2001:db8::10]:9000/TCP"
    assert service.backends[0].endpoint == Endpoint(ipaddress.ip_address("fd00::1"), 8080)
    assert str(service.snat_address) == "2001:db8::1"


def test_snat_mode_without_a_source_of_the_family_refuses_the_address() -> None:
    config = replace(CONFIG, snat_addresses=(ipaddress.ip_address("192.0.2.1"),))
    text = (GATEWAY_AND_ROUTE % "web").replace("  listeners:", "  addresses: [{value: '2001:db8::10'}]\n  listeners:", 1)
    translation = translate(load(text), config)
    accepted = condition(status_of(translation, "Gateway", "gw").conditions, "Accepted")
    assert (accepted.status, accepted.reason) == ("False", "UnsupportedAddress")
    assert "no IPv6 SNAT source" in accepted.message
    assert translation.desired.services == ()


# --- helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listener", "routes", "expected"),
    [
        (None, ["a.example.com"], True),
        ("a.example.com", [], True),
        ("a.example.com", ["a.example.com"], True),
        ("*.example.com", ["a.example.com"], True),
        ("*.example.com", ["a.b.example.com"], True),
        ("*.example.com", ["example.com"], False),
        ("a.example.com", ["*.example.com"], True),
        ("*.example.com", ["*.a.example.com"], True),
        ("a.example.com", ["b.example.com", "c.example.com"], False),
    ],
)
def test_hostnames_intersect(listener: str | None, routes: list[str], expected: bool) -> None:
    assert hostnames_intersect(listener, routes) is expected


def test_label_selectors() -> None:
    from ctl.api import LabelSelector, LabelSelectorRequirement as R

    labels = {"team": "a", "env": "prod"}
    assert matches(LabelSelector(), labels)
    assert matches(LabelSelector(match_labels={"team": "a"}), labels)
    assert not matches(LabelSelector(match_labels={"team": "b"}), labels)
    assert matches(LabelSelector(match_expressions=(R(key="team", operator="In", values=("a", "b")),)), labels)
    assert not matches(LabelSelector(match_expressions=(R(key="env", operator="NotIn", values=("prod",)),)), labels)
    assert matches(LabelSelector(match_expressions=(R(key="zone", operator="DoesNotExist"),)), labels)
    assert not matches(LabelSelector(match_expressions=(R(key="zone", operator="Exists"),)), labels)
    assert selector_error(LabelSelector(match_expressions=(R(key="k", operator="In"),))) is not None
    assert selector_error(LabelSelector(match_expressions=(R(key="k", operator="Exists", values=("x",)),))) is not None


def test_problem_type_is_a_value() -> None:
    assert ValidationProblem("a", "b", "c") == ValidationProblem("a", "b", "c")


def test_every_node_snat_source_of_the_family_is_used() -> None:
    config = replace(CONFIG, snat_addresses=tuple(ipaddress.ip_address(a) for a in
                                                  ("192.0.2.1", "2001:db8::1", "192.0.2.2")))
    [service] = translate(load(GATEWAY_AND_ROUTE % "web"), config).desired.services
    assert [str(a) for a in service.snat_addresses] == ["192.0.2.1", "192.0.2.2"]


def test_a_gateway_may_name_its_own_snat_sources() -> None:
    text = (GATEWAY_AND_ROUTE % "web").replace(
        "metadata: {name: gw, generation: 4}",
        "metadata: {name: gw, generation: 4, annotations: "
        "{xdp-gateway.io/snat-addresses: '198.51.100.7, 198.51.100.8'}}", 1)
    [service] = translate(load(text), CONFIG).desired.services
    assert [str(a) for a in service.snat_addresses] == ["198.51.100.7", "198.51.100.8"]


@pytest.mark.parametrize(("value", "message"), [
    ("198.51.100.7, nope", '"nope" is not an IP address'),
    ("127.0.0.1", "127.0.0.1 cannot be a SNAT source"),
    (",".join(f"198.51.100.{i}" for i in range(1, 6)), "more than 4 IPv4 addresses"),
])
def test_a_bad_snat_annotation_refuses_the_gateway_and_says_why(value: str, message: str) -> None:
    text = (GATEWAY_AND_ROUTE % "web").replace(
        "metadata: {name: gw, generation: 4}",
        f"metadata: {{name: gw, generation: 4, annotations: {{xdp-gateway.io/snat-addresses: '{value}'}}}}", 1)
    translation = translate(load(text), CONFIG)
    accepted = condition(status_of(translation, "Gateway", "gw").conditions, "Accepted")
    assert accepted.status is False or accepted.status == "False"
    assert 'metadata.annotations["xdp-gateway.io/snat-addresses"]' in accepted.message
    assert message in accepted.message
    assert not translation.desired.services


def test_equal_conditions_are_one_instance() -> None:
    from datetime import UTC, datetime

    from ctl.translate.status import make_condition

    now = datetime(2026, 1, 1, tzinfo=UTC)
    first = make_condition("Accepted", "True", "Accepted", "Route is accepted", 1, now)
    assert make_condition("Accepted", "True", "Accepted", "Route is accepted", 1, now) is first
    other = make_condition("Accepted", "True", "Accepted", "Route is accepted", 2, now)
    assert other is not first and other.observed_generation == 2 and first.observed_generation == 1
