"""The desired L7 model (``ctl.l7model.L7State``) as Envoy xDS resources. Pure.

``render(l7)`` gives every resource Envoy needs, as ``xds-protos`` messages grouped by
type URL and keyed by name (the names of ``ctl.l7model``; they never collide across
types except a cluster and its own ClusterLoadAssignment, which share owners), plus
``owners``: for each resource name, the Gateway API objects it comes from, so that a
NACK can be turned into status (see ``feedback``).

What Envoy gets:

- Clusters of type EDS (endpoints and weights change without touching anything else),
  HTTP/2 to gRPC and h2c backends, a PROXY protocol header for passthrough backends when
  asked. Every dynamic resource is fetched over ADS.
- One Listener per address:port. Plain HTTP: one filter chain, an HTTP connection
  manager with its routes by RDS. HTTPS: ``tls_inspector``, then one filter chain per
  SNI, terminating TLS with certificates by SDS, each with its own RDS route table.
  TLS: ``tls_inspector``, one filter chain per SNI with a ``tcp_proxy``, terminating TLS
  with certificates by SDS in Terminate mode.
- Connection managers use the peer address as the client address
  (``use_remote_address``) and trust ``xff_num_trusted_hops`` proxies' X-Forwarded-For
  entries (default 0: a client-sent X-Forwarded-For is never believed). They ignore the
  port in Host when picking a virtual host, and pass WebSocket upgrades.
- Invalid backends: weighted clusters name ``INVALID_BACKEND_CLUSTER``, which is never
  defined, with ``cluster_not_found_response_code: INTERNAL_SERVER_ERROR``: that share of
  requests gets 500. A passthrough connection to it is closed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Importing the extension modules registers their types, which typed_config needs.
import envoy.extensions.filters.http.cors.v3.cors_pb2  # noqa: F401
import envoy.extensions.filters.http.router.v3.router_pb2  # noqa: F401
import envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2  # noqa: F401
import envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2  # noqa: F401
import envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2  # noqa: F401
import envoy.extensions.transport_sockets.proxy_protocol.v3.upstream_proxy_protocol_pb2  # noqa: F401
import envoy.extensions.transport_sockets.raw_buffer.v3.raw_buffer_pb2  # noqa: F401
import envoy.extensions.transport_sockets.tls.v3.tls_pb2  # noqa: F401
import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
from envoy.config.cluster.v3.cluster_pb2 import Cluster as ClusterProto
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_pb2 import Listener as ListenerProto
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret
from google.protobuf import json_format
from google.protobuf.message import Message

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
    PathType,
    Redirect,
    RouteTable,
    SourceRef,
    ValueMatch,
    WeightedCluster,
)

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
# The order Envoy must receive them in (ADS: clusters before their endpoints, listeners
# before their routes; removals after additions).
TYPE_ORDER = (CLUSTER_TYPE, ENDPOINT_TYPE, SECRET_TYPE, LISTENER_TYPE, ROUTE_TYPE)

INVALID_BACKEND_CLUSTER = "xdp-gateway/invalid-backend"
CONNECT_TIMEOUT = "5s"

_ADS = {"ads": {}, "resourceApiVersion": "V3"}
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_CORS = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
_CORS_POLICY = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
_TLS_INSPECTOR = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
_DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_PROXY_PROTOCOL = "type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport"
_RAW_BUFFER = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"

_REDIRECT_CODES = {
    301: "MOVED_PERMANENTLY",
    302: "FOUND",
    303: "SEE_OTHER",
    307: "TEMPORARY_REDIRECT",
    308: "PERMANENT_REDIRECT",
}


@dataclass(frozen=True)
class RenderedL7:
    # type URL -> resource name -> message, in TYPE_ORDER and then by name.
    resources: dict[str, dict[str, Message]]
    # resource name -> the Gateway listeners, routes, Services and Secrets behind it.
    owners: dict[str, tuple[SourceRef, ...]] = field(default_factory=dict)

    def of_type(self, type_url: str) -> dict[str, Message]:
        return self.resources.get(type_url, {})


def render(l7: L7State) -> RenderedL7:
    owners: dict[str, set[SourceRef]] = defaultdict(set)
    users = _cluster_users(l7)
    clusters = {c.name: _cluster(c) for c in l7.clusters}
    endpoints = {c.name: _load_assignment(c) for c in l7.clusters}
    for c in l7.clusters:
        owners[c.name] |= users.get(c.name, set())
    secrets = {c.name: _secret(c) for c in l7.certificates}
    listeners = {}
    for listener in l7.listeners:
        listeners[listener.name] = _listener(listener, l7)
        owners[listener.name] |= set(listener.sources)
        for chain in listener.filter_chains:
            for certificate in chain.certificates:
                owners[certificate] |= set(chain.sources)
            if chain.route_table:
                owners[chain.route_table] |= set(chain.sources)
            if chain.passthrough_route:
                owners[listener.name].add(chain.passthrough_route)
    routes = {}
    for table in l7.route_tables:
        routes[table.name] = _route_configuration(table)
        owners[table.name] |= {r.source for vh in table.virtual_hosts for r in vh.routes}
    resources = {
        CLUSTER_TYPE: dict(sorted(clusters.items())),
        ENDPOINT_TYPE: dict(sorted(endpoints.items())),
        SECRET_TYPE: dict(sorted(secrets.items())),
        LISTENER_TYPE: dict(sorted(listeners.items())),
        ROUTE_TYPE: dict(sorted(routes.items())),
    }
    return RenderedL7(resources, {name: tuple(sorted(refs)) for name, refs in sorted(owners.items())})


def feedback(
    rendered: RenderedL7, acked: Iterable[str], rejected: Mapping[str, str]
) -> tuple[set[SourceRef], dict[SourceRef, str]]:
    """Envoy's verdict on resources, as the Gateway API objects it concerns.

    ``acked``: names of resources Envoy has accepted (ACKed versions that contain them);
    ``rejected``: resource name -> Envoy's error message (NACK). Returns the Gateway
    listeners now programmed (every Listener, RouteConfiguration and Secret they own
    accepted, none rejected) and every owner of a rejected resource with the message,
    ready for ``ctl.translate.apply_l7_feedback``.
    """
    refused: dict[SourceRef, str] = {}
    for name, message in rejected.items():
        for owner in rendered.owners.get(name, ()):
            refused.setdefault(owner, message)
    acked = set(acked)
    needed: dict[SourceRef, set[str]] = defaultdict(set)
    for type_url in (LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE):
        for name in rendered.of_type(type_url):
            for owner in rendered.owners.get(name, ()):
                if owner.kind == "Gateway" and owner.section:
                    needed[owner].add(name)
    programmed = {owner for owner, names in needed.items() if names <= acked and owner not in refused}
    return programmed, refused


def to_yaml_data(rendered: RenderedL7) -> dict[str, Any]:
    """Plain data for golden files and debugging (``json_format``'s JSON mapping), key
    material replaced by its length and SHA-256 so it never lands in a log or a file."""
    data = {
        type_url.rpartition("/")[2]: [json.loads(json_format.MessageToJson(message)) for message in by_name.values()]
        for type_url, by_name in rendered.resources.items()
        if by_name
    }
    for secret in data.get(SECRET_TYPE.rpartition("/")[2], ()):
        for source in secret.get("tlsCertificate", {}).values():
            if "inlineBytes" in source:
                raw = base64.b64decode(source["inlineBytes"])
                source["inlineBytes"] = f"<{len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()[:16]}>"
    return data


# --- clusters and endpoints -------------------------------------------------------------


def _cluster_users(l7: L7State) -> dict[str, set[SourceRef]]:
    users: dict[str, set[SourceRef]] = defaultdict(set)
    for table in l7.route_tables:
        for virtual_host in table.virtual_hosts:
            for route in virtual_host.routes:
                for backend in route.backends:
                    if backend.cluster:
                        users[backend.cluster].add(route.source)
                for mirror in route.mirrors:
                    if mirror.cluster:
                        users[mirror.cluster].add(route.source)
    for listener in l7.listeners:
        for chain in listener.filter_chains:
            for backend in chain.passthrough:
                if backend.cluster and chain.passthrough_route:
                    users[backend.cluster].add(chain.passthrough_route)
    return users


def _parse(message: type[Message], data: dict[str, Any]) -> Message:
    return json_format.ParseDict(data, message())


def _cluster(cluster: Cluster) -> Message:
    data: dict[str, Any] = {
        "name": cluster.name,
        "type": "EDS",
        "edsClusterConfig": {"edsConfig": _ADS, "serviceName": cluster.name},
        "connectTimeout": CONNECT_TIMEOUT,
        "lbPolicy": "LEAST_REQUEST",
    }
    if cluster.http2:
        data["typedExtensionProtocolOptions"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_OPTIONS,
                "explicitHttpConfig": {"http2ProtocolOptions": {}},
            }
        }
    if cluster.proxy_protocol:
        data["transportSocket"] = {
            "name": "envoy.transport_sockets.upstream_proxy_protocol",
            "typedConfig": {
                "@type": _PROXY_PROTOCOL,
                "config": {"version": "V2"},
                "transportSocket": {"name": "envoy.transport_sockets.raw_buffer", "typedConfig": {"@type": _RAW_BUFFER}},
            },
        }
    return _parse(ClusterProto, data)


def _load_assignment(cluster: Cluster) -> Message:
    lb_endpoints = [
        {"endpoint": {"address": {"socketAddress": {"address": str(e.address), "portValue": e.port}}}}
        for e in cluster.endpoints
    ]
    data: dict[str, Any] = {"clusterName": cluster.name}
    if lb_endpoints:
        data["endpoints"] = [{"lbEndpoints": lb_endpoints}]
    return _parse(ClusterLoadAssignment, data)


def _secret(certificate: Certificate) -> Message:
    return _parse(
        Secret,
        {
            "name": certificate.name,
            "tlsCertificate": {
                "certificateChain": {"inlineBytes": _b64(certificate.certificate_chain)},
                "privateKey": {"inlineBytes": _b64(certificate.private_key)},
            },
        },
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- listeners --------------------------------------------------------------------------


def _listener(listener: L7Listener, l7: L7State) -> Message:
    data: dict[str, Any] = {
        "name": listener.name,
        "address": {"socketAddress": {"address": str(listener.address), "portValue": listener.port}},
        # The gateway address may not be configured on this host when Envoy starts.
        "freebind": True,
        "filterChains": [_filter_chain(listener, chain, l7) for chain in listener.filter_chains],
    }
    if listener.protocol is not L7Protocol.HTTP:
        data["listenerFilters"] = [
            {"name": "envoy.filters.listener.tls_inspector", "typedConfig": {"@type": _TLS_INSPECTOR}}
        ]
    return _parse(ListenerProto, data)


def _filter_chain(listener: L7Listener, chain: FilterChain, l7: L7State) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if chain.server_names:
        data["filterChainMatch"] = {"serverNames": list(chain.server_names)}
    sni = chain.server_names[0] if chain.server_names else "*"
    data["name"] = f"{listener.name}/{sni}"
    if chain.route_table is None:
        data["filters"] = [_tcp_proxy(listener, chain)]
    else:
        data["filters"] = [_connection_manager(chain.route_table, l7)]
    if chain.terminates_tls:
        context: dict[str, Any] = {
            "tlsCertificateSdsSecretConfigs": [{"name": name, "sdsConfig": _ADS} for name in chain.certificates]
        }
        if chain.route_table is not None:
            # HTTP inside: offer HTTP/2. A terminated TLSRoute carries opaque bytes: no ALPN.
            context["alpnProtocols"] = ["h2", "http/1.1"]
        data["transportSocket"] = {
            "name": "envoy.transport_sockets.tls",
            "typedConfig": {"@type": _DOWNSTREAM_TLS, "commonTlsContext": context},
        }
    return data


def _connection_manager(route_table: str, l7: L7State) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typedConfig": {
            "@type": _HCM,
            "statPrefix": route_table,
            "codecType": "AUTO",
            "rds": {"configSource": _ADS, "routeConfigName": route_table},
            # CORS acts only on routes that carry a policy (typed_per_filter_config).
            "httpFilters": [
                {"name": "envoy.filters.http.cors", "typedConfig": {"@type": _CORS}},
                {"name": "envoy.filters.http.router", "typedConfig": {"@type": _ROUTER}},
            ],
            "useRemoteAddress": True,
            "xffNumTrustedHops": l7.xff_num_trusted_hops,
            "normalizePath": True,
            "mergeSlashes": True,
            "upgradeConfigs": [{"upgradeType": "websocket"}],
        },
    }


def _tcp_proxy(listener: L7Listener, chain: FilterChain) -> dict[str, Any]:
    mode = "terminate" if chain.terminates_tls else "passthrough"
    config: dict[str, Any] = {"@type": _TCP_PROXY, "statPrefix": f"{listener.name}/{mode}"}
    live = [b for b in chain.passthrough if b.weight > 0]
    if len(live) == 1 or not live:
        config["cluster"] = (live[0].cluster if live else None) or INVALID_BACKEND_CLUSTER
    else:
        config["weightedClusters"] = {
            "clusters": [{"name": b.cluster or INVALID_BACKEND_CLUSTER, "weight": b.weight} for b in live]
        }
    return {"name": "envoy.filters.network.tcp_proxy", "typedConfig": config}


# --- routes -----------------------------------------------------------------------------


def _route_configuration(table: RouteTable) -> Message:
    return _parse(
        RouteConfiguration,
        {
            "name": table.name,
            # Invalid backends point at a cluster that never exists (answered 500).
            "validateClusters": False,
            # A port in Host plays no part in choosing the virtual host (the spec), yet
            # the backend sees Host as the client sent it.
            "ignorePortInHostMatching": True,
            "virtualHosts": [
                {
                    "name": f"{table.name}/{vh.hostname}",
                    "domains": [vh.hostname],
                    "routes": [_route(route) for route in vh.routes],
                }
                for vh in table.virtual_hosts
            ],
        },
    )


def _route(route: L7Route) -> dict[str, Any]:
    data: dict[str, Any] = {"name": route.name, "match": _match(route)}
    if route.redirect is not None:
        data["redirect"] = _redirect(route.redirect, route)
    elif route.direct_status is not None:
        data["directResponse"] = {"status": route.direct_status}
    else:
        data["route"] = _route_action(route)
    if route.request_headers is not None:
        data |= _header_edits(route.request_headers, "request")
    if route.response_headers is not None:
        data |= _header_edits(route.response_headers, "response")
    if route.cors is not None:
        data["typedPerFilterConfig"] = {"envoy.filters.http.cors": _cors(route.cors)}
    return data


def _cors(cors: Cors) -> dict[str, Any]:
    origins = []
    for origin in cors.allow_origins:
        if origin == "*":
            origins.append({"safeRegex": {"regex": ".*"}})
        elif "*" in origin:
            # "https://*.bar.com": the wildcard stands for one or more host labels.
            origins.append({"safeRegex": {"regex": ".+".join(re.escape(part) for part in origin.split("*"))}})
        else:
            origins.append({"exact": origin})
    policy: dict[str, Any] = {"@type": _CORS_POLICY, "allowOriginStringMatch": origins, "maxAge": str(cors.max_age)}
    if cors.allow_methods:
        policy["allowMethods"] = ", ".join(cors.allow_methods)
    if cors.allow_headers:
        policy["allowHeaders"] = ", ".join(cors.allow_headers)
    if cors.expose_headers:
        policy["exposeHeaders"] = ", ".join(cors.expose_headers)
    if cors.allow_credentials:
        policy["allowCredentials"] = True
    return policy


def _string_match(match: ValueMatch) -> dict[str, Any]:
    return {"safeRegex": {"regex": match.value}} if match.regex else {"exact": match.value}


def _match(route: L7Route) -> dict[str, Any]:
    match = route.match
    data: dict[str, Any] = {}
    if match.path_type is PathType.EXACT:
        data["path"] = match.path
    elif match.path_type is PathType.REGEX:
        data["safeRegex"] = {"regex": match.path}
    elif match.path == "/":
        data["prefix"] = "/"
    else:
        data["pathSeparatedPrefix"] = match.path  # whole segments only
    headers = [{"name": h.name, "stringMatch": _string_match(h)} for h in match.headers]
    if match.method:
        headers.insert(0, {"name": ":method", "stringMatch": {"exact": match.method}})
    if headers:
        data["headers"] = headers
    if match.query_params:
        data["queryParameters"] = [{"name": q.name, "stringMatch": _string_match(q)} for q in match.query_params]
    if route.grpc:
        data["grpc"] = {}
    return data


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def _weighted(backend: WeightedCluster) -> dict[str, Any]:
    data: dict[str, Any] = {"name": backend.cluster or INVALID_BACKEND_CLUSTER, "weight": backend.weight}
    if backend.request_headers is not None:
        data |= _header_edits(backend.request_headers, "request")
    return data


def _route_action(route: L7Route) -> dict[str, Any]:
    action: dict[str, Any] = {"clusterNotFoundResponseCode": "INTERNAL_SERVER_ERROR"}
    backends = [b for b in route.backends if b.weight > 0]
    if len(backends) == 1 and backends[0].request_headers is None:
        action["cluster"] = backends[0].cluster or INVALID_BACKEND_CLUSTER
    else:
        action["weightedClusters"] = {"clusters": [_weighted(b) for b in backends]}
    if route.timeout is not None:
        action["timeout"] = _duration(route.timeout)
    retry: dict[str, Any] = {}
    if route.retry is not None:
        retry = {
            "retryOn": "connect-failure,refused-stream,reset,retriable-status-codes",
            "numRetries": route.retry.attempts,
            "retriableStatusCodes": list(route.retry.codes),
        }
        if route.retry.backoff is not None:
            retry["retryBackOff"] = {"baseInterval": _duration(route.retry.backoff)}
    if route.backend_timeout is not None and route.backend_timeout > 0:
        retry.setdefault("numRetries", 0)
        retry["perTryTimeout"] = _duration(route.backend_timeout)
    if retry:
        action["retryPolicy"] = retry
    mirrors = [
        {
            "cluster": m.cluster,
            "runtimeFraction": {
                "defaultValue": {"numerator": round(m.percent * 10_000), "denominator": "MILLION"}
            },
        }
        for m in route.mirrors
        if m.cluster
    ]
    if mirrors:
        action["requestMirrorPolicies"] = mirrors
    if route.rewrite is not None:
        if route.rewrite.hostname:
            action["hostRewriteLiteral"] = route.rewrite.hostname
        rewrite = _path_rewrite(route, route.rewrite.full_path, route.rewrite.prefix)
        if rewrite:
            action["regexRewrite"] = rewrite
    if route.grpc:
        action["maxStreamDuration"] = {"grpcTimeoutHeaderMax": "0s"}
    return action


def _path_rewrite(route: L7Route, full_path: str | None, prefix: str | None) -> dict[str, Any] | None:
    """ReplaceFullPath and ReplacePrefixMatch as a regex rewrite of the path (the query
    is kept). A prefix replacement respects segments: replacing ``/strip`` by ``/`` turns
    ``/strip/x`` into ``/x``, not ``//x``."""
    if full_path is not None:
        return {"pattern": {"regex": "^/.*$"}, "substitution": full_path}
    if prefix is None:
        return None
    matched = route.match.path.rstrip("/") if route.match.path_type is PathType.PREFIX else ""
    replacement = prefix.rstrip("/")
    if not replacement:
        return {"pattern": {"regex": f"^{re.escape(matched)}/*"}, "substitution": "/"}
    return {"pattern": {"regex": f"^{re.escape(matched)}"}, "substitution": replacement}


def _redirect(redirect: Redirect, route: L7Route) -> dict[str, Any]:
    data: dict[str, Any] = {"responseCode": _REDIRECT_CODES.get(redirect.status_code, "FOUND")}
    if redirect.scheme:
        data["schemeRedirect"] = redirect.scheme
    if redirect.hostname:
        data["hostRedirect"] = redirect.hostname
    if redirect.port is not None:
        data["portRedirect"] = redirect.port
    if redirect.full_path is not None:
        data["pathRedirect"] = redirect.full_path
    else:
        rewrite = _path_rewrite(route, None, redirect.prefix)
        if rewrite:
            data["regexRewrite"] = rewrite
    return data


def _header_edits(edits: HeaderEdits, direction: str) -> dict[str, Any]:
    to_add = [
        {"header": {"key": name, "value": value}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for name, value in edits.set
    ] + [
        {"header": {"key": name, "value": value}, "appendAction": "APPEND_IF_EXISTS_OR_ADD"}
        for name, value in edits.add
    ]
    data: dict[str, Any] = {}
    if to_add:
        data[f"{direction}HeadersToAdd"] = to_add
    if edits.remove:
        data[f"{direction}HeadersToRemove"] = list(edits.remove)
    return data
