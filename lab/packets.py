"""Named packets for the packet tier, defined once (as in Cilium's pkt_defs)."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from ctl.model import (DesiredState, Endpoint, FrontendKey, NatMode, Protocol, Service,
                       WeightedEndpoint)

from .harness import (CLIENT4, CLIENT6, CLIENT_MAC, GW_BACK4, GW_BACK6, VIP4, VIP6, backend4,
                      backend6)

CLIENT_PORT = 40000
VIP_PORT = 80
BACKEND_PORT = 8080
GW_FRONT_MAC = "02:00:00:00:00:01"  # what the client thinks the gateway is


def client_eth() -> Ether:
    return Ether(src=CLIENT_MAC, dst=GW_FRONT_MAC)


def syn4(sport: int = CLIENT_PORT, dport: int = VIP_PORT, dst=VIP4, seq: int = 1000) -> Ether:
    return client_eth() / IP(src=str(CLIENT4), dst=str(dst), ttl=64, id=7) / TCP(
        sport=sport, dport=dport, flags="S", seq=seq, window=64240)


def ack4(sport: int = CLIENT_PORT, payload: bytes = b"hello", seq: int = 1001) -> Ether:
    return client_eth() / IP(src=str(CLIENT4), dst=str(VIP4), ttl=64, id=8) / TCP(
        sport=sport, dport=VIP_PORT, flags="PA", seq=seq, ack=5001, window=502) / payload


def syn6(sport: int = CLIENT_PORT, seq: int = 1000) -> Ether:
    return Ether(src=CLIENT_MAC, dst=GW_FRONT_MAC, type=0x86DD) / IPv6(
        src=str(CLIENT6), dst=str(VIP6), hlim=64) / TCP(sport=sport, dport=VIP_PORT, flags="S", seq=seq)


def udp4(sport: int = CLIENT_PORT, dport: int = 53, payload: bytes = b"query", chksum=None) -> Ether:
    udp = UDP(sport=sport, dport=dport)
    if chksum is not None:
        udp.chksum = chksum
    return client_eth() / IP(src=str(CLIENT4), dst=str(VIP4), ttl=64, id=9) / udp / payload


def udp6(sport: int = CLIENT_PORT, dport: int = 53, payload: bytes = b"query") -> Ether:
    return Ether(src=CLIENT_MAC, dst=GW_FRONT_MAC, type=0x86DD) / IPv6(
        src=str(CLIENT6), dst=str(VIP6), hlim=64) / UDP(sport=sport, dport=dport) / payload


def echo4() -> Ether:
    return client_eth() / IP(src=str(CLIENT4), dst=str(VIP4)) / ICMP(type=8, id=1, seq=1) / b"ping"


# -- desired states over these addresses (tests and bench/packet.py) -------------------
def service(vip=VIP4, port=VIP_PORT, proto=Protocol.TCP, backends=((0, 1),), *,
            nat=NatMode.SNAT, reject=0.0, v6=False, backend_port=BACKEND_PORT) -> Service:
    addr = backend6 if v6 else backend4
    return Service(
        frontend=FrontendKey(vip, port, proto),
        backends=tuple(WeightedEndpoint(Endpoint(addr(i), backend_port), w) for i, w in backends),
        reject_weight=reject, nat=nat,
        snat_addresses=((GW_BACK6 if v6 else GW_BACK4),) if nat is NatMode.SNAT else (),
        owner="test",
    )


def state(*services: Service) -> DesiredState:
    return DesiredState(tuple(services))
