"""The route kinds: TCPRoute and UDPRoute (forwarded by us), TLSRoute, HTTPRoute and
GRPCRoute (attached and given status; forwarded later by the L7 sidecar).

TCPRoute and UDPRoute are served as v1 (exactly one rule) and v1alpha2 (up to 16 rules);
the CRD schema of the matching version enforces the difference, the model holds both.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ctl.api.base import GATEWAY_GROUP, ApiModel, K8sObject


class ParentReference(ApiModel):
    group: str = GATEWAY_GROUP
    kind: str = "Gateway"
    namespace: str | None = None
    name: str
    section_name: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)


class BackendRef(ApiModel):
    group: str = ""
    kind: str = "Service"
    name: str
    namespace: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    weight: int = Field(default=1, ge=0, le=1_000_000)


class RouteRule(ApiModel):
    name: str | None = None
    backend_refs: tuple[BackendRef, ...] = ()


class RouteSpec(ApiModel):
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


class HTTPRoute(Route):
    GROUP = GATEWAY_GROUP
    KIND = "HTTPRoute"
    HAS_HOSTNAMES = True


class GRPCRoute(Route):
    GROUP = GATEWAY_GROUP
    KIND = "GRPCRoute"
    HAS_HOSTNAMES = True


ROUTE_KINDS: tuple[type[Route], ...] = (TCPRoute, UDPRoute, TLSRoute, HTTPRoute, GRPCRoute)
