"""GatewayClasses and Gateways: which are ours, whether they can be accepted, and the
conditions of the Gateway and its listeners once routes have been counted."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctl.api import Gateway, GatewayClass
from ctl.translate.addresses import AddressAssignment, assign_addresses
from ctl.translate.conditions import ConditionType, Reason
from ctl.translate.config import TranslateConfig
from ctl.translate.listeners import ListenerKey, ListenerView, Support, view_listener
from ctl.translate.status import Condition, ListenerStatus, ObjectStatus, make_condition

if TYPE_CHECKING:
    from ctl.translate.conflicts import Conflict
    from ctl.translate.index import SnapshotIndex

# An L7 listener is programmed once Envoy has acknowledged its configuration; until the
# agent overlays that (``ctl.translate.l7.apply_l7_feedback``) it is pending.
L7_PENDING_MESSAGE = "Waiting for Envoy to acknowledge the listener's configuration"


@dataclass(frozen=True)
class GatewayView:
    gateway: Gateway
    addresses: AddressAssignment
    listeners: tuple[ListenerView, ...]
    # Why the whole Gateway cannot be accepted, if it cannot.
    refusal: tuple[Reason, str] | None

    @property
    def acceptable(self) -> bool:
        return self.refusal is None

    @functools.cached_property
    def listeners_by_name(self) -> dict[str, tuple[ListenerView, ...]]:
        """For routes that name their listener (sectionName): a Gateway may have 64
        listeners and 10,000 routes; in Gateway order should a name repeat."""
        named: dict[str, list[ListenerView]] = {}
        for listener in self.listeners:
            named.setdefault(listener.name, []).append(listener)
        return {name: tuple(listeners) for name, listeners in named.items()}


def class_status(gateway_class: GatewayClass, config: TranslateConfig) -> ObjectStatus:
    if gateway_class.spec.parameters_ref is not None:
        accepted = _condition(
            gateway_class.generation, config, ConditionType.ACCEPTED, False, Reason.INVALID_PARAMETERS,
            "parametersRef is not supported: this controller takes no parameters",
        )
    else:
        accepted = _condition(
            gateway_class.generation, config, ConditionType.ACCEPTED, True, Reason.ACCEPTED, "GatewayClass is accepted"
        )
    return ObjectStatus(
        gateway_class.KIND, "", gateway_class.name, api_version=gateway_class.api_version, conditions=(accepted,),
        generation=gateway_class.generation,
    )


def class_accepted(gateway_class: GatewayClass) -> bool:
    return gateway_class.spec.parameters_ref is None


def view_gateway(
    gateway: Gateway, gateway_class: GatewayClass, config: TranslateConfig, index: SnapshotIndex
) -> GatewayView:
    addresses = assign_addresses(gateway, config)
    refusal: tuple[Reason, str] | None = None
    if not class_accepted(gateway_class):
        refusal = (Reason.INVALID, f"GatewayClass {gateway_class.name} is not accepted")
    elif gateway.spec.infrastructure is not None and gateway.spec.infrastructure.parameters_ref is not None:
        refusal = (Reason.INVALID_PARAMETERS, "infrastructure.parametersRef is not supported")
    elif addresses.unsupported:
        refusal = (Reason.UNSUPPORTED_ADDRESS, addresses.unsupported)
    listeners = tuple(view_listener(gateway, listener, index) for listener in gateway.spec.listeners)
    return GatewayView(gateway, addresses, listeners, refusal)


def gateway_status(
    view: GatewayView,
    conflicts: Mapping[ListenerKey, Conflict],
    attached_routes: Mapping[ListenerKey, int],
    config: TranslateConfig,
) -> ObjectStatus:
    gateway = view.gateway
    listeners = tuple(
        ListenerStatus(
            name=listener.name,
            supported_kinds=listener.supported_kinds,
            attached_routes=attached_routes.get(listener.key, 0),
            conditions=_listener_conditions(view, listener, conflicts.get(listener.key), config),
        )
        for listener in view.listeners
    )
    accepted = _gateway_accepted(view, listeners, config)
    programmed = _gateway_programmed(view, accepted, listeners, config)
    addresses = tuple(str(a) for a in view.addresses.addresses) if accepted.status == "True" else ()
    return ObjectStatus(
        gateway.KIND, gateway.namespace, gateway.name, api_version=gateway.api_version,
        conditions=(accepted, programmed), addresses=addresses, listeners=listeners, generation=gateway.generation,
    )


def listener_programmed(status: ListenerStatus) -> bool:
    return any(c.type == ConditionType.PROGRAMMED and c.status == "True" for c in status.conditions)


def _condition(
    generation: int, config: TranslateConfig, kind: ConditionType, ok: bool, reason: Reason, message: str
) -> Condition:
    return make_condition(kind, "True" if ok else "False", reason, message, generation, config.now)


def _listener_conditions(
    view: GatewayView, listener: ListenerView, conflict: Conflict | None, config: TranslateConfig
) -> tuple[Condition, ...]:
    def make(kind: ConditionType, ok: bool, reason: Reason, message: str) -> Condition:
        return _condition(view.gateway.generation, config, kind, ok, reason, message)

    protocol = listener.spec.protocol
    if listener.support is Support.UNSUPPORTED:
        accepted = make(ConditionType.ACCEPTED, False, Reason.UNSUPPORTED_PROTOCOL,
                        f"protocol \"{protocol}\" is not supported (TCP, UDP, HTTP, HTTPS and TLS are)")
    elif listener.selector_problem:
        accepted = make(ConditionType.ACCEPTED, False, Reason.UNSUPPORTED_VALUE, listener.selector_problem)
    elif listener.tls_problem:
        accepted = make(ConditionType.ACCEPTED, False, Reason.UNSUPPORTED_VALUE, listener.tls_problem)
    elif conflict is not None:
        accepted = make(ConditionType.ACCEPTED, False, conflict.reason, conflict.message)
    else:
        accepted = make(ConditionType.ACCEPTED, True, Reason.ACCEPTED, "Listener is accepted")

    if listener.invalid_kinds:
        kinds = ", ".join(f"{k.group}/{k.kind}" if k.group else k.kind for k in listener.invalid_kinds)
        resolved = make(ConditionType.RESOLVED_REFS, False, Reason.INVALID_ROUTE_KINDS,
                        f"route kinds not supported on a {protocol} listener: {kinds}")
    elif listener.certificates is not None and listener.certificates.failure is not None:
        resolved = make(ConditionType.RESOLVED_REFS, False, *listener.certificates.failure)
    else:
        resolved = make(ConditionType.RESOLVED_REFS, True, Reason.RESOLVED_REFS, "All references are resolved")

    if conflict is not None:
        conflicted = make(ConditionType.CONFLICTED, True, conflict.reason, conflict.message)
    else:
        conflicted = make(ConditionType.CONFLICTED, False, Reason.NO_CONFLICTS, "No conflicts")

    if accepted.status != "True":
        programmed = make(ConditionType.PROGRAMMED, False, conflict.reason if conflict else Reason.INVALID,
                          "Listener is not accepted")
    elif view.refusal is not None:
        programmed = make(ConditionType.PROGRAMMED, False, Reason.INVALID, "Gateway is not accepted")
    elif not view.addresses.addresses:
        programmed = make(ConditionType.PROGRAMMED, False, Reason.PENDING, "Gateway has no address assigned")
    elif not listener.supported_kinds:
        programmed = make(ConditionType.PROGRAMMED, False, Reason.INVALID, "Listener supports no route kind")
    elif listener.certificates is not None and listener.certificates.failure is not None:
        programmed = make(ConditionType.PROGRAMMED, False, Reason.INVALID, "Listener has no usable certificate")
    elif listener.support is Support.L7:
        programmed = make(ConditionType.PROGRAMMED, False, Reason.PENDING, L7_PENDING_MESSAGE)
    else:
        programmed = make(ConditionType.PROGRAMMED, True, Reason.PROGRAMMED, "Listener is programmed in the data path")
    return (accepted, programmed, resolved, conflicted)


def _is_true(status: ListenerStatus, kind: ConditionType) -> bool:
    return any(c.type == kind and c.status == "True" for c in status.conditions)


def _gateway_accepted(view: GatewayView, listeners: tuple[ListenerStatus, ...], config: TranslateConfig) -> Condition:
    def make(ok: bool, reason: Reason, message: str) -> Condition:
        return _condition(view.gateway.generation, config, ConditionType.ACCEPTED, ok, reason, message)

    if view.refusal is not None:
        return make(False, *view.refusal)
    accepted = [s.name for s in listeners if _is_true(s, ConditionType.ACCEPTED)]
    rejected = [s.name for s in listeners if s.name not in accepted]
    unresolved = [s.name for s in listeners if s.name in accepted and not _is_true(s, ConditionType.RESOLVED_REFS)]
    if not accepted:
        return make(False, Reason.LISTENERS_NOT_VALID, f"No listener is accepted: {', '.join(rejected)}")
    if rejected or unresolved:
        parts = [f"not accepted: {', '.join(rejected)}"] if rejected else []
        parts += [f"unresolved references: {', '.join(unresolved)}"] if unresolved else []
        parts.append(f"accepted: {', '.join(accepted)}")
        return make(True, Reason.LISTENERS_NOT_VALID, "Listeners " + "; ".join(parts))
    return make(True, Reason.ACCEPTED, "Gateway is accepted")


def _gateway_programmed(
    view: GatewayView, accepted: Condition, listeners: tuple[ListenerStatus, ...], config: TranslateConfig
) -> Condition:
    def make(ok: bool, reason: Reason, message: str) -> Condition:
        return _condition(view.gateway.generation, config, ConditionType.PROGRAMMED, ok, reason, message)

    if accepted.status != "True":
        return make(False, Reason.INVALID, "Gateway is not accepted")
    if not view.addresses.addresses:
        return make(False, Reason.ADDRESS_NOT_ASSIGNED,
                    "No address: spec.addresses is empty and this node has no gateway address configured")
    if any(listener_programmed(s) for s in listeners):
        return make(True, Reason.PROGRAMMED, "Gateway is programmed in the data path")
    return make(False, Reason.PENDING, "No listener is programmed yet")
