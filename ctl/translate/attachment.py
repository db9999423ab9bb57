"""Route to listener attachment through one parentRef.

A parentRef selects listeners by sectionName, by port, by both, or (neither) all of
them; of those, the ones whose allowedRoutes admit the route's kind and namespace (and,
for kinds with hostnames, whose hostname intersects the route's) take the route. The
route is Accepted by the parent when at least one listener takes it. Listener status
plays no part: a conflicted listener still counts attached routes, as the spec requires.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctl.api import ParentReference, Route
from ctl.translate.conditions import Reason
from ctl.translate.gateways import GatewayView
from ctl.translate.hostnames import hostnames_intersect
from ctl.translate.index import SnapshotIndex
from ctl.translate.listeners import ListenerView
from ctl.translate.selectors import matches


@dataclass(frozen=True, slots=True)
class ParentOutcome:
    parent_ref: ParentReference
    gateway: GatewayView
    accepted: bool
    reason: Reason
    message: str
    # The listeners that took the route; empty unless accepted.
    listeners: tuple[ListenerView, ...] = ()


def attach(route: Route, parent_ref: ParentReference, gateway: GatewayView, index: SnapshotIndex) -> ParentOutcome:
    def refuse(reason: Reason, message: str) -> ParentOutcome:
        return ParentOutcome(parent_ref, gateway, False, reason, message)

    named = (gateway.listeners if parent_ref.section_name is None
             else gateway.listeners_by_name.get(parent_ref.section_name, ()))
    selected = [listener for listener in named if parent_ref.port is None or listener.spec.port == parent_ref.port]
    if not selected:
        return refuse(Reason.NO_MATCHING_PARENT, f"Gateway has no listener {_selection(parent_ref)}")

    refusals: list[str] = []
    allowed: list[ListenerView] = []
    for listener in selected:
        why_not = _why_not_allowed(route, listener, index)
        if why_not:
            refusals.append(f"listener \"{listener.name}\" {why_not}")
        else:
            allowed.append(listener)
    if not allowed:
        return refuse(Reason.NOT_ALLOWED_BY_LISTENERS, "; ".join(refusals))

    if route.HAS_HOSTNAMES:
        allowed = [listener for listener in allowed if hostnames_intersect(listener.spec.hostname, route.spec.hostnames)]
        if not allowed:
            return refuse(Reason.NO_MATCHING_LISTENER_HOSTNAME, "No listener hostname matches the route's hostnames")

    names = ", ".join(f"\"{listener.name}\"" for listener in allowed)
    return ParentOutcome(parent_ref, gateway, True, Reason.ACCEPTED, f"Accepted by listener {names}", tuple(allowed))


def _selection(parent_ref: ParentReference) -> str:
    parts = []
    if parent_ref.section_name is not None:
        parts.append(f"named \"{parent_ref.section_name}\"")
    if parent_ref.port is not None:
        parts.append(f"on port {parent_ref.port}")
    return " ".join(parts)


def _why_not_allowed(route: Route, listener: ListenerView, index: SnapshotIndex) -> str | None:
    if not listener.allows_kind(route.KIND):
        kinds = ", ".join(k.kind for k in listener.supported_kinds) or "no kind"
        return f"does not allow {route.KIND} (allows {kinds})"
    namespaces = listener.spec.allowed_routes.namespaces
    if namespaces.from_ == "All":
        return None
    if namespaces.from_ == "Same":
        if route.namespace == listener.gateway.namespace:
            return None
        return f"only allows routes from its own namespace \"{listener.gateway.namespace}\""
    if listener.selector_problem is not None or namespaces.selector is None:
        return "has an invalid namespace selector"
    if matches(namespaces.selector, index.labels_of_namespace(route.namespace)):
        return None
    return f"does not select namespace \"{route.namespace}\""
