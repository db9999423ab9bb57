"""The idle agent's read-back of the maps against the real pinned maps: it gives way to
an edit without writing anything, goes on after the edit where it stopped (the maps
it had not compared yet, the rest of a half-read map), still finds drift across an
edit, and completes even when an edit always waits."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from ctl.dataplane import dataplane as dataplane_module, reader, writer
from ctl.dataplane.dataplane import Dataplane, ReadBackAbandoned
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


@pytest.fixture
def small_batches(monkeypatch) -> int:
    """Read-backs read 100 rows at a time: the 2,000 members take many batches."""
    monkeypatch.setattr(dataplane_module, "READ_BACK_BATCH", 100)
    return 100


def test_a_read_back_completes_when_an_edit_always_waits(plab, dataplane, small_batches):
    """Each call reads one batch before it gives way, so a steady trickle of edits
    cannot starve the repair, and no call reads a map whole."""
    desired = _services(40, 50)
    with plab.maps() as maps:
        members = maps.keys("members")
        dropped = members[-1]
        assert maps.delete("members", dropped)  # drift in the last map the read-back compares
    abandons = 0
    for _ in range(len(reader.PARTS) + len(members)):
        try:
            repaired = dataplane.repair(desired, edit_waiting=_always)
            break
        except ReadBackAbandoned:
            abandons += 1
    else:
        pytest.fail("the read-back never completed while an edit always waited")
    # One call per batch: at least one per map, and the members several.
    assert abandons >= len(reader.PARTS) - 1 + (len(members) - 1) // small_batches, abandons
    assert len(repaired.ops) >= 1, "the dropped member was not written again"
    with plab.maps() as maps:
        assert maps.get("members", dropped) is not None
        assert plan(desired, reader.read_actual(maps), DataplaneConfig(), dataplane.limits).ops == ()


def _abandon_inside(dataplane: Dataplane, desired: DesiredState, part: str) -> None:
    """Starts a read-back and gives way once it has read some of ``part``'s rows."""
    def edit_waiting() -> bool:
        partial = dataplane.read_back_partial
        return partial is not None and partial.part == part and len(partial.rows) > 0
    with pytest.raises(ReadBackAbandoned):
        dataplane.repair(desired, edit_waiting=edit_waiting)
    partial = dataplane.read_back_partial
    assert partial is not None and partial.part == part and not partial.done, "not stopped inside the map"


def test_a_read_back_goes_on_inside_a_map_after_an_edit_of_that_map(plab, dataplane, monkeypatch):
    """Some members read, then an edit removes the services of every member read so
    far, adds one and changes another's weights (in buckets read and not read yet):
    the read-back goes on from where it stopped and finds the maps as the edit left
    them, nothing to repair (no full read either)."""
    desired = _services(40, 50)
    monkeypatch.setattr(dataplane_module, "READ_BACK_BATCH", 10)  # the first batch: a few services
    _abandon_inside(dataplane, desired, "members")
    read_ids = {service_id for service_id, _ in dataplane.read_back_partial.rows}
    assert 0 < len(dataplane.read_back_partial.rows) < 40 * 50 and len(read_ids) < 39
    ids = dataplane.written.service_index
    bigger = _services(41, 50, weight_of_first=3).services
    edited = DesiredState(tuple(s for s in bigger if ids.get(s.frontend) not in read_ids))
    assert dataplane.program(edited).ops
    assert dataplane.read_back_partial is not None and dataplane.read_back_partial.part == "members"

    def full_read(maps):
        raise AssertionError("the read-back took the edited rows for drift and read every map")
    monkeypatch.setattr(reader, "read_actual", full_read)
    assert dataplane.repair(edited).ops == ()
    monkeypatch.undo()
    with plab.maps() as maps:
        assert plan(edited, reader.read_actual(maps), DataplaneConfig(), dataplane.limits).ops == ()


def test_drift_read_before_an_edit_is_still_repaired(plab, dataplane, small_batches):
    """A member someone deleted, in a map the read-back was half way through when an
    edit came (that did not touch it): the finished read-back writes it again."""
    desired = _services(40, 50)
    edited_id = dataplane.written.service_index[desired.services[0].frontend]
    with plab.maps() as maps:
        # in the first batch (keys come in the order batches read them), not the edit's
        dropped = next(key for key in maps.keys("members") if key.service_id != edited_id)
        assert maps.delete("members", dropped)
    _abandon_inside(dataplane, desired, "members")
    edited = _services(40, 50, weight_of_first=5)  # changes only service 0's first member
    assert dataplane.program(edited).ops
    repaired = dataplane.repair(edited)
    assert len(repaired.ops) >= 1
    with plab.maps() as maps:
        assert maps.get("members", dropped) is not None
        assert plan(edited, reader.read_actual(maps), DataplaneConfig(), dataplane.limits).ops == ()


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


def test_an_edit_after_the_last_batch_goes_before_the_rest_of_the_read_back(plab, dataplane, monkeypatch):
    """The last map read through, an edit waits: it goes first, not after the count of
    what the map should hold and the comparison of the desired state (at 10,000 routes,
    tens of milliseconds in one go); the read-back then completes from the rows it read,
    brought up to date by the edit's writes, without reading the maps again."""
    desired = _services(40, 50)

    def once_every_member_is_read() -> bool:
        partial = dataplane.read_back_partial
        return partial is not None and partial.part == "members" and partial.done

    with pytest.raises(ReadBackAbandoned):
        dataplane.repair(desired, edit_waiting=once_every_member_is_read)
    assert dataplane.read_back_partial.done and "members" not in dataplane.read_back_checked
    edited = _services(41, 50, weight_of_first=3)
    assert dataplane.program(edited).ops

    def full_read(maps):
        raise AssertionError("the read-back took the edited rows for drift and read every map")
    monkeypatch.setattr(reader, "read_actual", full_read)

    def by_frontend(self):
        raise AssertionError("the desired state was made again by frontend to be compared")
    monkeypatch.setattr(DesiredState, "by_frontend", by_frontend)  # same services, same order: a look at each
    assert dataplane.repair(edited).ops == ()
    assert dataplane.read_back_checked == set() and dataplane.read_back_partial is None
    monkeypatch.undo()
    with plab.maps() as maps:
        assert plan(edited, reader.read_actual(maps), DataplaneConfig(), dataplane.limits).ops == ()


def test_drift_in_the_last_rows_is_found_across_an_edit_after_the_last_batch(plab, dataplane):
    """A member someone deleted, and an edit after the last batch: the count, once the
    edit has gone first, still finds the map one row short and the read-back repairs it."""
    desired = _services(40, 50)
    with plab.maps() as maps:
        dropped = maps.keys("members")[-1]
        assert maps.delete("members", dropped)

    def once_every_member_is_read() -> bool:
        partial = dataplane.read_back_partial
        return partial is not None and partial.part == "members" and partial.done

    with pytest.raises(ReadBackAbandoned):
        dataplane.repair(desired, edit_waiting=once_every_member_is_read)
    edited = _services(41, 50)  # a new service: rows the read-back did not read
    assert dataplane.program(edited).ops
    assert len(dataplane.repair(edited).ops) >= 1
    with plab.maps() as maps:
        assert maps.get("members", dropped) is not None
        assert plan(edited, reader.read_actual(maps), DataplaneConfig(), dataplane.limits).ops == ()


def test_a_batch_ends_once_its_time_is_up(plab, dataplane, monkeypatch):
    """READ_BACK_BATCH rows at most, read a piece at a time, and fewer once the batch has
    taken READ_BACK_SLICE: with no time at all, one piece, and the edit goes next."""
    desired = _services(40, 50)
    monkeypatch.setattr(dataplane_module, "READ_BACK_SLICE", 0.0)
    _abandon_inside(dataplane, desired, "members")
    assert 0 < len(dataplane.read_back_partial.rows) <= dataplane_module.READ_BACK_PIECE < dataplane_module.READ_BACK_BATCH
    assert dataplane.repair(desired).ops == ()
