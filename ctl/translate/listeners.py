"""What each listener is, before any route looks at it: how we serve its protocol,
which route kinds it takes, and whether its namespace selector can be evaluated."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ctl.api import GATEWAY_GROUP, Gateway, Listener, RouteGroupKind
from ctl.model import Protocol
from ctl.translate.certificates import CertificateResolution, resolve_certificates
from ctl.translate.index import SnapshotIndex
from ctl.translate.selectors import selector_error


# (Gateway namespace, Gateway name, listener name)
ListenerKey = tuple[str, str, str]


class Support(enum.Enum):
    L4 = "l4"  # TCP and UDP: forwarded by the XDP/tc data path
    L7 = "l7"  # HTTP, HTTPS, TLS: served by the Envoy sidecar
    UNSUPPORTED = "unsupported"


# The route kinds each protocol can carry, in the order reported in supportedKinds.
_KINDS_BY_PROTOCOL: dict[str, tuple[str, ...]] = {
    "TCP": ("TCPRoute",),
    "UDP": ("UDPRoute",),
    "HTTP": ("HTTPRoute", "GRPCRoute"),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
    "TLS": ("TLSRoute",),
}


@dataclass(frozen=True, slots=True)
class ListenerView:
    gateway: Gateway
    spec: Listener
    supported_kinds: tuple[RouteGroupKind, ...]
    invalid_kinds: tuple[RouteGroupKind, ...]
    # Why the allowedRoutes namespace selector cannot be evaluated, if it cannot.
    selector_problem: str | None
    # Why the listener's tls stanza cannot be served (e.g. HTTPS in Passthrough mode).
    tls_problem: str | None = None
    # Listeners that terminate TLS (HTTPS, TLS in Terminate mode): the certificates, or
    # why they cannot be had.
    certificates: CertificateResolution | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> ListenerKey:
        return (self.gateway.namespace, self.gateway.name, self.spec.name)

    @property
    def support(self) -> Support:
        if self.spec.protocol in ("TCP", "UDP"):
            return Support.L4
        if self.spec.protocol in _KINDS_BY_PROTOCOL:
            return Support.L7
        return Support.UNSUPPORTED

    @property
    def transport(self) -> Protocol:
        """The IP protocol the listener's port lives in."""
        return Protocol.UDP if self.spec.protocol == "UDP" else Protocol.TCP

    @property
    def claims_port(self) -> bool:
        """Whether the listener is otherwise acceptable and so takes part in conflicts."""
        return self.support is not Support.UNSUPPORTED and self.selector_problem is None and self.tls_problem is None

    def allows_kind(self, kind: str) -> bool:
        return any(k.group == GATEWAY_GROUP and k.kind == kind for k in self.supported_kinds)


def view_listener(gateway: Gateway, listener: Listener, index: SnapshotIndex) -> ListenerView:
    carried = _KINDS_BY_PROTOCOL.get(listener.protocol, ())
    requested = listener.allowed_routes.kinds
    supported: list[RouteGroupKind] = []
    invalid: list[RouteGroupKind] = []
    if requested:
        for kind in requested:
            target = supported if kind.group == GATEWAY_GROUP and kind.kind in carried else invalid
            if kind not in target:
                target.append(kind)
    else:
        supported = [RouteGroupKind(group=GATEWAY_GROUP, kind=kind) for kind in carried]
    namespaces = listener.allowed_routes.namespaces
    problem = None
    if namespaces.from_ == "Selector":
        if namespaces.selector is None:
            problem = "allowedRoutes.namespaces.from is Selector but no selector is given"
        else:
            error = selector_error(namespaces.selector)
            problem = f"allowedRoutes.namespaces.selector.{error}" if error else None
    mode = listener.tls.mode if listener.tls else None
    tls_problem = None
    certificates = None
    if listener.protocol == "TLS":
        if mode is None:
            tls_problem = "TLS listeners need tls.mode (Passthrough or Terminate)"
        elif mode == "Terminate":
            # TLSRouteModeTerminate: Envoy terminates TLS and proxies the TCP stream inside.
            certificates = resolve_certificates(gateway, listener, index)
    elif listener.protocol == "HTTPS":
        if mode == "Passthrough":
            tls_problem = "HTTPS listeners terminate TLS: tls.mode Passthrough needs protocol TLS"
        else:
            certificates = resolve_certificates(gateway, listener, index)
    return ListenerView(gateway, listener, tuple(supported), tuple(invalid), problem, tls_problem, certificates)
