"""Upstream GATEWAY-HTTP Extended conformance tests replayed with real traffic through
`gwctl run`, the kernel handoff and Envoy, on the lab of tests/l7/conftest.py (see
tests/l7/conformance.py for what the replay adds to the manifests): response header
edits, query-parameter and method matching, scheme, port and path redirects and the
303/307/308 codes, host and path rewrites, request mirrors, request and backend
timeouts, retries.

Like upstream's suite, every request carries X-Echo-Set-Header (the echo pods answer
with the headers it names); the mirror tests make each URI unique with
`?gateway-api-conformance-request-id=<uuid>` and look for the echo pods' log line
`Echoing back request made to <uri> to client`; the timeout tests ask the echo pods to
wait (`?delay=1s`) and the retry test to fail (`/retry/...?responseCode=&succeedAfter=
&uuid=`), as upstream's echo-basic does.

The measured results are printed (`-s`) and summarised in docs/conformance.md."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import replace
from urllib.parse import urlencode

import pytest

from . import conformance as conf
from .conformance import INFRA, Expect, https_sender, record
from .test_l7_net import wait_for

pytestmark = pytest.mark.net


def v(n: int, path: str = "/", **kw) -> Expect:
    return Expect(path=path, backend=f"infra-backend-v{n}", **kw)


def not_found(path: str, **kw) -> Expect:
    return Expect(path=path, status=404, **kw)


def redirect(sent: str, status: int = 302, **want) -> Expect:
    """A redirect of `sent`; want: the Location's scheme, host, port, path (defaults as upstream's)."""
    return Expect(sent, status=status, redirect=want)


def ready(replay, docs: list[dict], gateways=("same-namespace",)) -> list[str]:
    """Upstream's GatewayAndHTTPRoutesMustBeAccepted and ResolvedRefs True: listeners
    Programmed, every route of the test accepted with ResolvedRefs True."""
    return replay.programmed(*gateways) + replay.routes_accepted(docs)


# Request header edits the rewrite and mirror manifests pair with their filter.
EDITS_SENT = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1"}
EDITS_SEEN = {"X-Header-Add": "header-val-1", "X-Header-Add-Append": "append-val-1,header-val-2",
              "X-Header-Set": "set-overwrites-values", "X-Header-Remove": None}

RESPONSE_HEADERS = [
    v(1, "/set", echo_set={"Some-Other-Header": "val"},
      response_headers={"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
    v(1, "/set", echo_set={"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
      response_headers={"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
    v(1, "/add", echo_set={"Some-Other-Header": "val"},
      response_headers={"Some-Other-Header": "val", "X-Header-Add": "add-appends-values"}),
    v(1, "/add", echo_set={"Some-Other-Header": "val", "X-Header-Add": "some-other-value"},
      response_headers={"Some-Other-Header": "val", "X-Header-Add": "some-other-value,add-appends-values"}),
    v(1, "/remove", echo_set={"X-Header-Remove": "val"}, response_headers={"X-Header-Remove": None}),
    v(1, "/multiple", echo_set={"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2",
                                "X-Header-Remove-2": "remove-val-2", "Another-Header": "another-header-val",
                                "X-Header-Remove-1": "val"},
      response_headers={"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2",
                        "X-Header-Add-1": "header-add-1", "X-Header-Add-2": "add-val-2,header-add-2",
                        "X-Header-Add-3": "header-add-3", "Another-Header": "another-header-val",
                        "X-Header-Remove-1": None, "X-Header-Remove-2": None}),
    # The filter names headers in mixed case; the backend answers them in lower case.
    v(1, "/case-insensitivity", echo_set={"x-header-set": "original-val-set", "x-header-add": "original-val-add",
                                          "x-header-remove": "original-val-remove",
                                          "Another-Header": "another-header-val"},
      response_headers={"X-Header-Set": "header-set", "X-Header-Add": "original-val-add,header-add",
                        "X-Lowercase-Add": "lowercase-add", "X-Mixedcase-Add-1": "mixedcase-add-1",
                        "X-Mixedcase-Add-2": "mixedcase-add-2", "X-Uppercase-Add": "uppercase-add",
                        "Another-Header": "another-header-val", "X-Header-Remove": None}),
    v(1, "/response-and-request-header-modifiers",
      headers={"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1", "X-Header-Echo": "echo"},
      echo_set={"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2", "X-Header-Remove-2": "remove-val-2",
                "Another-Header": "another-header-val", "X-Header-Remove-1": "remove-val-1", "X-Header-Echo": "echo"},
      seen_headers={"X-Header-Add": "header-val-1", "X-Header-Set": "set-overwrites-values",
                    "X-Header-Add-Append": "append-val-1,header-val-2", "X-Header-Echo": "echo",
                    "X-Header-Remove": None},
      response_headers={"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2",
                        "X-Header-Add-1": "header-add-1", "X-Header-Add-2": "add-val-2,header-add-2",
                        "Another-Header": "another-header-val", "X-Header-Echo": "echo",
                        "X-Header-Remove-1": None, "X-Header-Remove-2": None}),
]

QUERY_PARAMS = [
    v(1, "/?animal=whale"), v(2, "/?animal=dolphin"), v(3, "/?animal=dolphin&color=blue"), v(3, "/?ANIMAL=Whale"),
    v(1, "/?animal=whale&otherparam=irrelevant"), v(2, "/?animal=dolphin&color=yellow"),
    not_found("/?color=blue"), not_found("/?animal=dog"), not_found("/?animal=whaledolphin"), not_found("/"),
    v(1, "/path1?animal=whale"), v(2, "/?animal=whale", headers={"version": "one"}),
    v(3, "/path2?animal=whale", headers={"version": "two"}),
    v(1, "/path3?animal=shark"), v(1, "/path4?animal=kraken", headers={"version": "three"}),
    not_found("/?animal=shark"), not_found("/path4?animal=kraken"),
    v(1, "/path5?animal=hydra"), v(3, "/?animal=hydra", headers={"version": "four"}),
]

METHODS = [
    v(1, method="POST"), v(2, method="GET"), not_found("/", method="HEAD"),
    v(1, "/path1", method="GET"), v(2, headers={"version": "one"}, method="PUT"),
    v(3, "/path2", headers={"version": "two"}, method="POST"),
    v(1, "/path3", method="PATCH"), v(1, "/path4", headers={"version": "three"}, method="DELETE"),
    not_found("/", method="PUT"), not_found("/path4", method="DELETE"),
    v(1, "/path5", method="PATCH"), v(2, headers={"version": "four"}, method="PATCH"),
]

SCHEME_REDIRECTS = [
    redirect("/scheme", scheme="https"), redirect("/scheme-and-host", scheme="https", host="example.org"),
    redirect("/scheme-and-status", 301, scheme="https"),
    redirect("/scheme-and-host-and-status", scheme="https", host="example.org"),
]

PORT_REDIRECTS = [
    redirect("/port", port=8083), redirect("/port-and-host", host="example.org", port=8083),
    redirect("/port-and-status", 301, port=8083), redirect("/port-and-host-and-status", host="example.org", port=8083),
]

PATH_REDIRECTS = [
    redirect("/original-prefix/lemon", path="/replacement-prefix/lemon"),
    redirect("/full/path/original", path="/full-path-replacement"),
    redirect("/path-and-host", host="example.org", path="/replacement-prefix"),
    redirect("/path-and-status", 301, path="/replacement-prefix"),
    redirect("/full-path-and-host", host="example.org", path="/replacement-full"),
    redirect("/full-path-and-status", 301, path="/replacement-full"),
]

REWRITE_HOST = [
    v(1, "/one", host="rewrite.example", seen_host="one.example.org"),
    v(2, "/two", host="rewrite.example", seen_host="example.org"),
    v(2, "/rewrite-host-and-modify-headers", host="rewrite.example", seen_host="test.example.org",
      headers=EDITS_SENT, seen_headers=EDITS_SEEN),
]

SENT_WITH_SET = {**EDITS_SENT, "X-Header-Set": "set-val"}
REWRITE_PATH = [
    v(1, "/prefix/one/two", seen_path="/one/two"), v(1, "/strip-prefix/three", seen_path="/three"),
    v(1, "/strip-prefix", seen_path="/"), v(1, "/full/one/two", seen_path="/one"),
    v(1, "/full/rewrite-path-and-modify-headers/test", seen_path="/test", headers=SENT_WITH_SET,
      seen_headers=EDITS_SEEN),
    v(1, "/prefix/rewrite-path-and-modify-headers/one", seen_path="/prefix/one", headers=SENT_WITH_SET,
      seen_headers=EDITS_SEEN),
]

TIMEOUTS_REQUEST = [
    Expect("/request-timeout", backend=""), Expect("/request-timeout?delay=1s", status=504),
    Expect("/disable-request-timeout?delay=1s", backend=""),
]
TIMEOUTS_BACKEND = [
    Expect("/backend-timeout", backend=""), Expect("/backend-timeout?delay=1s", status=504),
    Expect("/disable-backend-timeout?delay=1s", backend=""),
]

# (upstream test name, manifest, its Extended features, the expectations)
CASES: list[tuple[str, str, tuple[str, ...], list[Expect]]] = [
    ("HTTPRouteResponseHeaderModifier", "httproute-response-header-modifier.yaml",
     ("HTTPRouteResponseHeaderModification",), RESPONSE_HEADERS),
    ("HTTPRouteQueryParamMatching", "httproute-query-param-matching.yaml", ("HTTPRouteQueryParamMatching",),
     QUERY_PARAMS),
    ("HTTPRouteMethodMatching", "httproute-method-matching.yaml", ("HTTPRouteMethodMatching",), METHODS),
    ("HTTPRouteRedirectScheme", "httproute-redirect-scheme.yaml", ("HTTPRouteSchemeRedirect",), SCHEME_REDIRECTS),
    ("HTTPRouteRedirectPort", "httproute-redirect-port.yaml", ("HTTPRoutePortRedirect",), PORT_REDIRECTS),
    ("HTTPRouteRedirectPath", "httproute-redirect-path.yaml", ("HTTPRoutePathRedirect",), PATH_REDIRECTS),
    ("HTTPRoute303Redirect", "httproute-303-redirect.yaml", ("HTTPRoute303RedirectStatusCode",),
     [Expect("/see-other", status=303, method="POST", redirect={"path": "/see-other"})]),
    ("HTTPRoute307Redirect", "httproute-307-redirect.yaml", ("HTTPRoute307RedirectStatusCode",),
     [redirect("/temporary", 307, path="/temporary")]),
    ("HTTPRoute308Redirect", "httproute-308-redirect.yaml", ("HTTPRoute308RedirectStatusCode",),
     [redirect("/permanent", 308, path="/permanent")]),
    ("HTTPRouteRewriteHost", "httproute-rewrite-host.yaml", ("HTTPRouteHostRewrite",), REWRITE_HOST),
    ("HTTPRouteRewritePath", "httproute-rewrite-path.yaml", ("HTTPRoutePathRewrite",), REWRITE_PATH),
    ("HTTPRouteTimeoutRequest", "httproute-timeout-request.yaml", ("HTTPRouteRequestTimeout",), TIMEOUTS_REQUEST),
    ("HTTPRouteTimeoutBackendRequest", "httproute-timeout-backend-request.yaml", ("HTTPRouteBackendTimeout",),
     TIMEOUTS_BACKEND),
]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name,manifest,features,expects", CASES, ids=[c[0] for c in CASES])
def test_http_extended(replay, name, manifest, features, expects):
    docs = replay.apply(manifest)
    problems = ready(replay, docs)
    problems += conf.replay(replay.send_batch, expects)
    record(name, problems)


HTTPS_GATEWAY = "same-namespace-with-https-listener"
GATEWAY_8080 = "same-namespace-with-http-listener-on-8080"


@pytest.mark.timeout(900)
def test_redirect_port_and_scheme(replay):
    """HTTPRouteRedirectPortAndScheme (HTTPRoutePortRedirect, GatewayPort8080): redirects
    to example.org from the :80 listener, from a new HTTP :8080 Gateway and from the base
    HTTPS :443 Gateway; "default" is the scheme's port written or left out."""
    docs = replay.apply("httproute-redirect-port-and-scheme.yaml")
    problems = ready(replay, docs, ("same-namespace", GATEWAY_8080, HTTPS_GATEWAY))
    org = "example.org"
    from_80 = [redirect("/scheme-nil-and-port-nil", scheme="http", host=org),
               redirect("/scheme-nil-and-port-80", scheme="http", host=org),
               redirect("/scheme-nil-and-port-8080", scheme="http", host=org, port=8080),
               redirect("/scheme-https-and-port-nil", scheme="https", host=org),
               redirect("/scheme-https-and-port-443", scheme="https", host=org),
               redirect("/scheme-https-and-port-8443", scheme="https", host=org, port=8443)]
    from_8080 = [Expect("/scheme-nil-and-port-nil", status=302, gateway=GATEWAY_8080, port=8080,
                        redirect={"scheme": "http", "host": org, "port": 8080}),
                 Expect("/scheme-nil-and-port-80", status=302, gateway=GATEWAY_8080, port=8080,
                        redirect={"scheme": "http", "host": org}),
                 Expect("/scheme-https-and-port-nil", status=302, gateway=GATEWAY_8080, port=8080,
                        redirect={"scheme": "https", "host": org})]
    from_443 = [Expect(path, status=302, host=org, gateway=HTTPS_GATEWAY, scheme="https", redirect=want)
                for path, want in (
                    ("/scheme-nil-and-port-nil", {"scheme": "https", "host": org}),
                    ("/scheme-nil-and-port-443", {"scheme": "https", "host": org}),
                    ("/scheme-nil-and-port-8443", {"scheme": "https", "host": org, "port": 8443}),
                    ("/scheme-http-and-port-nil", {"scheme": "http", "host": org}),
                    ("/scheme-http-and-port-80", {"scheme": "http", "host": org}),
                    ("/scheme-http-and-port-8080", {"scheme": "http", "host": org, "port": 8080}))]
    problems += conf.replay(replay.send_batch, from_80 + from_8080)
    pair = replay.certificates.pairs[(INFRA, "tls-validity-checks-certificate")]
    problems += [f"HTTPS: {why}" for why in conf.replay(https_sender(replay, 443, pair, pair), from_443)]
    record("HTTPRouteRedirectPortAndScheme", problems)


def check_attached_routes_8080(objects) -> list[str]:
    """Listeners `http-unattached` (:8080) and `http` (:80): exactly these, both Accepted
    and ResolvedRefs True, HTTPRoute supported, the route (sectionName http) on :80 only."""
    problems: list[str] = []
    conf.listeners_must(problems, objects, "gateway-with-two-listeners-and-one-attached-route", {
        name: {"attached": n, "kinds": ["HTTPRoute"], "Accepted": ("True", None), "ResolvedRefs": ("True", None)}
        for name, n in (("http-unattached", 0), ("http", 1))})
    return problems


@pytest.mark.timeout(600)
def test_gateway_with_attached_routes_port_8080(replay):
    """GatewayWithAttachedRoutesWithPort8080 (GatewayPort8080): status only, polled until it holds."""
    replay.apply("gateway-with-attached-routes-with-port-8080.yaml")
    wait_for(lambda: not check_attached_routes_8080(replay.agent.objects()), timeout=30)
    record("GatewayWithAttachedRoutesWithPort8080", check_attached_routes_8080(replay.agent.objects()))


# -- mirrors: the mirrored request shows up in the mirror pods' logs --------------------------

REQUEST_ID = "gateway-api-conformance-request-id"


def with_request_id(expect: Expect) -> Expect:
    """Upstream's AddRequestIDQueryParam: a unique URI, to find in the mirror's log."""
    return replace(expect, path=f"{expect.path}?{urlencode({REQUEST_ID: uuid.uuid4()})}")


def mirrored(replay, expects: list[Expect], mirrors: tuple[str, ...], timeout: float = 10.0) -> list[str]:
    """Upstream's ExpectMirroredRequest: within the request timeout, a pod of each mirror
    Service has logged the request's URI."""
    missing: list[str] = []
    for expect in expects:
        for service in mirrors:
            if not wait_for(lambda: replay.echoed(service, expect.path) > 0, timeout=timeout, interval=0.5):
                missing.append(f"{expect.path} not in the logs of {service}")
    return missing


MIRROR_CASES = [
    ("HTTPRouteRequestMirror", "httproute-request-mirror.yaml", ("infra-backend-v2",),
     [v(1, "/mirror"), v(1, "/mirror-and-modify-headers", headers=EDITS_SENT, seen_headers=EDITS_SEEN)]),
    ("HTTPRouteRequestMultipleMirrors", "httproute-request-multiple-mirrors.yaml",
     ("infra-backend-v2", "infra-backend-v3"),
     [v(1, "/multi-mirror"),
      v(1, "/multi-mirror-and-modify-request-headers", headers=EDITS_SENT, seen_headers=EDITS_SEEN)]),
]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name,manifest,mirrors,expects", MIRROR_CASES, ids=[c[0] for c in MIRROR_CASES])
def test_request_mirror(replay, name, manifest, mirrors, expects):
    """Answered by v1 (which sees the rule's header edits), and the same URI, made unique
    with a request id, logged by a pod of each mirror backend."""
    docs = replay.apply(manifest)
    problems = ready(replay, docs)
    expects = [with_request_id(e) for e in expects]
    problems += conf.replay(replay.send_batch, expects)
    problems += mirrored(replay, expects, mirrors)
    record(name, problems)


PERCENT_MIRRORS = [(v(1, "/percent-mirror"), 20), (v(1, "/percent-mirror-fraction"), 50),
                   (v(1, "/percent-mirror-and-modify-headers", headers=EDITS_SENT, seen_headers=EDITS_SEEN), 35)]


@pytest.mark.timeout(1200)
def test_request_percentage_mirror(replay):
    """HTTPRouteRequestPercentageMirror: after the request holds, 500 requests (10 at a
    time) with one request id, all answered by v1; the number v2 logged lies within
    n·p ± 3·√(n·p·(1−p)); up to 5 tries per case."""
    docs = replay.apply("httproute-request-percentage-mirror.yaml")
    problems = ready(replay, docs)
    problems += conf.replay(replay.send_batch, [e for e, _ in PERCENT_MIRRORS])
    net, total = replay.agent.net, 500
    for base, percent in PERCENT_MIRRORS:
        p = percent / 100
        low, high = total * p - 3 * math.sqrt(total * p * (1 - p)), total * p + 3 * math.sqrt(total * p * (1 - p))
        outcome = ""
        for _ in range(5):
            expect = with_request_id(base)
            headers = [arg for name, value in expect.headers.items() for arg in ("--header", f"{name}:{value}")]
            done = net.run(net.client.ns, net.python_argv(
                "lab.httpclient", "spread", "--url", f"http://{replay.addresses['same-namespace']}{expect.path}",
                "--count", total, "--parallel", 10, *headers), timeout=300)
            report = json.loads(done.stdout.strip().splitlines()[-1])
            answered = sum(c for pod, c in report["pods"].items() if pod.startswith("infra-backend-v1-"))
            # The mirror's copies may land a little after the answers.
            wait_for(lambda: replay.echoed("infra-backend-v2", expect.path) >= low, timeout=10, interval=0.5)
            count = replay.echoed("infra-backend-v2", expect.path)
            outcome = f"{base.path}: {answered}/{total} answered by v1, {count} mirrored (want {low:.0f}-{high:.0f})"
            print(f"  {outcome}")
            if answered == total and low <= count <= high:
                break
        else:
            problems.append(outcome)
    record("HTTPRouteRequestPercentageMirror", problems)


# -- retries: the echo pods fail on request ----------------------------------------------------

# (path, responseCode, succeedAfter, the status the client must get)
RETRY_CASES = [
    ("/retry/code-500-attempts-3", 500, 2, 200), ("/retry/code-500-attempts-3", 500, 4, 500),
    ("/retry/code-500-attempts-3", 503, 2, 503),
    ("/retry/code-all-attempts-2", 500, 1, 200), ("/retry/code-all-attempts-2", 500, 3, 500),
    ("/retry/code-all-attempts-2", 502, 1, 200), ("/retry/code-all-attempts-2", 502, 3, 502),
    ("/retry/code-all-attempts-2", 503, 1, 200), ("/retry/code-all-attempts-2", 503, 3, 503),
    ("/retry/code-all-attempts-2", 504, 1, 200), ("/retry/code-all-attempts-2", 504, 3, 504),
]


def retry_probe(case: tuple) -> Expect:
    """One probe of a case, with its own uuid (the echo pod counts attempts per uuid)."""
    path, code, succeed_after, status = case
    query = urlencode({"responseCode": code, "succeedAfter": succeed_after, "uuid": uuid.uuid4()})
    return Expect(f"{path}?{query}", backend="infra-backend-v3", status=status)


@pytest.mark.timeout(900)
def test_retry(replay):
    """HTTPRouteRetry: codes [500] with 3 attempts, codes [500, 502, 503, 504] with 2, on
    v3's retry simulator; each case must hold for 3 probes in a row, each with a new uuid."""
    docs = replay.apply("httproute-retry.yaml")
    problems = ready(replay, docs)

    def send(cases: list[tuple]) -> list[list[dict]]:
        probes = [retry_probe(case) for case in cases]
        answers = replay.send_batch(probes, repeat=1)
        return [[dict(a, probe=probe) for a in tries] for probe, tries in zip(probes, answers)]

    def check(_case: tuple, answer: dict) -> str | None:
        if "error" in answer:
            return f"request failed: {answer['error']}"
        return conf.check_response(answer["probe"], answer["status"], answer["body"], answer["headers"])

    # Three probes per case in each round, as upstream's three successes in a row.
    probes = [case for case in RETRY_CASES for _ in range(3)]
    problems += conf.until_held(send, probes, check, lambda c: f"{c[0]} responseCode={c[1]} succeedAfter={c[2]}")
    record("HTTPRouteRetry", sorted(set(problems)))
