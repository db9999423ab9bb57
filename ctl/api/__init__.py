"""Typed, validated Kubernetes objects: the Gateway API kinds we implement plus the core
kinds backends resolve through. ``parse_object`` turns one decoded YAML document into a
model or a ``ValidationProblem``; models are frozen values."""

from ctl.api.base import CORE_GROUP, DISCOVERY_GROUP, GATEWAY_GROUP, K8sObject, ObjectMeta, ObjectRef
from ctl.api.core import (
    SERVICE_NAME_LABEL,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    Namespace,
    Service,
    ServicePort,
    SliceEndpoint,
)
from ctl.api.crds import ENV_VAR as CRDS_ENV_VAR
from ctl.api.crds import CrdsNotFoundError
from ctl.api.gateway import (
    AllowedRoutes,
    Gateway,
    GatewayClass,
    GatewaySpecAddress,
    LabelSelector,
    LabelSelectorRequirement,
    Listener,
    RouteGroupKind,
)
from ctl.api.parse import parse_object
from ctl.api.problems import IgnoredObject, ValidationProblem
from ctl.api.referencegrant import ReferenceGrant
from ctl.api.routes import (
    ROUTE_KINDS,
    BackendRef,
    GRPCRoute,
    HTTPRoute,
    ParentReference,
    Route,
    RouteRule,
    TCPRoute,
    TLSRoute,
    UDPRoute,
)

__all__ = [
    "CORE_GROUP",
    "CRDS_ENV_VAR",
    "DISCOVERY_GROUP",
    "GATEWAY_GROUP",
    "ROUTE_KINDS",
    "SERVICE_NAME_LABEL",
    "AllowedRoutes",
    "BackendRef",
    "CrdsNotFoundError",
    "EndpointConditions",
    "EndpointPort",
    "EndpointSlice",
    "GRPCRoute",
    "Gateway",
    "GatewayClass",
    "GatewaySpecAddress",
    "HTTPRoute",
    "IgnoredObject",
    "K8sObject",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Listener",
    "Namespace",
    "ObjectMeta",
    "ObjectRef",
    "ParentReference",
    "ReferenceGrant",
    "Route",
    "RouteGroupKind",
    "RouteRule",
    "Service",
    "ServicePort",
    "SliceEndpoint",
    "TCPRoute",
    "TLSRoute",
    "UDPRoute",
    "ValidationProblem",
    "parse_object",
]
