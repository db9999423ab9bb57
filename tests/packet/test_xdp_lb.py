"""Packet tier: each program on scapy-built packets through BPF_PROG_TEST_RUN.

Single-packet behaviour is one table (CASES: a new case is one row); behaviour that
needs earlier packets (conntrack, replies, ICMP errors) has a test of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from ctl.dataplane.abi import Reason
from ctl.model import (DesiredState, Endpoint, FrontendKey, NatMode, Protocol,
                                 Service, WeightedEndpoint)

from lab.expect import forwarded, l3, l4, tcp_rst_for, translated_in_place
from lab.harness import (CLIENT4, CLIENT6, CLIENT_MAC, GW_BACK4, GW_BACK6, VIP4, VIP6,
                      backend4, backend6, backend_mac)
from lab.packets import (BACKEND_PORT, CLIENT_PORT, VIP_PORT, ack4, client_eth, echo4,
                         service, state, syn4, syn6, udp4, udp6)

pytestmark = pytest.mark.packet
SNAT_RANGE = range(61000, 65536)


# -- the table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    desired: DesiredState
    send: Packet | bytes
    verdict: str
    # Expected output bytes from (lab, sent, output); None means byte-identical to input.
    expect: Callable | None = None
    reason: Reason | None = None  # this counter must have gone up by one
    hooks: tuple[str, ...] = ("xdp", "tc")


def to_backend(i=0, *, snat=True, v6=False, keep_zero=False):
    """Expectation: forwarded to backend i, from the SNAT address (any port in range) or
    from the client unchanged (DNAT)."""
    def build(lab, sent, out):
        sport = l4(Ether(out)).sport
        if snat:  # the client's own port when free (it is here), else one of the range
            assert sport in SNAT_RANGE or sport == l4(Ether(bytes(sent))).sport
        else:
            assert sport == CLIENT_PORT
        return forwarded(sent, src=(GW_BACK6 if v6 else GW_BACK4) if snat else (CLIENT6 if v6 else CLIENT4),
                         sport=sport, dst=backend6(i) if v6 else backend4(i), dport=BACKEND_PORT,
                         smac=lab.mac["be0"], dmac=backend_mac(i), keep_zero_udp_checksum=keep_zero)
    return build


def rst(lab, sent, out):
    return tcp_rst_for(sent)


TCP4, UDP4 = service(), service(port=53, proto=Protocol.UDP)
TCP6 = service(vip=VIP6, v6=True)
UDP6_DNAT = service(vip=VIP6, port=53, proto=Protocol.UDP, v6=True, nat=NatMode.DNAT)
REJECT4 = service(backends=(), reject=1)
REJECT6 = service(vip=VIP6, v6=True, backends=(), reject=1)
REJECT_UDP = service(port=53, proto=Protocol.UDP, backends=(), reject=1)
# One state holding both families (a dual-stack Gateway: TCP and UDP on an IPv4 and an
# IPv6 address); before the planner ordered addresses across families it could not be
# programmed at all.
DUAL = state(TCP4, UDP4, TCP6, service(vip=VIP6, port=53, proto=Protocol.UDP, v6=True))

CASES = [
    Case("tcp syn v4 snat", state(TCP4), syn4(), "REDIRECT", to_backend(0)),
    Case("tcp syn v4 dnat", state(service(nat=NatMode.DNAT)), syn4(), "REDIRECT", to_backend(0, snat=False)),
    Case("tcp data v4 with payload", state(TCP4), ack4(payload=b"x" * 1000), "REDIRECT", to_backend(0)),
    Case("udp v4 snat", state(UDP4), udp4(), "REDIRECT", to_backend(0)),
    Case("udp v4 zero checksum stays zero", state(UDP4), udp4(chksum=0), "REDIRECT",
         to_backend(0, keep_zero=True)),
    Case("tcp syn v6 snat", state(TCP6), syn6(), "REDIRECT", to_backend(0, v6=True)),
    Case("udp v6 dnat", state(UDP6_DNAT), udp6(), "REDIRECT", to_backend(0, snat=False, v6=True)),
    Case("dual stack: tcp syn v4", DUAL, syn4(), "REDIRECT", to_backend(0)),
    Case("dual stack: udp v4", DUAL, udp4(), "REDIRECT", to_backend(0)),
    Case("dual stack: tcp syn v6", DUAL, syn6(), "REDIRECT", to_backend(0, v6=True)),
    Case("dual stack: udp v6", DUAL, udp6(), "REDIRECT", to_backend(0, v6=True)),
    Case("invalid share: tcp syn v4 gets RST", state(REJECT4), syn4(), "TX|REDIRECT", rst),
    Case("invalid share: tcp syn v6 gets RST", state(REJECT6), syn6(), "TX|REDIRECT", rst),
    Case("invalid share: syn with payload is acked in full", state(REJECT4),
         syn4() / b"tfo-data", "TX|REDIRECT", rst),
    Case("invalid share: tcp non-syn dropped", state(REJECT4), ack4(), "DROP", reason=Reason.DROP_REJECT),
    Case("invalid share: udp dropped and counted", state(REJECT_UDP), udp4(), "DROP",
         reason=Reason.DROP_REJECT),
    Case("all weights zero: refused like the invalid share", state(service(backends=((0, 0),))),
         syn4(), "TX|REDIRECT", rst),
    Case("unmatched: tcp to another address", state(TCP4), syn4(dst="10.99.10.2"), "PASS"),
    Case("unmatched: udp to the vip on another port", state(UDP4), udp4(dport=54), "PASS"),
    Case("unmatched: icmp echo to the vip", state(TCP4), echo4(), "PASS"),
    Case("unmatched: arp", state(TCP4),
         Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=str(CLIENT4), pdst=str(VIP4)), "PASS"),
    # tc only in XDP: the kernel's test run for tc refuses frames shorter than an IPv4
    # header before the program runs (and on a real link so would ip_rcv's caller).
    Case("malformed: frame cut inside the IPv4 header", state(TCP4), bytes(syn4())[:24], "PASS",
         reason=Reason.PASS_MALFORMED, hooks=("xdp",)),
    Case("malformed: IPv4 total length beyond the frame, to the vip", state(TCP4),
         bytes(syn4())[:40], "DROP", reason=Reason.DROP_MALFORMED),
    Case("malformed: IPv4 header length 3, to the vip", state(TCP4),
         client_eth() / IP(src=str(CLIENT4), dst=str(VIP4), ihl=3) / TCP(dport=80), "DROP",
         reason=Reason.DROP_MALFORMED),
    Case("malformed: TCP data offset beyond the packet, to the vip", state(TCP4),
         client_eth() / IP(src=str(CLIENT4), dst=str(VIP4)) / TCP(dport=80, dataofs=15), "DROP",
         reason=Reason.DROP_MALFORMED),
    Case("malformed: truncated, not to the vip, passes untouched", state(TCP4),
         bytes(syn4(dst="10.99.10.2"))[:40], "PASS", reason=Reason.PASS_MALFORMED),
    Case("malformed: udp header cut, to the vip", state(UDP4),
         client_eth() / IP(src=str(CLIENT4), dst=str(VIP4), proto=17) / b"abc", "DROP",
         reason=Reason.DROP_MALFORMED),
    Case("fragment: first fragment to the vip is balanced like a whole datagram", state(TCP4),
         client_eth() / IP(src=str(CLIENT4), dst=str(VIP4), flags="MF") / TCP(sport=CLIENT_PORT, dport=80) / (b"x" * 64),
         "REDIRECT", to_backend(0)),
    Case("fragment: later fragment to the vip, its first unseen: dropped, counted", state(UDP4),
         client_eth() / IP(src=str(CLIENT4), dst=str(VIP4), frag=185, proto=17) / (b"x" * 64),
         "DROP", reason=Reason.DROP_FRAGMENT),
    Case("fragment: not to the vip passes untouched", state(TCP4),
         client_eth() / IP(src=str(CLIENT4), dst="10.99.10.2", frag=185, proto=6) / (b"x" * 64),
         "PASS", reason=Reason.PASS_FRAGMENT),
    Case("fragment: IPv6 first fragment to the vip is balanced like a whole datagram", state(TCP6),
         Ether(src=CLIENT_MAC) / IPv6(src=str(CLIENT6), dst=str(VIP6)) / IPv6ExtHdrFragment(m=1, id=5)
         / TCP(sport=CLIENT_PORT, dport=80) / (b"x" * 64), "REDIRECT", to_backend(0, v6=True)),
    Case("fragment: IPv6 later fragment to the vip, its first unseen: dropped, counted", state(TCP6),
         Ether(src=CLIENT_MAC) / IPv6(src=str(CLIENT6), dst=str(VIP6)) / IPv6ExtHdrFragment(offset=185, nh=6, id=5)
         / (b"x" * 64), "DROP", reason=Reason.DROP_FRAGMENT),
    Case("fragment: IPv6 fragment not to the vip passes untouched", state(TCP6),
         Ether(src=CLIENT_MAC) / IPv6(src=str(CLIENT6), dst="fd99:10::2") / IPv6ExtHdrFragment(offset=185, nh=6)
         / (b"x" * 64), "PASS", reason=Reason.PASS_FRAGMENT),
    Case("fragment: IPv6 atomic fragment (offset 0, no more) is a whole datagram", state(TCP6),
         Ether(src=CLIENT_MAC) / IPv6(src=str(CLIENT6), dst=str(VIP6)) / IPv6ExtHdrFragment(m=0, id=6)
         / TCP(sport=CLIENT_PORT, dport=80) / (b"x" * 64), "REDIRECT", to_backend(0, v6=True)),
    Case("ttl 1: handed to the kernel untranslated (it answers time exceeded)", state(TCP4),
         client_eth() / IP(src=str(CLIENT4), dst=str(VIP4), ttl=1) / TCP(dport=80, flags="S"),
         "PASS", reason=Reason.PASS_TTL),
]


RUNS = [(c, hook) for c in CASES for hook in c.hooks]


@pytest.mark.parametrize(("case", "hook"), RUNS, ids=[f"{c.name} [{h}]" for c, h in RUNS])
def test_case(plab, case: Case, hook: str):
    plab.program(case.desired)
    sent = bytes(case.send)
    before = plab.reasons()
    result = plab.xdp(sent) if hook == "xdp" else plab.tc(sent)
    assert result.verdict in case.verdict.split("|"), case.name
    if case.verdict == "DROP":
        pass  # a dropped packet has no output to compare
    elif case.expect is None:
        assert result.data == sent, "an untouched packet must pass byte-identical"
    else:
        packet = Ether(sent) if isinstance(case.send, bytes) else case.send
        expected = case.expect(plab, packet, result.data)
        assert result.data.hex() == expected.hex()
    if case.reason is not None:
        assert plab.reasons()[case.reason] == before[case.reason] + 1


def test_dual_stack_weighted_split_over_both_families(plab):
    """One weighted dual-stack state (3:1 over two backends per family, TCP and UDP):
    new flows of each family and protocol land on that family's backends in the ratio
    of the weights."""
    weighted = ((0, 3), (1, 1))
    plab.program(state(service(backends=weighted), service(port=53, proto=Protocol.UDP, backends=weighted),
                       service(vip=VIP6, v6=True, backends=weighted),
                       service(vip=VIP6, port=53, proto=Protocol.UDP, v6=True, backends=weighted)))
    flows = 400
    for name, make, backend in (("tcp4", syn4, backend4), ("udp4", udp4, backend4),
                                ("tcp6", syn6, backend6), ("udp6", udp6, backend6)):
        hits = {str(backend(0)): 0, str(backend(1)): 0}
        for sport in range(20000, 20000 + flows):
            result = plab.xdp(bytes(make(sport=sport)))
            assert result.verdict == "REDIRECT", name
            hits[str(l3(Ether(result.data)).dst)] += 1
        share = hits[str(backend(0))] / flows
        # 3:1 is a 0.75 share; 400 flows put 3 standard deviations at 0.065.
        assert abs(share - 0.75) < 0.08, (name, hits)
