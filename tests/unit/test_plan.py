"""Pure tier: planning map writes from desired state and what the maps hold."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address

import numpy as np
import pytest

from ctl.dataplane import plan as p
from ctl.model import (DesiredState, Endpoint, FrontendKey, NatMode, Protocol,
                                 Service, WeightedEndpoint)

LIMITS = p.Limits(maglev_size=251, max_services=8, max_backends=16)
CONFIG = p.DataplaneConfig(hash_seed=7)
SNAT = ip_address("10.0.0.1")


def svc(vip="192.0.2.1", port=80, backends=(("10.1.0.1", 1),), reject=0.0, proto=Protocol.TCP):
    return Service(FrontendKey(ip_address(vip), port, proto),
                   tuple(WeightedEndpoint(Endpoint(ip_address(a), 8080), w) for a, w in backends),
                   reject_weight=reject, snat_addresses=(SNAT,), owner="t")


def applied(actual: p.ActualState, result: p.Plan) -> p.ActualState:
    """What the maps hold after the writer executes `result` (a model of writer.apply)."""
    fe, be = dict(actual.frontends), dict(actual.backends)
    digests, tables, vips, config = dict(actual.table_digests), set(actual.tables), dict(actual.vips), actual.config
    owners, members = dict(actual.owners), dict(actual.members)
    for op in result.ops:
        match op:
            case p.PutConfig(c): config = c
            case p.PutBackend(i, ep, _): be[i] = ep
            case p.PutTable(i, _, d): tables.add(i); digests[i] = d
            case p.PutFrontend(k, r, _): fe[k] = r
            case p.PutOwner(i, o): owners[i] = o
            case p.PutMember(i, b, w): members[(i, b)] = w
            case p.DeleteMember(i, b): del members[(i, b)]
            case p.DeleteOwner(i): del owners[i]
            case p.PutVip(a, n): vips[a] = n
            case p.DeleteFrontend(k): del fe[k]
            case p.DeleteVip(a): del vips[a]
            case p.DeleteTable(i): tables.discard(i); digests.pop(i, None)
            case p.DeleteBackend(i): del be[i]
    return p.ActualState(fe, be, digests, frozenset(tables), vips, config, owners, members)


def kinds(result: p.Plan) -> list[str]:
    return [type(op).__name__ for op in result.ops]


def test_from_empty_maps_everything_is_written_make_before_break():
    desired = DesiredState((svc(backends=(("10.1.0.1", 1), ("10.1.0.2", 1))),))
    result = p.plan(desired, p.ActualState(), CONFIG, LIMITS)
    assert kinds(result) == ["PutConfig", "PutBackend", "PutBackend", "PutTable", "PutFrontend", "PutOwner",
                             "PutMember", "PutMember", "PutVip"]
    table = next(op for op in result.ops if isinstance(op, p.PutTable))
    assert set(np.unique(table.slots)) == {1, 2} and len(table.slots) == 251


def test_planning_twice_changes_nothing():
    desired = DesiredState((svc(), svc(port=53, proto=Protocol.UDP)))
    first = p.plan(desired, p.ActualState(), CONFIG, LIMITS)
    assert not p.plan(desired, applied(p.ActualState(), first), CONFIG, LIMITS)


def test_ids_are_stable_across_unrelated_changes():
    a, b = svc(port=80), svc(port=81, backends=(("10.1.0.9", 1),))
    first = p.plan(DesiredState((a, b)), p.ActualState(), CONFIG, LIMITS)
    actual = applied(p.ActualState(), first)
    second = p.plan(DesiredState((b,)), actual, CONFIG, LIMITS)
    assert second.service_ids[b.frontend] == first.service_ids[b.frontend]
    assert second.backend_ids == {Endpoint(ip_address("10.1.0.9"), 8080): first.backend_ids[Endpoint(ip_address("10.1.0.9"), 8080)]}


def test_removal_breaks_after_the_frontend_is_gone():
    a = svc(backends=(("10.1.0.1", 1),))
    actual = applied(p.ActualState(), p.plan(DesiredState((a,)), p.ActualState(), CONFIG, LIMITS))
    result = p.plan(DesiredState(()), actual, CONFIG, LIMITS)
    assert kinds(result) == ["DeleteFrontend", "DeleteMember", "DeleteOwner", "DeleteVip", "DeleteTable",
                             "DeleteBackend"]


def test_a_new_frontend_never_takes_the_id_of_one_deleted_in_the_same_plan():
    a, b = svc(port=80), svc(port=81)
    actual = applied(p.ActualState(), p.plan(DesiredState((a,)), p.ActualState(), CONFIG, LIMITS))
    result = p.plan(DesiredState((b,)), actual, CONFIG, LIMITS)
    assert result.service_ids[b.frontend] != actual.frontends[a.frontend].service_id


def test_weight_change_rewrites_only_that_table():
    a, b = svc(port=80, backends=(("10.1.0.1", 1), ("10.1.0.2", 1))), svc(port=81)
    actual = applied(p.ActualState(), p.plan(DesiredState((a, b)), p.ActualState(), CONFIG, LIMITS))
    a2 = replace(a, backends=(a.backends[0], replace(a.backends[1], weight=3)))
    result = p.plan(DesiredState((a2, b)), actual, CONFIG, LIMITS)
    assert kinds(result) == ["PutTable", "PutMember"]
    assert result.ops[0].service_id == actual.frontends[a.frontend].service_id
    assert result.ops[1].weight_milli == 3000


def test_weight_zero_keeps_the_backend_but_gives_it_no_slot():
    s = svc(backends=(("10.1.0.1", 0), ("10.1.0.2", 1)))
    result = p.plan(DesiredState((s,)), p.ActualState(), CONFIG, LIMITS)
    drained = result.backend_ids[Endpoint(ip_address("10.1.0.1"), 8080)]
    assert any(isinstance(op, p.PutBackend) and op.backend_id == drained for op in result.ops)
    table = next(op for op in result.ops if isinstance(op, p.PutTable)).slots
    assert drained not in set(np.unique(table))


def test_invalid_share_and_all_zero_weights_become_reject_slots():
    half = p.table_for(svc(reject=1), {Endpoint(ip_address("10.1.0.1"), 8080): 1}, 251, 0)[0]
    assert abs(int((half == 0).sum()) - 125) <= 1
    none = p.table_for(svc(backends=(("10.1.0.1", 0),)), {Endpoint(ip_address("10.1.0.1"), 8080): 1}, 251, 0)[0]
    assert set(np.unique(none)) == {0}


@pytest.mark.parametrize("bad, message", [
    (svc(backends=(("2001:db8::1", 1),)), "not of the frontend's address family"),
    (replace(svc(), snat_addresses=()), "needs a SNAT address"),
    (replace(svc(), snat_addresses=(ip_address("2001:db8::1"),)), "SNAT address 2001:db8::1"),
])
def test_unprogrammable_state_is_refused_before_any_write(bad, message):
    with pytest.raises(p.PlanError, match=message):
        p.plan(DesiredState((bad,)), p.ActualState(), CONFIG, LIMITS)


def test_capacity_is_checked():
    many = DesiredState(tuple(svc(port=1000 + i) for i in range(9)))
    with pytest.raises(p.PlanError, match="exceed the data path's capacity of 8"):
        p.plan(many, p.ActualState(), CONFIG, LIMITS)


def test_dnat_frontends_carry_no_snat_address():
    s = replace(svc(), nat=NatMode.DNAT)
    result = p.plan(DesiredState((s,)), p.ActualState(), CONFIG, LIMITS)
    (fe,) = [op for op in result.ops if isinstance(op, p.PutFrontend)]
    assert fe.record == p.FrontendRecord(0, NatMode.DNAT, ())


# -- dual stack: IPv4 and IPv6 in one state ------------------------------------------------

SNAT6 = ip_address("fd00::1")


def svc6(vip="2001:db8::1", port=80, backends=(("fd00:1::1", 1),), proto=Protocol.TCP):
    return replace(svc(vip, port, backends, proto=proto), snat_addresses=(SNAT6,))


def dual_stack() -> DesiredState:
    """One Gateway with an IPv4 and an IPv6 address, TCP and UDP, backends of both
    families (what a dual-stack Service's EndpointSlices resolve to)."""
    return DesiredState((
        svc6(backends=(("fd00:1::1", 2), ("fd00:1::2", 1))),
        svc(backends=(("10.1.0.1", 2), ("10.1.0.2", 1))),
        svc6(port=53, proto=Protocol.UDP, backends=(("fd00:1::1", 1),)),
        svc(port=53, proto=Protocol.UDP, backends=(("10.1.0.1", 1),)),
    ))


def test_dual_stack_state_is_planned_in_one_order_ipv4_first():
    result = p.plan(dual_stack(), p.ActualState(), CONFIG, LIMITS)
    backends = [str(op.endpoint) for op in result.ops if isinstance(op, p.PutBackend)]
    assert backends == ["10.1.0.1:8080", "10.1.0.2:8080", "[fd00:1::1]:8080", "[fd00:1::2]:8080"]
    frontends = [str(op.key) for op in result.ops if isinstance(op, p.PutFrontend)]
    assert frontends == ["192.0.2.1:53/UDP", "192.0.2.1:80/TCP", "[2001:db8::1]:53/UDP", "[2001:db8::1]:80/TCP"]
    assert [str(op.address) for op in result.ops if isinstance(op, p.PutVip)] == ["192.0.2.1", "2001:db8::1"]
    records = {str(op.key): op.record.snat_address for op in result.ops if isinstance(op, p.PutFrontend)}
    assert records["[2001:db8::1]:80/TCP"] == SNAT6 and records["192.0.2.1:80/TCP"] == SNAT


def test_dual_stack_plan_does_not_depend_on_input_order():
    services = dual_stack().services
    first = p.plan(DesiredState(services), p.ActualState(), CONFIG, LIMITS)
    again = p.plan(DesiredState(tuple(reversed(services))), p.ActualState(), CONFIG, LIMITS)
    assert kinds(first) == kinds(again)
    assert (first.service_ids, first.backend_ids) == (again.service_ids, again.backend_ids)


def test_dual_stack_planning_twice_changes_nothing_and_removal_orders_both_families():
    actual = applied(p.ActualState(), p.plan(dual_stack(), p.ActualState(), CONFIG, LIMITS))
    assert not p.plan(dual_stack(), actual, CONFIG, LIMITS)
    result = p.plan(DesiredState(()), actual, CONFIG, LIMITS)
    assert [str(op.key) for op in result.ops if isinstance(op, p.DeleteFrontend)] == [
        "192.0.2.1:53/UDP", "192.0.2.1:80/TCP", "[2001:db8::1]:53/UDP", "[2001:db8::1]:80/TCP"]
    assert [str(op.address) for op in result.ops if isinstance(op, p.DeleteVip)] == ["192.0.2.1", "2001:db8::1"]


def test_addresses_of_both_families_have_a_total_order():
    v4, v6 = Endpoint(ip_address("255.255.255.255"), 1), Endpoint(ip_address("::"), 1)
    assert v4 < v6 and not v6 < v4 and sorted([v6, v4]) == [v4, v6]
    f4 = FrontendKey(ip_address("10.0.0.1"), 80, Protocol.UDP)
    f6 = FrontendKey(ip_address("::1"), 53, Protocol.TCP)
    assert sorted([f6, f4]) == [f4, f6] and f4 <= f4 and f6 > f4
    # Within a family the order is numeric, not textual.
    assert sorted([Endpoint(ip_address("10.0.0.10"), 1), Endpoint(ip_address("10.0.0.9"), 1)])[0].address == \
        ip_address("10.0.0.9")


def test_a_translated_dual_stack_gateway_is_planned():
    """The path that crashed `gwctl run`: a Gateway with an IPv4 and an IPv6 address whose
    Service has EndpointSlices of both families, translated, then planned."""
    from datetime import UTC, datetime
    from pathlib import Path

    from ctl.sources import assemble, parse_documents
    from ctl.translate import TranslateConfig, translate

    case = Path(__file__).resolve().parents[1] / "golden" / "ipv6-gateway" / "input.yaml"
    loaded = assemble([parse_documents(case.read_text(), str(case))])
    assert not loaded.problems
    config = TranslateConfig(now=datetime(2025, 1, 1, tzinfo=UTC), addresses=(ip_address("192.0.2.10"),),
                             snat_addresses=(ip_address("192.0.2.1"), ip_address("2001:db8::1")))
    desired = translate(loaded.snapshot, config).desired
    assert {s.frontend.address.version for s in desired.services} == {4, 6}
    result = p.plan(desired, p.ActualState(), CONFIG, p.Limits(maglev_size=251))
    assert {str(op.endpoint) for op in result.ops if isinstance(op, p.PutBackend)} == {
        "10.99.90.1:8080", "10.99.90.2:8080", "[fd00:99::1]:8080"}
    assert not p.plan(desired, applied(p.ActualState(), result), CONFIG, p.Limits(maglev_size=251))


def test_more_snat_addresses_than_the_data_path_holds_are_refused():
    many = tuple(ip_address(f"192.0.2.{i}") for i in range(1, 6))
    with pytest.raises(p.PlanError, match="5 SNAT addresses .* at most 4"):
        p.plan(DesiredState((replace(svc(), snat_addresses=many),)), p.ActualState(), CONFIG, LIMITS)


def test_every_snat_address_is_recorded_in_the_frontend():
    two = (ip_address("192.0.2.1"), ip_address("192.0.2.2"))
    result = p.plan(DesiredState((replace(svc(), snat_addresses=two),)), p.ActualState(), CONFIG, LIMITS)
    (fe,) = [op for op in result.ops if isinstance(op, p.PutFrontend)]
    assert fe.record.snat_addresses == two


def _table_sizes(result: p.Plan) -> dict[int, int]:
    return {op.service_id: len(op.slots) for op in result.ops if isinstance(op, p.PutTable)}


def test_each_service_gets_a_table_sized_to_its_backends():
    one = svc(port=80)
    eight = svc(port=81, backends=tuple((f"10.1.0.{i}", 1) for i in range(1, 9)))
    result = p.plan(DesiredState((one, eight)), p.ActualState(), CONFIG, p.Limits(maglev_size=16381))
    assert _table_sizes(result) == {result.service_ids[one.frontend]: 127,
                                    result.service_ids[eight.frontend]: 1021}
    # Built together, each table is the one built alone.
    for service in (one, eight):
        slots = next(op.slots for op in result.ops if isinstance(op, p.PutTable)
                     and op.service_id == result.service_ids[service.frontend])
        assert np.array_equal(slots, p.table_for(service, result.backend_ids, 16381, CONFIG.hash_seed)[0])


def test_draining_a_backend_keeps_the_table_size():
    three = svc(backends=(("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1)))
    limits = p.Limits(maglev_size=16381)
    actual = applied(p.ActualState(), p.plan(DesiredState((three,)), p.ActualState(), CONFIG, limits))
    drained = replace(three, backends=(*three.backends[:2], replace(three.backends[2], weight=0)))
    result = p.plan(DesiredState((drained,)), actual, CONFIG, limits)
    assert list(_table_sizes(result).values()) == [509]


def test_a_lower_cap_rebuilds_only_the_tables_above_it():
    one = svc(port=80)
    eight = svc(port=81, backends=tuple((f"10.1.0.{i}", 1) for i in range(1, 9)))
    desired = DesiredState((one, eight))
    first = p.plan(desired, p.ActualState(), CONFIG, p.Limits(maglev_size=16381))
    result = p.plan(desired, applied(p.ActualState(), first), CONFIG, p.Limits(maglev_size=509))
    assert _table_sizes(result) == {result.service_ids[eight.frontend]: 509}


# -- planning an edit against what was written ------------------------------------------------


def _normal(result: p.Plan) -> list:
    """Ops comparable across plans: a table by its service and digest, not its array."""
    return [(type(op).__name__, op.service_id, op.digest) if isinstance(op, p.PutTable) else op for op in result.ops]


def _random_state(rng, endpoints: list[str]) -> DesiredState:
    services = []
    for vip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        for port in (80, 81, 82, 443):
            if rng.random() < 0.35:
                continue
            chosen = rng.sample(endpoints, rng.randint(0, 4))
            backends = tuple((a, rng.choice((0, 0.5, 1, 1, 2))) for a in chosen)
            s = svc(vip=vip, port=port, backends=backends, reject=rng.choice((0.0, 0.0, 1.0)),
                    proto=rng.choice((Protocol.TCP, Protocol.UDP)))
            if rng.random() < 0.2:
                s = replace(s, owner=f"route {rng.randint(0, 3)}")
            if rng.random() < 0.1:
                s = replace(s, nat=NatMode.DNAT, snat_addresses=())
            services.append(s)
    return DesiredState(tuple(services))


def _edited(rng, state: DesiredState, endpoints: list[str]) -> DesiredState:
    """A few services of ``state`` changed, added or removed; the rest the same objects."""
    fresh = _random_state(rng, endpoints).by_frontend()
    services = state.by_frontend()
    for key in rng.sample(sorted(set(services) | set(fresh)), rng.randint(1, 3)):
        if key in fresh:
            services[key] = fresh[key]
        else:
            services.pop(key, None)
    return DesiredState(tuple(services.values()))


def test_an_edit_planned_against_what_was_written_is_the_full_plan():
    import random

    rng = random.Random(11)
    limits = p.Limits(maglev_size=251, max_services=64, max_backends=64)
    endpoints = [f"10.1.0.{i}" for i in range(1, 12)]
    for trial in range(30):
        desired = _random_state(rng, endpoints)
        first = p.plan(desired, p.ActualState(), CONFIG, limits)
        written = p.Written.after(desired, p.ActualState(), first)
        assert written.actual == applied(p.ActualState(), first)
        for step in range(15):
            desired = _edited(rng, desired, endpoints)
            full = p.plan(desired, written.actual, CONFIG, limits)
            if step % 4 == 3:  # as the agent once a full plan is over: the same state, made again
                compacted = written.compacted()
                assert compacted.actual == written.actual and compacted.backend_index == written.backend_index
                assert compacted.actual.backends is not written.actual.backends
                written = compacted
            edit, written = p.plan_edit(desired, written, CONFIG, limits)
            assert _normal(edit) == _normal(full), (trial, step)
            assert dict(edit.service_ids) == dict(full.service_ids)
            assert dict(edit.backend_ids) == dict(full.backend_ids)
            # What was written is what a full plan leaves, and nothing is left to do.
            assert not p.plan(desired, written.actual, CONFIG, limits)
            assert written.backend_index == {ep: i for i, ep in written.actual.backends.items()}
            users: dict = {}
            for service in desired.services:
                for endpoint in {b.endpoint for b in service.backends}:
                    users[endpoint] = users.get(endpoint, 0) + 1
            assert written.shared_endpoints == {e: n for e, n in users.items() if n > 1}
            assert {e: written.users(e) for e in written.backend_index} == users
            assert written.desired == desired.by_frontend()
            # The members counted from the shared endpoints, as many as there are.
            members = written.actual.members
            assert len(members) == sum(1 for _ in members) == len(applied(p.ActualState(), p.plan(desired, p.ActualState(), CONFIG, limits)).members)


def test_an_edit_refuses_what_does_not_fit_like_a_full_plan():
    limits = p.Limits(maglev_size=251, max_services=2, max_backends=4)
    desired = DesiredState((svc(),))
    written = p.Written.after(desired, p.ActualState(), p.plan(desired, p.ActualState(), CONFIG, limits))
    too_many = DesiredState((svc(), svc(port=81), svc(port=82)))
    with pytest.raises(p.PlanError, match="3 frontends"):
        p.plan_edit(too_many, written, CONFIG, limits)
    wide = DesiredState((svc(backends=(("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1), ("10.1.0.4", 1))),))
    with pytest.raises(p.PlanError, match="4 backends"):
        p.plan_edit(wide, written, CONFIG, limits)
    mixed = DesiredState((svc(backends=(("2001:db8::1", 1),)),))
    with pytest.raises(p.PlanError, match="address family"):
        p.plan_edit(mixed, written, CONFIG, limits)
    # A refused edit changed nothing of what was written (edits update it in place).
    fits = DesiredState((svc(port=81),))
    full = p.plan(fits, written.actual, CONFIG, limits)
    edit, _ = p.plan_edit(fits, written, CONFIG, limits)
    assert _normal(edit) == _normal(full)


def test_the_members_a_written_state_computes_are_those_the_plan_wrote():
    import random

    rng = random.Random(5)
    limits = p.Limits(maglev_size=251, max_services=64, max_backends=64)
    endpoints = [f"10.1.0.{i}" for i in range(1, 12)]
    desired = _random_state(rng, endpoints)
    first = p.plan(desired, p.ActualState(), CONFIG, limits)
    written = p.Written.after(desired, p.ActualState(), first)
    members = written.actual.members
    expected = applied(p.ActualState(), first).members
    assert isinstance(members, p.WrittenMembers) and expected
    assert members == expected and expected == members and not members != expected
    assert dict(members) == expected and dict(members.items()) == expected and len(members) == len(expected)
    assert all(members[m] == w and members.get(m) == w and m in members for m, w in expected.items())
    assert (10**6, 1) not in members and members.get((0, 10**6)) is None
    changed = dict(expected)
    changed[next(iter(changed))] += 1
    assert members != changed and changed != members
    assert members != {**expected, (10**6, 1): 1}
