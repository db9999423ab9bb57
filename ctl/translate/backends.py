"""backendRefs to Services to weighted endpoints.

Resolution (for ResolvedRefs) checks, in order: the kind (core Service only), the
namespace (a cross-namespace reference needs a ReferenceGrant in the target namespace),
that the Service exists and is not ExternalName, that it has the referenced port, and
that the port speaks the route's transport. The first failing reference of the route
gives the condition's reason; the message lists all of them.

Traffic: a backendRef's weight is spread equally over the endpoints of its Service port
(ready ones; serving-and-terminating ones only when none is ready, and otherwise kept at
weight 0 so their live flows drain; the frontend's address family only). A reference
that failed, or resolved to no endpoints, keeps its weight as the reject share, which
the data path refuses (TCP RST, UDP drop) instead of silently shifting it onto the others.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass, replace

from ctl.api import GATEWAY_GROUP, BackendRef, EndpointPort, Route, Service, ServicePort
from ctl.api.core import parse_ip_address
from ctl.model import Endpoint, WeightedEndpoint
from ctl.translate.conditions import Reason
from ctl.translate.index import SnapshotIndex


@dataclass(frozen=True, slots=True)
class BackendResolution:
    rule_index: int
    ref_index: int
    ref: BackendRef
    namespace: str
    service: Service | None = None
    port: ServicePort | None = None
    failure: tuple[Reason, str] | None = None
    # Set for the backendRef of a RequestMirror filter (rules[i].filters[k]): it takes no
    # share of the traffic, but its resolution counts for ResolvedRefs all the same.
    filter_index: int | None = None

    @property
    def where(self) -> str:
        if self.filter_index is not None:
            return f"rules[{self.rule_index}].filters[{self.filter_index}].requestMirror.backendRef"
        return f"rules[{self.rule_index}].backendRefs[{self.ref_index}]"


def resolve_backends(route: Route, index: SnapshotIndex) -> tuple[BackendResolution, ...]:
    resolutions = []
    for i, rule in enumerate(route.spec.rules):
        resolutions += [resolve_reference(route, i, j, ref, index) for j, ref in enumerate(rule.backend_refs)]
        for k, route_filter in enumerate(getattr(rule, "filters", ())):
            mirror = route_filter.request_mirror if route_filter.type == "RequestMirror" else None
            if mirror is not None:
                target = mirror.backend_ref
                ref = BackendRef(
                    group=target.group, kind=target.kind, name=target.name, namespace=target.namespace, port=target.port
                )
                resolutions.append(resolve_reference(route, i, -1, ref, index, filter_index=k))
    return tuple(resolutions)


def resolve_reference(
    route: Route, rule_index: int, ref_index: int, ref: BackendRef, index: SnapshotIndex, *, filter_index: int | None = None
) -> BackendResolution:
    namespace = ref.namespace or route.namespace
    resolution = BackendResolution(rule_index, ref_index, ref, namespace, filter_index=filter_index)

    def fail(reason: Reason, message: str) -> BackendResolution:
        return replace(resolution, failure=(reason, f"{resolution.where}: {message}"))

    target = f"Service {namespace}/{ref.name}"
    if ref.group != "" or ref.kind != "Service":
        group = ref.group or "core"
        return fail(Reason.INVALID_KIND, f"{ref.kind} ({group}) is not a supported backend kind; only Service is")
    if namespace != route.namespace and not _granted(route, namespace, ref.name, index):
        return fail(Reason.REF_NOT_PERMITTED, f"{target} is in another namespace and no ReferenceGrant allows it")
    service = index.services.get((namespace, ref.name))
    if service is None:
        return fail(Reason.BACKEND_NOT_FOUND, f"{target} not found")
    if service.spec.type == "ExternalName":
        return fail(Reason.INVALID_KIND, f"{target} is an ExternalName Service, which is not supported")
    # One port number may be listed once per protocol (DNS: 53/TCP and 53/UDP).
    numbered = [p for p in service.spec.ports if p.port == ref.port]
    if not numbered:
        return fail(Reason.BACKEND_NOT_FOUND, f"{target} has no port {ref.port}")
    port = next((p for p in numbered if p.protocol == route.TRANSPORT), None)
    if port is None:
        protocols = "/".join(p.protocol for p in numbered)
        return fail(
            Reason.UNSUPPORTED_PROTOCOL,
            f"{target} port {ref.port} is {protocols}, but a {route.KIND} needs {route.TRANSPORT}",
        )
    return replace(resolution, service=service, port=port)


def _granted(route: Route, namespace: str, service_name: str, index: SnapshotIndex) -> bool:
    for grant in index.grants_by_namespace.get(namespace, ()):
        from_route = any(
            f.group == GATEWAY_GROUP and f.kind == route.KIND and f.namespace == route.namespace for f in grant.spec.from_
        )
        to_service = any(t.group == "" and t.kind == "Service" and t.name in (None, "", service_name) for t in grant.spec.to)
        if from_route and to_service:
            return True
    return False


def endpoints_of(service: Service, port: ServicePort, family: int, index: SnapshotIndex) -> tuple[Endpoint, ...]:
    """The endpoints that take new flows: the ready ones, else the serving-and-terminating."""
    ready, terminating = _classified(service, port, family, index)
    return ready or terminating


def draining_endpoints_of(service: Service, port: ServicePort, family: int, index: SnapshotIndex) -> tuple[Endpoint, ...]:
    """Serving-and-terminating endpoints while ready ones exist: they take no new flows
    but keep the ones they have (a rolling update must not cut live connections)."""
    ready, terminating = _classified(service, port, family, index)
    return tuple(e for e in terminating if e not in ready) if ready else ()




def _classified(service: Service, port: ServicePort, family: int,
                index: SnapshotIndex) -> tuple[tuple[Endpoint, ...], tuple[Endpoint, ...]]:
    address_type = "IPv4" if family == 4 else "IPv6"
    ready: set[Endpoint] = set()
    terminating: set[Endpoint] = set()
    for endpoint_slice in index.slices_by_service.get((service.namespace, service.name), ()):
        if endpoint_slice.address_type != address_type:
            continue
        slice_port = _matching_port(endpoint_slice.ports, port, service)
        if slice_port is None or slice_port.port is None:
            continue
        for endpoint in endpoint_slice.endpoints:
            conditions = endpoint.conditions
            is_ready = conditions.ready is not False
            is_serving = conditions.serving if conditions.serving is not None else is_ready
            # Kubernetes consumers use the first address; the rest are fungible copies.
            address = Endpoint(parse_ip_address(endpoint.addresses[0]), slice_port.port)
            if is_ready:
                ready.add(address)
            elif is_serving and conditions.terminating:
                terminating.add(address)
    return tuple(sorted(ready, key=Endpoint.sort_key)), tuple(sorted(terminating, key=Endpoint.sort_key))


def _matching_port(slice_ports: Sequence[EndpointPort], port: ServicePort, service: Service) -> EndpointPort | None:
    """The slice port named like the Service port. For a one-port Service an unnamed
    slice port also matches: hand-written slices often leave the name out."""
    for candidate in slice_ports:
        if (candidate.name or "") == port.name and candidate.protocol == port.protocol:
            return candidate
    if len(service.spec.ports) == 1:
        for candidate in slice_ports:
            if not candidate.name and candidate.protocol == port.protocol:
                return candidate
    return None


@dataclass(frozen=True, slots=True)
class BackendPool:
    backends: tuple[WeightedEndpoint, ...]
    reject_weight: float


def backend_pool(resolutions: Sequence[BackendResolution], family: int, index: SnapshotIndex) -> BackendPool:
    """Weighted endpoints of the given backendRefs for one address family.

    When every weight is 0 nothing may receive new flows: the pool then rejects all of
    them (reject weight 1 against zero-weight backends, which only drain).
    """
    inputs = _pool_inputs(resolutions, family, index)
    return _POOLS.get(inputs) or _POOLS.put(inputs, _backend_pool(resolutions, family, index))


def _backend_pool(resolutions: Sequence[BackendResolution], family: int, index: SnapshotIndex) -> BackendPool:
    weights: dict[Endpoint, float] = defaultdict(float)
    reject = 0.0
    for resolution in resolutions:
        weight = float(resolution.ref.weight)
        if resolution.failure or resolution.service is None or resolution.port is None:
            reject += weight
            continue
        ready, terminating = _classified(resolution.service, resolution.port, family, index)
        endpoints = ready or terminating
        if not endpoints:
            reject += weight
            continue
        for endpoint in endpoints:
            weights[endpoint] += weight / len(endpoints)
        if ready:
            for endpoint in terminating:
                weights[endpoint] += 0.0  # drains: keeps its flows, gets no new ones
    if reject == 0 and not any(weights.values()):
        reject = 1.0
    return BackendPool(tuple(WeightedEndpoint(e, _shared_weight(weights[e])) for e in sorted(weights, key=Endpoint.sort_key)),
                       reject)


# Weights by value: nearly every endpoint's is one of a few (1/8 of a backendRef's
# weight...), and a float each took 2 MiB at 10,000 routes. Emptied when full.
_WEIGHTS: dict[float, float] = {}
_WEIGHTS_MAX = 1 << 12


def _shared_weight(weight: float) -> float:
    found = _WEIGHTS.get(weight)
    if found is None:
        if len(_WEIGHTS) >= _WEIGHTS_MAX:
            _WEIGHTS.clear()
        found = _WEIGHTS[weight] = weight
    return found


def _pool_inputs(resolutions: Sequence[BackendResolution], family: int, index: SnapshotIndex) -> tuple[Any, ...]:
    """Everything a pool is a function of, as the objects themselves: the parsed objects
    of files that did not change are the same objects from load to load (ParseCache)."""
    parts: list[Any] = [family]
    for resolution in resolutions:
        service = resolution.service
        slices = index.slices_by_service.get((service.namespace, service.name), ()) if service is not None else ()
        parts.append((resolution.ref.weight, resolution.failure is not None, service, resolution.port, slices))
    return tuple(parts)


class _IdentityMemo:
    """Results of a pure function of immutable objects, found again when it is called
    with the very same objects (compared by identity: pydantic models hash and compare
    by value, field by field, which would cost what the memo saves). An edit at 10,000
    routes re-translates every route; this recomputes only the pools whose Service or
    EndpointSlices changed. Holds what the last two translations used, no more.

    An incremental translation (``ctl.translate.incremental``) asks only for the pools of
    the listeners an edit touched, and starts no generation: each edit's new pool (and
    the objects it was made of) would stay until the next full translation, which may
    never come while only endpoints change. So a generation also ends once the current
    one has grown to twice what the last full translation used."""

    def __init__(self) -> None:
        self._current: dict[Any, tuple[Any, Any]] = {}
        self._previous: dict[Any, tuple[Any, Any]] = {}
        self._limit = _MIN_LIMIT

    def next_generation(self) -> None:
        self._limit = max(_MIN_LIMIT, 2 * len(self._current))
        self._rotate()

    def _rotate(self) -> None:
        self._previous, self._current = self._current, {}

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def get(self, inputs: tuple[Any, ...]) -> Any:
        key = _identities(inputs)
        found = self._current.get(key) or self._previous.get(key)
        if found is None or not _same_objects(found[0], inputs):
            return None
        self._current[key] = found
        return found[1]

    def put(self, inputs: tuple[Any, ...], result: Any) -> Any:
        if len(self._current) >= self._limit:
            self._rotate()  # the previous generation still answers: only long-unused pools go
        self._current[_identities(inputs)] = (inputs, result)  # the inputs stay alive: ids stay theirs
        return result


_MIN_LIMIT = 1024  # pools per generation, whatever the size of the last full translation
_VALUES = (int, float, str, type(None))  # compared by value (bool is an int)


def _identities(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_identities(item) for item in value)
    return value if isinstance(value, _VALUES) else id(value)


def _same_objects(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same_objects(x, y) for x, y in zip(a, b))
    if isinstance(a, _VALUES):
        return type(a) is type(b) and a == b
    return a is b


_POOLS = _IdentityMemo()


def new_translation() -> None:
    """Called once per translation: pools not used since the last one are dropped."""
    _POOLS.next_generation()
