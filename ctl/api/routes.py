"""The route kinds: TCPRoute and UDPRoute (forwarded by the kernel), TLSRoute, HTTPRoute
and GRPCRoute (served by the Envoy sidecar).

TCPRoute and UDPRoute are served as v1 (exactly one rule) and v1alpha2 (up to 16 rules);
the CRD schema of the matching version enforces the difference, the model holds both.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass as validated_dataclass

from ctl.api.base import GATEWAY_GROUP, ApiModel, K8sObject, SharedModel

# A route's own parts (its spec, rules and backendRefs: one or more of each per route,
# 30,000 at 10,000 routes) are slotted dataclasses validated like the models, without
# the __dict__ of a model instance (200-260 bytes each). Keyword-only, as a model's.
_part = validated_dataclass(slots=True, kw_only=True, config=ApiModel.model_config)


# One per route and parent (10,000 distinct ones at 10,000 routes, all to different
# listeners): slotted like the parts below rather than a shared model with a __dict__.
@_part
class ParentReference:
    group: str = GATEWAY_GROUP
    kind: str = "Gateway"
    namespace: str | None = None
    name: str
    section_name: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)


@_part
class BackendRef:
    group: str = ""
    kind: str = "Service"
    name: str
    namespace: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    weight: int = Field(default=1, ge=0, le=1_000_000)


@_part
class RouteRule:
    name: str | None = None
    backend_refs: tuple[BackendRef, ...] = ()


# --- HTTPRoute and GRPCRoute: matches, filters, timeouts, retry -------------------------


class HTTPHeader(ApiModel):
    name: str
    value: str


class HeaderModifier(ApiModel):
    """RequestHeaderModifier / ResponseHeaderModifier. Header names ignore case."""

    set: tuple[HTTPHeader, ...] = ()
    add: tuple[HTTPHeader, ...] = ()
    remove: tuple[str, ...] = ()


class PathModifier(ApiModel):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None


class RequestRedirect(ApiModel):
    scheme: str | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    status_code: int = 302


class URLRewrite(ApiModel):
    hostname: str | None = None
    path: PathModifier | None = None


class BackendObjectReference(ApiModel):
    group: str = ""
    kind: str = "Service"
    name: str
    namespace: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)


class Fraction(ApiModel):
    numerator: int = Field(ge=0)
    denominator: int = Field(default=100, ge=1)


class RequestMirror(ApiModel):
    backend_ref: BackendObjectReference
    percent: int | None = Field(default=None, ge=0, le=100)
    fraction: Fraction | None = None


class CORSPolicy(ApiModel):
    allow_origins: tuple[str, ...] = ()
    allow_credentials: bool | None = None
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int = 5


class LocalObjectReference(ApiModel):
    group: str
    kind: str
    name: str


class RouteFilter(ApiModel):
    """One HTTPRoute or GRPCRoute filter; ``type`` says which field is set."""

    type: str
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: URLRewrite | None = None
    request_mirror: RequestMirror | None = None
    cors: CORSPolicy | None = None
    extension_ref: LocalObjectReference | None = None


@_part
class FilteredBackendRef(BackendRef):
    filters: tuple[RouteFilter, ...] = ()


class PathMatch(SharedModel):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"


class HeaderMatch(ApiModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: str
    value: str


class HTTPRouteMatch(SharedModel):
    path: PathMatch | None = PathMatch()
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[HeaderMatch, ...] = ()
    method: str | None = None


class HTTPRouteTimeouts(ApiModel):
    # Gateway API durations ("500ms", "1h2m"); "0s" disables the timeout.
    request: str | None = None
    backend_request: str | None = None


class HTTPRouteRetry(ApiModel):
    codes: tuple[int, ...] = ()
    attempts: int | None = Field(default=None, ge=0)
    backoff: str | None = None


@_part
class HTTPRouteRule(RouteRule):
    matches: tuple[HTTPRouteMatch, ...] = (HTTPRouteMatch(),)
    filters: tuple[RouteFilter, ...] = ()
    backend_refs: tuple[FilteredBackendRef, ...] = ()
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None


class GRPCMethodMatch(ApiModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    service: str | None = None
    method: str | None = None


class GRPCRouteMatch(ApiModel):
    method: GRPCMethodMatch | None = None
    headers: tuple[HeaderMatch, ...] = ()


@_part
class GRPCRouteRule(RouteRule):
    # No match: every request (the CRD has no default here, unlike HTTPRoute).
    matches: tuple[GRPCRouteMatch, ...] = ()
    filters: tuple[RouteFilter, ...] = ()
    backend_refs: tuple[FilteredBackendRef, ...] = ()


@_part
class RouteSpec:
    parent_refs: tuple[ParentReference, ...] = ()
    # Only TLSRoute, HTTPRoute and GRPCRoute have hostnames; empty for the others.
    hostnames: tuple[str, ...] = ()
    rules: tuple[RouteRule, ...] = ()


class Route(K8sObject):
    # The IP protocol the route's backends must speak, checked against Service ports.
    TRANSPORT: ClassVar[str] = "TCP"
    HAS_HOSTNAMES: ClassVar[bool] = False

    spec: RouteSpec


class TCPRoute(Route):
    GROUP = GATEWAY_GROUP
    KIND = "TCPRoute"


class UDPRoute(Route):
    GROUP = GATEWAY_GROUP
    KIND = "UDPRoute"
    TRANSPORT = "UDP"


class TLSRoute(Route):
    GROUP = GATEWAY_GROUP
    KIND = "TLSRoute"
    HAS_HOSTNAMES = True


@_part
class HTTPRouteSpec(RouteSpec):
    rules: tuple[HTTPRouteRule, ...] = (HTTPRouteRule(),)


class HTTPRoute(Route):
    GROUP = GATEWAY_GROUP
    KIND = "HTTPRoute"
    HAS_HOSTNAMES = True

    spec: HTTPRouteSpec


@_part
class GRPCRouteSpec(RouteSpec):
    rules: tuple[GRPCRouteRule, ...] = ()


class GRPCRoute(Route):
    GROUP = GATEWAY_GROUP
    KIND = "GRPCRoute"
    HAS_HOSTNAMES = True

    spec: GRPCRouteSpec


ROUTE_KINDS: tuple[type[Route], ...] = (TCPRoute, UDPRoute, TLSRoute, HTTPRoute, GRPCRoute)
