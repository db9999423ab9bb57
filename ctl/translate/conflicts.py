"""Listener conflicts: two listeners a packet could not be told apart between.

Within one Gateway, every listener of an indistinct set is conflicted: the spec forbids
picking a winner. Gateways that share an address (all Gateways without spec.addresses
share the agent's) are merged onto one data path, which the spec allows only for
compatible listeners; there the older Gateway keeps its port (creationTimestamp, then
namespace/name, as for routes) so that creating a Gateway never breaks a working one.

Per address and port, for the same transport (UDP, or TCP for every other protocol):
- a TCP or UDP listener is compatible with nothing else (ProtocolConflict), since the
  data path forwards the whole port; TCP and UDP on one port number do not meet;
- HTTP cannot share a port with HTTPS or TLS (ProtocolConflict);
- HTTP with HTTP, or HTTPS/TLS with HTTPS/TLS, need different hostnames
  (HostnameConflict).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ctl.model import IPAddress, Protocol
from ctl.translate.conditions import Reason
from ctl.translate.gateways import GatewayView
from ctl.translate.listeners import ListenerKey, ListenerView


@dataclass(frozen=True)
class Conflict:
    reason: Reason
    message: str


def _incompatibility(a: ListenerView, b: ListenerView) -> Reason | None:
    if a.transport is not b.transport or a.spec.port != b.spec.port:
        return None
    if {a.spec.protocol, b.spec.protocol} & {"TCP", "UDP"}:
        return Reason.PROTOCOL_CONFLICT
    if (a.spec.protocol == "HTTP") != (b.spec.protocol == "HTTP"):
        return Reason.PROTOCOL_CONFLICT
    if a.spec.hostname == b.spec.hostname:
        return Reason.HOSTNAME_CONFLICT
    return None


def _describe(listener: ListenerView) -> str:
    return f"listener \"{listener.name}\" ({listener.spec.protocol} port {listener.spec.port})"


def find_conflicts(gateways: Sequence[GatewayView]) -> dict[ListenerKey, Conflict]:
    """Conflicted listeners by key; ``gateways`` must be in precedence order (oldest first)
    and only those that can be accepted."""
    conflicts: dict[ListenerKey, Conflict] = {}
    claimed: dict[tuple[IPAddress, Protocol, int], list[ListenerView]] = defaultdict(list)
    for gateway in gateways:
        candidates = [listener for listener in gateway.listeners if listener.claims_port]
        # Only listeners on one port and transport can clash: compare within those
        # groups, not every pair (a Gateway may have 64 listeners).
        same_port: dict[tuple[Protocol, int], list[ListenerView]] = defaultdict(list)
        for listener in candidates:
            same_port[(listener.transport, listener.spec.port)].append(listener)
        for listener in candidates:
            conflict = _clash_within(listener, same_port[(listener.transport, listener.spec.port)])
            if conflict:
                conflicts[listener.key] = conflict
        for listener in candidates:
            if listener.key in conflicts:
                continue
            conflict = _clash_with_claimed(listener, gateway.addresses.addresses, claimed)
            if conflict:
                conflicts[listener.key] = conflict
                continue
            for address in gateway.addresses.addresses:
                claimed[(address, listener.transport, listener.spec.port)].append(listener)
    return conflicts


def _clash_within(listener: ListenerView, siblings: Sequence[ListenerView]) -> Conflict | None:
    clashes: list[tuple[ListenerView, Reason]] = []
    for other in siblings:
        reason = _incompatibility(listener, other) if other is not listener else None
        if reason:
            clashes.append((other, reason))
    if not clashes:
        return None
    reasons = {reason for _, reason in clashes}
    reason = Reason.PROTOCOL_CONFLICT if Reason.PROTOCOL_CONFLICT in reasons else Reason.HOSTNAME_CONFLICT
    others = ", ".join(_describe(other) for other, _ in clashes)
    return Conflict(reason, f"{_describe(listener)} conflicts with {others} of this Gateway")


def _clash_with_claimed(
    listener: ListenerView,
    addresses: Sequence[IPAddress],
    claimed: dict[tuple[IPAddress, Protocol, int], list[ListenerView]],
) -> Conflict | None:
    for address in addresses:
        for other in claimed.get((address, listener.transport, listener.spec.port), ()):
            reason = _incompatibility(listener, other)
            if reason:
                owner = f"{other.gateway.namespace}/{other.gateway.name}"
                return Conflict(
                    reason,
                    f"{_describe(listener)} conflicts on {address} with {_describe(other)} of the older Gateway {owner}",
                )
    return None
