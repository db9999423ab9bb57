"""Lookups over a snapshot, built once per translation."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ctl.api import EndpointSlice, Gateway, GatewayClass, K8sObject, ReferenceGrant, Secret, Service
from ctl.sources import Snapshot

# Kubernetes labels every namespace with its own name; a namespace absent from the
# snapshot (the file provider often lists none) still carries that label.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def age_order(obj: K8sObject) -> tuple[Any, ...]:
    """The spec's precedence: oldest creationTimestamp first, then namespace/name.

    An object without a timestamp (a hand-written file) counts as newer than any that
    has one: it has not been stored yet.
    """
    created = obj.metadata.creation_timestamp
    return (created is None, created or datetime.min, obj.namespace, obj.name)


@dataclass(frozen=True)
class SnapshotIndex:
    snapshot: Snapshot
    gateway_classes: dict[str, GatewayClass]
    gateways: dict[tuple[str, str], Gateway]
    services: dict[tuple[str, str], Service]
    slices_by_service: dict[tuple[str, str], tuple[EndpointSlice, ...]]
    grants_by_namespace: dict[str, tuple[ReferenceGrant, ...]]
    namespace_labels: dict[str, dict[str, str]]
    secrets: dict[tuple[str, str], Secret]

    @classmethod
    def of(cls, snapshot: Snapshot) -> SnapshotIndex:
        services = {(s.namespace, s.name): s for s in snapshot.services}
        # Keyed by the same (namespace, name) tuples as the Services they belong to.
        service_keys = {key: key for key in services}
        slices: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
        for endpoint_slice in snapshot.endpoint_slices:
            if endpoint_slice.service_name:
                key = (endpoint_slice.namespace, endpoint_slice.service_name)
                slices[service_keys.get(key, key)].append(endpoint_slice)
        grants: dict[str, list[ReferenceGrant]] = defaultdict(list)
        for grant in snapshot.reference_grants:
            grants[grant.namespace].append(grant)
        return cls(
            snapshot=snapshot,
            gateway_classes={c.name: c for c in snapshot.gateway_classes},
            gateways={(g.namespace, g.name): g for g in snapshot.gateways},
            services=services,
            slices_by_service={key: tuple(value) for key, value in slices.items()},
            grants_by_namespace={key: tuple(value) for key, value in grants.items()},
            namespace_labels={n.name: dict(n.metadata.labels) for n in snapshot.namespaces},
            secrets={(s.namespace, s.name): s for s in snapshot.secrets},
        )

    def labels_of_namespace(self, name: str) -> dict[str, str]:
        return {**self.namespace_labels.get(name, {}), NAMESPACE_NAME_LABEL: name}
