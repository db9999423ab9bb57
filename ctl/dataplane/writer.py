"""Executes a plan against the pinned maps, in the plan's order."""

from __future__ import annotations

import logging
import struct

import numpy as np

from . import abi, plan as p
from .pinned import PinnedMaps

log = logging.getLogger(__name__)


# Writes a plan lists in runs (every backend, then every table...): each run goes to the
# kernel in batches, one syscall per chunk of entries instead of one per entry (a cold
# start at 10,000 routes has some 190,000 writes). The order relative to every other
# operation is unchanged.
_BATCHED = (p.PutTable, p.PutBackend, p.PutFrontend, p.PutOwner, p.PutMember, p.PutVip)


def apply(maps: PinnedMaps, ops: tuple[p.Op, ...]) -> None:
    i = 0
    while i < len(ops):
        kind = type(ops[i])
        end = i + 1
        if kind in _BATCHED:
            while end < len(ops) and type(ops[end]) is kind:
                end += 1
        if end - i > 1 or kind is p.PutTable:
            _apply_run(maps, ops[i:end])
        else:
            _apply_one(maps, ops[i])
        i = end
    if any(isinstance(op, p.DeleteBackend) or (isinstance(op, p.PutBackend) and not op.fresh)
           for op in ops):
        bump_generation(maps, abi.Gen.BACKENDS)
    if ops and log.isEnabledFor(logging.DEBUG):
        # One line per write, not per entry: a cold start at 10,000 routes writes some
        # 190,000 entries, and a line each drowned every other line of a debug log.
        log.debug("wrote the maps", extra={"event": "maps_written", "writes": write_counts(ops)})


# The map each kind of operation writes, and whether it puts or deletes an entry there.
_MAP_OF: dict[type, tuple[str, str]] = {
    p.PutConfig: ("config", "put"), p.PutBackend: ("backends", "put"), p.PutTable: ("tables", "put"),
    p.PutFrontend: ("frontends", "put"), p.PutVip: ("vips", "put"), p.PutOwner: ("owners", "put"),
    p.PutMember: ("members", "put"), p.DeleteMember: ("members", "delete"),
    p.DeleteOwner: ("owners", "delete"), p.DeleteFrontend: ("frontends", "delete"),
    p.DeleteVip: ("vips", "delete"), p.DeleteTable: ("tables", "delete"),
    p.DeleteBackend: ("backends", "delete"),
}


def write_counts(ops: tuple[p.Op, ...]) -> dict[str, dict[str, int]]:
    """How many entries a plan puts and deletes in each map (the summary a write logs)."""
    counts: dict[str, dict[str, int]] = {}
    for op in ops:
        name, action = _MAP_OF[type(op)]
        per_map = counts.setdefault(name, {})
        per_map[action] = per_map.get(action, 0) + 1
    return counts


def bump_generation(maps: PinnedMaps, which: abi.Gen) -> int:
    """Tells the data path that what it cached under `which` may be stale: established
    flows check their cached backend, or look up their next hop, again once."""
    current = maps.get("generations", int(which)) or 0
    new = (int(current) + 1) & 0xFFFFFFFF
    maps.put("generations", int(which), new)
    return new


def _apply_run(maps: PinnedMaps, run: tuple) -> None:
    """Operations of one kind, as _apply_one would one by one: the fresh ids' counters
    are reset before any entry that uses them is written."""
    kind = type(run[0])
    if kind is p.PutTable:
        maps.swap_tables([(op.service_id, op.slots, op.digest) for op in run])
    elif kind is p.PutBackend:
        maps.percpu_reset_many("be_stats", [op.backend_id for op in run if op.fresh])
        maps.put_many_packed("backends", np.array([op.backend_id for op in run], dtype=np.uint32).tobytes(),
                             b"".join([backend_bytes(op.endpoint) for op in run]))
    elif kind is p.PutFrontend:
        maps.percpu_reset_many("svc_stats", [op.record.service_id for op in run if op.fresh])
        maps.put_many("frontends", [(frontend_key_struct(op.key), frontend_struct(op.record)) for op in run])
    elif kind is p.PutOwner:
        maps.put_many("owners", [(op.service_id, abi.OwnerName(op.owner.encode())) for op in run])
    elif kind is p.PutMember:
        keys = np.array([(op.service_id, op.backend_id) for op in run], dtype=np.uint32)  # MemberKey's layout
        maps.put_many_packed("members", keys.tobytes(),
                             np.array([op.weight_milli for op in run], dtype=np.uint64).tobytes())
    elif kind is p.PutVip:
        maps.put_many("vips", [(vip_key_struct(op.address), op.count) for op in run])
    else:
        raise TypeError(f"no batched write for {kind.__name__}")


def _apply_one(maps: PinnedMaps, op: p.Op) -> None:
    match op:
        case p.PutConfig(config):
            maps.put("config", 0, abi.Config(**config.__dict__))
        case p.PutBackend(backend_id, endpoint, fresh):
            if fresh:
                maps.percpu_reset("be_stats", backend_id)
            maps.put("backends", backend_id, backend_struct(endpoint))
        case p.PutTable(service_id, slots, digest):
            maps.swap_table(service_id, slots, digest)
        case p.PutFrontend(key, record, fresh):
            if fresh:
                maps.percpu_reset("svc_stats", record.service_id)
            maps.put("frontends", frontend_key_struct(key), frontend_struct(record))
        case p.PutOwner(service_id, owner):
            maps.put("owners", service_id, abi.OwnerName(owner.encode()))
        case p.PutMember(service_id, backend_id, weight_milli):
            maps.put("members", abi.MemberKey(service_id, backend_id), weight_milli)
        case p.DeleteMember(service_id, backend_id):
            maps.delete("members", abi.MemberKey(service_id, backend_id))
        case p.DeleteOwner(service_id):
            maps.delete("owners", service_id)
        case p.PutVip(address, count):
            maps.put("vips", vip_key_struct(address), count)
        case p.DeleteFrontend(key):
            maps.delete("frontends", frontend_key_struct(key))
        case p.DeleteVip(address):
            maps.delete("vips", vip_key_struct(address))
        case p.DeleteTable(service_id):
            maps.delete_table(service_id)
        case p.DeleteBackend(backend_id):
            maps.delete("backends", backend_id)
        case _:
            raise TypeError(f"unknown plan operation {op!r}")


def frontend_key_struct(key) -> abi.FrontendKey:
    return abi.FrontendKey(addr=abi.to_addr(key.address), port=abi.to_port(key.port),
                           proto=int(key.protocol), family=abi.family_of(key.address))


def frontend_struct(record: p.FrontendRecord) -> abi.Frontend:
    value = abi.Frontend(id=record.service_id, nat_mode=_nat_c(record.nat),
                         snat_count=len(record.snat_addresses))
    for i, address in enumerate(record.snat_addresses):
        value.snat_addrs[i] = abi.to_addr(address)
    return value


_ADDR_ZEROS = bytes(16)
_PORT_FAMILY_PAD = struct.Struct("!HBB")  # the port in network order, the family, the pad byte


def backend_bytes(endpoint) -> bytes:
    """bytes(backend_struct(endpoint)), without making the struct."""
    packed = endpoint.address.packed
    return packed + _ADDR_ZEROS[len(packed):] + _PORT_FAMILY_PAD.pack(endpoint.port, abi.family_of(endpoint.address), 0)


def backend_struct(endpoint) -> abi.Backend:
    return abi.Backend(addr=abi.to_addr(endpoint.address), port=abi.to_port(endpoint.port),
                       family=abi.family_of(endpoint.address))


def vip_key_struct(address) -> abi.VipKey:
    return abi.VipKey(addr=abi.to_addr(address), family=abi.family_of(address))


def _nat_c(nat) -> int:
    from ctl.model import NatMode

    return abi.NatModeC.DNAT if nat is NatMode.DNAT else abi.NatModeC.SNAT
