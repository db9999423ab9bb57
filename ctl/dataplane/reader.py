"""Reading the pinned maps back as typed rows: for the planner (what is programmed
now), for gwctl status and for metrics. Read-only."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from . import abi
from ctl.model import Endpoint, FrontendKey, NatMode, Protocol
from .pinned import PinnedMaps
from .plan import ActualState, DataplaneConfig, FrontendRecord


Checkpoint = Callable[[], None]  # called now and then while reading; may raise to stop


def _never() -> None:
    pass


def read_frontends(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> dict[FrontendKey, FrontendRecord]:
    out = {}
    for key, value in maps.items("frontends", checkpoint):
        address = abi.from_addr(key.addr, key.family)
        fk = FrontendKey(address, abi.from_port(key.port), Protocol(key.proto))
        nat = NatMode.DNAT if value.nat_mode == abi.NatModeC.DNAT else NatMode.SNAT
        count = min(value.snat_count, abi.SNAT_MAX_ADDRS) if nat is NatMode.SNAT else 0
        snat = tuple(abi.from_addr(value.snat_addrs[i], key.family) for i in range(count))
        out[fk] = FrontendRecord(value.id, nat, snat)
    return out


def read_backends(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> dict[int, Endpoint]:
    return {
        backend_id: Endpoint(abi.from_addr(v.addr, v.family), abi.from_port(v.port))
        for backend_id, v in maps.items("backends", checkpoint)
    }


def read_vips(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> dict:
    """VIP -> how many frontends use it."""
    return {abi.from_addr(key.addr, key.family): count for key, count in maps.items("vips", checkpoint)}


def read_config(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> DataplaneConfig | None:
    raw = maps.get("config", 0)
    if raw is None or raw.snat_port_min == 0:  # never written: the array starts zeroed
        return None
    fields = {name: getattr(raw, name) for name, _ in abi.Config._fields_ if name != "pad"}
    fields["snat_keep_port"] = bool(fields["snat_keep_port"])
    return DataplaneConfig(**fields)


def read_owners(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> dict[int, str]:
    return {service_id: v.name.decode(errors="replace") for service_id, v in maps.items("owners", checkpoint)}


def read_members(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> dict[tuple[int, int], int]:
    """(service id, backend id) -> configured weight x WEIGHT_SCALE."""
    return {(k.service_id, k.backend_id): v for k, v in maps.items("members", checkpoint)}


# Each field of ActualState and how it is read, map by map (a read-back compares them one
# at a time: ctl/dataplane/dataplane.py).
PARTS: dict[str, Callable[[PinnedMaps, Checkpoint], object]] = {
    "vips": read_vips,
    "frontends": read_frontends,
    "backends": read_backends,
    "table_digests": lambda maps, checkpoint: maps.table_digests(checkpoint),
    "tables": lambda maps, checkpoint: frozenset(maps.keys("maglev_outer", checkpoint)),
    "config": read_config,
    "owners": read_owners,
    "members": read_members,
}


def read_actual(maps: PinnedMaps) -> ActualState:
    return ActualState(**{name: read(maps, _never) for name, read in PARTS.items()})


@dataclass(frozen=True)
class Counters:
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    new_flows: int = 0
    rejected: int = 0


def read_counters(maps: PinnedMaps, map_name: str, index: int) -> Counters:
    total = maps.percpu_sum(map_name, index)
    return Counters(**{name: getattr(total, name) for name, _ in abi.FlowStats._fields_})


def read_reasons(maps: PinnedMaps) -> dict[abi.Reason, int]:
    return {r: maps.percpu_sum("reasons", int(r)) for r in abi.Reason if r is not abi.Reason.NONE}


def read_verdicts(maps: PinnedMaps) -> dict[tuple[abi.Hook, abi.Verdict], int]:
    return {
        (h, v): maps.percpu_sum("verdicts", int(h) * len(abi.Verdict) + int(v))
        for h in abi.Hook for v in abi.Verdict
    }


def table_shares(maps: PinnedMaps, service_id: int) -> dict[int, int]:
    """Slots per backend id in the service's table (0 is the reject share)."""
    slots = maps.read_table(service_id)
    return dict(Counter(slots)) if slots is not None else {}


@dataclass(frozen=True)
class Flow:
    client: Endpoint
    frontend: Endpoint
    protocol: Protocol
    backend_id: int
    nat_source: Endpoint
    state: abi.CtState
    idle_seconds: float


def read_flows(maps: PinnedMaps) -> list[Flow]:
    now_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # bpf_ktime_get_ns's clock
    flows = []
    for key, entry in maps.items("ct_fwd"):
        flows.append(Flow(
            client=Endpoint(abi.from_addr(key.saddr, key.family), abi.from_port(key.sport)),
            frontend=Endpoint(abi.from_addr(key.daddr, key.family), abi.from_port(key.dport)),
            protocol=Protocol(key.proto),
            backend_id=entry.backend_id,
            nat_source=Endpoint(abi.from_addr(entry.nat_addr, key.family), abi.from_port(entry.nat_port)),
            state=abi.CtState(entry.state),
            idle_seconds=max(0.0, (now_ns - entry.last_seen) / 1e9),
        ))
    return flows


def flow_is_live(flow: Flow, config: DataplaneConfig) -> bool:
    """Mirrors ct_lifetime_ns() in bpf/lib/conntrack.h."""
    s = abi.CtState
    if flow.protocol is Protocol.TCP:
        if s.RST in flow.state:
            limit = config.tcp_close_timeout
        elif s.FIN_FWD in flow.state and s.FIN_REV in flow.state:
            limit = (config.tcp_time_wait_timeout if s.REV_CLOSED_FIRST in flow.state
                     else config.tcp_close_timeout)
        elif s.SEEN_REPLY not in flow.state:
            limit = config.tcp_syn_timeout
        else:
            limit = config.tcp_est_timeout
    else:
        limit = config.udp_timeout
    return flow.idle_seconds <= limit
