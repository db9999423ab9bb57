"""An immutable view of every object the control plane reads, grouped by kind."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ctl.api import (
    EndpointSlice,
    Gateway,
    GatewayClass,
    GRPCRoute,
    HTTPRoute,
    K8sObject,
    Namespace,
    ReferenceGrant,
    Route,
    Secret,
    Service,
    TCPRoute,
    TLSRoute,
    UDPRoute,
)


@dataclass(frozen=True)
class Snapshot:
    """Objects by kind, each tuple sorted by (namespace, name) so equal inputs compare
    equal whatever order they were read in."""

    gateway_classes: tuple[GatewayClass, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    tcp_routes: tuple[TCPRoute, ...] = ()
    udp_routes: tuple[UDPRoute, ...] = ()
    tls_routes: tuple[TLSRoute, ...] = ()
    http_routes: tuple[HTTPRoute, ...] = ()
    grpc_routes: tuple[GRPCRoute, ...] = ()
    reference_grants: tuple[ReferenceGrant, ...] = ()
    services: tuple[Service, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    secrets: tuple[Secret, ...] = ()

    @classmethod
    def of(cls, objects: Iterable[K8sObject]) -> Snapshot:
        by_kind: dict[str, list[K8sObject]] = {}
        for obj in objects:
            by_kind.setdefault(obj.KIND, []).append(obj)

        def take(kind: str) -> tuple[Any, ...]:
            return tuple(sorted(by_kind.get(kind, ()), key=lambda o: (o.namespace, o.name)))

        return cls(
            gateway_classes=take("GatewayClass"),
            gateways=take("Gateway"),
            tcp_routes=take("TCPRoute"),
            udp_routes=take("UDPRoute"),
            tls_routes=take("TLSRoute"),
            http_routes=take("HTTPRoute"),
            grpc_routes=take("GRPCRoute"),
            reference_grants=take("ReferenceGrant"),
            services=take("Service"),
            endpoint_slices=take("EndpointSlice"),
            namespaces=take("Namespace"),
            secrets=take("Secret"),
        )

    @property
    def routes(self) -> tuple[Route, ...]:
        return (*self.tcp_routes, *self.udp_routes, *self.tls_routes, *self.http_routes, *self.grpc_routes)

    def objects(self) -> tuple[K8sObject, ...]:
        return (
            *self.gateway_classes,
            *self.gateways,
            *self.routes,
            *self.reference_grants,
            *self.services,
            *self.endpoint_slices,
            *self.namespaces,
            *self.secrets,
        )
