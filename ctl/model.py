"""The desired data plane: what the control plane asks the kernel to do.

This is the contract between translation (Gateway API objects in) and the map writer
(BPF maps out). Values only, no I/O; every type is frozen and hashable so that two desired
states can be compared and diffed.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_order(address: IPAddress) -> tuple[int, int]:
    """A total order over both families: IPv4 before IPv6, then numeric. ipaddress
    refuses to compare across families, and a dual-stack state sorts both together."""
    return (address.version, int(address))


class Protocol(enum.IntEnum):
    """IP protocol numbers, as the data path keys frontends by them."""

    TCP = 6
    UDP = 17


class NatMode(enum.Enum):
    SNAT = "snat"  # source becomes a gateway address and port; backends reply to it
    DNAT = "dnat"  # client address preserved; backends must route replies via the gateway


@functools.total_ordering
@dataclass(frozen=True, slots=True)
class Endpoint:
    address: IPAddress
    port: int
    # ipaddress hashes through hex(); planning 10,000 routes hashes endpoints ~10^6 times,
    # about ten times each: computed once. Not the text (a Maglev key is formatted only
    # for the tables a plan builds or checks; kept, it took 5 MiB at 10,000 routes).
    # Slots: 80,000 endpoints at 10,000 routes, a __dict__ each would be most of their
    # memory.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((int(self.address), self.port)))

    def sort_key(self) -> tuple[tuple[int, int], int]:
        return (address_order(self.address), self.port)

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return self.sort_key() < other.sort_key()

    def __str__(self) -> str:
        if self.address.version == 6:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


@functools.total_ordering
@dataclass(frozen=True, slots=True)
class FrontendKey:
    address: IPAddress
    port: int
    protocol: Protocol
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((int(self.address), self.port, int(self.protocol))))

    def sort_key(self) -> tuple[tuple[int, int], int, int]:
        return (address_order(self.address), self.port, int(self.protocol))

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, FrontendKey):
            return NotImplemented
        return self.sort_key() < other.sort_key()

    def __str__(self) -> str:
        return f"{Endpoint(self.address, self.port)}/{self.protocol.name}"


@dataclass(frozen=True, slots=True)
class WeightedEndpoint:
    endpoint: Endpoint
    # Relative weight; 0 drains (no new flows, live ones continue). Fractions are allowed
    # because a backendRef's weight is spread over the Service's endpoints.
    weight: float


@dataclass(frozen=True, slots=True)
class Service:
    """One frontend and the backends that share its traffic."""

    frontend: FrontendKey
    backends: tuple[WeightedEndpoint, ...]
    # Weight share of backendRefs that could not be resolved. Per the Gateway API spec it
    # is not dropped silently: new TCP connections to it are refused with a RST, UDP
    # datagrams are dropped and counted.
    reject_weight: float = 0.0
    nat: NatMode = NatMode.SNAT
    # Source addresses for SNAT (1 to 4, of the frontend's family); required when nat
    # is SNAT. A new flow keeps the client's port on the first that has it free.
    snat_addresses: tuple[IPAddress, ...] = ()
    # Who asked for this frontend (e.g. "TCPRoute default/db"), for gwctl and metrics.
    owner: str = ""

    @property
    def snat_address(self) -> IPAddress | None:
        """The first SNAT address (what status shows first), or None."""
        return self.snat_addresses[0] if self.snat_addresses else None


@dataclass(frozen=True)
class DesiredState:
    services: tuple[Service, ...] = field(default_factory=tuple)

    def by_frontend(self) -> dict[FrontendKey, Service]:
        return {s.frontend: s for s in self.services}
