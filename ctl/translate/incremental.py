"""Translating an edit: only what it touches is recomputed. Pure but for the last pass
it remembers.

``translate`` recomputes everything from the snapshot: at 10,000 routes that is
seconds, for an edit that changed one weight. The ``Translator`` keeps the last
``TranslationPass`` and, when the new snapshot differs from its snapshot only in
TCP/UDP routes, Services and EndpointSlices (objects that did not change are the very
same objects, ParseCache and the Kubernetes source keep them), recomputes:

- the routes that changed, and those whose backendRefs name a Service that changed or
  whose EndpointSlices changed (backendRefs that failed to resolve included: a Service
  may appear);
- on the listeners those routes are attached to (before or after): the winner, the
  attached-route counts, the statuses of the Gateways whose counts changed, the
  statuses of every route on a listener whose winner changed, and the data path
  Services of those Gateways;
- always, the statuses of Gateways with HTTP/HTTPS/TLS listeners and of the routes on
  them: the agent overlays Envoy's verdict on those, and a translation carries their
  times from the overlaid statuses.

Anything else (a Gateway, GatewayClass, ReferenceGrant, Namespace or Secret changed;
an HTTP, GRPC or TLS route changed or an edit touches an L7 listener; a route or
object added or removed; another configuration) is translated in full: correctness
first. The result is the same Translation as ``translate`` gives (tests compare them
after many random edits)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ctl.api.core import forget_ip_addresses
from ctl.sources import Snapshot
from ctl.sources.snapshot import replaced_positions
from ctl.translate.config import TranslateConfig
from ctl.translate.gateways import GatewayView, gateway_status, listener_programmed
from ctl.translate.index import SnapshotIndex, age_order
from ctl.translate.listeners import ListenerKey, Support
from ctl.translate.render import frontend_order
from ctl.translate.status import ObjectStatus, carry_transition_times
from ctl.translate.translate import (
    Translation,
    TranslationPass,
    listener_keys,
    listener_services,
    route_key,
    route_result,
    route_status,
    translate_pass,
)
from ctl.model import DesiredState, FrontendKey, Service

# Kinds an edit may change and still be translated incrementally.
_EDITABLE = ("tcp_routes", "udp_routes", "services", "endpoint_slices")
_FIXED = ("gateway_classes", "gateways", "tls_routes", "http_routes", "grpc_routes", "reference_grants",
          "namespaces", "secrets")
_EPOCH = datetime(1970, 1, 1)


@dataclass
class Translator:
    """Translates snapshots one after another, reusing the last pass. Not thread-safe
    (one reconcile at a time, as the reconciler runs them)."""

    last: TranslationPass | None = None
    incremental: int = 0  # passes that were translated incrementally (for tests and logs)
    full: int = 0

    def translate(self, snapshot: Snapshot, config: TranslateConfig,
                  previous: Iterable[ObjectStatus] = ()) -> Translation:
        result = translate_edit(self.last, snapshot, config, previous) if self.last is not None else None
        if result is None:
            result = translate_pass(snapshot, config, previous)
            self.full += 1
        else:
            self.incremental += 1
        forget_ip_addresses()
        self.last = result
        return result.translation

    def forget(self) -> None:
        """The last translation was not applied: the next one starts from scratch (its
        statuses carry times from what was applied before, not from the last pass)."""
        self.last = None


def translate_edit(last: TranslationPass, snapshot: Snapshot, config: TranslateConfig,
                   previous: Iterable[ObjectStatus]) -> TranslationPass | None:
    """The pass for ``snapshot`` computed from ``last``, or None when the edit is not
    of a kind this can bound (then translate in full)."""
    if replace(config, now=_EPOCH) != replace(last.config, now=_EPOCH):
        return None
    old = last.snapshot
    if any(getattr(old, kind) is not getattr(snapshot, kind) and getattr(old, kind) != getattr(snapshot, kind)
           for kind in _FIXED):
        return None  # (tuples of the same objects compare equal by identity first)
    changes = {}
    for kind in _EDITABLE:
        positions = replaced_positions(getattr(old, kind), getattr(snapshot, kind))
        if positions is None:
            return None
        changes[kind] = positions

    # The Services whose own object or EndpointSlices changed, by (namespace, name).
    services = {(s.namespace, s.name) for i in changes["services"] for s in (old.services[i], snapshot.services[i])}
    sliced = {(endpoint_slice.namespace, endpoint_slice.service_name) for i in changes["endpoint_slices"]
              for endpoint_slice in (old.endpoint_slices[i], snapshot.endpoint_slices[i])
              if endpoint_slice.service_name}
    services |= sliced
    index = _edited_index(last.index, snapshot, changes["services"], sliced)

    # The routes to recompute: edited ones, and those referring to those Services.
    edited = {}
    for kind in ("tcp_routes", "udp_routes"):
        for i in changes[kind]:
            route = getattr(snapshot, kind)[i]
            edited[route_key(route)] = route
    if services:
        for key, result in last.results.items():
            if key not in edited and any((r.namespace, r.ref.name) in services for r in result.backends):
                edited[key] = result.route

    by_name = {(view.gateway.namespace, view.gateway.name): view for view in last.gateways}
    results = dict(last.results)
    touched: set[ListenerKey] = set()
    for key, route in edited.items():
        before = results.get(key)
        after = route_result(route, by_name, index)
        if (before is None) != (not after.outcomes):
            return None  # a route starts or stops being ours: the status list changes shape
        if before is None:
            continue
        keys = listener_keys(before) | listener_keys(after)
        if any(listener.support is not Support.L4 for r in (before, after) for o in r.outcomes
               for listener in o.listeners):
            return None  # Envoy's configuration depends on it
        touched |= keys
        results[key] = after

    attached = dict(last.attached)
    winners = dict(last.winners)
    counts_changed: set[tuple[str, str]] = set()
    winner_changed: set[ListenerKey] = set()
    for listener_key in touched:
        now = (*(r for r in attached.get(listener_key, ()) if route_key(r.route) not in edited),
               *(results[k] for k in edited if k in results and listener_key in listener_keys(results[k])))
        if len(now) != len(attached.get(listener_key, ())):
            counts_changed.add(listener_key[:2])
        if now:
            attached[listener_key] = now
            winner = min(now, key=lambda r: age_order(r.route))
        else:
            attached.pop(listener_key, None)
            winner = None
        old_winner = last.winners.get(listener_key)
        if winner is None:
            winners.pop(listener_key, None)
        else:
            winners[listener_key] = winner
        if (winner is None) != (old_winner is None) or (winner is not None and route_key(winner.route) != route_key(old_winner.route)):
            winner_changed.add(listener_key)

    previous = tuple(previous)
    # The agent passes the last translation's statuses (maybe with Envoy's verdict
    # overlaid, which keeps their order): found by position, checked by name.
    same_order = len(previous) == len(last.translation.statuses)
    previous_by_key = None

    def earlier(key: tuple[str, str, str]) -> ObjectStatus | None:
        nonlocal previous_by_key
        if same_order and key in last.positions:
            status = previous[last.positions[key]]
            if (status.kind, status.namespace, status.name) == key:
                return status
        if previous_by_key is None:
            previous_by_key = {(s.kind, s.namespace, s.name): s for s in previous}
        return previous_by_key.get(key)

    def carried(statuses: list[ObjectStatus]) -> list[ObjectStatus]:
        before = [found for s in statuses if (found := earlier((s.kind, s.namespace, s.name))) is not None]
        return list(carry_transition_times(statuses, before))

    # Gateways: those whose counts changed, and those Envoy's verdict is overlaid on.
    counts = dict(last.counts)
    for listener_key in touched:
        if listener_key in attached:
            counts[listener_key] = len(attached[listener_key])
        else:
            counts.pop(listener_key, None)
    l7_gateways = last.l7_gateways
    recount_names = counts_changed | l7_gateways
    recount = [view for view in last.gateways if (view.gateway.namespace, view.gateway.name) in recount_names]
    gateway_statuses = dict(last.gateway_statuses)
    statuses = list(last.translation.statuses)
    for status in carried([gateway_status(view, last.conflicts, counts, config) for view in recount]):
        key = (status.kind, status.namespace, status.name)
        gateway_statuses[key] = status
        statuses[last.positions[key]] = status

    # Routes: the edited ones, those on a listener whose winner changed, and those on L7 listeners.
    restatus = {k for k in edited if k in results}
    for listener_key in winner_changed:
        restatus |= {route_key(r.route) for r in attached.get(listener_key, ())}
    if l7_gateways:
        for listener_key, on in attached.items():
            if listener_key[:2] in l7_gateways:
                restatus |= {route_key(r.route) for r in on}
    route_statuses = dict(last.route_statuses)
    for status in carried([route_status(results[k], winners, config) for k in sorted(restatus)]):
        key = (status.kind, status.namespace, status.name)
        route_statuses[key] = status
        statuses[last.positions[key]] = status

    # Data path Services of the Gateways with a touched listener.
    touched_gateways = {key[:2] for key in touched}
    services = dict(last.services)
    position = last.frontend_positions
    desired = list(last.translation.desired.services)
    resort = False
    for view in last.gateways:
        if (view.gateway.namespace, view.gateway.name) not in touched_gateways:
            continue
        status = gateway_statuses[(view.gateway.KIND, view.gateway.namespace, view.gateway.name)]
        before = services[view.gateway.ref]
        new = _touched_listener_services(view, status, before, touched, winners, index, config)
        services[view.gateway.ref] = new
        if [s.frontend for s in new] != [s.frontend for s in before]:
            resort = True
            continue
        if position is None:
            position = {s.frontend: i for i, s in enumerate(desired)}
        for service in new:
            desired[position[service.frontend]] = service
    if resort:
        desired = sorted((s for group in services.values() for s in group), key=frontend_order)
        position = None

    translation = Translation(DesiredState(tuple(desired)), tuple(statuses), last.translation.l7)
    return TranslationPass(
        snapshot=snapshot, config=config, index=index, gateways=last.gateways, conflicts=last.conflicts,
        results=results, attached=attached, winners=winners, class_statuses=last.class_statuses,
        gateway_statuses=gateway_statuses, route_statuses=route_statuses, services=services,
        translation=translation, counts=counts, l7_gateways=l7_gateways, positions=last.positions,
        frontend_positions=position,
    )


def _touched_listener_services(view: GatewayView, status: ObjectStatus, before: tuple[Service, ...],
                               touched: set[ListenerKey], winners: Mapping[ListenerKey, Any], index: SnapshotIndex,
                               config: TranslateConfig) -> tuple[Service, ...]:
    """``gateway_services`` of a Gateway of which only the ``touched`` listeners can have
    changed: the others keep their Services (a listener's Services depend on its winner,
    the Services and slices its routes name, and whether it is programmed, which
    attached-route counts do not change; a route naming an edited Service is itself
    among the edited routes, so its listeners are touched)."""
    kept = {service.frontend: service for service in before}
    listener_statuses = {s.name: s for s in status.listeners}
    services: list[Service] = []
    for listener in view.listeners:
        if listener.key in touched:
            services += listener_services(view, listener, listener_statuses, winners, index, config)
        elif listener.support is Support.L4 and listener_programmed(listener_statuses[listener.name]):
            services += [kept[FrontendKey(address, listener.spec.port, listener.transport)]
                         for address in view.addresses.addresses]
    return tuple(services)


def _edited_index(index: SnapshotIndex, snapshot: Snapshot, services_changed: list[int],
                  rebuilt: set[tuple[str, str]]) -> SnapshotIndex:
    """The index of ``snapshot``, from that of the last one, when only Services and
    EndpointSlices were replaced in place (``rebuilt``: the Services whose slices)."""
    if not services_changed and not rebuilt:
        return replace(index, snapshot=snapshot)
    services = dict(index.services)
    for i in services_changed:
        service = snapshot.services[i]
        services[(service.namespace, service.name)] = service
    slices = dict(index.slices_by_service)
    if rebuilt:
        # Only the Services whose slices changed, over the whole (sorted) list: a
        # slice's service label may have moved it from one Service to another.
        found: dict[tuple[str, str], list[Any]] = {key: [] for key in rebuilt}
        for endpoint_slice in snapshot.endpoint_slices:
            key = (endpoint_slice.namespace, endpoint_slice.service_name)
            if key in found:
                found[key].append(endpoint_slice)
        for key, value in found.items():
            if value:
                slices[key] = tuple(value)
            else:
                slices.pop(key, None)
    return replace(index, snapshot=snapshot, services=services, slices_by_service=slices)
