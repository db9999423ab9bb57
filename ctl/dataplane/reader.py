"""Reading the pinned maps back as typed rows: for the planner (what is programmed
now), for gwctl status and for metrics. Read-only."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from . import abi
from ctl.model import Endpoint, FrontendKey, NatMode, Protocol
from .pinned import PinnedMaps
from .plan import ActualState, DataplaneConfig, FrontendRecord, applied_in_place


Checkpoint = Callable[[], None]  # called now and then while reading; may raise to stop


def _never() -> None:
    pass


def _frontend_row(key, value) -> tuple[FrontendKey, FrontendRecord]:
    address = abi.from_addr(key.addr, key.family)
    fk = FrontendKey(address, abi.from_port(key.port), Protocol(key.proto))
    nat = NatMode.DNAT if value.nat_mode == abi.NatModeC.DNAT else NatMode.SNAT
    count = min(value.snat_count, abi.SNAT_MAX_ADDRS) if nat is NatMode.SNAT else 0
    snat = tuple(abi.from_addr(value.snat_addrs[i], key.family) for i in range(count))
    return fk, FrontendRecord(value.id, nat, snat)


def _backend_row(backend_id: int, value) -> tuple[int, Endpoint]:
    return backend_id, Endpoint(abi.from_addr(value.addr, value.family), abi.from_port(value.port))


def _vip_row(key, count: int) -> tuple:
    return abi.from_addr(key.addr, key.family), count


def _owner_row(service_id: int, value) -> tuple[int, str]:
    return service_id, value.name.decode(errors="replace")


def _member_row(key, weight: int) -> tuple[tuple[int, int], int]:
    return (key.service_id, key.backend_id), weight


def _same_row(key, value) -> tuple:
    return key, value


def read_frontends(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> dict[FrontendKey, FrontendRecord]:
    return dict(_frontend_row(k, v) for k, v in maps.items("frontends", checkpoint))


def read_backends(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> dict[int, Endpoint]:
    return dict(_backend_row(k, v) for k, v in maps.items("backends", checkpoint))


def read_vips(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> dict:
    """VIP -> how many frontends use it."""
    return dict(_vip_row(k, v) for k, v in maps.items("vips", checkpoint))


def read_config(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> DataplaneConfig | None:
    raw = maps.get("config", 0)
    if raw is None or raw.snat_port_min == 0:  # never written: the array starts zeroed
        return None
    fields = {name: getattr(raw, name) for name, _ in abi.Config._fields_ if name != "pad"}
    fields["snat_keep_port"] = bool(fields["snat_keep_port"])
    return DataplaneConfig(**fields)


def read_owners(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> dict[int, str]:
    return dict(_owner_row(k, v) for k, v in maps.items("owners", checkpoint))


def read_members(maps: PinnedMaps, checkpoint: Checkpoint = _never) -> dict[tuple[int, int], int]:
    """(service id, backend id) -> configured weight x WEIGHT_SCALE."""
    return dict(_member_row(k, v) for k, v in maps.items("members", checkpoint))


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

# The parts read from one map row by row: the map, and a row's entry in the part
# (``tables`` keeps only the keys).
_PART_ROWS: dict[str, tuple[str, Callable[[object, object], tuple]]] = {
    "vips": ("vips", _vip_row),
    "frontends": ("frontends", _frontend_row),
    "backends": ("backends", _backend_row),
    "table_digests": ("digests", _same_row),
    "tables": ("maglev_outer", _same_row),
    "owners": ("owners", _owner_row),
    "members": ("members", _member_row),
}


def read_actual(maps: PinnedMaps) -> ActualState:
    return ActualState(**{name: read(maps, _never) for name, read in PARTS.items()})


_MISSING = object()


@dataclass
class PartRead:
    """One field of ActualState read from its map a batch of rows at a time, possibly
    across several calls (a read-back that gives way between batches goes on where it
    stopped: the position is a hash bucket, which writes in between do not move), and
    compared with what it should hold batch by batch (comparing 80,000 backends at the
    end would take 0.1 s in one go). Mutable by design: it is the read's progress.

    ``rows`` holds the rows read so far (the keys, for ``tables``); each was found as
    expected, else ``differs``. Rows that writes changed after they were read are
    brought up to date by ``written`` (the writer's ops, applied as the planner does);
    rows in buckets not read yet are read as they are then. So once every batch is
    read, the map holds what was expected exactly when nothing differed and as many
    rows were found as expected."""

    part: str
    rows: dict | set = field(default_factory=dict)
    start: bytes | None = None  # where the next batch begins
    done: bool = False
    differs: bool = False
    whole: object = None  # a part not read row by row (the config)

    @classmethod
    def begin(cls, part: str) -> "PartRead":
        return cls(part, set() if part == "tables" else {})

    def step(self, maps: PinnedMaps, chunk: int, expected) -> int:
        """Reads the next batch and compares it with ``expected`` (the part as
        ActualState holds it); returns how many rows it read (the kernel may return
        more than ``chunk`` when one hash bucket holds more). A part without a map, or
        a map that cannot be read in batches, is read whole."""
        if self.part not in _PART_ROWS:
            self.whole = PARTS[self.part](maps, _never)
            self.differs = self.whole != expected
            self.done = True
            return 1
        name, row = _PART_ROWS[self.part]
        batch = maps.batch(name, self.start, chunk)
        if batch is None:  # no batch lookups here: the whole map at once
            whole = PARTS[self.part](maps, _never)
            self.rows = set(whole) if self.part == "tables" else dict(whole)  # type: ignore[call-overload]
            self.differs = whole != expected
            self.done = True
            return len(self.rows)
        rows, self.start = batch
        if self.part == "tables":
            assert isinstance(self.rows, set)
            keys = [key for key, _ in rows]
            self.differs = self.differs or not all(key in expected for key in keys)
            self.rows.update(keys)
        else:
            assert isinstance(self.rows, dict)
            typed = [row(key, value) for key, value in rows]
            self.differs = self.differs or any(expected.get(key, _MISSING) != value for key, value in typed)
            self.rows.update(typed)
        self.done = self.start is None
        return len(rows)

    def written(self, ops) -> None:
        """Brings the rows read so far up to date with writes made since (ops the
        writer executed)."""
        if self.part not in _PART_ROWS:
            return  # read in one step, never left half read
        state = applied_in_place(ActualState(**{self.part: self.rows}), ops)
        self.rows = getattr(state, self.part)

    def matches(self, expected) -> bool:
        """Once done: whether the map holds ``expected``."""
        if self.part not in _PART_ROWS:
            return not self.differs
        return not self.differs and len(self.rows) == len(expected)


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
