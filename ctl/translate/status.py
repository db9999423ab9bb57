"""Status values produced by translation, and their Kubernetes wire form.

``status_to_k8s`` gives the exact ``status`` stanza the API server stores for an object
(camelCase, Kubernetes field order). For routes it holds only the parents this
controller owns: the status writer merges them with other controllers' entries.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from ctl.api import ParentReference, RouteGroupKind

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str
    observed_generation: int
    last_transition_time: datetime


# Conditions by value, held weakly. Nearly every object's conditions are one of a few
# dozen values (6,033 conditions, 71 distinct, at 1,000 routes): one instance each.
_CONDITIONS: weakref.WeakValueDictionary[tuple[object, ...], Condition] = weakref.WeakValueDictionary()


def make_condition(type: str, status: ConditionStatus, reason: str, message: str, observed_generation: int,
              last_transition_time: datetime) -> Condition:
    """``Condition(...)``, the same instance for equal values."""
    key = (type, status, reason, message, observed_generation, last_transition_time)
    found = _CONDITIONS.get(key)
    if found is None:
        found = _CONDITIONS[key] = Condition(*key)
    return found


# Equal tuples of shared parts (conditions, supported kinds), one instance each: every
# listener and route parent has its own tuple otherwise (1.7 MiB at 10,000 routes).
# Found by the identities of their items, which the tuple kept here holds alive; emptied
# when full, like the other memos.
_TUPLES: dict[tuple[int, ...], tuple[Any, ...]] = {}
_TUPLES_MAX = 1 << 12


def _shared(items: tuple[Any, ...]) -> tuple[Any, ...]:
    items = tuple(items)
    key = tuple(map(id, items))
    found = _TUPLES.get(key)
    if found is None:
        if len(_TUPLES) >= _TUPLES_MAX:
            _TUPLES.clear()
        found = _TUPLES[key] = items
    return found


@dataclass(frozen=True, slots=True)
class ListenerStatus:
    name: str
    supported_kinds: tuple[RouteGroupKind, ...]
    attached_routes: int
    conditions: tuple[Condition, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "supported_kinds", _shared(self.supported_kinds))
        object.__setattr__(self, "conditions", _shared(self.conditions))


@dataclass(frozen=True, slots=True)
class RouteParentStatus:
    parent_ref: ParentReference
    controller_name: str
    conditions: tuple[Condition, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", _shared(self.conditions))


@dataclass(frozen=True, slots=True)
class ObjectStatus:
    """The status of one object. GatewayClasses use ``conditions``; Gateways use
    ``conditions``, ``addresses`` and ``listeners``; routes use ``parents``."""

    kind: str
    namespace: str
    name: str
    # The object's apiVersion, so the status writer patches the version it was read as.
    api_version: str = ""
    conditions: tuple[Condition, ...] = ()
    addresses: tuple[str, ...] = ()
    listeners: tuple[ListenerStatus, ...] = ()
    parents: tuple[RouteParentStatus, ...] = ()
    # The object's metadata.generation, which its conditions' observedGeneration is
    # compared with (0: not known).
    generation: int = 0


def format_time(moment: datetime) -> str:
    """RFC 3339 at second precision in UTC, as metav1.Time serialises."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_to_k8s(status: ObjectStatus) -> dict[str, Any]:
    if status.kind == "GatewayClass":
        return {"conditions": _conditions(status.conditions)}
    if status.kind == "Gateway":
        stanza: dict[str, Any] = {}
        if status.addresses:
            stanza["addresses"] = [{"type": "IPAddress", "value": value} for value in status.addresses]
        stanza["conditions"] = _conditions(status.conditions)
        stanza["listeners"] = [
            {
                "name": listener.name,
                "supportedKinds": [{"group": k.group, "kind": k.kind} for k in listener.supported_kinds],
                "attachedRoutes": listener.attached_routes,
                "conditions": _conditions(listener.conditions),
            }
            for listener in status.listeners
        ]
        return stanza
    return {
        "parents": [
            {
                "parentRef": parent_ref_to_k8s(parent.parent_ref),
                "controllerName": parent.controller_name,
                "conditions": _conditions(parent.conditions),
            }
            for parent in status.parents
        ]
    }


def objects_document(statuses: Iterable[ObjectStatus]) -> list[dict[str, Any]]:
    """Every object's status as Kubernetes would show it: what gwctl reads from the
    agent's API and what `gwctl validate` prints."""
    return [
        {"apiVersion": s.api_version, "kind": s.kind,
         "metadata": {**({"namespace": s.namespace} if s.namespace else {}), "name": s.name,
                      **({"generation": s.generation} if s.generation else {})},
         "status": status_to_k8s(s)}
        for s in statuses
    ]


def parent_ref_to_k8s(ref: ParentReference) -> dict[str, Any]:
    """The parentRef as written in the route's spec (after API server defaulting)."""
    wire: dict[str, Any] = {"group": ref.group, "kind": ref.kind}
    if ref.namespace is not None:
        wire["namespace"] = ref.namespace
    wire["name"] = ref.name
    if ref.section_name is not None:
        wire["sectionName"] = ref.section_name
    if ref.port is not None:
        wire["port"] = ref.port
    return wire


def _conditions(conditions: Iterable[Condition]) -> list[dict[str, Any]]:
    return [
        {
            "type": str(c.type),
            "status": c.status,
            "observedGeneration": c.observed_generation,
            "lastTransitionTime": format_time(c.last_transition_time),
            "reason": str(c.reason),
            "message": c.message,
        }
        for c in conditions
    ]


def carry_transition_times(
    statuses: Iterable[ObjectStatus], previous: Iterable[ObjectStatus]
) -> tuple[ObjectStatus, ...]:
    """Keep each condition's previous lastTransitionTime while its status and reason are
    unchanged: a condition transitions when its meaning changes, not on every pass."""
    earlier: dict[tuple[object, ...], Condition] = {}
    for status in previous:
        for scope, condition in _scoped_conditions(status):
            earlier[(*scope, condition.type)] = condition
    if not earlier:
        return tuple(statuses)  # nothing to carry (Envoy's feedback overlaid on 10,000 routes)

    def carried(scope: tuple[object, ...], conditions: tuple[Condition, ...]) -> tuple[Condition, ...]:
        result = []
        for c in conditions:
            before = earlier.get((*scope, c.type))
            if before is not None and (before.status, before.reason) == (c.status, c.reason):
                # Not dataclasses.replace: this runs for every condition of every
                # object, and replace costs several times more.
                c = make_condition(c.type, c.status, c.reason, c.message, c.observed_generation,
                              before.last_transition_time)
            result.append(c)
        return tuple(result)

    out = []
    for status in statuses:
        key = _object_key(status)
        out.append(
            replace(
                status,
                conditions=carried(key, status.conditions),
                listeners=tuple(
                    replace(listener, conditions=carried((*key, "listener", listener.name), listener.conditions))
                    for listener in status.listeners
                ),
                parents=tuple(
                    replace(parent, conditions=carried((*key, *_parent_key(parent)), parent.conditions))
                    for parent in status.parents
                ),
            )
        )
    return tuple(out)


def _object_key(status: ObjectStatus) -> tuple[object, ...]:
    return (status.kind, status.namespace, status.name)


def _parent_key(parent: RouteParentStatus) -> tuple[object, ...]:
    ref = parent.parent_ref
    return ("parent", parent.controller_name, ref.group, ref.kind, ref.namespace, ref.name, ref.section_name, ref.port)


def _scoped_conditions(status: ObjectStatus) -> Iterable[tuple[tuple[object, ...], Condition]]:
    key = _object_key(status)
    for condition in status.conditions:
        yield key, condition
    for listener in status.listeners:
        for condition in listener.conditions:
            yield (*key, "listener", listener.name), condition
    for parent in status.parents:
        for condition in parent.conditions:
            yield (*key, *_parent_key(parent)), condition
