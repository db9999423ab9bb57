"""Packet tier, IPv6 extension headers before the transport header: Hop-by-Hop and
Destination Options (and one Fragment header among them) are walked, up to a bound, to
find the transport header; they stay in place through translation and the transport
checksum stays right. A Routing header is not walked (a packet still being
source-routed is not for us), nor is anything past the bound."""

from __future__ import annotations

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting, PadN, fragment6)
from scapy.layers.l2 import Ether

from ctl.dataplane.abi import Reason
from ctl.model import Protocol
from lab.harness import CLIENT6, CLIENT_MAC, GW_BACK6, VIP6, backend6, backend_mac
from lab.packets import BACKEND_PORT, CLIENT_PORT, VIP_PORT, client_eth, service, state

pytestmark = pytest.mark.packet
HOOKS = ["xdp", "tc"]
ANSWER = bytes(range(256)) * 16  # 4 KiB: three fragments of about 1400 bytes


def hop_by_hop():
    return IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\x00" * 4)])  # 8 bytes


def dest_opts(longer: bool = False):
    # 16 bytes when longer: the length field counts 8-byte units past the first.
    return IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * (12 if longer else 4))])


def v6(src=CLIENT6, dst=VIP6):
    return IPv6(src=str(src), dst=str(dst), hlim=64)


def l4_checksum_ok(packet) -> bool:
    """The transport checksum as sent equals the one scapy computes afresh (its
    pseudo-header follows the extension headers, as a receiver's does)."""
    layer = TCP if TCP in packet else UDP
    sent = packet[layer].chksum
    fresh = IPv6(bytes(packet[IPv6]))
    del fresh[layer].chksum
    return IPv6(bytes(fresh))[layer].chksum == sent


def ext_bytes(packet) -> bytes:
    """The extension headers between the fixed header and the transport header."""
    ip = packet[IPv6]
    whole = bytes(ip)
    layer = TCP if TCP in ip else UDP if UDP in ip else None
    tail = len(bytes(ip[layer])) if layer else len(bytes(ip[IPv6ExtHdrFragment].payload))
    return whole[40:len(whole) - tail]


def runner(plab, hook):
    return plab.xdp if hook == "xdp" else plab.tc


@pytest.mark.parametrize("hook", HOOKS)
def test_a_syn_with_hop_by_hop_options_is_balanced_and_its_checksum_verifies(plab, hook):
    plab.program(state(service(vip=VIP6, v6=True)))
    sent = client_eth() / v6() / hop_by_hop() / TCP(sport=CLIENT_PORT, dport=VIP_PORT, flags="S", seq=1000)
    out = runner(plab, hook)(bytes(sent))
    assert out.verdict == "REDIRECT"
    got = Ether(out.data)
    assert (got[IPv6].src, got[IPv6].dst) == (str(GW_BACK6), str(backend6(0)))
    assert got[TCP].dport == BACKEND_PORT and got[TCP].flags == "S"
    assert got.dst == backend_mac(0)
    assert ext_bytes(got) == ext_bytes(sent), "the options stay in place"
    assert l4_checksum_ok(got)
    assert plab.reasons()[Reason.DROP_MALFORMED] == 0


@pytest.mark.parametrize("hook", HOOKS)
def test_a_udp_datagram_with_destination_options_is_balanced_and_answered(plab, hook):
    plab.program(state(service(vip=VIP6, port=53, proto=Protocol.UDP, v6=True)))
    run = runner(plab, hook)
    sent = client_eth() / v6() / dest_opts(longer=True) / UDP(sport=CLIENT_PORT, dport=53) / b"query"
    out = Ether(run(bytes(sent)).data)
    assert (out[IPv6].src, out[IPv6].dst, out[UDP].dport) == (str(GW_BACK6), str(backend6(0)), BACKEND_PORT)
    assert ext_bytes(out) == ext_bytes(sent) and l4_checksum_ok(out)
    assert bytes(out[UDP].payload) == b"query"

    answer = (Ether(src=backend_mac(0), dst=plab.mac["be0"]) / v6(backend6(0), GW_BACK6) / dest_opts()
              / UDP(sport=BACKEND_PORT, dport=out[UDP].sport) / b"answer")
    back = run(bytes(answer), ingress="be0")
    assert back.verdict == "REDIRECT"
    got = Ether(back.data)
    assert (got[IPv6].src, got[IPv6].dst) == (str(VIP6), str(CLIENT6))
    assert (got[UDP].sport, got[UDP].dport) == (53, CLIENT_PORT)
    assert got.dst == CLIENT_MAC and ext_bytes(got) == ext_bytes(answer) and l4_checksum_ok(got)


def _fragments(src, dst, sport, dport, ident, eth, before, after) -> list[bytes]:
    """A UDP datagram in fragments of about 1400 bytes, first to last; `before` the
    Fragment header (repeated in every fragment), `after` it (in the first only)."""
    datagram = v6(src, dst)
    for header in before:
        datagram = datagram / header
    datagram = datagram / IPv6ExtHdrFragment(id=ident)
    for header in after:
        datagram = datagram / header
    return [bytes(eth / piece) for piece in fragment6(datagram / UDP(sport=sport, dport=dport) / ANSWER, 1400)]


# Hop-by-Hop before the Fragment header (what a fragmenting host with options sends),
# and the bound exactly: Hop-by-Hop, Destination Options, Fragment, Destination Options.
LAYOUTS = {
    "hop-by-hop, fragment": (lambda: [hop_by_hop()], lambda: []),
    "hop-by-hop, dest-opts, fragment, dest-opts": (lambda: [hop_by_hop(), dest_opts()],
                                                   lambda: [dest_opts(longer=True)]),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("hook", HOOKS)
def test_fragments_with_options_before_the_fragment_header_follow_their_first(plab, hook, layout):
    """Query and answer, each in fragments: every fragment reaches the same place with
    the same translation, the first one's checksum made right for the whole datagram;
    later fragments sent out of order (after the first) follow it too."""
    before, after = LAYOUTS[layout]
    plab.program(state(service(vip=VIP6, port=53, proto=Protocol.UDP, backends=((0, 1), (1, 1)), v6=True)))
    run = runner(plab, hook)
    first, *later = _fragments(CLIENT6, VIP6, CLIENT_PORT, 53, 4242, client_eth(), before(), after())
    assert len(later) >= 2
    outs = [run(first)] + [run(f) for f in reversed(later)]
    assert [o.verdict for o in outs] == ["REDIRECT"] * (1 + len(later))
    packets = [Ether(o.data)[IPv6] for o in outs]
    backend = packets[0].dst
    assert backend in (str(backend6(0)), str(backend6(1)))
    assert {(p.src, p.dst) for p in packets} == {(str(GW_BACK6), backend)}
    for sent, got in zip([first] + list(reversed(later)), packets):
        assert ext_bytes(got) == ext_bytes(Ether(sent)), "headers stay in place"
    # The first fragment's UDP checksum covers the reassembled datagram: rebuild it from
    # what left the gateway and check it, and the payload, as the backend would.
    first_out = packets[0]
    data = bytes(first_out[IPv6ExtHdrFragment].payload) + b"".join(
        bytes(p[IPv6ExtHdrFragment].payload) for p in reversed(packets[1:]))
    whole = IPv6(src=first_out.src, dst=first_out.dst, nh=first_out[IPv6ExtHdrFragment].nh) / data
    whole = IPv6(bytes(whole))
    assert whole[UDP].dport == BACKEND_PORT and bytes(whole[UDP].payload) == ANSWER
    assert l4_checksum_ok(whole)
    client_side_port = whole[UDP].sport

    i = 0 if backend == str(backend6(0)) else 1
    answer = _fragments(backend, GW_BACK6, BACKEND_PORT, client_side_port, 777,
                        Ether(src=backend_mac(i), dst=plab.mac["be0"]), before(), after())
    back = [run(a, ingress="be0") for a in answer]
    assert [b.verdict for b in back] == ["REDIRECT"] * len(answer)
    assert {(Ether(b.data)[IPv6].src, Ether(b.data)[IPv6].dst) for b in back} == {(str(VIP6), str(CLIENT6))}
    reply = Ether(back[0].data)
    assert (reply[UDP].sport, reply[UDP].dport) == (53, CLIENT_PORT)
    assert plab.reasons()[Reason.DROP_FRAGMENT] == 0


@pytest.mark.parametrize("hook", HOOKS)
def test_a_later_fragment_with_options_before_its_first_is_dropped_and_counted(plab, hook):
    plab.program(state(service(vip=VIP6, port=53, proto=Protocol.UDP, v6=True)))
    first, *later = _fragments(CLIENT6, VIP6, CLIENT_PORT, 53, 99, client_eth(), [hop_by_hop()], [])
    run = runner(plab, hook)
    assert run(later[-1]).verdict == "DROP"
    assert plab.reasons()[Reason.DROP_FRAGMENT] == 1
    assert run(first).verdict == "REDIRECT"
    assert run(later[0]).verdict == "REDIRECT"


# Not walked: a Routing header; past the bound; Hop-by-Hop anywhere but first.
NOT_WALKED = {
    "routing header": lambda: [IPv6ExtHdrRouting(addresses=[str(VIP6)], segleft=0)],
    "five option headers": lambda: [hop_by_hop()] + [dest_opts() for _ in range(4)],
    "hop-by-hop not first": lambda: [dest_opts(), hop_by_hop()],
}


@pytest.mark.parametrize("case", list(NOT_WALKED))
@pytest.mark.parametrize("hook", HOOKS)
def test_headers_not_walked_keep_todays_behaviour(plab, hook, case):
    """To a frontend: dropped as malformed (never balanced half-understood); to any other
    address: passed untouched to the kernel, counted."""
    plab.program(state(service(vip=VIP6, v6=True)))
    run = runner(plab, hook)
    headers = NOT_WALKED[case]()
    for dst, verdict, reason in ((VIP6, "DROP", Reason.DROP_MALFORMED),
                                 ("fd99:10::2", "PASS", Reason.PASS_IPV6_EXT)):
        packet = Ether(src=CLIENT_MAC) / v6(dst=dst)
        for header in headers:
            packet = packet / header
        packet = packet / TCP(sport=CLIENT_PORT, dport=VIP_PORT, flags="S")
        before = plab.reasons()[reason]
        out = run(bytes(packet))
        assert out.verdict == verdict
        assert plab.reasons()[reason] == before + 1
        if verdict == "PASS":
            assert out.data == bytes(packet)


@pytest.mark.parametrize("hook", HOOKS)
def test_a_truncated_option_header_to_the_frontend_is_malformed(plab, hook):
    """A length that runs past the packet is caught, never read past."""
    plab.program(state(service(vip=VIP6, v6=True)))
    packet = bytearray(bytes(Ether(src=CLIENT_MAC) / v6() / hop_by_hop() / TCP(dport=VIP_PORT)))
    packet[14 + 40 + 1] = 200  # Hop-by-Hop length: 1608 bytes
    assert runner(plab, hook)(bytes(packet)).verdict == "DROP"
    assert plab.reasons()[Reason.DROP_MALFORMED] == 1
