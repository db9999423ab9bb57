"""Packet tier, the established-flow fast path: the next hop cached in the conntrack
entry, invalidated by the FIB generation that the agent's netlink watcher bumps."""

from __future__ import annotations

import threading

import pytest
from pyroute2 import NetNS
from scapy.layers.l2 import Ether

from ctl.agent.datapath_watch import watch_routes
from ctl.dataplane import abi

from lab.harness import backend4, backend_mac
from lab.packets import ack4, service, state, syn4

from .test_conntrack import reply_from_backend
from .test_snat import _enter_netns

pytestmark = pytest.mark.packet
NEW_MAC = "02:00:00:00:99:99"


def _set_backend_mac(lab, mac: str) -> None:
    with NetNS(lab.netns, flags=0) as ns:
        ns.neigh("replace", dst=str(backend4(0)), lladdr=mac, ifindex=lab.ifindex["be0"], state=0x80)


def test_established_flow_uses_its_cached_next_hop_until_routing_changes(plab):
    plab.program(state(service()))
    first = plab.xdp(bytes(syn4()))
    assert Ether(first.data).dst == backend_mac(0)
    with plab.maps() as maps:
        (key,) = maps.keys("ct_fwd")
        hop = maps.get("ct_fwd", key).hop
    assert hop.ifindex == plab.ifindex["be0"] and hop.mtu > 0, "the FIB result is cached"

    stop, bumped = threading.Event(), threading.Event()
    listening = threading.Event()

    def watch() -> None:
        _enter_netns(plab.netns)  # this thread only
        watch_routes(plab.pin_dir, stop, on_bump=lambda gen: bumped.set(),
                     on_listening=listening.set)

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert listening.wait(5)
    try:
        # Without a generation bump the cache is trusted: prove it by changing the
        # neighbour behind the watcher's back (it is not started yet for this write)...
        with plab.maps() as maps:
            gen = maps.get("generations", int(abi.Gen.FIB))
        assert Ether(plab.xdp(bytes(ack4())).data).dst == backend_mac(0)
        # ...then for real: the watcher sees the neighbour change and bumps the generation.
        _set_backend_mac(plab, NEW_MAC)
        assert bumped.wait(5), "the netlink watcher noticed the neighbour change"
        with plab.maps() as maps:
            assert maps.get("generations", int(abi.Gen.FIB)) != gen
        again = plab.xdp(bytes(ack4()))
        assert again.verdict == "REDIRECT" and Ether(again.data).dst == NEW_MAC
    finally:
        stop.set()
        watcher.join()
        _set_backend_mac(plab, backend_mac(0))


def test_a_link_change_unmarks_interfaces_without_a_peer_elsewhere(plab):
    """peer_devs marks only veths whose peer is in another namespace: after any link
    change the watcher drops marks that do not hold (a veth whose peer is in the same
    namespace, lo, a gone interface), so that tc never redirects into a missing peer."""
    gone = 9999
    with NetNS(plab.netns, flags=0) as ns:
        ns.link("add", ifname="xgpeera", kind="veth", peer="xgpeerb")
        local_veth = ns.link_lookup(ifname="xgpeera")[0]
    stop, bumped, listening = threading.Event(), threading.Event(), threading.Event()
    try:
        with plab.maps() as maps:
            for ifindex in (1, local_veth, gone):
                maps.put("peer_devs", ifindex, 1)

        def watch() -> None:
            _enter_netns(plab.netns)  # this thread only
            watch_routes(plab.pin_dir, stop, on_bump=lambda gen: bumped.set(), on_listening=listening.set)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            assert listening.wait(5)
            with NetNS(plab.netns, flags=0) as ns:
                ns.link("set", index=ns.link_lookup(ifname="xgpeerb")[0], mtu=1400)
            assert bumped.wait(5), "the netlink watcher saw the link change"
            with plab.maps() as maps:
                assert maps.keys("peer_devs") == []
        finally:
            stop.set()
            watcher.join()
    finally:
        with plab.maps() as maps:
            for ifindex in maps.keys("peer_devs"):
                maps.delete("peer_devs", ifindex)
        with NetNS(plab.netns, flags=0) as ns:
            ns.link("del", ifname="xgpeera")


def test_the_reply_path_caches_its_next_hop_too(plab):
    plab.program(state(service()))
    out = plab.xdp(bytes(syn4())).data
    back = plab.xdp(bytes(reply_from_backend(out)), ingress="be0")
    assert back.verdict == "REDIRECT"
    with plab.maps() as maps:
        (key,) = maps.keys("ct_rev")
        hop = maps.get("ct_rev", key).hop
    assert hop.ifindex == plab.ifindex["cl0"]


def test_a_packet_bigger_than_the_cached_mtu_takes_the_fib_lookup(plab):
    """The cache would skip the FIB's MTU check; a packet over the cached MTU goes to
    the FIB, which hands it to the kernel (it sends fragmentation needed)."""
    plab.program(state(service()))
    plab.xdp(bytes(syn4()))
    with plab.maps() as maps:
        (key,) = maps.keys("ct_fwd")
        entry = maps.get("ct_fwd", key)
        entry.hop.mtu = 100
        maps.put("ct_fwd", key, entry)
    assert plab.xdp(bytes(ack4(payload=b"x" * 10))).verdict == "REDIRECT"
    big = plab.xdp(bytes(ack4(payload=b"x" * 200)))
    assert big.verdict == "REDIRECT", "the FIB (real MTU 1500) lets it through and refills the cache"
    with plab.maps() as maps:
        assert maps.get("ct_fwd", key).hop.mtu == 1500
