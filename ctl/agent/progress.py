"""What the nodes really hold, and the status stanzas the writer puts on the cluster. Pure.

Each agent reports, in its node Lease, the generation of every Gateway and route it has
programmed into its kernel and its last programming failure. The status writer turns
those reports into the Gateways' ``Programmed`` condition: True only when every live
node holds the generation of the Gateway and of every route attached to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ctl.sources import Snapshot
from ctl.translate import Condition, ObjectStatus, status_to_k8s

PROGRAMMED_ANNOTATION = "xdp-gateway.io/programmed"
NODE_LEASE_PREFIX = "xdp-gateway-node-"
STATUS_LEASE_NAME = "xdp-gateway-status"
_REPORTED_KINDS = ("Gateway", "TCPRoute", "UDPRoute", "TLSRoute", "HTTPRoute", "GRPCRoute")


def object_key(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


@dataclass(frozen=True)
class NodeReport:
    node: str
    generations: Mapping[str, int]  # object_key -> programmed generation
    error: str = ""  # the last programming failure, empty when the last attempt worked

    def to_annotation(self) -> str:
        return json.dumps({"generations": dict(sorted(self.generations.items())), "error": self.error},
                          separators=(",", ":"))

    @classmethod
    def from_annotation(cls, node: str, text: str | None) -> NodeReport:
        try:
            data = json.loads(text or "{}")
            generations = {str(k): int(v) for k, v in (data.get("generations") or {}).items()}
            return cls(node, generations, str(data.get("error") or ""))
        except (ValueError, AttributeError, TypeError):
            return cls(node, {}, f"unreadable {PROGRAMMED_ANNOTATION} annotation")


def wanted_generations(snapshot: Snapshot) -> dict[str, int]:
    """The generation of every Gateway and route in a snapshot."""
    return {
        object_key(obj.KIND, obj.namespace, obj.name): obj.generation
        for obj in (*snapshot.gateways, *snapshot.routes)
        if obj.KIND in _REPORTED_KINDS
    }


def after_reconcile(previous: NodeReport, snapshot: Snapshot, applied: bool, problems: Iterable[str]) -> NodeReport:
    """A node's report after one reconcile: what it now holds, or what it still holds
    and why the new input failed."""
    if applied:
        return NodeReport(previous.node, wanted_generations(snapshot), "")
    return replace(previous, error="; ".join(problems) or "programming failed")


def with_node_progress(statuses: Iterable[ObjectStatus], wanted: Mapping[str, int],
                       reports: Iterable[NodeReport], now: datetime) -> tuple[ObjectStatus, ...]:
    """Gateways' Programmed condition from what the live nodes report.

    A Gateway the translation found programmable stays Programmed=True only if every
    live node holds its generation and that of every route attached to it; otherwise it
    becomes False, naming the nodes behind and any node's failure."""
    statuses = tuple(statuses)
    reports = sorted(reports, key=lambda r: r.node)
    attached: dict[tuple[str, str], list[str]] = {}
    for status in statuses:
        for parent in status.parents:
            ref = parent.parent_ref
            if ref.kind == "Gateway" and any(c.type == "Accepted" and c.status == "True" for c in parent.conditions):
                gateway = (ref.namespace or status.namespace, ref.name)
                attached.setdefault(gateway, []).append(object_key(status.kind, status.namespace, status.name))
    out = []
    for status in statuses:
        if status.kind != "Gateway":
            out.append(status)
            continue
        keys = [object_key("Gateway", status.namespace, status.name), *attached.get((status.namespace, status.name), ())]
        failed = [f"{r.node}: {r.error}" for r in reports if r.error]
        behind = [r.node for r in reports
                  if any(r.generations.get(key, 0) < wanted.get(key, 0) for key in keys)]
        message, reason = "", ""
        if not reports:
            reason, message = "Pending", "no node has reported what it programmed yet"
        elif failed:
            reason, message = "Invalid", "programming failed on node " + "; node ".join(failed)
            if behind:
                message += f"; not yet programmed on {', '.join(behind)}"
        elif behind:
            reason, message = "Pending", f"not yet programmed on {', '.join(behind)} (of {len(reports)} nodes)"
        out.append(replace(status, conditions=tuple(
            _downgraded(c, reason, message, now) if c.type == "Programmed" and c.status == "True" and reason else c
            for c in status.conditions
        )))
    return tuple(out)


def _downgraded(condition: Condition, reason: str, message: str, now: datetime) -> Condition:
    return replace(condition, status="False", reason=reason, message=message, last_transition_time=now)


def status_stanza(status: ObjectStatus, current: Mapping[str, Any] | None, controller: str) -> dict[str, Any]:
    """The status to write: ours for the object, other controllers' route parents kept,
    and each condition's lastTransitionTime carried from the cluster while its status
    and reason are unchanged (so a new writer does not rewrite every time)."""
    stanza = status_to_k8s(status)
    current = dict(current or {})
    if status.kind not in ("GatewayClass", "Gateway"):
        theirs = [p for p in current.get("parents") or [] if p.get("controllerName") != controller]
        ours_before = {json.dumps(p.get("parentRef"), sort_keys=True): p
                       for p in current.get("parents") or [] if p.get("controllerName") == controller}
        for parent in stanza["parents"]:
            before = ours_before.get(json.dumps(parent["parentRef"], sort_keys=True))
            _carry_times(parent["conditions"], (before or {}).get("conditions"))
        stanza["parents"] = theirs + stanza["parents"]
        return stanza
    _carry_times(stanza.get("conditions", []), current.get("conditions"))
    before_listeners = {listener.get("name"): listener for listener in current.get("listeners") or []}
    for listener in stanza.get("listeners", []):
        _carry_times(listener["conditions"], (before_listeners.get(listener["name"]) or {}).get("conditions"))
    return stanza


def without_our_parents(current: Mapping[str, Any] | None, controller: str) -> dict[str, Any] | None:
    """A route's status with this controller's parents removed, or None if it has none."""
    parents = list((current or {}).get("parents") or [])
    kept = [p for p in parents if p.get("controllerName") != controller]
    if len(kept) == len(parents):
        return None
    return {**dict(current or {}), "parents": kept}


def _carry_times(conditions: list[dict[str, Any]], before: list[dict[str, Any]] | None) -> None:
    earlier = {c.get("type"): c for c in before or []}
    for condition in conditions:
        old = earlier.get(condition["type"])
        if old and (old.get("status"), old.get("reason")) == (condition["status"], condition["reason"]):
            condition["lastTransitionTime"] = old.get("lastTransitionTime", condition["lastTransitionTime"])
