"""Snapshot in, desired data plane and every object's status out. Pure.

Steps: our GatewayClasses; their Gateways (addresses, listeners) in precedence order;
listener conflicts; route attachment per parentRef and backend resolution per route;
listener and Gateway conditions (which need the attached-route counts); then one data
path Service per programmed TCP/UDP listener and gateway address (refusing every new
flow while no route is attached: a programmed listener owns its port).

Several routes may attach to one TCP or UDP listener: all are Accepted and counted in
attachedRoutes, but a port cannot be split between routes that have no match criteria,
so only the oldest (creationTimestamp, then namespace/name: the spec's precedence for
otherwise equal routes) is programmed. The others get no traffic while it exists, and
their Accepted message says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ctl.api import GATEWAY_GROUP, ObjectRef, Route
from ctl.model import DesiredState, FrontendKey, NatMode, Service
from ctl.l7model import L7State
from ctl.sources import Snapshot
from ctl.translate.attachment import ParentOutcome, attach
from ctl.translate.backends import BackendPool, BackendResolution, backend_pool, new_translation, resolve_backends
from ctl.translate.conditions import ConditionType, Reason
from ctl.translate.config import TranslateConfig
from ctl.translate.conflicts import find_conflicts
from ctl.translate.gateways import GatewayView, class_status, gateway_status, listener_programmed, view_gateway
from ctl.translate.index import SnapshotIndex, age_order
from ctl.translate.l7 import L7Input, L7Options, build_l7, is_pending_l7
from ctl.translate.listeners import ListenerKey, ListenerView, Support
from ctl.translate.render import frontend_order
from ctl.translate.status import Condition, ListenerStatus, ObjectStatus, RouteParentStatus, carry_transition_times, make_condition


@dataclass(frozen=True)
class Translation:
    desired: DesiredState
    statuses: tuple[ObjectStatus, ...]
    # What Envoy must serve (HTTP, HTTPS, TLS listeners). Their listeners stay
    # Programmed=False/Pending in ``statuses`` until the agent overlays Envoy's verdict
    # with ``ctl.translate.apply_l7_feedback``.
    l7: L7State = L7State()


@dataclass(frozen=True, slots=True)
class _RouteResult:
    route: Route
    outcomes: tuple[ParentOutcome, ...]
    backends: tuple[BackendResolution, ...]


def translate(snapshot: Snapshot, config: TranslateConfig, previous: Iterable[ObjectStatus] = ()) -> Translation:
    """``previous`` is the last translation's statuses: an unchanged condition keeps its
    lastTransitionTime."""
    return translate_pass(snapshot, config, previous).translation


@dataclass(frozen=True)
class TranslationPass:
    """One translation and what it was computed from, so that the next one can recompute
    only what an edit touches (``ctl.translate.incremental``)."""

    snapshot: Snapshot
    config: TranslateConfig
    index: SnapshotIndex
    gateways: tuple[GatewayView, ...]  # in precedence order
    conflicts: Any
    results: Mapping[tuple[str, str, str], _RouteResult]  # routes with outcomes, by (kind, ns, name)
    attached: Mapping[ListenerKey, tuple[_RouteResult, ...]]
    winners: Mapping[ListenerKey, _RouteResult]
    class_statuses: tuple[ObjectStatus, ...]
    gateway_statuses: Mapping[ObjectRef, ObjectStatus]  # carried
    route_statuses: Mapping[tuple[str, str, str], ObjectStatus]  # carried
    services: Mapping[ObjectRef, tuple[Service, ...]]  # by Gateway
    translation: Translation
    counts: Mapping[ListenerKey, int]  # attached routes per listener
    # Gateways with HTTP, HTTPS or TLS listeners, by (namespace, name).
    l7_gateways: frozenset[tuple[str, str]]
    # Where each object's status is in translation.statuses, by (kind, namespace, name).
    positions: Mapping[tuple[str, str, str], int]
    # Where each frontend is in translation.desired.services (built when first needed).
    frontend_positions: Mapping[FrontendKey, int] | None = None


def route_key(route: Route) -> tuple[str, str, str]:
    return (route.KIND, route.namespace, route.name)


def translate_pass(snapshot: Snapshot, config: TranslateConfig, previous: Iterable[ObjectStatus] = ()) -> TranslationPass:
    index = SnapshotIndex.of(snapshot)
    new_translation()
    classes = {c.name: c for c in snapshot.gateway_classes if c.spec.controller_name == config.controller_name}
    gateways = sorted(
        (view_gateway(g, classes[g.spec.gateway_class_name], config, index)
         for g in snapshot.gateways if g.spec.gateway_class_name in classes),
        key=lambda view: age_order(view.gateway),
    )
    conflicts = find_conflicts([view for view in gateways if view.acceptable])
    by_name = {(view.gateway.namespace, view.gateway.name): view for view in gateways}
    routes = [result for route in snapshot.routes if (result := route_result(route, by_name, index)).outcomes]

    attached: dict[ListenerKey, list[_RouteResult]] = defaultdict(list)
    for result in routes:
        for listener_key in listener_keys(result):
            attached[listener_key].append(result)
    counts = {key: len(results) for key, results in attached.items()}
    winners = {key: min(results, key=lambda r: age_order(r.route)) for key, results in attached.items()}

    gateway_statuses = {view.gateway.ref: gateway_status(view, conflicts, counts, config) for view in gateways}
    class_statuses = tuple(class_status(c, config) for c in sorted(classes.values(), key=lambda c: c.name))
    statuses = [
        *class_statuses,
        *(gateway_statuses[v.gateway.ref] for v in sorted(gateways, key=lambda v: (v.gateway.namespace, v.gateway.name))),
        *(route_status(result, winners, config) for result in routes),
    ]
    services = {view.gateway.ref: gateway_services(view, gateway_statuses[view.gateway.ref], winners, index, config)
                for view in gateways}
    l7 = build_l7(
        _l7_inputs(gateways, gateway_statuses, attached),
        index,
        L7Options(xff_num_trusted_hops=config.xff_num_trusted_hops,
                  passthrough_proxy_protocol=config.passthrough_proxy_protocol),
    )
    carried = carry_transition_times(statuses, previous)
    translation = Translation(
        DesiredState(services=tuple(sorted((s for group in services.values() for s in group), key=frontend_order))),
        carried,
        l7,
    )
    n_classes, n_gateways = len(class_statuses), len(gateways)
    # One (kind, namespace, name) tuple per object for the three mappings keyed by it
    # (three per route took 1.9 MiB at 10,000 routes).
    keys = [(s.kind, s.namespace, s.name) for s in carried]
    positions = {key: i for i, key in enumerate(keys)}
    routes_from = n_classes + n_gateways
    return TranslationPass(
        snapshot=snapshot, config=config, index=index, gateways=tuple(gateways), conflicts=conflicts,
        results=dict(zip(keys[routes_from:], routes)),  # a route's status is its result's, in order
        attached={key: tuple(results) for key, results in attached.items()}, winners=winners,
        class_statuses=carried[:n_classes],
        gateway_statuses=dict(zip(keys[n_classes:routes_from], carried[n_classes:routes_from])),
        route_statuses=dict(zip(keys[routes_from:], carried[routes_from:])),
        services=services, translation=translation, counts=counts,
        l7_gateways=frozenset((v.gateway.namespace, v.gateway.name) for v in gateways
                              if any(listener.support is not Support.L4 for listener in v.listeners)),
        positions=positions,
    )


def listener_keys(result: _RouteResult) -> set[ListenerKey]:
    return {listener.key for outcome in result.outcomes for listener in outcome.listeners}


def _l7_inputs(
    gateways: Iterable[GatewayView],
    statuses: Mapping[ObjectRef, ObjectStatus],
    attached: Mapping[ListenerKey, list[_RouteResult]],
) -> list[L7Input]:
    """The L7 listeners ready for Envoy (translation left them pending only for it)."""
    inputs = []
    for view in gateways:
        listener_statuses = {s.name: s for s in statuses[view.gateway.ref].listeners}
        for listener in view.listeners:
            if not any(is_pending_l7(c) for c in listener_statuses[listener.name].conditions):
                continue
            routes = tuple(
                (result.route, tuple(result.backends))
                for result in sorted(attached.get(listener.key, ()), key=lambda r: age_order(r.route))
            )
            inputs.append(L7Input(listener, view.addresses.addresses, routes))
    return inputs


def route_result(route: Route, gateways: Mapping[tuple[str, str], GatewayView], index: SnapshotIndex) -> _RouteResult:
    outcomes = []
    for parent_ref in route.spec.parent_refs:
        if parent_ref.group != GATEWAY_GROUP or parent_ref.kind != "Gateway":
            continue
        gateway = gateways.get((parent_ref.namespace or route.namespace, parent_ref.name))
        if gateway is None:
            continue  # not a Gateway of ours (or none at all): not ours to report on
        outcomes.append(attach(route, parent_ref, gateway, index))
    backends = resolve_backends(route, index) if outcomes else ()
    return _RouteResult(route, tuple(outcomes), backends)


def route_status(result: _RouteResult, winners: Mapping[ListenerKey, _RouteResult], config: TranslateConfig) -> ObjectStatus:
    route = result.route

    def make(kind: ConditionType, ok: bool, reason: Reason, message: str) -> Condition:
        return make_condition(kind, "True" if ok else "False", reason, message, route.generation, config.now)

    failures = [b.failure for b in result.backends if b.failure]
    if failures:
        resolved = make(ConditionType.RESOLVED_REFS, False, failures[0][0], "; ".join(message for _, message in failures))
    else:
        resolved = make(ConditionType.RESOLVED_REFS, True, Reason.RESOLVED_REFS, "All references are resolved")
    parents = []
    for outcome in result.outcomes:
        message = outcome.message
        for listener in outcome.listeners:
            winner = winners[listener.key].route
            if listener.support is Support.L4 and winner is not route:
                message += (
                    f"; no traffic on listener \"{listener.name}\": {winner.ref} takes precedence"
                    " (older, or first by namespace/name)"
                )
        accepted = make(ConditionType.ACCEPTED, outcome.accepted, outcome.reason, message)
        parents.append(RouteParentStatus(outcome.parent_ref, config.controller_name, (accepted, resolved)))
    return ObjectStatus(route.KIND, route.namespace, route.name, api_version=route.api_version, parents=tuple(parents),
                        generation=route.generation)


def gateway_services(
    view: GatewayView,
    status: ObjectStatus,
    winners: Mapping[ListenerKey, _RouteResult],
    index: SnapshotIndex,
    config: TranslateConfig,
) -> tuple[Service, ...]:
    """The data path Services of one Gateway: one per programmed TCP/UDP listener and address."""
    listener_statuses = {s.name: s for s in status.listeners}
    return tuple(service for listener in view.listeners
                 for service in listener_services(view, listener, listener_statuses, winners, index, config))


def listener_services(
    view: GatewayView,
    listener: ListenerView,
    listener_statuses: Mapping[str, ListenerStatus],
    winners: Mapping[ListenerKey, _RouteResult],
    index: SnapshotIndex,
    config: TranslateConfig,
) -> list[Service]:
    """The data path Services of one listener: one per address if it is a programmed
    TCP/UDP listener, else none."""
    if listener.support is not Support.L4 or not listener_programmed(listener_statuses[listener.name]):
        return []
    winner = winners.get(listener.key)
    # The first rule carries the traffic: v1 routes have exactly one; in v1alpha2
    # every rule matches all traffic and, as for HTTPRoute, the first one wins.
    first_rule = [b for b in winner.backends if b.rule_index == 0] if winner else []
    services = []
    for address in view.addresses.addresses:
        if winner is None:
            # A programmed listener owns its port even before a route arrives:
            # refuse new flows rather than let them reach whatever the node runs.
            pool, owner = BackendPool((), 1.0), f"{view.gateway.ref} listener {listener.name} (no route)"
        else:
            pool, owner = backend_pool(first_rule, address.version, index), str(winner.route.ref)
        services.append(
            Service(
                frontend=FrontendKey(address, listener.spec.port, listener.transport),
                backends=pool.backends,
                reject_weight=pool.reject_weight,
                nat=config.nat,
                snat_addresses=view.addresses.snat_for(address.version, config)
                if config.nat is NatMode.SNAT else (),
                owner=owner,
            )
        )
    return services
