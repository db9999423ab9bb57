"""From desired state and what the maps hold now, the smallest ordered list of writes.

Pure: the map writer executes the plan, this module only decides it. Ids are stable:
a frontend or backend that exists keeps its id (read back from the maps), so an agent
that restarts on maps that are already right plans nothing at all. Order is make
before break: backends and tables exist before a frontend points at them, frontends
go before the tables and backends they used.
"""

from __future__ import annotations

import functools
import hashlib
from collections import ChainMap, OrderedDict
from itertools import compress
from operator import is_not
from collections.abc import Container, ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np

from ctl.capacity import Capacity

from .abi import SNAT_MAX_ADDRS, WEIGHT_SCALE
from .maglev import PLACEMENT_VERSION, MaglevBackend, build_tables, table_size
from ctl.model import DesiredState, Endpoint, FrontendKey, IPAddress, NatMode, Service, address_order


@dataclass(frozen=True)
class DataplaneConfig:
    """Runtime options of the data path (the `config` map)."""

    hash_seed: int = 0  # must be the same on every node
    snat_port_min: int = 61000  # above Linux's default ephemeral range (32768-60999)
    snat_port_max: int = 65535
    tcp_syn_timeout: int = 60
    tcp_est_timeout: int = 21600
    # After a RST, or FIN both ways with the client first, the backend forgets the
    # tuple once the last ACK is in: this only covers retransmissions.
    tcp_close_timeout: int = 5
    udp_timeout: int = 60
    # FIN both ways with the backend first: it holds TIME_WAIT (60 s on Linux), so the
    # tuple is not given to another client before then (docs/datapath.md).
    tcp_time_wait_timeout: int = 60
    snat_keep_port: bool = True  # a new flow tries the client's source port first


# The planner refuses a desired state that does not fit the data path's capacity.
Limits = Capacity


@dataclass(frozen=True, slots=True)
class FrontendRecord:
    service_id: int
    nat: NatMode
    snat_addresses: tuple[IPAddress, ...] = ()

    @property
    def snat_address(self) -> IPAddress | None:
        return self.snat_addresses[0] if self.snat_addresses else None


@dataclass(frozen=True)
class ActualState:
    """What the pinned maps hold, as read back by the reader."""

    frontends: Mapping[FrontendKey, FrontendRecord] = field(default_factory=dict)
    backends: Mapping[int, Endpoint] = field(default_factory=dict)
    table_digests: Mapping[int, int] = field(default_factory=dict)
    tables: frozenset[int] = frozenset()  # service ids that have a table
    vips: Mapping[IPAddress, int] = field(default_factory=dict)
    config: DataplaneConfig | None = None
    owners: Mapping[int, str] = field(default_factory=dict)  # service id -> route
    members: Mapping[tuple[int, int], int] = field(default_factory=dict)  # (service, backend) -> weight x 1000


# -- operations, in the order a plan lists them ------------------------------------------
# Slotted: a cold plan at 10,000 routes holds 190,000 of them at once.
@dataclass(frozen=True, slots=True)
class PutConfig:
    config: DataplaneConfig


@dataclass(frozen=True, slots=True)
class PutBackend:
    backend_id: int
    endpoint: Endpoint
    fresh: bool  # a new id: its counters start from zero


@dataclass(frozen=True, eq=False, slots=True)
class PutTable:
    service_id: int
    slots: np.ndarray
    digest: int


@dataclass(frozen=True, slots=True)
class PutFrontend:
    key: FrontendKey
    record: FrontendRecord
    fresh: bool


@dataclass(frozen=True, slots=True)
class PutVip:
    address: IPAddress
    count: int


@dataclass(frozen=True, slots=True)
class PutOwner:
    service_id: int
    owner: str


@dataclass(frozen=True, slots=True)
class PutMember:
    service_id: int
    backend_id: int
    weight_milli: int


@dataclass(frozen=True, slots=True)
class DeleteMember:
    service_id: int
    backend_id: int


@dataclass(frozen=True, slots=True)
class DeleteOwner:
    service_id: int


@dataclass(frozen=True, slots=True)
class DeleteFrontend:
    key: FrontendKey


@dataclass(frozen=True, slots=True)
class DeleteVip:
    address: IPAddress


@dataclass(frozen=True, slots=True)
class DeleteTable:
    service_id: int


@dataclass(frozen=True, slots=True)
class DeleteBackend:
    backend_id: int


Op = (PutConfig | PutBackend | PutTable | PutFrontend | PutOwner | PutMember | PutVip
      | DeleteFrontend | DeleteMember | DeleteOwner | DeleteVip | DeleteTable | DeleteBackend)


class PlanError(ValueError):
    """The desired state cannot be programmed (capacity, address family, SNAT address)."""


@dataclass(frozen=True)
class Plan:
    ops: tuple[Op, ...]
    service_ids: Mapping[FrontendKey, int]
    backend_ids: Mapping[Endpoint, int]

    def __bool__(self) -> bool:
        return bool(self.ops)


def plan(desired: DesiredState, actual: ActualState, config: DataplaneConfig,
         limits: Limits = Limits()) -> Plan:
    services = desired.by_frontend()
    _validate(services.values(), limits)
    # Sorted by precomputed keys: the models' __lt__ would build two keys per comparison.
    ordered = sorted(services.items(), key=lambda item: item[0].sort_key())
    service_ids = _assign_ids([k for k, _ in ordered], {k: r.service_id for k, r in actual.frontends.items()},
                              range(0, limits.max_services), "frontends")
    wanted_backends = sorted({b.endpoint for s in services.values() for b in s.backends},
                             key=Endpoint.sort_key)
    backend_ids = _assign_ids(wanted_backends, {ep: i for i, ep in actual.backends.items()},
                              range(1, limits.max_backends), "backends")

    ops: list[Op] = []
    if actual.config != config:
        ops.append(PutConfig(config))
    for endpoint in wanted_backends:
        backend_id = backend_ids[endpoint]
        if actual.backends.get(backend_id) != endpoint:
            ops.append(PutBackend(backend_id, endpoint, fresh=backend_id not in actual.backends))
    stale: list[tuple[int, Members, int, int]] = []
    for key, service in ordered:
        service_id = service_ids[key]
        members = table_members(service, backend_ids)
        size = service_table_size(service, members, limits.maglev_size)
        written = actual.table_digests.get(service_id) if service_id in actual.tables else None
        # Only a table whose inputs differ from those of the one in the kernel is built:
        # an unchanged service costs a hash of its members, not a Maglev fill, also in a
        # freshly restarted agent.
        digest = table_digest(members, size, config.hash_seed)
        if digest != written:
            stale.append((service_id, members, size, digest))
    # All at once: build_tables fills tables of one shape together.
    built = _build_tables([(members, size) for _, members, size, _ in stale], config.hash_seed)
    ops += [PutTable(service_id, slots, digest)
            for (service_id, _, _, digest), slots in zip(stale, built)]
    for key, service in ordered:
        record = FrontendRecord(service_ids[key], service.nat,
                                service.snat_addresses if service.nat is NatMode.SNAT else ())
        current = actual.frontends.get(key)
        if current != record:
            ops.append(PutFrontend(key, record, fresh=current is None
                                   or current.service_id != record.service_id))
    owners = {service_ids[k]: s.owner.encode()[:119].decode(errors="ignore") for k, s in services.items()}
    ops += [PutOwner(i, o) for i, o in sorted(owners.items()) if actual.owners.get(i) != o]
    members = {(service_ids[k], backend_ids[b.endpoint]): round(b.weight * WEIGHT_SCALE)
               for k, s in services.items() for b in s.backends}
    ops += [PutMember(s, b, w) for (s, b), w in sorted(members.items()) if actual.members.get((s, b)) != w]
    vips = _count(s.frontend.address for s in services.values())
    ops += [PutVip(a, n) for a, n in sorted(vips.items(), key=lambda item: address_order(item[0]))
            if actual.vips.get(a) != n]
    ops += [DeleteFrontend(k) for k in sorted(actual.frontends, key=FrontendKey.sort_key)
            if k not in services]
    ops += [DeleteMember(s, b) for s, b in sorted(actual.members) if (s, b) not in members]
    ops += [DeleteOwner(i) for i in sorted(actual.owners) if i not in owners]
    ops += [DeleteVip(a) for a in sorted(actual.vips, key=address_order) if a not in vips]
    live_ids = set(service_ids.values())
    ops += [DeleteTable(i) for i in sorted(actual.tables) if i not in live_ids]
    live_backends = set(backend_ids.values())
    ops += [DeleteBackend(i) for i in sorted(actual.backends) if i not in live_backends]
    return Plan(tuple(ops), service_ids, backend_ids)


def maglev_key(endpoint: Endpoint) -> bytes:
    """A backend's identity for table placement: the same on every node."""
    return str(endpoint).encode()


REJECT_KEY = b"reject"


def table_for(service: Service, backend_ids: Mapping[Endpoint, int], cap: int,
              seed: int) -> tuple[np.ndarray, int]:
    """The service's Maglev table (at its size, at most `cap`) and the digest of its
    inputs. A service whose weights are all zero gets a table of the reject share: new
    flows are refused, not lost."""
    members = table_members(service, backend_ids)
    return _build(members, service_table_size(service, members, cap), seed)


Members = tuple[tuple[bytes, int, float], ...]


def table_members(service: Service, backend_ids: Mapping[Endpoint, int]) -> Members:
    """What a service's table is a pure function of (with the size and the seed)."""
    members = tuple(
        (maglev_key(b.endpoint), backend_ids[b.endpoint], float(b.weight))
        for b in service.backends if b.weight > 0
    )
    if service.reject_weight > 0 or not members:
        members += ((REJECT_KEY, 0, float(service.reject_weight) or 1.0),)
    return tuple(sorted(members))


def service_table_size(service: Service, members: Members, cap: int) -> int:
    """The service's table size: sized by every backend it lists, drained (weight 0) ones
    included, so that draining a backend and bringing it back keeps the size, and with it
    Maglev's minimal disruption."""
    has_reject = any(key == REJECT_KEY for key, _, _ in members)
    return table_size(len(service.backends) + has_reject, cap)


# The members tuple hashes in C; the digest costs more (13 us). Small: a full plan of
# a large configuration (a repair) would keep every service's members alive (12 MiB at
# 10,000 routes) to save 0.13 s; an edit computes only the digests it changes.
@functools.lru_cache(maxsize=1 << 10)
def table_digest(members: Members, size: int, seed: int) -> int:
    """Identifies a table by what it is a pure function of: its members, the size, the
    seed and the placement version. Stored beside each table in the kernel, so that a
    plan (even the first one after a restart) rebuilds only the tables whose inputs
    changed."""
    text = repr((PLACEMENT_VERSION, members, size, seed)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def _build(members: Members, size: int, seed: int) -> tuple[np.ndarray, int]:
    return _build_tables([(members, size)], seed)[0], table_digest(members, size, seed)


# Tables themselves are kept only for a few services (several addresses of one Gateway
# share one table; an edit that is undone gets its old table back); the digests are
# what save the rebuilds.
_TABLE_CACHE: OrderedDict[tuple[Members, int, int], np.ndarray] = OrderedDict()
_TABLE_CACHE_SIZE = 64


def _build_tables(requests: list[tuple[Members, int]], seed: int) -> list[np.ndarray]:
    """The (read-only) tables of (members, size) requests, in order."""
    missing = [r for r in dict.fromkeys(requests) if (*r, seed) not in _TABLE_CACHE]
    built = dict(zip(missing, build_tables(
        [([MaglevBackend(k, i, w) for k, i, w in members], size) for members, size in missing],
        seed)))
    for slots in built.values():
        slots.setflags(write=False)
    tables = [built[r] if r in built else _TABLE_CACHE[(*r, seed)] for r in requests]
    for request, slots in zip(requests, tables):
        _TABLE_CACHE[(*request, seed)] = slots
        _TABLE_CACHE.move_to_end((*request, seed))
    while len(_TABLE_CACHE) > _TABLE_CACHE_SIZE:
        _TABLE_CACHE.popitem(last=False)
    return tables


def forget_tables() -> None:
    """Empties the table and digest memos: after a full plan they hold its last
    services, which an edit seldom asks for again, spread over the memory of that
    plan's temporaries (with ``Written.compacted``, 9 MiB at 10,000 routes)."""
    table_digest.cache_clear()
    _TABLE_CACHE.clear()


def _validate(services: Iterable[Service], limits: Limits) -> None:
    services = list(services)
    if len(services) > limits.max_services:
        raise PlanError(f"{len(services)} frontends exceed the data path's capacity of "
                        f"{limits.max_services} (--max-services)")
    endpoints = {b.endpoint for s in services for b in s.backends}
    if len(endpoints) > limits.max_backends - 1:
        raise PlanError(f"{len(endpoints)} backends exceed the data path's capacity of "
                        f"{limits.max_backends - 1} (--max-backends)")
    _validate_each(services)


def _validate_each(services: Iterable[Service]) -> None:
    for s in services:
        who = s.owner or str(s.frontend)
        for b in s.backends:
            if b.endpoint.address.version != s.frontend.address.version:
                raise PlanError(f"{who}: backend {b.endpoint} is not of the frontend's address "
                                f"family ({s.frontend})")
            if b.weight < 0:
                raise PlanError(f"{who}: backend {b.endpoint} has negative weight {b.weight}")
        if s.nat is NatMode.SNAT:
            if not s.snat_addresses:
                raise PlanError(f"{who}: SNAT mode needs a SNAT address for {s.frontend}")
            if len(s.snat_addresses) > SNAT_MAX_ADDRS:
                raise PlanError(f"{who}: {len(s.snat_addresses)} SNAT addresses for "
                                f"{s.frontend}, at most {SNAT_MAX_ADDRS} are supported")
            for a in s.snat_addresses:
                if a.version != s.frontend.address.version:
                    raise PlanError(f"{who}: SNAT address {a} is not of the "
                                    f"frontend's address family ({s.frontend})")


def _assign_ids(wanted, existing: Mapping, pool: range, what: str) -> dict:
    """Keeps the ids that wanted items already have; gives new ones the lowest id that
    nothing holds now. Ids of items this plan deletes are not reused in the same plan:
    until the delete runs, packets may still look them up."""
    ids = {item: existing[item] for item in wanted if item in existing}
    used = set(existing.values())
    free = (i for i in pool if i not in used)
    for item in wanted:
        if item not in ids:
            try:
                ids[item] = next(free)
            except StopIteration:
                raise PlanError(f"no free id left for {what}") from None
    return ids


def _count(addresses: Iterable[IPAddress]) -> dict[IPAddress, int]:
    counts: dict[IPAddress, int] = {}
    for a in addresses:
        counts[a] = counts.get(a, 0) + 1
    return counts



# -- planning an edit against what was written -------------------------------------------
def member_weights(service: Service, backend_ids: Mapping[Endpoint, int]) -> dict[int, int]:
    """A service's entries of the members map: backend id -> weight x WEIGHT_SCALE."""
    return {backend_ids[b.endpoint]: round(b.weight * WEIGHT_SCALE) for b in service.backends}


_ABSENT = object()


class WrittenMembers(Mapping[tuple[int, int], int]):
    """The members map as a plan for ``desired`` leaves it, computed from the desired
    services and their ids when asked for instead of kept: a plan writes exactly these
    entries and deletes every other, and at 10,000 routes keeping them took 80,000
    (service id, backend id) tuples in a dict of as many entries (7 MiB). Read when
    the maps are compared with what was written (a read-back, rare); an edit is
    planned from the services it replaces. Its mappings are the Written's own."""

    __slots__ = ("_desired", "_service_index", "_backend_index", "_backends", "_shared", "_keys")

    def __init__(self, desired: Mapping[FrontendKey, Service], service_index: Mapping[FrontendKey, int],
                 backend_index: Mapping[Endpoint, int], backends: Mapping[int, Endpoint],
                 shared: Mapping[Endpoint, int]) -> None:
        self._desired, self._service_index, self._backend_index = desired, service_index, backend_index
        self._backends = backends  # backend id -> endpoint (the Written's actual.backends)
        self._shared = shared  # the Written's shared_endpoints: the users of each shared endpoint
        self._keys: dict[int, FrontendKey] | None = None  # service id -> frontend, when first needed

    def _pairs(self) -> Iterator[tuple[tuple[int, int], int]]:
        for key, service in self._desired.items():
            service_id = self._service_index[key]
            for backend_id, weight in member_weights(service, self._backend_index).items():
                yield (service_id, backend_id), weight

    def get(self, member: tuple[int, int], default: object = None) -> object:
        # A read-back looks members up in the map's order (by hash bucket): one service's
        # backends scanned for one endpoint, no mapping made per lookup.
        service_id, backend_id = member
        if self._keys is None:
            self._keys = {i: k for k, i in self._service_index.items()}
        key, endpoint = self._keys.get(service_id), self._backends.get(backend_id)
        if key is None or endpoint is None:
            return default
        weight = None
        wanted = endpoint._hash  # the hash an Endpoint keeps: read, not called
        for b in self._desired[key].backends:
            if b.endpoint is endpoint or (b.endpoint._hash == wanted and b.endpoint == endpoint):
                weight = b.weight  # the last listing wins, as in member_weights
        return default if weight is None else round(weight * WEIGHT_SCALE)

    def __getitem__(self, member: tuple[int, int]) -> int:
        found = self.get(member, _ABSENT)
        if found is _ABSENT:
            raise KeyError(member)
        return cast(int, found)

    def __contains__(self, member: object) -> bool:
        return isinstance(member, tuple) and self.get(member, _ABSENT) is not _ABSENT

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return (member for member, _ in self._pairs())

    def __len__(self) -> int:
        # One member per service using each endpoint, and every endpoint written is used
        # (Written.users): counted from the few shared endpoints, not from every service's
        # backends (30-100 ms at 10,000 routes, at the end of each read-back).
        return len(self._backend_index) + sum(n - 1 for n in self._shared.values())

    def items(self) -> ItemsView[tuple[int, int], int]:
        return _PairsView(self)

    def __eq__(self, other: object) -> bool:
        # As Mapping's, without looking each entry up by its key.
        if not isinstance(other, Mapping):
            return NotImplemented
        count = 0
        for member, weight in self._pairs():
            if other.get(member) != weight:
                return False
            count += 1
        return count == len(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"WrittenMembers({dict(self)!r})"


class _PairsView(ItemsView):
    def __iter__(self) -> Iterator[tuple[tuple[int, int], int]]:
        return self._mapping._pairs()


@dataclass(frozen=True)
class Written:
    """What the agent last wrote: the desired state it planned for and the maps as that
    plan left them, with the indexes the next plan would otherwise rebuild from all of
    it (which services use each endpoint, the id of each endpoint and frontend)."""

    desired: Mapping[FrontendKey, Service]
    actual: ActualState
    # The services using each endpoint, for the endpoints more than one service uses;
    # every other endpoint in backend_index has one (at 10,000 routes of distinct
    # backends, a count for each was a dict of 80,000 entries: 2.5 MiB).
    shared_endpoints: Mapping[Endpoint, int]
    backend_index: Mapping[Endpoint, int]
    service_index: Mapping[FrontendKey, int]
    # The desired services in their order, when no frontend is listed twice: an edit
    # that replaced services in place is then found by identity, position by position.
    services: tuple[Service, ...] | None = None

    @classmethod
    def after(cls, desired: DesiredState, actual: ActualState, result: Plan) -> Written:
        """After a full plan of `desired` against `actual` was executed."""
        services = desired.by_frontend()
        users: dict[Endpoint, int] = {}
        for service in services.values():
            for endpoint in {b.endpoint for b in service.backends}:
                users[endpoint] = users.get(endpoint, 0) + 1
        after = applied(actual, result.ops, members=False)
        backend_index = {ep: i for i, ep in after.backends.items()}
        service_index = {k: r.service_id for k, r in after.frontends.items() if k in services}
        shared = {e: n for e, n in users.items() if n > 1}
        after = replace(after, members=WrittenMembers(services, service_index, backend_index, after.backends, shared))
        return cls(services, after, shared, backend_index, service_index,
                   desired.services if len(services) == len(desired.services) else None)

    def compacted(self) -> Written:
        """The same state, in objects made now. Called once a plan's operations and
        temporaries are freed: what the Written keeps that the plan made (the ids, the
        frontend records, owners and digests, 100,000s at 10,000 routes) is spread
        over the memory those temporaries took, and keeps it from being returned."""
        ids: dict[int, int] = {}

        def fresh(i: int) -> int:
            found = ids.get(i)
            if found is None:
                found = ids[i] = i + 0  # a new int object (one per id, shared as before)
            return found

        a = self.actual
        backend_index = {e: fresh(i) for e, i in self.backend_index.items()}
        service_index = {k: fresh(i) for k, i in self.service_index.items()}
        desired = dict(self.desired)
        actual = ActualState(
            {k: FrontendRecord(fresh(r.service_id), r.nat, r.snat_addresses) for k, r in a.frontends.items()},
            {fresh(i): e for i, e in a.backends.items()},
            {fresh(i): d + 0 for i, d in a.table_digests.items()},
            frozenset(fresh(i) for i in a.tables),
            dict(a.vips), a.config,
            {fresh(i): "".join(o) for i, o in a.owners.items()},  # join: a new str, not the same
            {})
        shared = dict(self.shared_endpoints)
        actual = replace(actual, members=WrittenMembers(desired, service_index, backend_index, actual.backends, shared)
                         if isinstance(a.members, WrittenMembers)
                         else {(fresh(s), fresh(b)): w for (s, b), w in a.members.items()})
        return Written(desired, actual, shared, backend_index, service_index, self.services)

    def users(self, endpoint: Endpoint) -> int:
        """How many desired services use `endpoint` (each backend written is used)."""
        return self.shared_endpoints.get(endpoint) or (1 if endpoint in self.backend_index else 0)


def _edited_services(desired: DesiredState, written: Written
                     ) -> tuple[dict[FrontendKey, Service], dict[FrontendKey, Service] | None,
                                list[FrontendKey], list[FrontendKey]]:
    """The services that changed or are new (by frontend); the desired services by
    frontend when they are not the written ones with those replaced in place (None
    when they are: frontends neither added nor removed); the frontends whose service
    changed, and those removed, in frontend order."""
    old, before, now = written.desired, written.services, desired.services
    if before is not None and len(before) == len(now):
        positions = list(compress(range(len(now)), map(is_not, before, now)))
        if all(before[i].frontend == now[i].frontend for i in positions):
            replaced = {now[i].frontend: now[i] for i in positions if before[i] != now[i]}
            return replaced, None, sorted(replaced, key=FrontendKey.sort_key), []
    services = desired.by_frontend()
    changed = sorted((k for k, s in services.items() if (o := old.get(k)) is not s and o != s),
                     key=FrontendKey.sort_key)
    removed = sorted((k for k in old if k not in services), key=FrontendKey.sort_key)
    return {k: services[k] for k in changed}, services, changed, removed


def applied(actual: ActualState, ops: Iterable[Op], members: bool = True) -> ActualState:
    """What the maps hold once the writer has executed ``ops`` on maps holding ``actual``
    (without ``members``: but for the members map, left empty)."""
    copy = ActualState(dict(actual.frontends), dict(actual.backends), dict(actual.table_digests), actual.tables,
                       dict(actual.vips), actual.config, dict(actual.owners), dict(actual.members) if members else {})
    return applied_in_place(copy, ops, members)


def applied_in_place(actual: ActualState, ops: Iterable[Op], members_too: bool = True) -> ActualState:
    """``applied(actual, ops)``, changing the mappings of ``actual`` instead of copying
    them (only for containers nothing else holds: a Written's, a read-back's rows).
    Without ``members_too`` the members map is left as it is (a Written's is computed,
    WrittenMembers)."""
    frontends, backends, digests = cast(dict, actual.frontends), cast(dict, actual.backends), cast(dict, actual.table_digests)
    vips, owners, members = cast(dict, actual.vips), cast(dict, actual.owners), cast(dict, actual.members)
    tables_added, tables_removed, config = set(), set(), actual.config
    for op in ops:
        match op:
            case PutConfig(c):
                config = c
            case PutBackend(i, endpoint, _):
                backends[i] = endpoint
            case PutTable(i, _, digest):
                tables_added.add(i)
                tables_removed.discard(i)
                digests[i] = digest
            case PutFrontend(key, record, _):
                frontends[key] = record
            case PutOwner(i, owner):
                owners[i] = owner
            case PutMember(i, b, weight):
                if members_too:
                    members[(i, b)] = weight
            case DeleteMember(i, b):
                if members_too:
                    members.pop((i, b), None)
            case DeleteOwner(i):
                owners.pop(i, None)
            case PutVip(address, count):
                vips[address] = count
            case DeleteFrontend(key):
                frontends.pop(key, None)
            case DeleteVip(address):
                vips.pop(address, None)
            case DeleteTable(i):
                tables_removed.add(i)
                tables_added.discard(i)
                digests.pop(i, None)
            case DeleteBackend(i):
                backends.pop(i, None)
    tables = actual.tables
    if not tables_added <= tables or tables_removed & tables:
        tables = (tables | tables_added) - tables_removed
    return ActualState(frontends, backends, digests, tables, vips, config, owners, members)


def plan_edit(desired: DesiredState, written: Written, config: DataplaneConfig,
              limits: Limits = Limits()) -> tuple[Plan, Written]:
    """The plan ``plan(desired, written.actual, ...)`` would make, looking only at the
    services that differ from the last desired state (an unchanged Service is the same
    object, or equal), and what is written once it is executed.

    ``written`` is consumed: the Written returned is made of its mappings, updated in
    place (copying them cost milliseconds per edit at 10,000 routes, and left hundreds
    of thousands of fresh references for the garbage collector's next young pass), and
    so are the returned plan's ids. Nothing is changed when PlanError is raised.

    Right only while the maps hold ``written.actual``: the agent reads them back now and
    then (``Dataplane``) so that drift is still repaired by a full plan."""
    old, actual = written.desired, written.actual
    replaced, fresh, changed, removed = _edited_services(desired, written)
    count = len(fresh) if fresh is not None else len(old)
    if count > limits.max_services:
        raise PlanError(f"{count} frontends exceed the data path's capacity of "
                        f"{limits.max_services} (--max-services)")
    _validate_each([replaced[k] for k in changed])

    # Endpoint users after the edit, as changes to the written counts.
    users, delta = written.users, {}
    dropped: set[Endpoint] = set()
    for key in (*changed, *removed):
        if key in old:
            for endpoint in {b.endpoint for b in old[key].backends}:
                delta[endpoint] = delta.get(endpoint, 0) - 1
                dropped.add(endpoint)
    for key in changed:
        for endpoint in {b.endpoint for b in replaced[key].backends}:
            delta[endpoint] = delta.get(endpoint, 0) + 1
    index = written.backend_index
    gone = {endpoint for endpoint in dropped if users(endpoint) + delta[endpoint] == 0}
    added = sum(1 for endpoint, d in delta.items() if d > 0 and endpoint not in index)
    if len(index) + added - len(gone) > limits.max_backends - 1:
        raise PlanError(f"{len(index) + added - len(gone)} backends exceed the data path's capacity of "
                        f"{limits.max_backends - 1} (--max-backends)")
    new_endpoints = sorted({b.endpoint for k in changed for b in replaced[k].backends if b.endpoint not in index},
                           key=Endpoint.sort_key)
    new_backend_ids = _new_ids(new_endpoints, actual.backends, range(1, limits.max_backends), "backends")
    backend_ids = ChainMap(new_backend_ids, index)
    new_keys = [k for k in changed if k not in actual.frontends]
    new_service_ids = {}
    if new_keys:
        used = {r.service_id for r in actual.frontends.values()}
        new_service_ids = _new_ids(new_keys, used, range(0, limits.max_services), "frontends")
    service_ids = ChainMap(new_service_ids, written.service_index)

    ops: list[Op] = []
    if actual.config != config:
        ops.append(PutConfig(config))
    ops += [PutBackend(backend_ids[ep], ep, fresh=backend_ids[ep] not in actual.backends) for ep in new_endpoints]
    stale = []
    for key in changed:
        service_id = service_ids[key]
        members = table_members(replaced[key], backend_ids)
        size = service_table_size(replaced[key], members, limits.maglev_size)
        digest = table_digest(members, size, config.hash_seed)
        if digest != (actual.table_digests.get(service_id) if service_id in actual.tables else None):
            stale.append((service_id, members, size, digest))
    built = _build_tables([(members, size) for _, members, size, _ in stale], config.hash_seed)
    ops += [PutTable(service_id, slots, digest) for (service_id, _, _, digest), slots in zip(stale, built)]
    for key in changed:
        service = replaced[key]
        record = FrontendRecord(service_ids[key], service.nat,
                                service.snat_addresses if service.nat is NatMode.SNAT else ())
        current = actual.frontends.get(key)
        if current != record:
            ops.append(PutFrontend(key, record, fresh=current is None or current.service_id != record.service_id))
    owners = {service_ids[k]: replaced[k].owner.encode()[:119].decode(errors="ignore") for k in changed}
    ops += [PutOwner(i, o) for i, o in sorted(owners.items()) if actual.owners.get(i) != o]
    members_now = {(service_ids[k], backend_ids[b.endpoint]): round(b.weight * WEIGHT_SCALE)
                   for k in changed for b in replaced[k].backends}
    # What the members map holds for the services replaced or removed: what was planned
    # for them (WrittenMembers); a new frontend's id is one no written entry has.
    members_before = {(actual.frontends[k].service_id, index[b.endpoint]): round(b.weight * WEIGHT_SCALE)
                      for k in (*changed, *removed) if k in old and k in actual.frontends
                      for b in old[k].backends}
    ops += [PutMember(s, b, w) for (s, b), w in sorted(members_now.items()) if members_before.get((s, b)) != w]
    vips = {}
    for key in changed:
        if key not in old:
            vips[key.address] = vips.get(key.address, actual.vips.get(key.address, 0)) + 1
    for key in removed:
        vips[key.address] = vips.get(key.address, actual.vips.get(key.address, 0)) - 1
    touched = sorted({k.address for k in (*changed, *removed)}, key=address_order)
    now_vips = {a: vips.get(a, actual.vips.get(a, 0)) for a in touched}
    ops += [PutVip(a, now_vips[a]) for a in touched if now_vips[a] > 0 and actual.vips.get(a) != now_vips[a]]
    ops += [DeleteFrontend(k) for k in removed if k in actual.frontends]
    ops += [DeleteMember(s, b) for s, b in sorted(members_before.keys() - members_now.keys())]
    removed_ids = sorted(actual.frontends[k].service_id for k in removed if k in actual.frontends)
    ops += [DeleteOwner(i) for i in removed_ids if i in actual.owners]
    ops += [DeleteVip(a) for a in touched if now_vips[a] <= 0 and a in actual.vips]
    ops += [DeleteTable(i) for i in removed_ids if i in actual.tables]
    ops += [DeleteBackend(i) for i in sorted(index[ep] for ep in gone if ep in index)]

    # Nothing raises from here on: the written mappings become the new ones.
    shared, index_now = cast(dict, written.shared_endpoints), cast(dict, index)
    for endpoint, n in [(endpoint, users(endpoint) + d) for endpoint, d in delta.items()]:
        if n > 1:
            shared[endpoint] = n
        else:
            shared.pop(endpoint, None)
    index_now.update(new_backend_ids)
    for endpoint in gone:
        index_now.pop(endpoint, None)
    service_index = cast(dict, written.service_index)
    service_index.update(new_service_ids)
    for key in removed:
        service_index.pop(key, None)
    if fresh is None:
        services = cast(dict, old)
        services.update(replaced)
    else:
        services = fresh
    result = Plan(tuple(ops), service_index, index_now)
    positional = written.services is not None and len(services) == len(desired.services)
    after = replace(applied_in_place(actual, result.ops, members_too=False),
                    members=WrittenMembers(services, service_index, index_now, actual.backends, shared))
    return result, Written(services, after, shared, index_now, service_index,
                           desired.services if positional else None)


def _new_ids(wanted: list, used: Container[int], pool: range, what: str) -> dict:
    """The lowest ids nothing holds now, for items that have none (as _assign_ids)."""
    free = (i for i in pool if i not in used)
    ids = {}
    for item in wanted:
        try:
            ids[item] = next(free)
        except StopIteration:
            raise PlanError(f"no free id left for {what}") from None
    return ids
