"""An immutable view of every object the control plane reads, grouped by kind."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import is_not
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


def replaced_positions(old: Sequence[K8sObject], new: Sequence[K8sObject]) -> list[int] | None:
    """Where ``new`` holds another object than ``old``, when both list the same objects
    (by namespace and name) in the same order: an edit that replaced objects in place.
    None when objects were added, removed or renamed. Unchanged objects are the very
    same objects from load to load (the parse cache and the Kubernetes source keep
    them), so identity finds the edit; the scan runs in C (an edit at 10,000 routes
    looks at 30,000 objects several times)."""
    if len(old) != len(new):
        return None
    changed = list(compress(range(len(new)), map(is_not, old, new)))
    for i in changed:
        if (old[i].namespace, old[i].name) != (new[i].namespace, new[i].name):
            return None
    return changed
