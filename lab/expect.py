"""Building the packets a test expects, by editing a copy of the input and letting
scapy recompute every checksum from scratch: the programs update checksums
incrementally, so a byte-for-byte match proves the arithmetic."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet


def l3(p: Packet):
    return p[IP] if IP in p else p[IPv6]


def l4(p: Packet):
    return p[TCP] if TCP in p else p[UDP]


def forwarded(sent: Packet, *, src, sport: int, dst, dport: int, smac: str, dmac: str,
              keep_zero_udp_checksum: bool = False) -> bytes:
    """`sent` after NAT and forwarding: new addresses and ports, MACs of the next hop,
    TTL or hop limit one less."""
    p = sent.copy()
    p[Ether].src, p[Ether].dst = smac, dmac
    ip = l3(p)
    ip.src, ip.dst = str(src), str(dst)
    if IP in p:
        ip.ttl -= 1
        del ip.chksum
    else:
        ip.hlim -= 1
    seg = l4(p)
    seg.sport, seg.dport = sport, dport
    if not (keep_zero_udp_checksum and UDP in p and seg.chksum == 0):
        del seg.chksum
    return bytes(p.__class__(bytes(p)))


def translated_in_place(sent: Packet, *, src, sport: int, dst, dport: int) -> bytes:
    """`sent` after NAT only (tc egress: the kernel already routed it)."""
    p = sent.copy()
    ip = l3(p)
    ip.src, ip.dst = str(src), str(dst)
    if IP in p:
        del ip.chksum
    seg = l4(p)
    seg.sport, seg.dport = sport, dport
    del seg.chksum
    return bytes(p)


def tcp_rst_for(syn: Packet) -> bytes:
    """The RST|ACK a refused SYN must get: from the frontend, seq 0, acking the SYN."""
    ip = l3(syn)
    seg = syn[TCP]
    eth = Ether(src=syn[Ether].dst, dst=syn[Ether].src, type=syn[Ether].type)
    if IP in syn:
        reply_ip = IP(src=ip.dst, dst=ip.src, ttl=64, id=0, flags="DF")
    else:
        reply_ip = IPv6(src=ip.dst, dst=ip.src, hlim=64)
    payload = len(bytes(seg.payload))
    return bytes(eth / reply_ip / TCP(sport=seg.dport, dport=seg.sport, seq=0,
                                      ack=seg.seq + 1 + payload, flags="RA", window=0))
