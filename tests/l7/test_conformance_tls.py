"""Upstream HTTPS, certificate and TLSRoute Core conformance tests replayed with real
traffic through `gwctl run`, the kernel handoff and Envoy, on the lab of
tests/l7/conftest.py (see tests/l7/conformance.py for what the replay adds to the
manifests, including the certificates upstream's suite generates at setup).

HTTPS clients give the SNI upstream's Go client gives (the request's host), verify the
served chain against the Secret the test trusts, check its names as Go does, and check
it is exactly that Secret's certificate: Envoy's for a terminating listener, the
backend's own through a passthrough one. TLS passthrough reaches the echo pods' HTTPS
echo (tls-backend*) and TCP echo (tcp-backend), which report the SNI they saw.

The measured results are printed (`-s`) and summarised in docs/conformance.md."""

from __future__ import annotations

import json

import pytest

from lab import certs

from . import conformance as conf
from .conformance import (
    INFRA,
    WEB,
    Expect,
    expect_equal,
    find,
    https_sender,
    record,
    listener_status,
    route_parent_conditions,
    served_certificate,
)
from .test_l7_net import wait_for

pytestmark = pytest.mark.net


def rejected(replay: conf.Replay, gateway: str, sni: str, port: int = 443) -> str | None:
    """Upstream's MakeTLSConnectionAndExpectEventuallyConnectionRejection: within 30 s a
    TLS dial with this SNI is reset (its isConnectionRejected: ECONNRESET only; never a
    handshake, an alert or a bare close)."""
    net = replay.agent.net
    outcome: dict = {}

    def dial() -> bool:
        nonlocal outcome
        done = net.run(net.client.ns, net.python_argv("lab.tlsclient", "--addr", replay.addresses[gateway],
                                                      "--port", port, "--sni", sni))
        outcome = json.loads(done.stdout.strip().splitlines()[-1])
        return outcome["tcp"] == "connected" and outcome["tls"] == "reset"

    if wait_for(dial, timeout=30, interval=1):
        print(f"  {gateway} SNI {sni}: {outcome['tls']}")
        return None
    return f"{gateway} SNI {sni}: {outcome}"


# -- HTTPS listeners -----------------------------------------------------------------------

HTTPS_GATEWAY = "same-namespace-with-https-listener"


@pytest.mark.timeout(600)
def test_https_listener(replay):
    """HTTPRouteHTTPSListener: on the base HTTPS Gateway (certificate
    tls-validity-checks-certificate, names * and *.org), a route for example.org and one
    attached by sectionName to the second-example.org listener."""
    docs = replay.apply("httproute-https-listener.yaml")
    problems = replay.programmed(HTTPS_GATEWAY) + replay.routes_accepted(docs)
    pair = replay.certificates.pairs[(INFRA, "tls-validity-checks-certificate")]
    expects = [Expect("/", "infra-backend-v1", host="example.org", gateway=HTTPS_GATEWAY),
               Expect("/", "infra-backend-v2", host="second-example.org", gateway=HTTPS_GATEWAY),
               Expect("/", status=404, host="unknown-example.org", gateway=HTTPS_GATEWAY)]
    problems += conf.replay(https_sender(replay, 443, pair, pair), expects)
    record("HTTPRouteHTTPSListener", problems)


MISDIRECTED = "/detect-misdirected-requests"


def misdirected_case(host: str, backend: int | None = None, status: int = 200) -> Expect:
    name = f"infra-backend-v{backend}" if backend else None
    return Expect(MISDIRECTED, name, status=status, host=host, gateway=HTTPS_GATEWAY)


# SNI -> what each Host gets on a connection made with it.
MISDIRECTED_CASES: dict[str, list[Expect]] = {
    "example.org": [misdirected_case("example.org", 1), misdirected_case("second-example.org", status=421),
                    misdirected_case("unknown-example.org", status=404)],
    "second-example.org": [misdirected_case("example.org", status=421),
                           misdirected_case("unknown-example.org", status=421)],
    "third-example.wildcard.org": [
        misdirected_case("third-example.wildcard.org", 3), misdirected_case("fith-example.wildcard.org", 3),
        *(misdirected_case(h, status=421)
          for h in ("fourth-example.wildcard.org", "second-example.org", "unknown-example.org"))],
    "fourth-example.wildcard.org": [misdirected_case("fourth-example.wildcard.org", 1),
                                    misdirected_case("fith-example.wildcard.org", status=421)],
    "unknown-example.org": [misdirected_case("example.org", 1)],
}


@pytest.mark.timeout(900)
def test_https_listener_detect_misdirected_requests(replay):
    """HTTPRouteHTTPSListenerDetectMisdirectedRequests (Extended:
    GatewayHTTPSListenerDetectMisdirectedRequests): HTTP/2 over TLS to the base HTTPS
    Gateway, one route per listener; a Host whose listener is not the one the SNI chose
    gets 421."""
    docs = replay.apply("httproute-https-listener-detect-misdirected-requests.yaml")
    problems = replay.programmed(HTTPS_GATEWAY) + replay.routes_accepted(docs)
    pair = replay.certificates.pairs[(INFRA, "tls-validity-checks-certificate")]
    for sni, expects in MISDIRECTED_CASES.items():
        problems += [f"SNI {sni}: {why}"
                     for why in conf.replay(https_sender(replay, 443, pair, pair, "h2", sni), expects)]
    record("HTTPRouteHTTPSListenerDetectMisdirectedRequests", problems)


# -- the Gateway's certificate in another namespace, by ReferenceGrant ---------------------

def check_secret_refused(replay: conf.Replay, gateway: str) -> list[str]:
    p: list[str] = []
    s = listener_status(replay.agent.objects(), gateway, "https")
    expect_equal(p, "https ResolvedRefs", s["conditions"].get("ResolvedRefs"), ("False", "RefNotPermitted"))
    if "HTTPRoute" not in s["kinds"]:
        p.append(f"supportedKinds {s['kinds']}")
    expect_equal(p, "https attachedRoutes", s["attached"], 0)
    return p


def check_secret_granted(replay: conf.Replay, gateway: str) -> list[str]:
    """Listener programmed with the certificate; beyond upstream (status only), a TLS
    client gets exactly that certificate and an HTTP answer (404: no route)."""
    p = replay.programmed(gateway)
    s = listener_status(replay.agent.objects(), gateway, "https")
    expect_equal(p, "https Programmed", s["conditions"].get("Programmed"), ("True", "Programmed"))
    expect_equal(p, "https ResolvedRefs", s["conditions"].get("ResolvedRefs"), ("True", "ResolvedRefs"))
    if "HTTPRoute" not in s["kinds"]:
        p.append(f"supportedKinds {s['kinds']}")
    pair = replay.certificates.pairs[(WEB, "certificate")]  # names: "*" only, so no hostname check
    request = {"addr": gateway, "port": 443, "sni": "secret.example", "host": "secret.example", "path": "/",
               "trust": pair.certificate.decode(), "protocol": "https"}

    def check(_request, answer) -> str | None:
        if "error" in answer:
            return f"{answer['stage']}: {answer['error']}"
        if answer["certificate"]["sha256"] != pair.sha256:
            return "served certificate is not the granted Secret's"
        return None if answer["status"] == 404 else f"status {answer['status']}, want 404"

    return p + conf.replay_tls(replay.send_tls, [request], check)


SECRET_CASES = [
    ("GatewaySecretInvalidReferenceGrant", "gateway-secret-invalid-reference-grant.yaml", check_secret_refused),
    ("GatewaySecretMissingReferenceGrant", "gateway-secret-missing-reference-grant.yaml", check_secret_refused),
    ("GatewaySecretReferenceGrantAllInNamespace", "gateway-secret-reference-grant-all-in-namespace.yaml",
     check_secret_granted),
    ("GatewaySecretReferenceGrantSpecific", "gateway-secret-reference-grant-specific.yaml", check_secret_granted),
]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name,manifest,check", SECRET_CASES, ids=[c[0] for c in SECRET_CASES])
def test_gateway_secret(replay, name, manifest, check):
    docs = replay.apply(manifest)
    gateway = next(d["metadata"]["name"] for d in docs if d.get("kind") == "Gateway"
                   and d["metadata"]["name"].startswith("gateway-secret-"))
    record(name, check(replay, gateway))


# -- TLS passthrough with traffic ----------------------------------------------------------

def tcp_echo_check(pair: certs.KeyPair, backend: str, backend_tls: bool = True):
    """The TCP echo answered through the gateway: the handshake presented pair's
    certificate; backend_tls: the backend itself ended the client's TLS (passthrough) and
    saw its SNI, else it got plain bytes (Terminate)."""

    def check(request: dict, answer: dict) -> str | None:
        if "error" in answer:
            return f"{answer['stage']}: {answer['error']}"
        why = served_certificate(answer, pair, request["sni"])
        if why:
            return why
        test = answer.get("test") or {}
        said = (answer["greeting"], answer["ping"], answer["isTLS"])
        if said != ("Gateway API Test TCP Server", "PONG", "true" if backend_tls else "false"):
            return f"echo said {answer['greeting']!r}, {answer['ping']!r}, IS_TLS {answer['isTLS']!r}"
        if test.get("pod", "").rpartition("-")[0] != backend or test.get("namespace") != INFRA:
            return f"answered by {test.get('namespace')}/{test.get('pod')}, want {INFRA}/{backend}-*"
        if backend_tls and (not test.get("isTLS") or test.get("tls", {}).get("serverName") != request["sni"]):
            return f"the backend saw {test.get('tls')}, want TLS with SNI {request['sni']}"
        if not backend_tls and (test.get("isTLS") or "tls" in test):
            return f"the backend saw TLS {test.get('tls')}, want plain bytes"
        return None

    return check


@pytest.mark.timeout(600)
def test_tlsroute_simple_same_namespace(replay):
    """TLSRouteSimpleSameNamespace: listener *.example.com (Passthrough), route
    abc.example.com -> tcp-backend:8443; the TCP echo answers over the client's own TLS
    session (the backend's certificate, signed by the suite's CA), and saw the SNI."""
    docs = replay.apply("tlsroute-simple-same-namespace.yaml")
    problems = replay.programmed("gateway-tlsroute") + replay.routes_accepted(docs)
    pair = replay.certificates.pairs[(INFRA, "tls-passthrough-checks-certificate")]
    request = {"addr": "gateway-tlsroute", "port": 443, "sni": "abc.example.com",
               "trust": replay.certificates.ca.certificate.decode(), "protocol": "tcp-echo"}
    problems += conf.replay_tls(replay.send_tls, [request], tcp_echo_check(pair, "tcp-backend"))
    record("TLSRouteSimpleSameNamespace", problems)


@pytest.mark.timeout(600)
def test_tlsroute_terminate_simple_same_namespace(replay):
    """TLSRouteTerminateSimpleSameNamespace (Extended: TLSRouteModeTerminate): listener
    :8443 tls.example.com in Terminate mode (tls-terminate-checks-certificate), route ->
    tcp-backend:3000: the client's TLS ends at Envoy, whose certificate it gets; the TCP
    echo answers over plain TCP."""
    docs = replay.apply("tlsroute-terminate-simple-same-namespace.yaml")
    problems = replay.programmed("gateway-tlsroute-terminate") + replay.routes_accepted(docs)
    pair = replay.certificates.pairs[(INFRA, "tls-terminate-checks-certificate")]
    request = {"addr": "gateway-tlsroute-terminate", "port": 8443, "sni": "tls.example.com",
               "trust": replay.certificates.ca.certificate.decode(), "protocol": "tcp-echo"}
    problems += conf.replay_tls(replay.send_tls, [request], tcp_echo_check(pair, "tcp-backend", backend_tls=False))
    record("TLSRouteTerminateSimpleSameNamespace", problems)


@pytest.mark.timeout(600)
def test_tlsroute_mixed_termination_same_namespace(replay):
    """TLSRouteMixedTerminationSameNamespace (Extended: TLSRouteModeTerminate,
    TLSRouteModeMixed): Terminate tls.example.com and Passthrough abc.example.com on :8883,
    both Accepted with one route each; tls.example.com reaches tcp-backend:3000 in plain
    text through Envoy's TLS, abc.example.com tcp-backend:8443 with the backend's own."""
    gateway = "gateway-tlsroute-mixed-termination"
    docs = replay.apply("tlsroute-mixed-termination-same-namespace.yaml")
    problems = replay.programmed(gateway) + replay.routes_accepted(docs)
    for name in ("tls-terminate", "tls-passthrough"):
        s = listener_status(replay.agent.objects(), gateway, name)
        expect_equal(problems, f"{name} Accepted", s["conditions"].get("Accepted"), ("True", "Accepted"))
        if "TLSRoute" not in s["kinds"]:
            problems.append(f"{name} supportedKinds {s['kinds']}")
        expect_equal(problems, f"{name} attachedRoutes", s["attached"], 1)
    trust = replay.certificates.ca.certificate.decode()
    terminated = {"addr": gateway, "port": 8883, "sni": "tls.example.com", "trust": trust, "protocol": "tcp-echo"}
    passed = {"addr": gateway, "port": 8883, "sni": "abc.example.com", "trust": trust, "protocol": "tcp-echo"}
    checks = {"tls.example.com": tcp_echo_check(replay.certificates.pairs[(INFRA, "tls-terminate-checks-certificate")],
                                                "tcp-backend", backend_tls=False),
              "abc.example.com": tcp_echo_check(replay.certificates.pairs[(INFRA, "tls-passthrough-checks-certificate")],
                                                "tcp-backend")}
    problems += conf.replay_tls(replay.send_tls, [terminated, passed], lambda r, a: checks[r["sni"]](r, a))
    record("TLSRouteMixedTerminationSameNamespace", problems)


INTERSECTION = [
    # (Gateway, routes, whether other.example.com reaches tls-backend-2, the SNI refused)
    ("gw-tlsroute-exact-hostname-x-1", ["tlsroute-more-specific-wc-hostname-x-1"], False, "non.matching.com"),
    ("gw-tlsroute-more-specific-wc-hostname-x-2",
     ["tlsroute-exact-hostname-x-2", "tlsroute-less-specific-wc-hostname-x-2"], True, "non.matching.com"),
    ("gw-tlsroute-less-specific-wc-hostname-x-3",
     ["tlsroute-exact-hostname-x-3", "tlsroute-more-specific-wc-hostname-x-3"], True, "non.matching.com"),
    ("gw-tlsroute-empty-hostname-x-4",
     ["tlsroute-exact-hostname-x-4", "tlsroute-less-specific-wc-hostname-x-4"], True, "non.matching.org"),
]


@pytest.mark.timeout(900)
def test_tlsroute_hostname_intersection(replay):
    """TLSRouteHostnameIntersection: four passthrough Gateways (listener abc.example.com,
    *.example.com, *.com, none). HTTPS through each, trusting tls-checks-certificate (the
    backends' own): abc.example.com -> tls-backend, other.example.com -> tls-backend-2
    (not on the first), a name outside the intersections -> closed or reset."""
    docs = replay.apply("tlsroute-hostname-intersection.yaml")
    problems = replay.programmed(*(g for g, *_ in INTERSECTION))
    for gateway, routes, _, _ in INTERSECTION:
        problems += replay.routes_accepted(docs, routes)
        for route in routes:
            if not route_parent_conditions(replay.agent.objects(), "TLSRoute", route):
                problems.append(f"{route}: no parent {gateway}")
    pair = replay.certificates.pairs[(INFRA, "tls-checks-certificate")]
    expects = []
    for gateway, _, wildcard, _ in INTERSECTION:
        expects.append(Expect("/", "tls-backend", host="abc.example.com", gateway=gateway))
        if wildcard:
            expects.append(Expect("/", "tls-backend-2", host="other.example.com", gateway=gateway))
    problems += conf.replay(https_sender(replay, 443, pair, pair), expects)
    for gateway, _, _, refused in INTERSECTION:
        why = rejected(replay, gateway, refused)
        if why:
            problems.append(why)
    record("TLSRouteHostnameIntersection", problems)
# -- TLSRoute tests whose assertions are status only ---------------------------------------

def no_parents(p: list[str], objects, name: str, reason: str) -> None:
    """'no parents': none, or every parent entry Accepted=False with this reason."""
    for parent in route_parent_conditions(objects, "TLSRoute", name):
        expect_equal(p, f"{name} Accepted", parent.get("Accepted"), ("False", reason))


def attached_zero(p: list[str], objects, gateway: str) -> None:
    for entry in find(objects, "Gateway", gateway)["status"].get("listeners", []):
        expect_equal(p, f"{gateway}/{entry['name']} attachedRoutes", entry.get("attachedRoutes"), 0)


def check_tls_no_matching_hostname(objects) -> list[str]:
    p: list[str] = []
    for name in ("tlsroute-hostname-mismatch-1", "tlsroute-hostname-mismatch-2"):
        no_parents(p, objects, name, "NoMatchingListenerHostname")
    for gateway in ("gateway-tls-exact-hostname", "gateway-tls-wildcard-hostname"):
        attached_zero(p, objects, gateway)
    return p


def check_tls_no_matching_listener(objects) -> list[str]:
    p: list[str] = []
    no_parents(p, objects, "tlsroute-not-allowed-protocol-http", "NotAllowedByListeners")
    no_parents(p, objects, "tlsroute-not-allowed-protocol-https", "NotAllowedByListeners")
    no_parents(p, objects, "tlsroute-no-matching-section-name", "NoMatchingParent")
    for gateway in ("gateway-tlsroute-http-only", "gateway-tlsroute-https-only"):
        attached_zero(p, objects, gateway)
    return p


def check_tls_listeners(gateway: str, condition: str, want: tuple[str, str]):
    """Every listener of the gateway: the condition as wanted, TLSRoute among its
    supported kinds, no route attached."""

    def check(objects) -> list[str]:
        p: list[str] = []
        for entry in find(objects, "Gateway", gateway)["status"]["listeners"]:
            s = listener_status(objects, gateway, entry["name"])
            expect_equal(p, condition, s["conditions"].get(condition), want)
            if "TLSRoute" not in s["kinds"]:
                p.append(f"supportedKinds {s['kinds']}")
            expect_equal(p, "attachedRoutes", s["attached"], 0)
        return p

    return check


def check_tls_invalid_reference_grant(objects) -> list[str]:
    p: list[str] = []
    for parent in route_parent_conditions(objects, "TLSRoute", "gateway-conformance-infra-test") or [{}]:
        expect_equal(p, "Accepted", parent.get("Accepted"), ("True", "Accepted"))
        expect_equal(p, "ResolvedRefs", parent.get("ResolvedRefs"), ("False", "RefNotPermitted"))
    return p


TLS_STATUS_CASES = [
    ("TLSRouteInvalidNoMatchingListenerHostname", "tlsroute-invalid-no-matching-listener-hostname.yaml",
     check_tls_no_matching_hostname),
    ("TLSRouteInvalidNoMatchingListener", "tlsroute-invalid-no-matching-listener.yaml", check_tls_no_matching_listener),
    ("TLSRouteListenerPassthroughSupportedKinds", "tlsroute-listener-passthrough-supported-kinds.yaml",
     check_tls_listeners("gateway-tlsroute-passthrough-supported-kind", "ResolvedRefs", ("False", "InvalidRouteKinds"))),
    # A Terminate listener is Accepted, takes TLSRoute, 0 attached. TerminateNotSupported
    # passes trivially upstream once TLSRouteModeTerminate is claimed; its listener is
    # checked the same way here.
    ("TLSRouteListenerTerminateNotSupported", "tlsroute-listener-terminate-not-supported.yaml",
     check_tls_listeners("gateway-tlsroute-terminate-unsupported", "Accepted", ("True", "Accepted"))),
    ("TLSRouteListenerTerminateSupportedKinds", "tlsroute-listener-terminate-supported-kinds.yaml",
     check_tls_listeners("gateway-tlsroute-terminate-supported", "Accepted", ("True", "Accepted"))),
    ("TLSRouteInvalidReferenceGrant", "tlsroute-invalid-reference-grant.yaml", check_tls_invalid_reference_grant),
]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name,manifest,check", TLS_STATUS_CASES, ids=[c[0] for c in TLS_STATUS_CASES])
def test_tls_core_status(replay, name, manifest, check):
    replay.apply(manifest)
    problems = check(replay.agent.objects())
    record(name, problems)


TLS_INVALID_BACKEND_CASES = [
    ("TLSRouteInvalidBackendRefNonexistent", "tlsroute-invalid-backendref-nonexistent.yaml",
     "gateway-tlsroute-invalid-backend-ref-nonexistent", "invalid-backend-ref-nonexistent", "BackendNotFound"),
    ("TLSRouteInvalidBackendRefUnknownKind", "tlsroute-invalid-backendref-unknown-kind.yaml",
     "gateway-tlsroute-invalid-backend-ref-unknown-kind", "invalid-backend-ref-unknown-kind", "InvalidKind"),
]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name,manifest,gateway,route,reason", TLS_INVALID_BACKEND_CASES,
                         ids=[c[0] for c in TLS_INVALID_BACKEND_CASES])
def test_tls_core_invalid_backend(replay, name, manifest, gateway, route, reason):
    """Accepted, ResolvedRefs=False with the reason; a TLS dial with SNI example.com to the
    Gateway (its listener programmed in Envoy) is closed or reset."""
    replay.apply(manifest)
    problems: list[str] = []
    problems += replay.programmed(gateway)
    for parent in route_parent_conditions(replay.agent.objects(), "TLSRoute", route) or [{}]:
        expect_equal(problems, "Accepted", parent.get("Accepted"), ("True", "Accepted"))
        expect_equal(problems, "ResolvedRefs", parent.get("ResolvedRefs"), ("False", reason))
    net = replay.agent.net
    done = net.run(net.client.ns, net.python_argv("lab.tlsclient", "--addr", replay.addresses[gateway],
                                                  "--port", 443, "--sni", "example.com"))
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    if outcome["tcp"] != "connected" or outcome["tls"] not in ("closed", "reset"):
        problems.append(f"TLS dial: {outcome}")
    record(name, problems)
