"""The writer's batched runs against the real pinned maps: what a plan of many services
writes in batches reads back as exactly that state, and every fresh id's counters
start from zero, as when each entry was written on its own."""

from __future__ import annotations

import ctypes
import logging
from collections import Counter
from ipaddress import ip_address

import pytest

from ctl.dataplane import abi, bpfsys, reader, writer
from ctl.dataplane.plan import DataplaneConfig, plan
from ctl.model import DesiredState, Endpoint, FrontendKey, NatMode, Protocol, Service, WeightedEndpoint

pytestmark = pytest.mark.packet


def _many_services(count: int, per_service: int) -> DesiredState:
    """`count` services over both families, `per_service` distinct backends each, with
    unequal weights, a drained backend and both NAT modes."""
    services = []
    for s in range(count):
        v6 = s % 2 == 1
        vip = ip_address(f"fd00:100::{s + 1:x}" if v6 else f"10.100.{s // 250}.{s % 250 + 1}")
        backends = tuple(
            WeightedEndpoint(Endpoint(ip_address(f"fd00:200::{s:x}:{b + 1:x}" if v6 else f"10.200.{s}.{b + 1}"),
                                      8000 + b), b % 3)
            for b in range(per_service))
        nat = NatMode.SNAT if s % 3 else NatMode.DNAT
        snat = (ip_address("fd00:300::1" if v6 else "10.99.0.1"),) if nat is NatMode.SNAT else ()
        services.append(Service(FrontendKey(vip, 80 + s % 4, Protocol.TCP if s % 2 else Protocol.UDP),
                                backends, reject_weight=0.0, nat=nat, snat_addresses=snat, owner=f"route-{s}"))
    return DesiredState(tuple(services))


def _dirty_counters(maps, name: str, indexes: range) -> None:
    cpus = bpfsys.possible_cpus()
    for i in indexes:
        rows = (abi.FlowStats * cpus)(*(abi.FlowStats(packets_in=7) for _ in range(cpus)))
        bpfsys.map_update(maps.fd(name), ctypes.c_uint32(i), rows)


def test_a_plan_written_in_batches_reads_back_as_planned_with_fresh_counters(plab):
    desired = _many_services(40, 5)
    with plab.maps() as maps:
        # Counters left by a previous life of these ids must not carry over to new entries.
        _dirty_counters(maps, "be_stats", range(1, 201))
        _dirty_counters(maps, "svc_stats", range(0, 40))
        assert reader.read_counters(maps, "be_stats", 5).packets_in == 7 * bpfsys.possible_cpus()
        maps.put_many("owners", [])  # an empty run writes nothing and is no error

    written = plab.program(desired)
    kinds = Counter(type(op).__name__ for op in written.ops)
    assert kinds["PutBackend"] == 200 and kinds["PutMember"] == 200 and kinds["PutFrontend"] == 40

    with plab.maps() as maps:
        actual = reader.read_actual(maps)
        assert plan(desired, actual, DataplaneConfig(), plab.dataplane.limits).ops == ()
        assert len(actual.frontends) == 40 and len(actual.owners) == 40 and len(actual.vips) == 40
        assert len(actual.backends) == 200 and len(actual.members) == 200
        for backend_id in actual.backends:
            assert reader.read_counters(maps, "be_stats", backend_id) == reader.Counters()
        for record in actual.frontends.values():
            assert reader.read_counters(maps, "svc_stats", record.service_id) == reader.Counters()


def test_a_write_logs_one_summary_line_at_debug_level(plab, caplog):
    """Not one line per entry (190,000 at a cold start at 10,000 routes): one per write,
    with how many entries each map got or lost."""
    desired = _many_services(40, 5)
    with caplog.at_level(logging.DEBUG, logger="ctl.dataplane.writer"):
        written = plab.program(desired)
        removed = plab.program(DesiredState(desired.services[1:]))
    lines = [r for r in caplog.records if r.name == "ctl.dataplane.writer"]
    assert [r.event for r in lines] == ["maps_written", "maps_written"]
    assert lines[0].writes == writer.write_counts(written.ops)
    assert lines[0].writes["backends"] == {"put": 200} and lines[0].writes["members"] == {"put": 200}
    assert lines[0].writes["frontends"] == {"put": 40} and lines[0].writes["tables"] == {"put": 40}
    assert lines[1].writes["frontends"] == {"delete": 1} and lines[1].writes["members"] == {"delete": 5}
    assert sum(n for per_map in lines[1].writes.values() for n in per_map.values()) == len(removed.ops)
