"""Packet tier, SNAT port allocation: claims racing on two CPUs, keeping the client's
port, probing, several SNAT addresses, how long a closed flow holds its port, and
exhaustion being counted."""

from __future__ import annotations

import ctypes
import os
import struct
import threading
from collections import Counter
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path

import pytest

from ctl.dataplane import abi, bpfsys
from ctl.dataplane.plan import DataplaneConfig

from lab.packets import client_eth, service, state

pytestmark = pytest.mark.packet

CLONE_NEWNET = 0x40000000


def _enter_netns(name: str) -> None:
    """Moves the calling thread (only) into the lab's network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


def _syn(client: str, sport: int) -> bytes:
    from scapy.layers.inet import IP, TCP

    return bytes(client_eth() / IP(src=client, dst="10.99.100.1", ttl=64) /
                 TCP(sport=sport, dport=80, flags="S", seq=1000))


def _expire_every_reverse_entry(lab) -> None:
    with lab.maps() as maps:
        for key in maps.keys("ct_rev"):
            entry = maps.get("ct_rev", key)
            entry.last_seen = 1  # boot + 1 ns: long expired
            maps.put("ct_rev", key, entry)
        for key in maps.keys("ct_fwd"):
            maps.delete("ct_fwd", key)


REPLAY_C = Path(__file__).resolve().parents[2] / "bench" / "bpf" / "replay.c"
FRAME_LEN = 64
SPORT_OFF = 14 + 20


class Burst:
    """The benchmark's replay wrapper (bench/bpf/replay.c), one instance per thread:
    one BPF_PROG_TEST_RUN call runs `repeat` SYNs back to back in the kernel, each
    with the next source port, so two threads' bursts really overlap in time."""

    def __init__(self, lab, frame: bytes, base: int, span: int) -> None:
        from bcc import BPF

        self.module = BPF(src_file=str(REPLAY_C).encode(), cflags=[f"-DREPLAY_LEN={FRAME_LEN}"])
        self.fd = self.module.load_func(b"xdp_replay", BPF.XDP).fd
        self.module.get_table(b"replay_xdp_target")[ctypes.c_int(0)] = \
            ctypes.c_int(lab.dataplane.programs.xdp_fd)
        self.table = self.module.get_table(b"replay_frame")
        self.frame, self.base, self.span = frame, base, span
        self.ctx = struct.pack("6I", 0, FRAME_LEN, 0, lab.ifindex["cl0"], 0, 0)

    def arm(self) -> None:
        value = self.table[ctypes.c_int(0)]
        ctypes.memmove(value.data, self.frame, FRAME_LEN)
        value.vary_off, value.vary_base, value.vary_span, value.counter = \
            SPORT_OFF, self.base, self.span, 0
        self.table[ctypes.c_int(0)] = value

    def run(self) -> None:
        bpfsys.prog_test_run(self.fd, self.frame, repeat=self.span, ctx=self.ctx)


def _padded_syn(client: str, sport: int) -> bytes:
    raw = _syn(client, sport)
    return raw + bytes(FRAME_LEN - len(raw))


def test_two_cpus_racing_for_expired_ports_never_share_one(plab):
    """Every SNAT port is held by an expired flow; two threads pinned to two CPUs send
    bursts of new SYNs at the same moment that contend for those ports (the same client
    ports from two client addresses, so each SYN first wants its own port). Each expired
    port may be taken over by one flow only: no two live flows share (SNAT address,
    port, backend), and at most len(ports) flows win a round."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs to race two claims")
    cpus = sorted(os.sched_getaffinity(0))[:2]
    base, span = 61000, 256
    plab.program(state(service()), DataplaneConfig(snat_port_min=base, snat_port_max=base + span - 1))
    clients = ("10.99.0.2", "10.99.0.3")
    bursts = [Burst(plab, _padded_syn(c, base), base, span) for c in clients]

    rounds, failures, contended = 20, [], 0
    for _ in range(rounds):
        with plab.maps() as maps:
            for key in maps.keys("ct_fwd"):
                maps.delete("ct_fwd", key)
            for key in maps.keys("ct_rev"):
                maps.delete("ct_rev", key)
        for port in range(base, base + span):  # every port held by a third client...
            assert plab.xdp(_syn("10.99.0.9", port)).verdict == "REDIRECT"
        _expire_every_reverse_entry(plab)  # ...whose flows have all expired
        for burst in bursts:
            burst.arm()
        barrier = threading.Barrier(2)

        def race(burst: Burst, cpu: int) -> None:
            os.sched_setaffinity(0, {cpu})
            _enter_netns(plab.netns)
            barrier.wait()
            burst.run()

        threads = [threading.Thread(target=race, args=(b, cpu)) for b, cpu in zip(bursts, cpus)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with plab.maps() as maps:
            flows = [maps.get("ct_fwd", k) for k in maps.keys("ct_fwd")]
        shared = Counter((bytes(f.nat_addr.b), f.nat_port, f.backend_id) for f in flows)
        contended += 2 * span - len(flows)
        if len(flows) > span or any(n > 1 for n in shared.values()):
            failures.append((len(flows), sum(n - 1 for n in shared.values())))
    assert not failures, f"{len(failures)} of {rounds} rounds handed a port to two flows " \
                         f"(flows, extra claims): {failures[:5]}"
    assert contended > 0 and plab.reasons()[abi.Reason.DROP_SNAT_EXHAUSTED] > 0, "ports were contended"


# -- allocation --------------------------------------------------------------------------
SNAT_A, SNAT_B = ip_address("10.99.10.1"), ip_address("10.99.10.250")


def _forwarded_source(lab, frame: bytes) -> tuple[str, int] | None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    result = lab.xdp(frame)
    if result.verdict != "REDIRECT":
        return None
    out = Ether(result.data)
    return out[IP].src, out[TCP].sport


def _two_address_service():
    return replace(service(), snat_addresses=(SNAT_A, SNAT_B))


def test_several_snat_addresses_keep_the_client_port_then_probe_then_run_out(plab):
    """One port in the range and two SNAT addresses: clients on one source port get it
    on each address, then the range's port on each, and the fifth is dropped and
    counted as SNAT exhaustion."""
    plab.program(state(_two_address_service()), DataplaneConfig(snat_port_min=61000, snat_port_max=61000))
    sources = [_forwarded_source(plab, _syn(f"10.99.0.{10 + i}", 40000)) for i in range(5)]
    assert sorted(sources[:4]) == sorted([(str(SNAT_A), 40000), (str(SNAT_B), 40000),
                                          (str(SNAT_A), 61000), (str(SNAT_B), 61000)])
    assert sources[4] is None
    assert plab.reasons()[abi.Reason.DROP_SNAT_EXHAUSTED] == 1


def test_keeping_the_client_port_can_be_turned_off(plab):
    plab.program(state(service()), DataplaneConfig(snat_keep_port=False))
    _, port = _forwarded_source(plab, _syn("10.99.0.2", 40000))
    assert 61000 <= port <= 65535


def _close(lab, client: str, sport: int, backend_first: bool) -> None:
    """Both FINs of the flow, in the given order."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from .test_conntrack import reply_from_backend

    out = lab.xdp(_syn(client, sport)).data
    lab.xdp(bytes(reply_from_backend(out, flags="SA")), ingress="be0")
    fin = Ether(_syn(client, sport))
    fin[TCP].flags, fin[TCP].seq, fin[TCP].ack = "FA", 1001, 5001
    fin = Ether(bytes(fin))
    backend_fin = reply_from_backend(out, flags="FA")
    for frame, ingress in ([(backend_fin, "be0"), (fin, "cl0")] if backend_first
                           else [(fin, "cl0"), (backend_fin, "be0")]):
        assert lab.xdp(bytes(frame), ingress=ingress).verdict == "REDIRECT"


@pytest.mark.parametrize("backend_first", [True, False])
def test_a_closed_flow_holds_its_port_only_while_the_backend_may_hold_state(plab, backend_first):
    """The backend closed first: it holds TIME_WAIT, so another client does not get the
    port before tcp_time_wait_timeout; the same client tuple may start over on it at
    once. The client closed first (or RST): the port is free after tcp_close_timeout
    (0 here)."""
    import time

    plab.program(state(service()), DataplaneConfig(tcp_close_timeout=0))
    _close(plab, "10.99.0.2", 40000, backend_first)
    with plab.maps() as maps:
        (key,) = maps.keys("ct_rev")
        state_bits = abi.CtState(maps.get("ct_rev", key).state)
    assert (abi.CtState.REV_CLOSED_FIRST in state_bits) == backend_first
    time.sleep(0.02)  # past the coarse clock's tick
    other = _forwarded_source(plab, _syn("10.99.0.3", 40000))
    if backend_first:
        assert other != (str(SNAT_A), 40000), "another client must not get a TIME_WAIT port"
        assert _forwarded_source(plab, _syn("10.99.0.2", 40000)) == (str(SNAT_A), 40000), \
            "the same client tuple starts over on its port"
    else:
        assert other == (str(SNAT_A), 40000)
