"""The desired L7 configuration: what the control plane asks Envoy to serve.

The contract between translation (``ctl.translate`` fills ``Translation.l7``) and the
Envoy side (``l7sidecar.render`` turns an ``L7State`` into xDS resources). Values only,
frozen and hashable, already in the order Envoy must evaluate them: translation applies
the Gateway API semantics (hostname intersection, match precedence, backend validity),
rendering only spells them in Envoy's terms.

Names are stable and readable, because they become Envoy resource names:

- listener ``<address>:<port>`` (IPv6 in brackets), e.g. ``192.0.2.10:80``;
- route table (RDS) ``http/<listener>`` for plain HTTP, ``https/<listener>/<sni>`` for
  one HTTPS filter chain (``<sni>`` is the listener hostname, ``*`` for none);
- cluster (CDS and EDS) ``<namespace>/<service>/<port>``, with ``/h2`` appended when
  Envoy must speak HTTP/2 to it (GRPCRoute backends, appProtocol ``kubernetes.io/h2c``)
  and ``/proxy-protocol`` for TLS passthrough backends sent a PROXY protocol header;
- certificate (SDS) ``<namespace>/<secret name>``;
- route entry ``<Kind>/<namespace>/<name>/rule/<i>/match/<j>``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ctl.model import Endpoint, IPAddress


@dataclass(frozen=True, order=True)
class SourceRef:
    """A Gateway API object an L7 resource comes from: a route, or one listener of a
    Gateway (``section`` is the listener name). Used to turn Envoy's verdict on a
    resource back into the status of the objects behind it."""

    kind: str
    namespace: str
    name: str
    section: str = ""

    def __str__(self) -> str:
        base = f"{self.kind} {self.namespace}/{self.name}"
        return f"{base} listener {self.section}" if self.section else base


class L7Protocol(enum.Enum):
    HTTP = "HTTP"  # plain HTTP/1.1 and h2c; one route table for the port
    HTTPS = "HTTPS"  # TLS terminated by Envoy; a filter chain per SNI, each with its route table
    TLS = "TLS"  # TLS passthrough: routed by SNI to TCP backends without decrypting


@dataclass(frozen=True)
class Cluster:
    """One Service port as Envoy reaches it: endpoints from EndpointSlices (never the
    ClusterIP), both families, sorted. No endpoints is valid: Envoy answers 503."""

    name: str
    endpoints: tuple[Endpoint, ...]
    http2: bool = False
    source: SourceRef | None = None  # the Service
    proxy_protocol: bool = False


@dataclass(frozen=True)
class WeightedCluster:
    """One backendRef of a rule. ``cluster`` None: the reference is invalid (missing
    Service, unknown kind, not granted...), and its share of requests answers 500 (TLS
    passthrough: the connection is closed) instead of being spread over the others."""

    cluster: str | None
    weight: int
    # A backendRef's own RequestHeaderModifier (applied only on requests sent to it).
    request_headers: HeaderEdits | None = None


@dataclass(frozen=True)
class HeaderEdits:
    """RequestHeaderModifier / ResponseHeaderModifier. Names are lower-cased (HTTP
    header names ignore case; Envoy's own matching does too)."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


class PathType(enum.Enum):
    EXACT = "Exact"
    PREFIX = "PathPrefix"  # whole segments: /v2 matches /v2, /v2/ and /v2/x, not /v2x
    REGEX = "RegularExpression"


@dataclass(frozen=True)
class ValueMatch:
    """A header or query parameter match. Header names are lower-cased; query parameter
    names are matched exactly."""

    name: str
    value: str
    regex: bool = False


@dataclass(frozen=True)
class RouteMatch:
    path_type: PathType = PathType.PREFIX
    path: str = "/"
    method: str | None = None
    headers: tuple[ValueMatch, ...] = ()
    query_params: tuple[ValueMatch, ...] = ()


@dataclass(frozen=True)
class Redirect:
    """RequestRedirect. None keeps the request's value; the port follows the spec: kept
    when the scheme does not change, else the new scheme's default (left out)."""

    status_code: int = 302
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    full_path: str | None = None
    prefix: str | None = None  # replaces the matched path prefix (ReplacePrefixMatch)


@dataclass(frozen=True)
class Rewrite:
    """URLRewrite, applied to the request sent upstream."""

    hostname: str | None = None
    full_path: str | None = None
    prefix: str | None = None


@dataclass(frozen=True)
class Mirror:
    """RequestMirror: a copy of each request (a share ``percent`` of them) goes to
    ``cluster``; its answers are dropped. None: the mirror backend is invalid (skipped)."""

    cluster: str | None
    percent: float = 100.0


@dataclass(frozen=True)
class Cors:
    """The CORS filter. Origins are exact (``https://www.foo.com``), ``*``, or with a
    wildcard host label (``https://*.bar.com``); Envoy answers preflights itself."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int = 5
    allow_credentials: bool = False


@dataclass(frozen=True)
class Retry:
    """HTTPRoute retry: ``attempts`` retries on the listed status codes (and on connection
    failures, which the spec counts as retriable) with ``backoff`` seconds base interval."""

    codes: tuple[int, ...]
    attempts: int
    backoff: float | None = None


@dataclass(frozen=True)
class L7Route:
    """One match of one rule, Envoy's route entry. Exactly one action: ``redirect``, a
    ``direct_status`` (500: no valid backend), or ``backends`` (weighted clusters)."""

    name: str
    source: SourceRef
    match: RouteMatch
    backends: tuple[WeightedCluster, ...] = ()
    redirect: Redirect | None = None
    direct_status: int | None = None
    request_headers: HeaderEdits | None = None
    response_headers: HeaderEdits | None = None
    rewrite: Rewrite | None = None
    mirrors: tuple[Mirror, ...] = ()
    # Seconds; 0 disables the timeout; None leaves Envoy's route default (15 s).
    timeout: float | None = None
    backend_timeout: float | None = None
    retry: Retry | None = None
    cors: Cors | None = None
    grpc: bool = False


@dataclass(frozen=True)
class VirtualHost:
    """Every route of a hostname (``*`` for any), in precedence order: the hostname's own
    routes first, then those of wildcards covering it, then hostname-less ones."""

    hostname: str
    routes: tuple[L7Route, ...]


@dataclass(frozen=True)
class RouteTable:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


@dataclass(frozen=True)
class Certificate:
    """A kubernetes.io/tls Secret's PEM data, served to Envoy by SDS."""

    name: str
    certificate_chain: bytes
    private_key: bytes
    source: SourceRef | None = None  # the Secret

    def __repr__(self) -> str:  # never print key material into logs
        return f"Certificate(name={self.name!r})"


@dataclass(frozen=True)
class FilterChain:
    """Plain HTTP: one chain, no server names. HTTPS: one per listener hostname (SNI),
    with its certificates and route table. TLS: one per route hostname, with the route's
    weighted clusters (and in Terminate mode the listener's certificates). Empty
    ``server_names``: any SNI (or none)."""

    server_names: tuple[str, ...]
    sources: tuple[SourceRef, ...]
    route_table: str | None = None
    certificates: tuple[str, ...] = ()
    passthrough: tuple[WeightedCluster, ...] = ()
    passthrough_route: SourceRef | None = None

    @property
    def terminates_tls(self) -> bool:
        return bool(self.certificates)


@dataclass(frozen=True)
class L7Listener:
    name: str
    address: IPAddress
    port: int
    protocol: L7Protocol
    filter_chains: tuple[FilterChain, ...]
    # The Gateway listeners merged onto this address and port.
    sources: tuple[SourceRef, ...]


@dataclass(frozen=True)
class L7State:
    listeners: tuple[L7Listener, ...] = ()
    route_tables: tuple[RouteTable, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    certificates: tuple[Certificate, ...] = ()
    # How many proxies in front of Envoy are trusted to append to X-Forwarded-For. 0: a
    # client-sent X-Forwarded-For is never trusted; Envoy appends the peer address.
    xff_num_trusted_hops: int = 0
    # Send a PROXY protocol (v2) header to TLS passthrough backends, so they learn the
    # client's address although Envoy opens the connection.
    passthrough_proxy_protocol: bool = False

    def cluster(self, name: str) -> Cluster | None:
        return next((c for c in self.clusters if c.name == name), None)


def listener_name(address: IPAddress, port: int) -> str:
    return str(Endpoint(address, port))
