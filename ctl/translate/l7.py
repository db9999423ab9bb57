"""HTTP, HTTPS and TLS listeners to the desired Envoy model (``ctl.l7model.L7State``). Pure.

Per gateway address and port, the Gateway listeners that are ready to serve (accepted,
addressed, with usable certificates; conflicts already settled) become one Envoy
listener:

- HTTP: one route table for the port. Each attached route contributes its effective
  hostnames (route hostnames intersected with its listener's; ``*`` when neither has
  any); each hostname becomes a virtual host holding its own rules first, then the
  rules of wildcard hostnames covering it, then the hostname-less ones. Within each of
  those groups rules follow the spec's precedence: exact path, longest prefix, method,
  most header matches, most query matches, oldest route, namespace/name, rule order.
  Listeners are isolated: a host is served only by the routes of the most specific
  listener matching it (every listener hostname has a virtual host, maybe empty: 404).
- HTTPS: one filter chain per Gateway listener, matched by SNI = its hostname (none:
  the default chain), with its certificates and its own route table built the same way
  from the routes attached to that listener; the hosts of the port's other HTTPS
  listeners answer 421 Misdirected Request there.
- TLS: one filter chain per effective route hostname (SNI), proxying TCP to the route's
  weighted backends; an exact SNI beats a wildcard (Envoy's own matching). When two
  routes claim the same SNI the older one wins. Passthrough chains forward the client's
  TLS stream untouched; Terminate chains end TLS with the listener's certificates and
  forward what is inside. Both modes, and HTTPS, may share a port (SNI tells them apart).

Backends become clusters of their Service port's endpoints (EndpointSlices; never the
ClusterIP). An invalid backendRef keeps its weight and answers 500; a rule without any
valid backend (or without backendRefs) answers 500 as a whole.

``apply_l7_feedback`` overlays what Envoy acknowledged or rejected onto the statuses.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ctl.api import (
    FilteredBackendRef,
    GRPCRoute,
    GRPCRouteMatch,
    HeaderModifier,
    HTTPRoute,
    HTTPRouteMatch,
    Route,
    RouteFilter,
    TLSRoute,
)
from ctl.model import Endpoint
from ctl.l7model import (
    Certificate,
    Cluster,
    Cors,
    FilterChain,
    HeaderEdits,
    L7Listener,
    L7Protocol,
    L7Route,
    L7State,
    Mirror,
    PathType,
    Redirect,
    Retry,
    Rewrite,
    RouteMatch,
    RouteTable,
    SourceRef,
    ValueMatch,
    VirtualHost,
    WeightedCluster,
    listener_name,
)
from ctl.translate.backends import BackendResolution, endpoints_of
from ctl.translate.conditions import ConditionType, Reason
from ctl.translate.gateways import L7_PENDING_MESSAGE
from ctl.translate.index import SnapshotIndex, age_order
from ctl.translate.listeners import ListenerView
from ctl.translate.status import Condition, ObjectStatus, carry_transition_times

H2C_APP_PROTOCOL = "kubernetes.io/h2c"
_DEFAULT_PORTS = {"http": 80, "https": 443}
MISDIRECTED_REQUEST = 421


@dataclass(frozen=True)
class L7Input:
    """What translation hands over: the listeners ready to be served, on which addresses,
    and every route attached to each (with its backendRefs resolved)."""

    listener: ListenerView
    addresses: tuple[Any, ...]
    routes: tuple[tuple[Route, tuple[BackendResolution, ...]], ...]


@dataclass(frozen=True, kw_only=True)
class L7Options:
    xff_num_trusted_hops: int = 0
    passthrough_proxy_protocol: bool = False


def listener_source(listener: ListenerView) -> SourceRef:
    return SourceRef("Gateway", listener.gateway.namespace, listener.gateway.name, listener.name)


def route_source(route: Route) -> SourceRef:
    return SourceRef(route.KIND, route.namespace, route.name)


# --- hostnames --------------------------------------------------------------------------


def _covers(wildcard: str, name: str) -> bool:
    suffix = wildcard[1:]
    return name.endswith(suffix) and len(name) > len(suffix)


def effective_hostnames(listener_hostname: str | None, route_hostnames: Sequence[str]) -> tuple[str, ...]:
    """The hostnames a route serves on a listener: the narrower of each intersecting pair."""
    if not route_hostnames:
        return (listener_hostname or "*",)
    if not listener_hostname:
        return tuple(dict.fromkeys(route_hostnames))
    found = []
    for hostname in route_hostnames:
        if hostname == listener_hostname:
            found.append(hostname)
        elif listener_hostname.startswith("*.") and _covers(listener_hostname, hostname):
            found.append(hostname)
        elif hostname.startswith("*.") and _covers(hostname, listener_hostname):
            found.append(listener_hostname)
    return tuple(dict.fromkeys(found))


def _hostname_covers(general: str, specific: str) -> bool:
    return general == specific or general == "*" or (general.startswith("*.") and _covers(general, specific))


def _covering(hostname: str) -> tuple[str, ...]:
    """The hostname and every hostname covering it: the wildcards of its parent domains
    and ``*`` (``a.b.c``: ``a.b.c``, ``*.b.c``, ``*.c``, ``*``)."""
    if hostname == "*":
        return ("*",)
    parts = hostname.removeprefix("*.").split(".")
    return (hostname, *("*." + ".".join(parts[i:]) for i in range(1, len(parts))), "*")


def _hostname_rank(hostname: str) -> tuple[int, int]:
    """Sort key, most specific first: longest non-wildcard hostname, then longest hostname."""
    if hostname == "*":
        return (0, 0)
    exact = 0 if hostname.startswith("*.") else len(hostname)
    return (-exact, -len(hostname))


# --- durations --------------------------------------------------------------------------

_DURATION = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """A Gateway API Duration (``1h``, ``500ms``, ``1m30s``) in seconds."""
    if not re.fullmatch(r"(?:[0-9]{1,5}(?:h|ms|m|s)){1,4}", text):
        raise ValueError(f"{text!r} is not a Gateway API duration")
    return sum(int(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION.findall(text))


# --- the model --------------------------------------------------------------------------


class _Clusters:
    """The clusters referenced so far, by name."""

    def __init__(self, index: SnapshotIndex) -> None:
        self.index = index
        self.by_name: dict[str, Cluster] = {}

    def of(self, resolution: BackendResolution, *, http2: bool, proxy_protocol: bool = False) -> str | None:
        if resolution.failure or resolution.service is None or resolution.port is None:
            return None
        service, port = resolution.service, resolution.port
        http2 = http2 or port.app_protocol == H2C_APP_PROTOCOL
        name = f"{service.namespace}/{service.name}/{port.port}" + ("/h2" if http2 else "")
        name += "/proxy-protocol" if proxy_protocol else ""
        if name not in self.by_name:
            endpoints: tuple[Endpoint, ...] = (
                *endpoints_of(service, port, 4, self.index),
                *endpoints_of(service, port, 6, self.index),
            )
            source = SourceRef("Service", service.namespace, service.name)
            self.by_name[name] = Cluster(name, endpoints, http2, source, proxy_protocol)
        return name


def build_l7(inputs: Sequence[L7Input], index: SnapshotIndex, options: L7Options) -> L7State:
    clusters = _Clusters(index)
    # Every resolved certificate by name; Envoy gets those a filter chain uses.
    offered: dict[str, Certificate] = {}
    by_port: dict[tuple[Any, int], list[L7Input]] = defaultdict(list)
    for item in inputs:
        for address in item.addresses:
            by_port[(address, item.listener.spec.port)].append(item)

    listeners: list[L7Listener] = []
    tables: list[RouteTable] = []
    for (address, port), items in sorted(by_port.items(), key=lambda kv: (kv[0][0].version, int(kv[0][0]), kv[0][1])):
        name = listener_name(address, port)
        items = sorted(items, key=lambda i: (_hostname_rank(i.listener.spec.hostname or "*"), age_order(i.listener.gateway)))
        sources = tuple(listener_source(i.listener) for i in items)
        if all(i.listener.spec.protocol == "HTTP" for i in items):
            table = _route_table(f"http/{name}", items, port, clusters)
            tables.append(table)
            chains: tuple[FilterChain, ...] = (FilterChain((), sources, route_table=table.name),)
            listeners.append(L7Listener(name, address, port, L7Protocol.HTTP, chains, sources))
            continue
        chains_by_sni: dict[tuple[str, ...], FilterChain] = {}
        for item in items:
            listener = item.listener
            if listener.spec.protocol == "HTTPS":
                sni = (listener.spec.hostname,) if listener.spec.hostname else ()
                if sni in chains_by_sni:
                    continue
                https = [i for i in items if i.listener.spec.protocol == "HTTPS"]
                table = _route_table(f"https/{name}/{listener.spec.hostname or '*'}", https, port, clusters, listener)
                tables.append(table)
                resolved = listener.certificates.certificates if listener.certificates else ()
                offered |= {c.name: c for c in resolved if c.name not in offered}
                chains_by_sni[sni] = FilterChain(
                    sni, (listener_source(listener),), route_table=table.name,
                    certificates=tuple(c.name for c in resolved),
                )
            else:
                resolved = listener.certificates.certificates if listener.certificates else ()
                offered |= {c.name: c for c in resolved if c.name not in offered}
                # The PROXY protocol option is for passthrough backends, which cannot see
                # the client otherwise.
                proxy_protocol = options.passthrough_proxy_protocol and not resolved
                for sni, chain in _tls_chains(item, clusters, proxy_protocol, tuple(c.name for c in resolved)):
                    chains_by_sni.setdefault(sni, chain)
        if not chains_by_sni:
            # A TLS listener without routes is still valid and owns its port: Envoy needs
            # one chain, and it closes every connection (no backend), as the spec asks
            # for an SNI that no route matches.
            chains_by_sni[()] = FilterChain((), sources)
        protocol = L7Protocol.HTTPS if any(c.terminates_tls for c in chains_by_sni.values()) else L7Protocol.TLS
        ordered = tuple(chains_by_sni[sni] for sni in sorted(chains_by_sni, key=_sni_order))
        listeners.append(L7Listener(name, address, port, protocol, ordered, sources))
    used = {name for listener in listeners for chain in listener.filter_chains for name in chain.certificates}
    return L7State(
        listeners=tuple(listeners),
        route_tables=tuple(tables),
        clusters=tuple(sorted(clusters.by_name.values(), key=lambda c: c.name)),
        certificates=tuple(offered[name] for name in sorted(used)),
        xff_num_trusted_hops=options.xff_num_trusted_hops,
        passthrough_proxy_protocol=options.passthrough_proxy_protocol,
    )


def _sni_order(sni: tuple[str, ...]) -> tuple[Any, ...]:
    # Stable and readable: specific names first, the default chain (no SNI) last.
    return (not sni, _hostname_rank(sni[0]) if sni else (0, 0), sni)


def _tls_chains(
    item: L7Input, clusters: _Clusters, proxy_protocol: bool, certificates: tuple[str, ...]
) -> list[tuple[tuple[str, ...], FilterChain]]:
    """The TLSRoutes' chains on a TLS listener (certificates: Terminate mode)."""
    chains: list[tuple[tuple[str, ...], FilterChain]] = []
    source = listener_source(item.listener)
    for route, resolutions in sorted(item.routes, key=lambda r: age_order(r[0])):
        if not isinstance(route, TLSRoute):
            continue
        # As for other routes without match criteria, the first rule carries the traffic.
        first_rule = [r for r in resolutions if r.rule_index == 0]
        backends = tuple(
            WeightedCluster(clusters.of(r, http2=False, proxy_protocol=proxy_protocol), r.ref.weight)
            for r in first_rule
            if r.ref.weight > 0
        )
        for hostname in effective_hostnames(item.listener.spec.hostname, route.spec.hostnames):
            sni = () if hostname == "*" else (hostname,)
            chains.append(
                (sni, FilterChain(sni, (source,), certificates=certificates, passthrough=backends,
                                  passthrough_route=route_source(route)))
            )
    return chains


@dataclass(frozen=True)
class _Entry:
    hostname: str
    listener_hostname: str  # "*" for a listener without hostname
    route: Route
    rule_index: int
    match_index: int
    match: RouteMatch
    l7route: L7Route


def _route_table(
    name: str, items: Sequence[L7Input], port: int, clusters: _Clusters, serving: ListenerView | None = None
) -> RouteTable:
    """The virtual hosts of the given Gateway listeners (one port).

    Listener isolation: a request belongs to the most specific listener whose hostname
    matches its host, and only that listener's routes may serve it. So every listener
    hostname gets a virtual host (empty when the listener has no route: 404), and each
    virtual host holds only the entries of the most specific listener covering it.

    serving: the HTTPS listener whose filter chain (picked by SNI) gets this table, items
    being every HTTPS listener of the port. A host that belongs to another listener is
    misdirected: 421, so that a client reusing a connection for another name opens a new
    one (RFC 9110 15.5.20; GatewayHTTPSListenerDetectMisdirectedRequests).
    """
    entries: list[_Entry] = []
    seen: set[tuple[str, SourceRef]] = set()
    listener_hostnames = {item.listener.spec.hostname or "*" for item in items}
    for item in items:  # most specific listener first
        for route, resolutions in item.routes:
            if not isinstance(route, HTTPRoute | GRPCRoute):
                continue
            for hostname in effective_hostnames(item.listener.spec.hostname, route.spec.hostnames):
                # One route attached to several listeners of the port serves each hostname
                # once, through the most specific of them.
                if (hostname, route_source(route)) in seen:
                    continue
                seen.add((hostname, route_source(route)))
                entries.extend(_entries(hostname, route, resolutions, item.listener, port, clusters))
    by_hostname: dict[str, list[_Entry]] = defaultdict(list)
    for entry in entries:
        by_hostname[entry.hostname].append(entry)
    hostnames = sorted(set(by_hostname) | listener_hostnames, key=lambda h: (_hostname_rank(h), h))
    virtual_hosts = []
    for hostname in hostnames:
        owner = min((h for h in listener_hostnames if _hostname_covers(h, hostname)), key=_hostname_rank)
        applicable = [
            e for general in _covering(hostname) for e in by_hostname.get(general, ()) if e.listener_hostname == owner
        ]
        applicable.sort(key=_precedence)
        routes = tuple(e.l7route for e in applicable)
        if serving is not None and owner != (serving.spec.hostname or "*"):
            routes = (L7Route(f"{name}/{hostname}/misdirected", listener_source(serving), RouteMatch(),
                              direct_status=MISDIRECTED_REQUEST),)
        virtual_hosts.append(VirtualHost(hostname, routes))
    return RouteTable(name, tuple(virtual_hosts))


def _precedence(entry: _Entry) -> tuple[Any, ...]:
    match = entry.match
    path_rank = {PathType.EXACT: 0, PathType.REGEX: 1, PathType.PREFIX: 2}[match.path_type]
    return (
        _hostname_rank(entry.hostname),
        path_rank,
        -len(match.path),
        match.method is None,
        -len(match.headers),
        -len(match.query_params),
        age_order(entry.route),
        entry.rule_index,
        entry.match_index,
    )


def _entries(
    hostname: str,
    route: HTTPRoute | GRPCRoute,
    resolutions: Sequence[BackendResolution],
    listener: ListenerView,
    port: int,
    clusters: _Clusters,
) -> list[_Entry]:
    grpc = isinstance(route, GRPCRoute)
    entries = []
    for i, rule in enumerate(route.spec.rules):
        matches: list[RouteMatch] = (
            [_grpc_match(m) for m in rule.matches] or [RouteMatch()]
            if isinstance(route, GRPCRoute)
            else [_http_match(m) for m in rule.matches] or [RouteMatch()]
        )
        rule_resolutions = [r for r in resolutions if r.rule_index == i]
        for j, match in enumerate(matches):
            l7route = _l7_route(route, i, j, match, rule, rule_resolutions, listener, port, clusters, grpc=grpc)
            entries.append(_Entry(hostname, listener.spec.hostname or "*", route, i, j, match, l7route))
    return entries


def _http_match(match: HTTPRouteMatch) -> RouteMatch:
    path = match.path
    path_type = PathType(path.type) if path else PathType.PREFIX
    value = path.value if path else "/"
    if path_type is PathType.PREFIX and value != "/":
        value = value.rstrip("/") or "/"  # "/v2/" and "/v2" match the same segments
    return RouteMatch(
        path_type=path_type,
        path=value,
        method=match.method,
        headers=tuple(ValueMatch(h.name.lower(), h.value, h.type == "RegularExpression") for h in match.headers),
        query_params=tuple(ValueMatch(q.name, q.value, q.type == "RegularExpression") for q in match.query_params),
    )


def _grpc_match(match: GRPCRouteMatch) -> RouteMatch:
    headers = tuple(ValueMatch(h.name.lower(), h.value, h.type == "RegularExpression") for h in match.headers)
    method = match.method
    if method is None or (not method.service and not method.method):
        return RouteMatch(headers=headers)
    if method.type == "Exact":
        if method.service and method.method:
            return RouteMatch(PathType.EXACT, f"/{method.service}/{method.method}", headers=headers)
        if method.service:
            return RouteMatch(PathType.PREFIX, f"/{method.service}", headers=headers)
        return RouteMatch(PathType.REGEX, f"/[^/]+/{re.escape(method.method or '')}", headers=headers)
    service = method.service or "[^/]+"
    name = method.method or "[^/]+"
    return RouteMatch(PathType.REGEX, f"/{service}/{name}", headers=headers)


def _edits(modifier: HeaderModifier | None) -> HeaderEdits | None:
    if modifier is None:
        return None
    return HeaderEdits(
        set=tuple((h.name.lower(), h.value) for h in modifier.set),
        add=tuple((h.name.lower(), h.value) for h in modifier.add),
        remove=tuple(name.lower() for name in modifier.remove),
    )


def _merge_edits(a: HeaderEdits | None, b: HeaderEdits | None) -> HeaderEdits | None:
    if a is None or b is None:
        return a or b
    return HeaderEdits(a.set + b.set, a.add + b.add, a.remove + b.remove)


def _l7_route(
    route: HTTPRoute | GRPCRoute,
    rule_index: int,
    match_index: int,
    match: RouteMatch,
    rule: Any,
    resolutions: Sequence[BackendResolution],
    listener: ListenerView,
    port: int,
    clusters: _Clusters,
    *,
    grpc: bool,
) -> L7Route:
    name = f"{route.KIND}/{route.namespace}/{route.name}/rule/{rule_index}/match/{match_index}"
    base = L7Route(name=name, source=route_source(route), match=match, grpc=grpc)
    request_headers = response_headers = None
    rewrite: Rewrite | None = None
    redirect: Redirect | None = None
    mirrors: list[Mirror] = []
    cors: Cors | None = None
    unsupported: list[str] = []
    for k, f in enumerate(rule.filters):
        if f.type == "RequestHeaderModifier":
            request_headers = _merge_edits(request_headers, _edits(f.request_header_modifier))
        elif f.type == "ResponseHeaderModifier":
            response_headers = _merge_edits(response_headers, _edits(f.response_header_modifier))
        elif f.type == "RequestRedirect" and f.request_redirect is not None:
            redirect = _redirect(f, listener, port)
        elif f.type == "URLRewrite" and f.url_rewrite is not None:
            path = f.url_rewrite.path
            rewrite = Rewrite(
                hostname=f.url_rewrite.hostname,
                full_path=path.replace_full_path if path and path.type == "ReplaceFullPath" else None,
                prefix=path.replace_prefix_match if path and path.type == "ReplacePrefixMatch" else None,
            )
        elif f.type == "RequestMirror" and f.request_mirror is not None:
            mirror = next(r for r in resolutions if r.filter_index == k)
            mirrors.append(_mirror(f, mirror, clusters, grpc=grpc))
        elif f.type == "CORS" and f.cors is not None:
            cors = Cors(
                allow_origins=f.cors.allow_origins,
                allow_methods=f.cors.allow_methods,
                allow_headers=f.cors.allow_headers,
                expose_headers=f.cors.expose_headers,
                max_age=f.cors.max_age,
                allow_credentials=bool(f.cors.allow_credentials),
            )
        else:
            unsupported.append(f.type)
    common = replace(base, request_headers=request_headers, response_headers=response_headers, cors=cors)
    if unsupported:
        # A filter we cannot apply must not be skipped: its requests get an error instead.
        return replace(common, direct_status=500)
    if redirect is not None:
        return replace(common, redirect=redirect)
    backends = tuple(
        WeightedCluster(
            clusters.of(r, http2=grpc),
            r.ref.weight,
            _backend_edits(r.ref),
        )
        for r in resolutions
        if r.filter_index is None and r.ref.weight > 0
    )
    timeout, backend_timeout, retry = _timeouts_and_retry(rule, grpc=grpc)
    if not any(b.cluster for b in backends):
        return replace(common, direct_status=500)
    return replace(
        common,
        backends=backends,
        rewrite=rewrite,
        mirrors=tuple(mirrors),
        timeout=timeout,
        backend_timeout=backend_timeout,
        retry=retry,
    )


def _backend_edits(ref: Any) -> HeaderEdits | None:
    if not isinstance(ref, FilteredBackendRef):
        return None
    edits = None
    for f in ref.filters:
        if f.type == "RequestHeaderModifier":
            edits = _merge_edits(edits, _edits(f.request_header_modifier))
    return edits


def _redirect(f: RouteFilter, listener: ListenerView, port: int) -> Redirect:
    spec = f.request_redirect
    assert spec is not None
    listener_scheme = "https" if listener.spec.protocol == "HTTPS" else "http"
    explicit = spec.port
    if explicit is None and spec.scheme and spec.scheme != listener_scheme:
        explicit = _DEFAULT_PORTS.get(spec.scheme)  # a new scheme takes its default port
    elif explicit is None and spec.hostname:
        explicit = port  # a new host keeps the listener's port
    path = spec.path
    return Redirect(
        status_code=spec.status_code,
        scheme=spec.scheme,
        hostname=spec.hostname,
        port=explicit,
        full_path=path.replace_full_path if path and path.type == "ReplaceFullPath" else None,
        prefix=path.replace_prefix_match if path and path.type == "ReplacePrefixMatch" else None,
    )


def _mirror(f: RouteFilter, resolution: BackendResolution, clusters: _Clusters, *, grpc: bool) -> Mirror:
    spec = f.request_mirror
    assert spec is not None
    if spec.fraction is not None:
        percent = 100.0 * spec.fraction.numerator / spec.fraction.denominator
    else:
        percent = float(spec.percent if spec.percent is not None else 100)
    return Mirror(clusters.of(resolution, http2=grpc), percent)


def _timeouts_and_retry(rule: Any, *, grpc: bool) -> tuple[float | None, float | None, Retry | None]:
    timeouts = getattr(rule, "timeouts", None)
    request = parse_duration(timeouts.request) if timeouts and timeouts.request else None
    backend = parse_duration(timeouts.backend_request) if timeouts and timeouts.backend_request else None
    if request is None and grpc:
        request = 0.0  # gRPC streams may live long; Envoy's 15 s default would cut them
    retry_spec = getattr(rule, "retry", None)
    retry = None
    if retry_spec is not None and (retry_spec.attempts or 0) > 0:
        retry = Retry(
            codes=tuple(retry_spec.codes),
            attempts=retry_spec.attempts or 0,
            backoff=parse_duration(retry_spec.backoff) if retry_spec.backoff else None,
        )
    return request, backend, retry


# --- Envoy's verdict back into status ---------------------------------------------------


def apply_l7_feedback(
    statuses: Iterable[ObjectStatus],
    acked: Collection[SourceRef],
    rejected: Mapping[SourceRef, str],
    now: datetime,
    previous: Iterable[ObjectStatus] = (),
) -> tuple[ObjectStatus, ...]:
    """The statuses with what Envoy did to the L7 configuration.

    ``acked``: Gateway listeners (``SourceRef`` with ``section``) whose Envoy resources
    Envoy has accepted. ``rejected``: Gateway listeners or routes whose resources it
    refused, with Envoy's message. Use ``l7sidecar.render.feedback`` to turn resource
    names into these. An L7 listener translation left pending becomes Programmed=True
    when acked, Programmed=False/Invalid with the message when rejected; a rejected route
    gets Accepted=False/UnsupportedValue on every parent. The Gateway's Programmed is
    recomputed. lastTransitionTime only moves for conditions that change; pass the
    statuses last published as ``previous`` so that a listener Programmed before and
    after a reconcile keeps its time (translation alone would see Pending in between).
    """
    acked = set(acked)
    out = []
    for status in statuses:
        if status.kind == "Gateway":
            out.append(_gateway_feedback(status, acked, rejected, now))
        elif status.parents and (source := SourceRef(status.kind, status.namespace, status.name)) in rejected:
            message = f"Envoy rejected the configuration: {rejected[source]}"
            parents = tuple(
                replace(
                    parent,
                    conditions=tuple(
                        _changed(c, "False", Reason.UNSUPPORTED_VALUE, message, now) if c.type == ConditionType.ACCEPTED else c
                        for c in parent.conditions
                    ),
                )
                for parent in status.parents
            )
            out.append(replace(status, parents=parents))
        else:
            out.append(status)
    return carry_transition_times(out, previous)


def _changed(condition: Condition, status: str, reason: str, message: str, now: datetime) -> Condition:
    moved = (condition.status, condition.reason) != (status, reason)
    return replace(
        condition,
        status=status,  # type: ignore[arg-type]
        reason=reason,
        message=message,
        last_transition_time=now if moved else condition.last_transition_time,
    )


def is_pending_l7(condition: Condition) -> bool:
    """Translation's mark on an L7 listener that waits only for Envoy."""
    return condition.type == ConditionType.PROGRAMMED and condition.reason == Reason.PENDING and condition.message == L7_PENDING_MESSAGE


def _gateway_feedback(
    status: ObjectStatus, acked: set[SourceRef], rejected: Mapping[SourceRef, str], now: datetime
) -> ObjectStatus:
    listeners = []
    for listener in status.listeners:
        source = SourceRef("Gateway", status.namespace, status.name, listener.name)
        conditions = []
        for c in listener.conditions:
            if is_pending_l7(c) and source in rejected:
                c = _changed(c, "False", Reason.INVALID, f"Envoy rejected the configuration: {rejected[source]}", now)
            elif is_pending_l7(c) and source in acked:
                c = _changed(c, "True", Reason.PROGRAMMED, "Listener is programmed in Envoy", now)
            conditions.append(c)
        listeners.append(replace(listener, conditions=tuple(conditions)))
    programmed_any = any(
        c.type == ConditionType.PROGRAMMED and c.status == "True" for s in listeners for c in s.conditions
    )
    conditions = []
    for c in status.conditions:
        if c.type == ConditionType.PROGRAMMED and c.reason == Reason.PENDING and programmed_any:
            c = _changed(c, "True", Reason.PROGRAMMED, "Gateway is programmed", now)
        conditions.append(c)
    return replace(status, listeners=tuple(listeners), conditions=tuple(conditions))
