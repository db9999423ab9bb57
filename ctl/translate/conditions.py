"""Condition types and reasons, spelled once. Values are the Gateway API v1.6.1 ones."""

from __future__ import annotations

import enum


class ConditionType(enum.StrEnum):
    ACCEPTED = "Accepted"
    PROGRAMMED = "Programmed"
    RESOLVED_REFS = "ResolvedRefs"
    CONFLICTED = "Conflicted"


class Reason(enum.StrEnum):
    # Shared by GatewayClass, Gateway, listener and route conditions.
    ACCEPTED = "Accepted"
    PROGRAMMED = "Programmed"
    RESOLVED_REFS = "ResolvedRefs"
    INVALID = "Invalid"
    PENDING = "Pending"
    INVALID_PARAMETERS = "InvalidParameters"
    REF_NOT_PERMITTED = "RefNotPermitted"
    UNSUPPORTED_VALUE = "UnsupportedValue"
    # Gateway
    LISTENERS_NOT_VALID = "ListenersNotValid"
    UNSUPPORTED_ADDRESS = "UnsupportedAddress"
    ADDRESS_NOT_ASSIGNED = "AddressNotAssigned"
    # Listener
    UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
    INVALID_ROUTE_KINDS = "InvalidRouteKinds"
    PROTOCOL_CONFLICT = "ProtocolConflict"
    HOSTNAME_CONFLICT = "HostnameConflict"
    INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
    NO_CONFLICTS = "NoConflicts"
    # Route
    NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
    NO_MATCHING_PARENT = "NoMatchingParent"
    NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
    INVALID_KIND = "InvalidKind"
    BACKEND_NOT_FOUND = "BackendNotFound"
