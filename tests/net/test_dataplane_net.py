"""Network tier: real TCP and UDP sockets through the data path between namespaces.

    client --- gw (XDP or tc on every interface) --- be0, be1, be2

Each backend answers with its name and the source address it saw."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctl.dataplane import loader, reader
from ctl.dataplane.abi import Hook, Verdict
from ctl.dataplane.dataplane import Dataplane
from ctl.dataplane.pinned import PinnedMaps
from ctl.dataplane.loader import DataplaneSpec, XdpMode
from ctl.model import (DesiredState, Endpoint, FrontendKey, NatMode, Protocol,
                                 Service, WeightedEndpoint)

from lab import netlab
from lab.client import share_mismatches
from lab.requirements import missing
from .agent import service_to_json

pytestmark = pytest.mark.net
TCP_PORT, UDP_PORT, VIP_PORT = 8080, 5353, 80
CONNECTIONS = 500
TOLERANCE = 0.05


def _missing() -> str | None:
    return missing(why_root="network namespaces, veth, BPF", tools=("ethtool",))


class Gateway:
    """The data path loaded for one lab, plus helpers to program it."""

    def __init__(self, net: netlab.Lab, hook: str):
        self.net = net
        self.hook = hook
        self.pin_dir = Path(f"/sys/fs/bpf/{net.prefix}")
        self.spec = DataplaneSpec(pin_dir=self.pin_dir)
        # Compiled here and not pinned: the restart test's agent process then compiles
        # (in its child) and replaces these programs in place under traffic.
        self.dataplane = Dataplane(self.spec, loader.compile_programs(self.spec))
        # SNAT: until the backend's neighbour is resolved, translated packets go to the
        # kernel, and their source is a local address: accept_local lets it forward them.
        gw_ifaces = ["front"] + [b.gw_ifname for b in net.backends]
        netlab._sysctl(net.gw.ns, {"net.ipv4.conf.all.accept_local": 1,
                                   **{f"net.ipv4.conf.{i}.accept_local": 1 for i in gw_ifaces}})
        self.ifindexes = [net.gw.front_ifindex] + [b.gw_ifindex for b in net.backends]
        self.attach(hook)
        self._pass_module, pass_fd = loader.compile_xdp_pass()
        net.attach_xdp_pass(pass_fd)

    def attach(self, hook: str) -> None:
        for ifindex in self.ifindexes:
            loader.detach(ifindex, netns=self.net.gw.ns)
            if hook == "xdp":
                assert self.dataplane.attach_xdp(ifindex, XdpMode.NATIVE, netns=self.net.gw.ns) is XdpMode.NATIVE
            elif hook == "xdp-generic":
                assert self.dataplane.attach_xdp(ifindex, XdpMode.GENERIC, netns=self.net.gw.ns) is XdpMode.GENERIC
            else:
                self.dataplane.attach_tc(ifindex, netns=self.net.gw.ns)
        self.hook = hook

    def service(self, weights, *, v6=False, proto=Protocol.TCP, nat=NatMode.SNAT, reject=0.0,
                port=VIP_PORT) -> Service:
        backends = self.net.backends
        return Service(
            frontend=FrontendKey(self.net.vip6 if v6 else self.net.vip4, port, proto),
            backends=tuple(
                WeightedEndpoint(Endpoint(b.v6 if v6 else b.v4, TCP_PORT if proto is Protocol.TCP else UDP_PORT), w)
                for b, w in zip(backends, weights)
            ),
            reject_weight=reject, nat=nat,
            snat_addresses=((backends[0].gw_v6 if v6 else backends[0].gw_v4),) if nat is NatMode.SNAT else (),
            owner="net-test",
        )

    def program(self, *services: Service):
        return self.dataplane.program(DesiredState(tuple(services)))

    def verdicts(self) -> dict:
        with PinnedMaps.open(self.pin_dir) as maps:
            return reader.read_verdicts(maps)

    def new_flows(self, service_id: int = 0) -> int:
        with PinnedMaps.open(self.pin_dir) as maps:
            return reader.read_counters(maps, "svc_stats", service_id).new_flows

    def close(self) -> None:
        for ifindex in self.ifindexes:
            loader.detach(ifindex, netns=self.net.gw.ns)
        self.dataplane = None
        shutil.rmtree(self.pin_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def net():
    reason = _missing()
    if reason:
        pytest.skip(reason)
    with netlab.lab(backends=3) as lab:
        lab.start_servers(tcp_ports=(TCP_PORT,), udp_ports=(UDP_PORT,))
        yield lab
    assert not netlab.leftovers(lab.prefix)


@pytest.fixture(scope="module")
def gw(net):
    gateway = Gateway(net, "xdp")
    try:
        yield gateway
    finally:
        gateway.close()


@pytest.fixture
def xdp_gw(gw):
    if gw.hook != "xdp":
        gw.attach("xdp")
    return gw


def assert_split(counts: dict, weights, total: int):
    shares = {f"be{i}": w / sum(weights) for i, w in enumerate(weights)}
    mismatches = share_mismatches({"counts": counts}, shares, total, TOLERANCE, backends=tuple(shares))
    assert not mismatches, f"{mismatches}; {counts}"


def tcp_spread(net, addr, count=CONNECTIONS):
    return net.run_client("tcp-spread", "--addr", addr, "--port", VIP_PORT, "--count", count, timeout=180)


def test_a_tcp_weighted_70_30_0(net, xdp_gw):
    plan = xdp_gw.program(xdp_gw.service((70, 30, 0)))
    flows_before = xdp_gw.new_flows(plan.service_ids[xdp_gw.service((70, 30, 0)).frontend])
    redirects_before = xdp_gw.verdicts()[(Hook.XDP, Verdict.REDIRECT)]
    report = tcp_spread(net, net.vip4)
    assert report["refused"] == 0 and report["timeout"] == 0, report
    assert_split(report["counts"], (70, 30, 0), CONNECTIONS)
    # The kernel never saw these flows' packets to the VIP: XDP picked and redirected.
    service_id = plan.service_ids[xdp_gw.service((70, 30, 0)).frontend]
    assert xdp_gw.new_flows(service_id) - flows_before == CONNECTIONS
    assert xdp_gw.verdicts()[(Hook.XDP, Verdict.REDIRECT)] - redirects_before > 3 * CONNECTIONS


def test_b_udp_weighted_70_30_0_new_source_port_per_datagram(net, xdp_gw):
    xdp_gw.program(xdp_gw.service((70, 30, 0), proto=Protocol.UDP, port=53))
    report = net.run_client("udp-spread", "--addr", net.vip4, "--port", 53, "--count", CONNECTIONS,
                            timeout=180)
    assert report["timeout"] == 0, report
    assert_split(report["counts"], (70, 30, 0), CONNECTIONS)


def test_c_established_connection_survives_weight_change_and_table_rebuild(net, xdp_gw):
    xdp_gw.program(xdp_gw.service((1, 1, 1)))
    session = net.start_tcp_session(net.vip4, VIP_PORT, "--interval-ms", 20)
    try:
        time.sleep(0.5)
        weights = {"be0": (0, 1, 1), "be1": (1, 0, 1), "be2": (1, 1, 0)}[session.backend]
        plan = xdp_gw.program(xdp_gw.service(weights))  # its backend drains: a new table
        assert any(type(op).__name__ == "PutTable" for op in plan.ops)
        time.sleep(0.5)
        xdp_gw.program(xdp_gw.service(weights), xdp_gw.service((1, 0, 0), port=81))  # more rebuilds
        time.sleep(0.5)
    finally:
        report = session.stop()
    assert report["errors"] == [] and report["exchanges"] >= 30, report
    assert report["backend"] == session.backend
    # New connections avoid the drained backend.
    fresh = tcp_spread(net, net.vip4, count=60)
    assert fresh["counts"].get(session.backend, 0) == 0, fresh


def test_d_snat_backend_sees_the_gateway_and_dnat_the_client(net, xdp_gw):
    xdp_gw.program(xdp_gw.service((1, 1, 1)))
    snat = tcp_spread(net, net.vip4, count=30)
    assert {p for peers in snat["seen_peers"].values() for p in peers} == {str(net.backends[0].gw_v4)}
    xdp_gw.program(xdp_gw.service((1, 1, 1), nat=NatMode.DNAT))
    dnat = tcp_spread(net, net.vip4, count=30)
    assert dnat["refused"] == 0 and dnat["timeout"] == 0, dnat
    assert {p for peers in dnat["seen_peers"].values() for p in peers} == {str(net.client.v4)}


def test_e_ipv6_end_to_end(net, xdp_gw):
    xdp_gw.program(xdp_gw.service((70, 30, 0), v6=True),
                   xdp_gw.service((1, 1, 0), v6=True, proto=Protocol.UDP, port=53))
    tcp = tcp_spread(net, net.vip6, count=200)
    assert tcp["refused"] == 0 and tcp["timeout"] == 0, tcp
    assert sum(tcp["counts"].values()) == 200 and tcp["counts"].get("be2", 0) == 0
    udp = net.run_client("udp-spread", "--addr", net.vip6, "--port", 53, "--count", 100, timeout=120)
    assert udp["timeout"] == 0 and sum(udp["counts"].values()) == 100, udp


def test_f_invalid_backend_share_is_refused_at_once(net, xdp_gw):
    xdp_gw.program(xdp_gw.service((0, 0, 0), reject=1))
    result = net.run_client("tcp-connect-once", "--addr", net.vip4, "--port", VIP_PORT, "--timeout", 5)
    assert result["result"] == "refused", result
    assert result["elapsed_ms"] < 500, result
    # Half invalid: about half the connections refused, none timed out.
    xdp_gw.program(xdp_gw.service((1, 0, 0), reject=1))
    mixed = tcp_spread(net, net.vip4, count=200)
    assert mixed["timeout"] == 0 and abs(mixed["refused"] / 200 - 0.5) <= 0.1, mixed


def test_g_live_connection_survives_an_agent_restart(net, xdp_gw, tmp_path):
    service = xdp_gw.service((1, 1, 1))
    xdp_gw.program(service)
    session = net.start_tcp_session(net.vip4, VIP_PORT, "--interval-ms", 20)
    try:
        time.sleep(0.5)
        desired = tmp_path / "desired.json"
        desired.write_text(json.dumps([service_to_json(service)]))
        before = {i: net.xdp_prog_id(net.gw.ns, i) for i in xdp_gw.ifindexes}
        agent = subprocess.run(
            [sys.executable, "-m", "tests.net.agent", "--pin-dir", str(xdp_gw.pin_dir),
             "--netns", net.gw.ns, "--xdp", *map(str, xdp_gw.ifindexes), "--desired", str(desired)],
            cwd=netlab.PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=True)
        after = {i: net.xdp_prog_id(net.gw.ns, i) for i in xdp_gw.ifindexes}
        time.sleep(0.5)
    finally:
        report = session.stop()
    assert json.loads(agent.stdout.splitlines()[-1]) == {"ops": 0}, "a restart on right maps writes nothing"
    assert all(after[i] and after[i] != before[i] for i in after), "programs were replaced"
    assert report["errors"] == [] and report["exchanges"] >= 30, report


def tx_packets(ns: str, ifindex: int) -> int:
    done = subprocess.run(["ip", "-n", ns, "-j", "-s", "link"], check=True, capture_output=True, text=True)
    (link,) = [link for link in json.loads(done.stdout) if link["ifindex"] == ifindex]
    return link["stats64"]["tx"]["packets"]


def test_h_weighted_split_through_tc_instead_of_xdp(net, gw):
    """Through tc every gw interface is a veth with its peer in another namespace, so
    tc ingress hands forwarded packets straight to the peer (bpf_redirect_peer): they
    reach the backends without passing gw's side of the veth, whose transmit counter
    stays far below what the backends received."""
    gw.attach("tc")
    try:
        assert all(net.xdp_prog_id(net.gw.ns, i) is None for i in gw.ifindexes)
        with PinnedMaps.open(gw.pin_dir) as maps:
            assert sorted(maps.keys("peer_devs")) == sorted(gw.ifindexes)
        assert not loader.has_peer_elsewhere(1, netns=net.gw.ns)  # lo: no peer at all
        gw.program(gw.service((70, 30, 0)))
        be_sides = [b.gw_ifindex for b in net.backends[:2]]
        before = [tx_packets(net.gw.ns, i) for i in be_sides]
        report = tcp_spread(net, net.vip4)
        sent = sum(tx_packets(net.gw.ns, i) - b for i, b in zip(be_sides, before))
        assert report["refused"] == 0 and report["timeout"] == 0, report
        assert_split(report["counts"], (70, 30, 0), CONNECTIONS)
        assert gw.verdicts()[(Hook.TC_INGRESS, Verdict.REDIRECT)] > 0
        # At least a SYN, an ACK with the request and a FIN per connection went to the
        # backends; the veth sides in gw saw only what the kernel sent itself (ARP, the
        # first packets while a neighbour resolved).
        assert sent < CONNECTIONS, (sent, CONNECTIONS)
    finally:
        gw.attach("xdp")


def test_i_generic_xdp_where_native_is_unavailable(net, gw):
    gw.attach("xdp-generic")
    try:
        gw.program(gw.service((1, 1, 0)))
        report = tcp_spread(net, net.vip4, count=100)
        assert report["refused"] == 0 and report["timeout"] == 0, report
        assert report["counts"].get("be2", 0) == 0 and sum(report["counts"].values()) == 100
    finally:
        gw.attach("xdp")
