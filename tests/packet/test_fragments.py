"""Packet tier, IPv4 fragments: the first fragment is balanced and translated like a
whole datagram, later ones follow it (same backend, same translation), in both
directions; a later fragment whose first was not seen is dropped and counted."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP, defragment, fragment
from scapy.layers.l2 import Ether

from ctl.dataplane.abi import Reason
from ctl.model import Protocol
from lab.harness import CLIENT4, CLIENT_MAC, GW_BACK4, VIP4, backend4, backend_mac
from lab.packets import CLIENT_PORT, client_eth, service, state

pytestmark = pytest.mark.packet
ANSWER = bytes(range(256)) * 16  # 4 KiB, as a big DNS answer


def _fragments(src, dst, sport, dport, payload, ip_id, eth) -> list[bytes]:
    datagram = IP(src=str(src), dst=str(dst), ttl=64, id=ip_id) / UDP(sport=sport, dport=dport) / payload
    return [bytes(eth / f) for f in fragment(datagram, fragsize=1400)]


def _reassembled(frames: list[bytes]) -> IP:
    (whole,) = defragment([Ether(f)[IP] for f in frames])
    return IP(bytes(whole))


def _udp_ok(packet: IP) -> bool:
    sent = packet[UDP].chksum
    fresh = IP(bytes(packet))
    del fresh[UDP].chksum
    return IP(bytes(fresh))[UDP].chksum == sent


@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_a_fragmented_datagram_reaches_one_backend_and_its_answer_comes_back(plab, hook):
    plab.program(state(service(port=53, proto=Protocol.UDP, backends=((0, 1), (1, 1)))))
    run = plab.xdp if hook == "xdp" else plab.tc
    query = _fragments(CLIENT4, VIP4, CLIENT_PORT, 53, ANSWER, 4242, client_eth())
    outs = [run(f) for f in query]
    assert [o.verdict for o in outs] == ["REDIRECT"] * len(query) and len(query) == 3
    to_backend = [Ether(o.data) for o in outs]
    backend = to_backend[0][IP].dst
    assert {e[IP].dst for e in to_backend} == {backend} and backend in (str(backend4(0)), str(backend4(1)))
    assert {e[IP].src for e in to_backend} == {str(GW_BACK4)}
    whole = _reassembled([o.data for o in outs])
    assert whole[UDP].dport == 8080 and bytes(whole[UDP].payload) == ANSWER and _udp_ok(whole)
    for e in to_backend:  # every fragment's IP header checksum is right
        fresh = IP(bytes(e[IP]))
        del fresh.chksum
        assert IP(bytes(fresh)).chksum == e[IP].chksum

    i = 0 if backend == str(backend4(0)) else 1
    answer = _fragments(backend, GW_BACK4, 8080, whole[UDP].sport, ANSWER, 777,
                        Ether(src=backend_mac(i), dst=plab.mac["be0"]))
    back = [run(f, ingress="be0") for f in answer]
    assert [b.verdict for b in back] == ["REDIRECT"] * len(answer)
    assert {Ether(b.data)[IP].src for b in back} == {str(VIP4)}
    assert {Ether(b.data)[IP].dst for b in back} == {str(CLIENT4)}
    assert {Ether(b.data).dst for b in back} == {CLIENT_MAC}
    reply = _reassembled([b.data for b in back])
    assert (reply[UDP].sport, reply[UDP].dport) == (53, CLIENT_PORT)
    assert bytes(reply[UDP].payload) == ANSWER and _udp_ok(reply)


def test_a_later_fragment_before_its_first_is_dropped_and_counted_then_followed(plab):
    plab.program(state(service(port=53, proto=Protocol.UDP)))
    first, second, third = _fragments(CLIENT4, VIP4, CLIENT_PORT, 53, ANSWER, 99, client_eth())
    before = plab.reasons()[Reason.DROP_FRAGMENT]
    assert plab.xdp(third).verdict == "DROP"
    assert plab.reasons()[Reason.DROP_FRAGMENT] == before + 1, "untracked: counted"
    assert plab.xdp(first).verdict == "REDIRECT"
    out = [plab.xdp(f) for f in (third, second)]  # out of order, after the first
    assert [o.verdict for o in out] == ["REDIRECT", "REDIRECT"]
    assert {Ether(o.data)[IP].dst for o in out} == {str(backend4(0))}
