"""Packet tier, behaviour that depends on earlier packets: conntrack, replies, weight
changes, ICMP errors about tracked flows, tc egress, counters."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import Ether

from ctl.dataplane import reader
from ctl.dataplane.abi import CtState, Hook, Verdict
from ctl.model import NatMode, Protocol

from lab.expect import forwarded, l3, l4, translated_in_place
from lab.harness import (CLIENT4, CLIENT6, CLIENT_MAC, GW_BACK4, GW_BACK6, VIP4, VIP6,
                      backend4, backend6, backend_mac)
from lab.packets import BACKEND_PORT, CLIENT_PORT, VIP_PORT, ack4, syn4, syn6, udp4
from lab.packets import service, state

from .test_xdp_lb import SNAT_RANGE

pytestmark = pytest.mark.packet


def backend_of(lab, out: bytes, v6: bool = False) -> int:
    """Which test backend a forwarded frame went to (by destination address)."""
    dst = l3(Ether(out)).dst
    for i in range(4):
        if dst == str(backend6(i) if v6 else backend4(i)):
            return i
    raise AssertionError(f"not forwarded to a backend: {dst}")


def reply_from_backend(out: bytes, flags="SA", payload=b"") -> Ether:
    """What backend i answers to the forwarded frame `out`."""
    fwd = Ether(out)
    ip, seg = l3(fwd), l4(fwd)
    eth = Ether(src=fwd[Ether].dst, dst=fwd[Ether].src, type=fwd[Ether].type)
    if IP in fwd:
        rip = IP(src=ip.dst, dst=ip.src, ttl=64)
    else:
        rip = IPv6(src=ip.dst, dst=ip.src, hlim=64)
    if TCP in fwd:
        return eth / rip / TCP(sport=seg.dport, dport=seg.sport, flags=flags, seq=5000,
                               ack=seg.seq + 1) / payload
    return eth / rip / UDP(sport=seg.dport, dport=seg.sport) / payload


def test_established_flow_keeps_its_backend_when_the_table_changes(plab):
    plab.program(state(service(backends=((0, 1), (1, 0)))))
    first = plab.xdp(bytes(syn4()))
    assert backend_of(plab, first.data) == 0
    # Backend 0 drains (weight 0), backend 1 takes every new flow: the table is rebuilt.
    plan = plab.program(state(service(backends=((0, 0), (1, 1)))))
    assert any(type(op).__name__ == "PutTable" for op in plan.ops)
    same_flow = plab.xdp(bytes(ack4()))
    assert same_flow.verdict == "REDIRECT" and backend_of(plab, same_flow.data) == 0
    assert l4(Ether(same_flow.data)).sport == l4(Ether(first.data)).sport, "same SNAT port"
    new_flows = {backend_of(plab, plab.xdp(bytes(syn4(sport=41000 + i))).data) for i in range(50)}
    assert new_flows == {1}, "a weight-0 backend takes no new flows"


def test_a_flow_whose_backend_was_deleted_is_reselected(plab):
    plab.program(state(service(backends=((0, 1),))))
    assert backend_of(plab, plab.xdp(bytes(syn4())).data) == 0
    plab.program(state(service(backends=((1, 1),))))
    again = plab.xdp(bytes(ack4()))
    assert again.verdict == "REDIRECT" and backend_of(plab, again.data) == 1


@pytest.mark.parametrize("nat", [NatMode.SNAT, NatMode.DNAT])
@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_reply_is_reverse_translated_to_the_client(plab, nat, hook):
    plab.program(state(service(nat=nat)))
    run = plab.xdp if hook == "xdp" else plab.tc
    out = run(bytes(syn4())).data
    reply = reply_from_backend(out)
    back = run(bytes(reply), ingress="be0")
    assert back.verdict == "REDIRECT"
    expected = forwarded(reply, src=VIP4, sport=VIP_PORT, dst=CLIENT4, dport=CLIENT_PORT,
                         smac=plab.mac["cl0"], dmac=CLIENT_MAC)
    assert back.data.hex() == expected.hex()
    with plab.maps() as maps:
        (flow,) = reader.read_flows(maps)
    assert CtState.SEEN_REPLY in flow.state


def test_reply_v6(plab):
    plab.program(state(service(vip=VIP6, v6=True)))
    out = plab.xdp(bytes(syn6())).data
    reply = reply_from_backend(out)
    back = plab.xdp(bytes(reply), ingress="be0")
    expected = forwarded(reply, src=VIP6, sport=VIP_PORT, dst=CLIENT6, dport=CLIENT_PORT,
                         smac=plab.mac["cl0"], dmac=CLIENT_MAC)
    assert back.verdict == "REDIRECT" and back.data.hex() == expected.hex()


def test_tc_egress_translates_replies_the_kernel_routed(plab):
    """dnat: the backend's reply reaches the gateway's kernel untranslated (e.g. through
    an interface without our programs) and leaves towards the client: tc egress fixes
    its source in place."""
    plab.program(state(service(nat=NatMode.DNAT)))
    out = plab.xdp(bytes(syn4())).data
    reply = reply_from_backend(out)
    egress = plab.tc(bytes(reply), ingress="cl0", egress=True)
    assert egress.verdict == "PASS"
    expected = translated_in_place(reply, src=VIP4, sport=VIP_PORT, dst=CLIENT4, dport=CLIENT_PORT)
    assert egress.data.hex() == expected.hex()


def test_tc_egress_leaves_other_traffic_alone(plab):
    plab.program(state(service()))
    packet = bytes(syn4(dst="10.99.10.2"))
    result = plab.tc(packet, egress=True)
    assert result.verdict == "PASS" and result.data == packet


def test_snat_ports_never_collide(plab):
    """300 clients on one source port: the first keeps it, the others get ports of the
    range, every one distinct."""
    plab.program(state(service()))
    ports = []
    for i in range(300):
        syn = syn4()
        syn[IP].src = f"10.99.{1 + i // 250}.{1 + i % 250}"
        ports.append(l4(Ether(plab.xdp(bytes(syn)).data)).sport)
    assert len(set(ports)) == 300
    assert ports[0] == CLIENT_PORT and all(p in SNAT_RANGE for p in ports[1:])


def _client_fin() -> bytes:
    fin = syn4()
    fin[TCP].flags, fin[TCP].seq, fin[TCP].ack = "FA", 1001, 5001
    return bytes(fin)


def _new_flows(lab) -> int:
    with lab.maps() as maps:
        return reader.read_counters(maps, "svc_stats", 0).new_flows


def test_closed_tcp_tuple_reused_by_a_new_syn_starts_a_new_flow(plab):
    plab.program(state(service()))
    out = plab.xdp(bytes(syn4())).data
    plab.xdp(bytes(reply_from_backend(out, flags="FA")), ingress="be0")
    plab.xdp(_client_fin())
    with plab.maps() as maps:
        (flow,) = reader.read_flows(maps)
    assert {CtState.FIN_FWD, CtState.FIN_REV, CtState.SEEN_REPLY} <= set(flow.state)
    before = _new_flows(plab)
    plab.xdp(bytes(ack4()))
    assert _new_flows(plab) == before, "a segment of the closing flow is still that flow"
    plab.xdp(bytes(syn4()))
    assert _new_flows(plab) == before + 1, "a SYN on a closed tuple is a new flow"


def test_counters_per_service_backend_and_verdict(plab):
    plab.program(state(service(backends=((0, 1),))))
    out = plab.xdp(bytes(syn4())).data
    plab.xdp(bytes(ack4(payload=b"y" * 100)))
    plab.xdp(bytes(reply_from_backend(out)), ingress="be0")
    with plab.maps() as maps:
        svc = reader.read_counters(maps, "svc_stats", 0)
        be = reader.read_counters(maps, "be_stats", 1)
        verdicts = reader.read_verdicts(maps)
    assert (svc.packets_in, svc.packets_out, svc.new_flows) == (2, 1, 1)
    assert svc.bytes_in == len(bytes(syn4())) + len(bytes(ack4(payload=b"y" * 100)))
    assert (be.packets_in, be.new_flows) == (2, 1)
    assert verdicts[(Hook.XDP, Verdict.REDIRECT)] == 3


def _quoted(ip_layer, seg) -> tuple[bytes, int]:
    """A quoted packet and its transport checksum as sent (left stale when translated)."""
    raw = bytes(ip_layer / seg)
    parsed = IP(raw) if IP in IP(raw) and ip_layer.version == 4 else IPv6(raw)
    return raw, parsed[TCP].chksum


def test_icmp_frag_needed_from_the_backend_side_reaches_the_client(plab):
    """Path MTU discovery towards the backend: a router (here the backend itself) says
    our forwarded SYN was too big; the client must get it about its own packet."""
    plab.program(state(service()))
    out = Ether(plab.xdp(bytes(syn4())).data)
    quoted = out[IP].copy()
    quoted_raw = bytes(quoted)
    stale_tcp_check = IP(quoted_raw)[TCP].chksum
    error = (Ether(src=backend_mac(0), dst=plab.mac["be0"]) /
             IP(src=str(backend4(0)), dst=str(GW_BACK4), ttl=64) /
             ICMP(type=3, code=4, nexthopmtu=1400) / IP(quoted_raw))
    result = plab.xdp(bytes(error), ingress="be0")
    assert result.verdict == "REDIRECT"
    inner = IP(quoted_raw)
    inner.src, inner.dst = str(CLIENT4), str(VIP4)
    del inner.chksum
    inner[TCP].sport, inner[TCP].dport = CLIENT_PORT, VIP_PORT
    inner[TCP].chksum = stale_tcp_check
    expected = (Ether(src=plab.mac["cl0"], dst=CLIENT_MAC) /
                IP(src=str(VIP4), dst=str(CLIENT4), ttl=63) /
                ICMP(type=3, code=4, nexthopmtu=1400) / IP(bytes(inner)))
    assert result.data.hex() == bytes(expected).hex()


def test_icmp_frag_needed_from_the_client_side_reaches_the_backend(plab):
    """Path MTU discovery towards the client: the reply was too big for a client-side
    link; the backend must get the error about the packet it sent."""
    plab.program(state(service()))
    out = Ether(plab.xdp(bytes(syn4())).data)
    snat_port = out[TCP].sport
    reply_to_client = IP(src=str(VIP4), dst=str(CLIENT4), ttl=63) / TCP(
        sport=VIP_PORT, dport=CLIENT_PORT, flags="A", seq=5001)
    quoted_raw = bytes(reply_to_client)
    stale = IP(quoted_raw)[TCP].chksum
    error = (Ether(src=CLIENT_MAC, dst=plab.mac["cl0"]) /
             IP(src="10.99.0.254", dst=str(VIP4), ttl=64) /
             ICMP(type=3, code=4, nexthopmtu=1280) / IP(quoted_raw))
    result = plab.xdp(bytes(error))
    assert result.verdict == "REDIRECT"
    inner = IP(quoted_raw)
    inner.src, inner.dst = str(backend4(0)), str(GW_BACK4)
    del inner.chksum
    inner[TCP].sport, inner[TCP].dport = BACKEND_PORT, snat_port
    inner[TCP].chksum = stale
    expected = (Ether(src=plab.mac["be0"], dst=backend_mac(0)) /
                IP(src=str(GW_BACK4), dst=str(backend4(0)), ttl=63) /
                ICMP(type=3, code=4, nexthopmtu=1280) / IP(bytes(inner)))
    assert result.data.hex() == bytes(expected).hex()


def test_icmpv6_packet_too_big_for_a_tracked_flow(plab):
    plab.program(state(service(vip=VIP6, v6=True)))
    out = Ether(plab.xdp(bytes(syn6())).data)
    quoted_raw = bytes(out[IPv6])
    stale = IPv6(quoted_raw)[TCP].chksum
    error = (Ether(src=backend_mac(0), dst=plab.mac["be0"]) /
             IPv6(src=str(backend6(0)), dst=str(GW_BACK6), hlim=64) /
             ICMPv6PacketTooBig(mtu=1280) / IPv6(quoted_raw))
    result = plab.xdp(bytes(error), ingress="be0")
    assert result.verdict == "REDIRECT"
    inner = IPv6(quoted_raw)
    inner.src, inner.dst = str(CLIENT6), str(VIP6)
    inner[TCP].sport, inner[TCP].dport = CLIENT_PORT, VIP_PORT
    inner[TCP].chksum = stale
    expected = (Ether(src=plab.mac["cl0"], dst=CLIENT_MAC) /
                IPv6(src=str(VIP6), dst=str(CLIENT6), hlim=63) /
                ICMPv6PacketTooBig(mtu=1280) / IPv6(bytes(inner)))
    assert result.data.hex() == bytes(expected).hex()


def test_icmp_error_about_an_unknown_flow_passes_untouched(plab):
    plab.program(state(service()))
    error = (Ether(src=backend_mac(0), dst=plab.mac["be0"]) /
             IP(src=str(backend4(0)), dst=str(GW_BACK4)) / ICMP(type=3, code=4) /
             IP(src=str(GW_BACK4), dst=str(backend4(0))) / TCP(sport=12345, dport=8080))
    result = plab.xdp(bytes(error), ingress="be0")
    assert result.verdict == "PASS" and result.data == bytes(error)


def test_a_flow_whose_backend_id_went_to_another_endpoint_is_reselected(plab):
    """Ids are reused once free: the conntrack entry must notice that its backend id
    now names another endpoint, or the flow would go there while its replies, keyed by
    the old endpoint, could never be translated back."""
    plab.program(state(service(backends=((0, 1),))))
    first = plab.xdp(bytes(syn4()))
    assert backend_of(plab, first.data) == 0
    plab.program(state(service(backends=((1, 1),))))  # backend 0's id is deleted...
    plan = plab.program(state(service(backends=((1, 1), (2, 1)))))  # ...and reused for backend 2
    from ipaddress import ip_address
    from ctl.model import Endpoint
    old_id = 1
    assert plan.backend_ids[Endpoint(backend4(2), BACKEND_PORT)] == old_id
    again = plab.xdp(bytes(ack4()))
    assert again.verdict == "REDIRECT"
    chosen = backend_of(plab, again.data)
    reply = plab.xdp(bytes(reply_from_backend(again.data, flags="A")), ingress="be0")
    assert reply.verdict == "REDIRECT", f"the reply from backend {chosen} must be translated back"
    assert l3(Ether(reply.data)).src == str(VIP4)


def test_a_flow_refreshed_by_another_cpu_after_our_clock_read_stays_live(plab):
    """Two CPUs handle one flow (tc on veth does): one reads the clock, the other then
    writes a later last_seen. That entry is live, not expired by a wrapped difference."""
    import time as _time

    plab.program(state(service()))
    first = plab.xdp(bytes(syn4()))
    port = l4(Ether(first.data)).sport
    with plab.maps() as maps:
        (key,) = maps.keys("ct_fwd")
        entry = maps.get("ct_fwd", key)
        entry.last_seen = _time.clock_gettime_ns(_time.CLOCK_MONOTONIC) + 5 * 10**9
        maps.put("ct_fwd", key, entry)
    before = _new_flows(plab)
    again = plab.xdp(bytes(ack4()))
    assert _new_flows(plab) == before, "the flow must not restart"
    assert l4(Ether(again.data)).sport == port, "same SNAT port, same backend connection"
