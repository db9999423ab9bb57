"""Executes a plan against the pinned maps, in the plan's order."""

from __future__ import annotations

import logging

from . import abi, plan as p
from .pinned import PinnedMaps

log = logging.getLogger(__name__)


def apply(maps: PinnedMaps, ops: tuple[p.Op, ...]) -> None:
    debug = log.isEnabledFor(logging.DEBUG)
    i = 0
    while i < len(ops):
        if isinstance(ops[i], p.PutTable):
            # A run of table swaps (a plan lists them together) goes to the kernel in
            # batches; the order relative to every other operation is unchanged.
            end = i
            while end < len(ops) and isinstance(ops[end], p.PutTable):
                end += 1
            maps.swap_tables([(op.service_id, op.slots, op.digest) for op in ops[i:end]])
        else:
            end = i + 1
            _apply_one(maps, ops[i])
        if debug:
            for op in ops[i:end]:
                log.debug("applied %s", _describe(op))
        i = end
    if any(isinstance(op, p.DeleteBackend) or (isinstance(op, p.PutBackend) and not op.fresh)
           for op in ops):
        bump_generation(maps, abi.Gen.BACKENDS)


def bump_generation(maps: PinnedMaps, which: abi.Gen) -> int:
    """Tells the data path that what it cached under `which` may be stale: established
    flows check their cached backend, or look up their next hop, again once."""
    current = maps.get("generations", int(which)) or 0
    new = (int(current) + 1) & 0xFFFFFFFF
    maps.put("generations", int(which), new)
    return new


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


def _describe(op: p.Op) -> str:
    if isinstance(op, p.PutTable):
        return f"PutTable(service_id={op.service_id}, digest={op.digest:016x})"
    return repr(op)


def frontend_key_struct(key) -> abi.FrontendKey:
    return abi.FrontendKey(addr=abi.to_addr(key.address), port=abi.to_port(key.port),
                           proto=int(key.protocol), family=abi.family_of(key.address))


def frontend_struct(record: p.FrontendRecord) -> abi.Frontend:
    value = abi.Frontend(id=record.service_id, nat_mode=_nat_c(record.nat),
                         snat_count=len(record.snat_addresses))
    for i, address in enumerate(record.snat_addresses):
        value.snat_addrs[i] = abi.to_addr(address)
    return value


def backend_struct(endpoint) -> abi.Backend:
    return abi.Backend(addr=abi.to_addr(endpoint.address), port=abi.to_port(endpoint.port),
                       family=abi.family_of(endpoint.address))


def vip_key_struct(address) -> abi.VipKey:
    return abi.VipKey(addr=abi.to_addr(address), family=abi.family_of(address))


def _nat_c(nat) -> int:
    from ctl.model import NatMode

    return abi.NatModeC.DNAT if nat is NatMode.DNAT else abi.NatModeC.SNAT
