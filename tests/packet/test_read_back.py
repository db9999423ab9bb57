"""The idle agent's read-back of the maps against the real pinned maps: it gives way to
an edit without writing anything, goes on after the edit with the maps it had not
compared yet, and completes even when an edit always waits."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from ctl.dataplane import reader, writer
from ctl.dataplane.dataplane import READ_BACK_YIELDS, Dataplane, ReadBackAbandoned
from ctl.dataplane.plan import DataplaneConfig, plan
from ctl.model import DesiredState, Endpoint, FrontendKey, Protocol, Service, WeightedEndpoint

pytestmark = pytest.mark.packet

SNAT = (ip_address("10.99.0.1"),)


def _services(count: int, per_service: int, weight_of_first: int = 1) -> DesiredState:
    """`count` services over the same `per_service` endpoints: count x per_service
    members, more than a checkpoint's worth of rows."""
    endpoints = [Endpoint(ip_address(f"10.200.0.{b + 1}"), 8000) for b in range(per_service)]
    return DesiredState(tuple(
        Service(FrontendKey(ip_address(f"10.100.0.{s + 1}"), 80, Protocol.TCP),
                tuple(WeightedEndpoint(e, weight_of_first if (s, b) == (0, 0) else 1) for b, e in enumerate(endpoints)),
                snat_addresses=SNAT, owner=f"route-{s}")
        for s in range(count)))


@pytest.fixture
def dataplane(plab) -> Dataplane:
    """The lab's programs and maps, with an agent's memory of what it wrote."""
    dp = Dataplane(plab.spec, plab.dataplane.programs, remember_writes=True)
    dp.program(_services(40, 50))
    written = dp.written
    dp.settle()  # as the agent once the reconcile is over: what was written, made again
    assert dp.written is not written and dp.written.actual == written.actual
    return dp


def _always() -> bool:
    return True


def test_a_read_back_gives_way_to_an_edit_and_writes_nothing(plab, dataplane):
    desired = _services(40, 50)
    key = writer.frontend_key_struct(desired.services[0].frontend)
    with plab.maps() as maps:
        assert maps.delete("frontends", key)  # drift the read-back would repair
    with pytest.raises(ReadBackAbandoned):
        dataplane.repair(desired, edit_waiting=_always)
    with plab.maps() as maps:
        assert maps.get("frontends", key) is None, "an abandoned read-back wrote the repair"
    assert dataplane.written is not None, "an abandoned read-back forgot what was written"
    # Once nothing waits, the same read-back repairs the drift.
    repaired = dataplane.repair(desired)
    assert len(repaired.ops) >= 1
    with plab.maps() as maps:
        assert maps.get("frontends", key) is not None


def test_a_read_back_completes_when_an_edit_always_waits(plab, dataplane):
    """Each map is read to the end once READ_BACK_YIELDS reads of it were abandoned in a
    row, so a steady trickle of edits cannot starve the repair."""
    desired = _services(40, 50)
    with plab.maps() as maps:
        members = maps.keys("members")
        dropped = members[-1]
        assert maps.delete("members", dropped)  # drift in the last map the read-back compares
    abandons = 0
    for _ in range(READ_BACK_YIELDS * len(reader.PARTS) + 1):
        try:
            repaired = dataplane.repair(desired, edit_waiting=_always)
            break
        except ReadBackAbandoned:
            abandons += 1
    else:
        pytest.fail("the read-back never completed while an edit always waited")
    assert abandons == READ_BACK_YIELDS * len(reader.PARTS), abandons
    assert len(repaired.ops) >= 1, "the dropped member was not written again"
    with plab.maps() as maps:
        assert maps.get("members", dropped) is not None
        assert plan(desired, reader.read_actual(maps), DataplaneConfig(), dataplane.limits).ops == ()


def test_a_read_back_goes_on_after_an_edit_with_the_maps_it_had_not_compared(plab, dataplane):
    desired = _services(40, 50)
    asked = 0

    def edit_after_a_few_checks() -> bool:
        nonlocal asked
        asked += 1
        return asked > 3  # a few maps compared, then an edit arrives

    with pytest.raises(ReadBackAbandoned):
        dataplane.repair(desired, edit_waiting=edit_after_a_few_checks)
    compared = set(dataplane.read_back_checked)
    assert compared and compared != set(reader.PARTS)
    # The edit: planned against what was written, which it updates.
    edited = _services(41, 50, weight_of_first=3)
    assert dataplane.program(edited).ops
    assert dataplane.read_back_checked == compared, "an edit threw away the read-back's progress"
    # The rest of the read-back finds the maps as written by the edit: nothing to repair.
    assert dataplane.repair(edited).ops == ()
    assert dataplane.read_back_checked == set(), "a completed read-back starts the next one from scratch"
    with plab.maps() as maps:
        assert plan(edited, reader.read_actual(maps), DataplaneConfig(), dataplane.limits).ops == ()


def test_a_big_map_is_abandoned_between_batches_of_rows(plab, dataplane):
    with plab.maps() as maps:
        total = len(maps.keys("members"))
        assert total == 40 * 50
        taken = 0

        def edit_arrives() -> None:
            raise ReadBackAbandoned("members")

        with pytest.raises(ReadBackAbandoned):
            for _ in maps.items("members", edit_arrives):
                taken += 1
    assert 0 < taken < total
