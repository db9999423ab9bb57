"""Packet tier, IP fragments (IPv4, and IPv6 Fragment headers): the first fragment is
balanced and translated like a whole datagram, later ones follow it (same backend, same
translation) and are counted on its flow, in both directions; a later fragment whose
first was not seen is dropped and counted (fragments are not buffered)."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP, defragment, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, defragment6, fragment6
from scapy.layers.l2 import Ether

from ctl.dataplane import reader
from ctl.dataplane.abi import Reason
from ctl.model import Protocol
from lab.harness import (CLIENT4, CLIENT6, CLIENT_MAC, GW_BACK4, GW_BACK6, VIP4, VIP6, backend4,
                         backend6, backend_mac)
from lab.packets import CLIENT_PORT, client_eth, service, state, udp4, udp6

pytestmark = pytest.mark.packet
ANSWER = bytes(range(256)) * 16  # 4 KiB, as a big DNS answer
FAMILIES = {
    4: dict(ip=IP, client=CLIENT4, vip=VIP4, snat=GW_BACK4, backend=backend4),
    6: dict(ip=IPv6, client=CLIENT6, vip=VIP6, snat=GW_BACK6, backend=backend6),
}


def _fragments(src, dst, sport, dport, payload, ip_id, eth) -> list[bytes]:
    """A UDP datagram in fragments of about 1400 bytes, first to last."""
    udp = UDP(sport=sport, dport=dport) / payload
    if ":" in str(src):
        datagram = IPv6(src=str(src), dst=str(dst), hlim=64) / IPv6ExtHdrFragment(id=ip_id) / udp
        pieces = fragment6(datagram, 1400)
    else:
        pieces = fragment(IP(src=str(src), dst=str(dst), ttl=64, id=ip_id) / udp, fragsize=1400)
    return [bytes(eth / f) for f in pieces]


def _reassembled(frames: list[bytes]):
    """The datagram the receiver reassembles, its checksums as they arrived."""
    packets = [Ether(f) for f in frames]
    if IPv6 in packets[0]:
        whole = defragment6([p[IPv6] for p in packets])
        return IPv6(bytes(whole))
    (whole,) = defragment([p[IP] for p in packets])
    return IP(bytes(whole))


def _udp_ok(packet) -> bool:
    sent = packet[UDP].chksum
    fresh = packet.__class__(bytes(packet))
    del fresh[UDP].chksum
    return packet.__class__(bytes(fresh))[UDP].chksum == sent


def _counters(plab, family: int):
    """(service counters, {backend address: counters}) of the one frontend."""
    with plab.maps() as maps:
        (record,) = reader.read_frontends(maps).values()
        backends = reader.read_backends(maps)
        svc = reader.read_counters(maps, "svc_stats", record.service_id)
        per_backend = {str(b.address): reader.read_counters(maps, "be_stats", i) for i, b in backends.items()}
    return svc, per_backend


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_a_fragmented_datagram_reaches_one_backend_and_its_answer_comes_back(plab, hook, family):
    f = FAMILIES[family]
    plab.program(state(service(vip=f["vip"], port=53, proto=Protocol.UDP, backends=((0, 1), (1, 1)),
                               v6=family == 6)))
    run = plab.xdp if hook == "xdp" else plab.tc
    query = _fragments(f["client"], f["vip"], CLIENT_PORT, 53, ANSWER, 4242, client_eth())
    outs = [run(q) for q in query]
    assert [o.verdict for o in outs] == ["REDIRECT"] * len(query) and len(query) >= 3
    to_backend = [Ether(o.data)[f["ip"]] for o in outs]
    backend = to_backend[0].dst
    assert {p.dst for p in to_backend} == {backend}
    assert backend in (str(f["backend"](0)), str(f["backend"](1)))
    assert {p.src for p in to_backend} == {str(f["snat"])}
    whole = _reassembled([o.data for o in outs])
    assert whole[UDP].dport == 8080 and bytes(whole[UDP].payload) == ANSWER and _udp_ok(whole)
    if family == 4:
        for p in to_backend:  # every fragment's IP header checksum is right
            fresh = IP(bytes(p))
            del fresh.chksum
            assert IP(bytes(fresh)).chksum == p.chksum

    i = 0 if backend == str(f["backend"](0)) else 1
    answer = _fragments(backend, f["snat"], 8080, whole[UDP].sport, ANSWER, 777,
                        Ether(src=backend_mac(i), dst=plab.mac["be0"]))
    back = [run(a, ingress="be0") for a in answer]
    assert [b.verdict for b in back] == ["REDIRECT"] * len(answer)
    assert {Ether(b.data)[f["ip"]].src for b in back} == {str(f["vip"])}
    assert {Ether(b.data)[f["ip"]].dst for b in back} == {str(f["client"])}
    assert {Ether(b.data).dst for b in back} == {CLIENT_MAC}
    reply = _reassembled([b.data for b in back])
    assert (reply[UDP].sport, reply[UDP].dport) == (53, CLIENT_PORT)
    assert bytes(reply[UDP].payload) == ANSWER and _udp_ok(reply)

    # Every fragment is counted on the flow, both ways, bytes as they arrived.
    svc, per_backend = _counters(plab, family)
    assert (svc.packets_in, svc.packets_out, svc.new_flows) == (len(query), len(answer), 1)
    assert svc.bytes_in == sum(map(len, query)) and svc.bytes_out == sum(map(len, answer))
    assert (per_backend[backend].packets_in, per_backend[backend].packets_out) == (len(query), len(answer))


@pytest.mark.parametrize("family", [4, 6])
def test_a_later_fragment_before_its_first_is_dropped_and_counted_then_followed(plab, family):
    """Out of order: what arrives before its first fragment is dropped (and counted);
    what arrives after it, in any order, follows it."""
    f = FAMILIES[family]
    plab.program(state(service(vip=f["vip"], port=53, proto=Protocol.UDP, v6=family == 6)))
    first, *later = _fragments(f["client"], f["vip"], CLIENT_PORT, 53, ANSWER, 99, client_eth())
    before = plab.reasons()[Reason.DROP_FRAGMENT]
    assert plab.xdp(later[-1]).verdict == "DROP"
    assert plab.reasons()[Reason.DROP_FRAGMENT] == before + 1, "untracked: counted"
    assert plab.xdp(first).verdict == "REDIRECT"
    out = [plab.xdp(p) for p in reversed(later)]  # out of order, after the first
    assert [o.verdict for o in out] == ["REDIRECT"] * len(later)
    assert {Ether(o.data)[f["ip"]].dst for o in out} == {str(f["backend"](0))}
    assert plab.reasons()[Reason.DROP_FRAGMENT] == before + 1


@pytest.mark.parametrize("family", [4, 6])
def test_fragments_of_two_datagrams_with_one_id_from_two_clients_stay_apart(plab, family):
    """The key is (source, destination, id, protocol): another client's datagram with the
    same id is not taken for the first one's."""
    f = FAMILIES[family]
    plab.program(state(service(vip=f["vip"], port=53, proto=Protocol.UDP, v6=family == 6)))
    other = "10.99.0.9" if family == 4 else "fd99::9"
    first, second, *_ = _fragments(f["client"], f["vip"], CLIENT_PORT, 53, ANSWER, 7, client_eth())
    _, stranger, *_ = _fragments(other, f["vip"], CLIENT_PORT, 53, ANSWER, 7, client_eth())
    assert plab.xdp(first).verdict == "REDIRECT"
    before = plab.reasons()[Reason.DROP_FRAGMENT]
    assert plab.xdp(stranger).verdict == "DROP"
    assert plab.reasons()[Reason.DROP_FRAGMENT] == before + 1
    assert plab.xdp(second).verdict == "REDIRECT"


@pytest.mark.parametrize("family", [4, 6])
def test_a_reply_fragment_before_its_first_is_left_to_the_kernel_then_followed(plab, family):
    """Replies are addressed to the SNAT address, not a frontend: a later fragment whose
    first was not seen cannot be told from the host's own traffic, so it is passed to the
    kernel and counted (PASS_FRAGMENT); once the first has passed, the rest follow it."""
    f = FAMILIES[family]
    plab.program(state(service(vip=f["vip"], port=53, proto=Protocol.UDP, v6=family == 6)))
    sent = Ether(plab.xdp(bytes(udp4() if family == 4 else udp6())).data)[f["ip"]]
    first, *later = _fragments(sent.dst, sent.src, 8080, sent[UDP].sport, ANSWER, 555,
                               Ether(src=backend_mac(0), dst=plab.mac["be0"]))
    before = plab.reasons()[Reason.PASS_FRAGMENT]
    assert plab.xdp(later[-1], ingress="be0").verdict == "PASS"
    assert plab.reasons()[Reason.PASS_FRAGMENT] == before + 1
    assert plab.xdp(first, ingress="be0").verdict == "REDIRECT"
    back = [plab.xdp(p, ingress="be0") for p in reversed(later)]
    assert [b.verdict for b in back] == ["REDIRECT"] * len(later)
    assert {Ether(b.data)[f["ip"]].dst for b in back} == {str(f["client"])}
