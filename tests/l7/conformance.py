"""Replays upstream Gateway API v1.6.1 L7 conformance tests without a cluster: the
upstream base and test manifests unchanged except for what a cluster would add, static
EndpointSlices pointing at echo pods in the lab's backend namespaces, `gwctl run`
programming the kernel and Envoy, and the requests and status conditions each test
expects (from CONFORMANCE-L7.md, which summarises upstream's test code).

What the replay adds to the manifests, as a cluster would: the GatewayClass (controller
xdp-gateway.io/gateway-controller), `{GATEWAY_CLASS_NAME}` filled in, one address per
Gateway (a cluster's load balancer gives each its own; standalone mode has no address
pool), and EndpointSlices for every Service (a cluster's endpoint controller writes
them from the pods; here they name the echo pods' addresses).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from lab import certs

from .test_l7_net import condition, find, wait_for

SHARED = Path(__file__).resolve().parents[3] / "shared" / "gateway-api" / "v1.6.1"
BASE = SHARED / "conformance" / "base-manifests.yaml"
TESTS = SHARED / "conformance-l7"
CLASS = "xdp-gateway"
CONTROLLER = "xdp-gateway.io/gateway-controller"

INFRA = "gateway-conformance-infra"
APP = "gateway-conformance-app-backend"
WEB = "gateway-conformance-web-backend"

# Echo pods: (service, namespace) -> (backend index, last octets of the pods' addresses).
PODS: dict[tuple[str, str], tuple[int, tuple[int, ...]]] = {
    ("infra-backend-v1", INFRA): (0, (100, 101)),
    ("infra-backend-v2", INFRA): (1, (100, 101)),
    ("infra-backend-v3", INFRA): (2, (100,)),
    ("app-backend-v1", APP): (0, (110,)),
    ("app-backend-v2", APP): (1, (110,)),
    ("web-backend", WEB): (2, (110,)),
}
# Pods with an IPv6 address too (HTTPRouteServiceTypes fills IPv6 EndpointSlices with them).
DUAL_STACK = {("infra-backend-v1", INFRA)}
# The gRPC echo pods (lab.echo --grpc), same layout.
GRPC_PODS: dict[tuple[str, str], tuple[int, tuple[int, ...]]] = {
    ("grpc-infra-backend-v1", INFRA): (0, (120,)),
    ("grpc-infra-backend-v2", INFRA): (1, (120,)),
    ("grpc-infra-backend-v3", INFRA): (2, (120,)),
}

# TLS echo pods (service, namespace) -> (backend index, last octets, the Secret whose
# certificate they serve, what they run): echo-basic with TLS_SERVER_CERT (the HTTP echo,
# also over TLS on 8443) or with TCP_ECHO_SERVER (the TCP echo, plain 3000, TLS 8443).
TLS_PODS: dict[tuple[str, str], tuple[int, tuple[int, ...], tuple[str, str], str]] = {
    ("tls-backend", INFRA): (0, (130,), (INFRA, "tls-checks-certificate"), "https"),
    ("tls-backend-2", INFRA): (1, (130,), (INFRA, "tls-checks-certificate"), "https"),
    ("tls-backend", APP): (2, (130,), (APP, "tls-passthrough-checks-certificate"), "https"),
    ("tcp-backend", INFRA): (0, (140, 141), (INFRA, "tls-passthrough-checks-certificate"), "tcp"),
}

# The certificates upstream's suite creates at setup for the Secrets its manifests name
# (conformance/utils/suite): (namespace, name) -> DNS names. Self-signed, except those
# signed by the suite's CA (the ConfigMap tls-checks-ca-certificate upstream, which no
# Core test reads from the cluster; here the clients get it directly).
SELF_SIGNED: dict[tuple[str, str], list[str]] = {
    (WEB, "certificate"): ["*"],
    # *.wildcard.org besides upstream's names: Go's client (like ours) would not accept
    # third-example.wildcard.org under *.org in the misdirected-requests test.
    (INFRA, "tls-validity-checks-certificate"): ["*", "*.org", "*.wildcard.org"],
}
CA_SIGNED: dict[tuple[str, str], list[str]] = {
    (INFRA, "tls-passthrough-checks-certificate"): ["abc.example.com"],
    (APP, "tls-passthrough-checks-certificate"): ["abc.example.com"],
    (INFRA, "tls-checks-certificate"): ["abc.example.com", "other.example.com"],
    (INFRA, "tls-terminate-checks-certificate"): ["tls.example.com"],
}


@dataclass(frozen=True)
class SuiteCertificates:
    ca: certs.KeyPair
    pairs: dict[tuple[str, str], certs.KeyPair]

    def secrets(self) -> list[dict]:
        return [pair.secret(namespace, name) for (namespace, name), pair in sorted(self.pairs.items())]


def make_certificates() -> SuiteCertificates:
    ca = certs.certificate_authority()
    pairs = {key: certs.server_certificate(hosts) for key, hosts in SELF_SIGNED.items()}
    pairs |= {key: certs.server_certificate(hosts, ca) for key, hosts in CA_SIGNED.items()}
    return SuiteCertificates(ca, pairs)


def shared_missing() -> str | None:
    if not BASE.exists():
        return f"needs the upstream conformance manifests at {SHARED} (the workspace's shared/)"
    return None


def load(path: Path) -> list[dict]:
    text = path.read_text().replace("{GATEWAY_CLASS_NAME}", CLASS).replace("{GATEWAY_CONTROLLER_NAME}", CONTROLLER)
    return [d for d in yaml.safe_load_all(text) if d]


def manifests(test_file: str, addresses: dict[str, IPv4Address], pod_addresses,
              secrets: list[dict] = ()) -> list[dict]:
    """Base + test manifests as the agent gets them, with the suite's Secrets.
    addresses: Gateway name -> address."""
    docs = [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": CLASS},
             "spec": {"controllerName": CONTROLLER}}]
    docs += load(BASE) + list(secrets) + (load(TESTS / test_file) if test_file else [])
    slices = []
    for doc in docs:
        if doc.get("kind") == "Gateway":
            name = doc["metadata"]["name"]
            if name not in addresses:  # a distinct address per Gateway, kept across tests
                addresses[name] = IPv4Address("10.99.100.0") + len(addresses) + 1
            doc["spec"].setdefault("addresses", [{"type": "IPAddress", "value": str(addresses[name])}])
        if doc.get("kind") == "Service":
            key = (doc["metadata"]["name"], doc["metadata"].get("namespace", "default"))
            if key in PODS or key in GRPC_PODS or key in TLS_PODS:
                slices.append(endpoint_slice(doc, pod_addresses(key)))
    return docs + slices


def endpoint_slice(service: dict, addresses: list[str]) -> dict:
    ports = [{"name": p.get("name", ""), "port": int(p.get("targetPort", p["port"])), "protocol": "TCP",
              **({"appProtocol": p["appProtocol"]} if "appProtocol" in p else {})}
             for p in service["spec"]["ports"]]
    name = service["metadata"]["name"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-static", "namespace": service["metadata"]["namespace"],
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses]}


def dump(docs: list[dict]) -> str:
    return "\n---\n".join(json.dumps(d) for d in docs)


# -- expectations ------------------------------------------------------------------------

@dataclass(frozen=True)
class Expect:
    """One request and what must come back (upstream's http.ExpectedResponse, abridged)."""

    path: str
    backend: str | None = None  # service whose pod must answer ("": any pod of namespace)
    status: int = 200
    host: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    namespace: str = INFRA
    gateway: str = "same-namespace"
    # What the backend must have seen: header name -> value (None: absent).
    seen_headers: dict[str, str | None] = field(default_factory=dict)
    redirect: dict[str, object] | None = None  # scheme/host/port/path of Location
    method: str = "GET"
    # The request as the backend must see it when a filter changed it (default: as sent).
    seen_path: str | None = None
    seen_host: str | None = None
    # Headers the backend must answer with (upstream's BackendSetResponseHeaders, sent
    # in X-Echo-Set-Header), and what the client must get: name -> value (None: absent).
    echo_set: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str | None] = field(default_factory=dict)
    scheme: str = "http"
    port: int = 80  # the Gateway listener's

    def request_headers(self) -> dict[str, str]:
        """The headers sent: the test's, and X-Echo-Set-Header as upstream's suite
        always sends it (empty when the backend is to set nothing)."""
        echo_set = ",".join(f"{name}:{value}" for name, value in self.echo_set.items())
        return {**self.headers, "X-Echo-Set-Header": echo_set}


_DEFAULT_PORTS = {"http": 80, "https": 443}
# Upstream's IsTimeoutError: either code passes where one is expected.
_TIMEOUT_CODES = (408, 504)


def _check_redirect(expect: Expect, location: str) -> str | None:
    """Upstream's redirect comparison: scheme and path default to the request's, the
    port, when the test names none, must be the Location scheme's default or absent."""
    parts = urlsplit(location)
    want = expect.redirect or {}
    if parts.scheme != want.get("scheme", expect.scheme):
        return f"Location {location}: scheme, want {want.get('scheme', expect.scheme)}"
    if "host" in want and parts.hostname != want["host"]:
        return f"Location {location}: host, want {want['host']}"
    ports = want.get("port", (None, _DEFAULT_PORTS.get(parts.scheme)))
    ports = ports if isinstance(ports, tuple) else (ports,)
    if parts.port not in ports:
        return f"Location {location}: port {parts.port}, want one of {ports}"
    path = want.get("path", urlsplit(expect.path).path)
    if parts.path != path:
        return f"Location {location}: path, want {path}"
    return None


def check_response(expect: Expect, status: int, body: dict, headers: dict[str, str]) -> str | None:
    """None when the answer is what the test expects, else why not."""
    if status != expect.status and not (status in _TIMEOUT_CODES and expect.status in _TIMEOUT_CODES):
        return f"status {status}, want {expect.status}"
    if expect.redirect is not None:
        return _check_redirect(expect, headers.get("location", ""))
    if expect.backend is None or status not in (200, 204):
        return None  # upstream looks at the backend's view of a successful answer only
    pod = body.get("pod", "")
    # Pods are named <service>-<k>: tls-backend-2-0 is not a tls-backend pod.
    if (expect.backend and pod.rpartition("-")[0] != expect.backend) or body.get("namespace") != expect.namespace:
        return f"answered by {body.get('namespace')}/{pod}, want {expect.namespace}/{expect.backend or ''}*"
    # Upstream compares the request the backend saw with the one sent (or the one the
    # test says a filter makes of it): path (query included), method, and the host
    # when the request named one.
    path = expect.seen_path or expect.path
    if body.get("path") != path or body.get("method") != expect.method:
        return f"backend saw {body.get('method')} {body.get('path')}, want {expect.method} {path}"
    host = expect.seen_host or expect.host
    if host is not None and body.get("host") != host:
        return f"backend saw host {body.get('host')!r}, want {host!r}"
    seen = {k.lower(): ",".join(v) for k, v in body.get("headers", {}).items()}
    for name, value in expect.seen_headers.items():
        got = seen.get(name.lower())
        if got != value:
            return f"backend saw {name}: {got!r}, want {value!r}"
    for name, value in expect.response_headers.items():
        got = headers.get(name.lower())
        if got != value:
            return f"response header {name}: {got!r}, want {value!r}"
    return None


def until_held(send_batch, items: list, check, describe, timeout: float = 30.0) -> list[str]:
    """Upstream's rule: each expectation holds 3 times in a row within 30 s. send_batch
    sends every item 3 times and returns the answers; check(item, answer) says why an
    answer is wrong (or None); returns the failures left, described by describe(item)."""
    deadline = time.monotonic() + timeout
    while True:
        failures = []
        for item, tries in zip(items, send_batch(items)):
            why = next((w for w in (check(item, answer) for answer in tries) if w), None)
            if why:
                failures.append(f"{describe(item)}: {why}")
        if not failures or time.monotonic() > deadline:
            return failures
        time.sleep(1)


def _check_http(expect: Expect, answer: dict) -> str | None:
    if "error" in answer:
        return f"request failed: {answer['error']}"
    return check_response(expect, answer["status"], answer["body"], answer["headers"])


def replay(send_batch, expects: list[Expect], timeout: float = 30.0) -> list[str]:
    return until_held(send_batch, expects, _check_http,
                      lambda x: f"{x.host or ''}{x.path} {x.headers or ''}", timeout)


@dataclass(frozen=True)
class GrpcExpect:
    """One gRPC call (Echo, EchoTwo or EchoThree) and its outcome: the backend whose pod
    must answer, naming the called method, or a status code such as UNIMPLEMENTED."""

    method: str = "Echo"
    backend: str | None = None
    code: str = "OK"
    authority: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    gateway: str = "same-namespace"


def check_grpc(expect: GrpcExpect, answer: dict) -> str | None:
    if answer["code"] != expect.code:
        return f"code {answer['code']} {answer.get('details', '')}, want {expect.code}"
    if expect.backend is None:
        return None
    if not answer["pod"].startswith(expect.backend + "-") or answer["namespace"] != INFRA:
        return f"answered by {answer['namespace']}/{answer['pod']}, want {expect.backend}-*"
    if answer["method"] != f"/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/{expect.method}":
        return f"the reply names {answer['method']}"
    return None


def replay_grpc(send_batch, expects: list[GrpcExpect], timeout: float = 30.0) -> list[str]:
    return until_held(send_batch, expects, check_grpc,
                      lambda x: f"{x.authority or ''} {x.method} {x.metadata or ''}", timeout)


def replay_tls(send_batch, requests: list[dict], check, timeout: float = 30.0) -> list[str]:
    """The same rule for TLS exchanges: check(request, answer) -> None or why not."""
    return until_held(send_batch, requests, check, lambda x: f"{x['addr']} SNI {x['sni']}", timeout)


# Each replayed upstream test's outcome, as the CONFORMANCE lines print it.
RESULTS: dict[str, str] = {}


def record(name: str, problems: list[str]) -> None:
    RESULTS[name] = "pass" if not problems else "fail: " + "; ".join(problems[:3])
    print(f"CONFORMANCE {name}: {RESULTS[name]}")
    assert not problems, problems


# -- the replay: an agent serving the lab, and the clients ---------------------------------

class Replay:
    """The running agent (`gwctl run` in the lab's gateway namespace), the address each
    Gateway got, the suite's certificates, and the clients of the client namespace."""

    def __init__(self, agent, certificates: SuiteCertificates, echo_logs: list[list[str]] = ()) -> None:
        self.agent = agent
        self.certificates = certificates
        self.addresses: dict[str, object] = {}
        # The echo processes' stdout lines, as they come (lab.echo.drain).
        self.echo_logs = list(echo_logs)

    def echoed(self, service: str, uri: str, namespace: str = INFRA) -> int:
        """How many requests for uri a pod of service has logged (upstream's mirror tests
        read the pods' logs for this line)."""
        wanted = f"Echoing back request made to {uri} to client"
        count = 0
        for lines in self.echo_logs:
            for line in list(lines):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if (entry.get("msg") == wanted and entry.get("namespace", namespace) == namespace
                        and entry.get("pod", "").rpartition("-")[0] == service):
                    count += 1
        return count

    def pod_addresses(self, key) -> list[str]:
        index, octets = (PODS.get(key) or GRPC_PODS.get(key) or TLS_PODS[key][:2])[:2]
        backend = self.agent.net.backends[index]
        return [str(backend.net4.network_address + o) for o in octets]

    def pod_addresses6(self, key) -> list[str]:
        """The IPv6 addresses of a Service's pods (DUAL_STACK ones only)."""
        if key not in DUAL_STACK:
            return []
        index, octets = PODS[key]
        backend = self.agent.net.backends[index]
        return [str(backend.net6.network_address + o) for o in octets]

    def apply(self, test_file: str) -> list[dict]:
        return self.write(manifests(test_file, self.addresses, self.pod_addresses, self.certificates.secrets()))

    def write(self, docs: list[dict]) -> list[dict]:
        """The config directory holds exactly these objects once the agent has read them."""
        self.agent.replace_config({"conformance.yaml": dump(docs)}, timeout=120)
        return docs

    def _client(self, module: str, argv: list, payload: list[dict], timeout: float) -> list[list[dict]]:
        net = self.agent.net
        done = net.run(net.client.ns, net.python_argv(module, *argv), input=json.dumps(payload), timeout=timeout)
        return json.loads(done.stdout.strip().splitlines()[-1])

    def send_batch(self, expects: list[Expect], repeat: int = 3) -> list[list[dict]]:
        requests = [{"url": f"http://{self.addresses[e.gateway]}{'' if e.port == 80 else f':{e.port}'}{e.path}",
                     "host": e.host,
                     "headers": e.request_headers(), "method": e.method} for e in expects]
        return self._client("lab.httpclient", ["batch", "--repeat", repeat], requests, 300)

    def send_grpc(self, expects: list[GrpcExpect], repeat: int = 3) -> list[list[dict]]:
        calls = [{"target": f"{self.addresses[e.gateway]}:80", "authority": e.authority, "method": e.method,
                  "metadata": e.metadata} for e in expects]
        return self._client("lab.grpcclient", ["batch", "--repeat", repeat], calls, 600)

    def send_tls(self, requests: list[dict], repeat: int = 3) -> list[list[dict]]:
        """lab.tlsclient batch: requests as it reads them, addr given as a Gateway name."""
        payload = [r | {"addr": str(self.addresses[r["addr"]])} for r in requests]
        return self._client("lab.tlsclient", ["batch", "--repeat", repeat], payload, 300)

    def routes_accepted(self, docs: list[dict], names: list[str] | None = None) -> list[str]:
        """Each route (or those named) is "accepted" as upstream means it: a parent entry
        per parentRef, with our controllerName, Accepted=True Accepted and ResolvedRefs=True
        ResolvedRefs, each condition's observedGeneration the route's generation."""
        problems: list[str] = []
        objects = self.agent.objects()
        for doc in docs:
            if doc.get("kind") not in ("HTTPRoute", "GRPCRoute", "TLSRoute") or (
                    names and doc["metadata"]["name"] not in names):
                continue
            route_must(problems, objects, doc["metadata"]["name"], ("True", "Accepted"), ("True", "ResolvedRefs"),
                       kind=doc["kind"], parents=len(doc["spec"]["parentRefs"]))
            # A route outside its Gateway's namespace: the parent entry names that namespace.
            for entry in find(objects, doc["kind"], doc["metadata"]["name"])["status"].get("parents", []):
                ref = next((r for r in doc["spec"]["parentRefs"] if r["name"] == entry["parentRef"]["name"]), {})
                namespace = ref.get("namespace", doc["metadata"]["namespace"])
                if namespace != doc["metadata"]["namespace"] and entry["parentRef"].get("namespace") != namespace:
                    problems.append(f"{doc['metadata']['name']}: parentRef {entry['parentRef']} lacks namespace {namespace}")
        return problems

    def listeners_programmed(self, gateway: str) -> bool:
        gw = find(self.agent.objects(), "Gateway", gateway)
        return all(condition(entry["conditions"], "Programmed")["status"] == "True"
                   for entry in gw["status"].get("listeners", []))

    def programmed(self, *gateways: str, timeout: float = 60) -> list[str]:
        """A problem unless every listener of the gateways is Programmed within timeout."""
        if wait_for(lambda: all(self.listeners_programmed(g) for g in gateways), timeout=timeout):
            return []
        return [f"listeners of {sorted(gateways)} not Programmed"]


# -- HTTPS requests ------------------------------------------------------------------------

def served_certificate(answer: dict, pair: certs.KeyPair, sni: str) -> str | None:
    """None when the handshake presented exactly pair's certificate, valid for sni."""
    served = answer.get("certificate", {})
    if served.get("sha256") != pair.sha256:
        return f"served certificate {served.get('sha256', '?')[:16]} (names {served.get('dnsNames')}), not the Secret's"
    if not certs.matches_hostname(served["dnsNames"], sni):
        return f"certificate names {served['dnsNames']} do not cover {sni}"
    return None


def https_sender(replay: Replay, port: int, trust: certs.KeyPair, served: certs.KeyPair,
                 protocol: str = "https", sni: str | None = None):
    """A send_batch for conf.replay: each Expect as an HTTPS GET (HTTP/1.1, or HTTP/2 for
    protocol "h2") with SNI = sni or else its host, answers failing unless the handshake
    presented `served`."""

    def send(expects: list[Expect]) -> list[list[dict]]:
        requests = [{"addr": e.gateway, "port": port, "sni": sni or e.host, "host": e.host, "path": e.path,
                     "trust": trust.certificate.decode(), "protocol": protocol} for e in expects]
        answers = replay.send_tls(requests)
        for request, tries in zip(requests, answers):
            for i, answer in enumerate(tries):
                why = (f"{answer['stage']}: {answer['error']}" if "error" in answer
                       else served_certificate(answer, served, request["sni"]))
                if why:
                    tries[i] = {"error": why}
        return answers

    return send


# -- reading status ----------------------------------------------------------------------

def gateway_conditions(objects, name) -> dict[str, tuple[str, str]]:
    gw = find(objects, "Gateway", name)
    return {c["type"]: (c["status"], c["reason"]) for c in gw["status"].get("conditions", [])}


def listener_status(objects, gateway, listener) -> dict:
    gw = find(objects, "Gateway", gateway)
    entry = next(e for e in gw["status"].get("listeners", []) if e["name"] == listener)
    return {"conditions": {c["type"]: (c["status"], c["reason"]) for c in entry["conditions"]},
            "kinds": [k["kind"] for k in entry.get("supportedKinds", [])], "attached": entry.get("attachedRoutes")}


def route_parent_conditions(objects, kind, name) -> list[dict[str, tuple[str, str]]]:
    route = find(objects, kind, name)
    return [{c["type"]: (c["status"], c["reason"]) for c in p["conditions"]} for p in route["status"].get("parents", [])]


def expect_equal(problems: list[str], what: str, got, want) -> None:
    if got != want:
        problems.append(f"{what}: {got!r}, want {want!r}")


# -- status checks: conditions by type, status and reason, observedGeneration = generation --

def condition_must(problems: list[str], what: str, conditions: list[dict], kind: str, want: tuple[str, str | None],
                   generation: int) -> None:
    """want: (status, reason); a reason of None accepts any."""
    c = next((c for c in conditions if c["type"] == kind), None)
    if c is None:
        problems.append(f"{what}: no {kind} condition")
        return
    status, reason = want
    if c["status"] != status or (reason is not None and c["reason"] != reason):
        problems.append(f"{what}: {kind} {c['status']} {c['reason']}, want {status} {reason or '(any)'}")
    if c.get("observedGeneration") != generation:
        problems.append(f"{what}: {kind} observedGeneration {c.get('observedGeneration')}, generation {generation}")


def route_must(problems: list[str], objects, name: str, accepted: tuple[str, str | None],
               resolved: tuple[str, str | None] | None = None, kind: str = "HTTPRoute", parents: int = 1) -> None:
    """The route has this many parent entries, each with our controllerName and these
    conditions (resolved None: ResolvedRefs not checked)."""
    route = find(objects, kind, name)
    generation = route["metadata"]["generation"]
    entries = route["status"].get("parents", [])
    if len(entries) != parents:
        problems.append(f"{name}: {len(entries)} parent entries, want {parents}")
    for entry in entries:
        where = f"{name} on {entry['parentRef']['name']}"
        if entry.get("controllerName") != CONTROLLER:
            problems.append(f"{where}: controllerName {entry.get('controllerName')}")
        condition_must(problems, where, entry["conditions"], "Accepted", accepted, generation)
        if resolved is not None:
            condition_must(problems, where, entry["conditions"], "ResolvedRefs", resolved, generation)


def no_parents_must(problems: list[str], objects, name: str, reason: str, resolved_true: bool = False) -> None:
    """Upstream's "no parents": no parent status, or entries with Accepted=False (this reason)."""
    route = find(objects, "HTTPRoute", name)
    generation = route["metadata"]["generation"]
    for entry in route["status"].get("parents", []):
        condition_must(problems, name, entry["conditions"], "Accepted", ("False", reason), generation)
        if resolved_true:
            condition_must(problems, name, entry["conditions"], "ResolvedRefs", ("True", "ResolvedRefs"), generation)


def listeners_must(problems: list[str], objects, gateway: str, want: dict[str, dict]) -> None:
    """want: listener name -> {"attached": n, "kinds": [...] (must contain), condition type:
    (status, reason)}. The status must list exactly these listeners."""
    gw = find(objects, "Gateway", gateway)
    generation = gw["metadata"]["generation"]
    entries = {e["name"]: e for e in gw["status"].get("listeners", [])}
    if sorted(entries) != sorted(want):
        problems.append(f"{gateway}: listeners {sorted(entries)}, want {sorted(want)}")
    for name, spec in want.items():
        entry = entries.get(name)
        if entry is None:
            continue
        if "attached" in spec and entry.get("attachedRoutes") != spec["attached"]:
            problems.append(f"{gateway}/{name}: attachedRoutes {entry.get('attachedRoutes')}, want {spec['attached']}")
        kinds = [k["kind"] for k in entry.get("supportedKinds", [])]
        for kind in spec.get("kinds", ()):
            if kind not in kinds:
                problems.append(f"{gateway}/{name}: supportedKinds {kinds} lacks {kind}")
        for kind, wanted in spec.items():
            if kind[0].isupper():
                condition_must(problems, f"{gateway}/{name}", entry["conditions"], kind, wanted, generation)


def gateway_must(problems: list[str], objects, gateway: str, want: dict[str, tuple[str, str | None]]) -> None:
    gw = find(objects, "Gateway", gateway)
    for kind, wanted in want.items():
        condition_must(problems, gateway, gw["status"].get("conditions", []), kind, wanted, gw["metadata"]["generation"])


def all_conditions_current(obj: dict) -> list[str]:
    """Every condition of the object (its own, its listeners', its parents') observed its generation."""
    generation = obj["metadata"]["generation"]
    status = obj["status"]
    conditions = [*status.get("conditions", []), *(c for e in status.get("listeners", []) for c in e["conditions"]),
                  *(c for e in status.get("parents", []) for c in e["conditions"])]
    stale = [f"{c['type']} observedGeneration {c['observedGeneration']}" for c in conditions
             if c["observedGeneration"] != generation]
    return [f"{obj['kind']} {obj['metadata']['name']} generation {generation}: {', '.join(stale)}"] if stale else []
