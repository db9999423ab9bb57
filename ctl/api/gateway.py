"""GatewayClass and Gateway (gateway.networking.k8s.io v1 and v1beta1).

Only the fields translation reads are typed; the CRD schema has already checked the
whole object by the time these models are built (see ``ctl.api.parse``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ctl.api.base import GATEWAY_GROUP, ApiModel, K8sObject, SharedModel


class ParametersReference(ApiModel):
    group: str
    kind: str
    name: str
    namespace: str | None = None


class GatewayClassSpec(ApiModel):
    controller_name: str
    parameters_ref: ParametersReference | None = None
    description: str | None = None


class GatewayClass(K8sObject):
    GROUP = GATEWAY_GROUP
    KIND = "GatewayClass"
    NAMESPACED = False

    spec: GatewayClassSpec


class RouteGroupKind(SharedModel):
    group: str = GATEWAY_GROUP
    kind: str


class LabelSelectorRequirement(ApiModel):
    key: str
    # Left as text: the CRD does not restrict it and the API server accepts any value,
    # so an unknown operator is a runtime condition on the listener, not a load error.
    operator: str
    values: tuple[str, ...] = ()


class LabelSelector(ApiModel):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()


class RouteNamespaces(SharedModel):
    from_: Literal["All", "Selector", "Same"] = Field(default="Same", alias="from")
    selector: LabelSelector | None = None


class AllowedRoutes(SharedModel):
    namespaces: RouteNamespaces = RouteNamespaces()
    # None: unspecified, the listener protocol decides. The spec treats an empty list
    # the same way.
    kinds: tuple[RouteGroupKind, ...] | None = None


class SecretObjectReference(ApiModel):
    group: str = ""
    kind: str = "Secret"
    name: str
    namespace: str | None = None


class ListenerTLSConfig(ApiModel):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: tuple[SecretObjectReference, ...] = ()


class Listener(SharedModel):
    name: str
    hostname: str | None = None
    port: int = Field(ge=1, le=65535)
    protocol: str
    tls: ListenerTLSConfig | None = None
    allowed_routes: AllowedRoutes = AllowedRoutes()


class GatewaySpecAddress(ApiModel):
    type: str = "IPAddress"
    # Empty asks the implementation to pick an address of the type.
    value: str = ""


class GatewayInfrastructure(ApiModel):
    parameters_ref: ParametersReference | None = None


class GatewaySpec(ApiModel):
    gateway_class_name: str
    listeners: tuple[Listener, ...]
    addresses: tuple[GatewaySpecAddress, ...] = ()
    infrastructure: GatewayInfrastructure | None = None


class Gateway(K8sObject):
    GROUP = GATEWAY_GROUP
    KIND = "Gateway"

    spec: GatewaySpec
