"""The network lab itself, with no load balancer: plain kernel routing through gw."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from pyroute2 import netns

from lab import netlab

TCP_PORT = 8080
UDP_PORT = 5353
CLOSED_PORT = 1


def _missing_requirement() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, XDP)"
    for tool in ("ip", "ethtool", "sysctl"):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command"
    if not os.path.exists("/proc/self/ns/net"):
        return "kernel without network namespaces"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "'ip netns' is not supported"
    return None


MISSING = _missing_requirement()
pytestmark = [pytest.mark.net, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]


@pytest.fixture(scope="module")
def net():
    with netlab.lab(backends=2) as the_lab:
        the_lab.start_servers(tcp_ports=(TCP_PORT,), udp_ports=(UDP_PORT,))
        yield the_lab
    assert netlab.leftovers(the_lab.prefix) == []


def _addresses(net: netlab.Lab, family: int, backend: int = 0):
    """(backend address, the client address the backend should see) for `family`."""
    target = net.backends[backend]
    return (target.v4, net.client.v4) if family == 4 else (target.v6, net.client.v6)


@pytest.mark.parametrize("family", [4, 6])
def test_tcp_reaches_backend_through_gateway(net, family):
    addr, client_addr = _addresses(net, family)

    report = net.run_client("tcp-spread", "--addr", addr, "--port", TCP_PORT, "--count", 3)

    assert report == {
        "counts": {"be0": 3},
        "refused": 0,
        "timeout": 0,
        "errors": {},
        "seen_peers": {"be0": [str(client_addr)]},
    }


@pytest.mark.parametrize("family", [4, 6])
def test_udp_reaches_backend_through_gateway(net, family):
    addr, client_addr = _addresses(net, family, backend=1)

    report = net.run_client("udp-spread", "--addr", addr, "--port", UDP_PORT, "--count", 3)

    assert report["counts"] == {"be1": 3}
    assert (report["refused"], report["timeout"], report["errors"]) == (0, 0, {})
    assert report["seen_peers"] == {"be1": [str(client_addr)]}


def test_tcp_session_exchanges_until_stopped(net):
    session = net.start_tcp_session(net.backends[1].v6, TCP_PORT, "--interval-ms", 20)
    assert session.backend == "be1"
    time.sleep(1)

    report = session.stop()

    assert report["backend"] == "be1"
    assert report["peer"] == str(net.client.v6)
    assert report["exchanges"] > 10
    assert report["errors"] == []


def test_connect_to_closed_port_is_refused_at_once(net):
    report = net.run_client(
        "tcp-connect-once", "--addr", net.backends[0].v4, "--port", CLOSED_PORT, "--timeout", 5
    )

    assert report["result"] == "refused"
    assert report["elapsed_ms"] < 500  # a RST, not the 5 s timeout


def test_traffic_passes_with_xdp_pass_on_the_peers(net):
    peers = (net.client, *net.backends)
    prog_fd = netlab.load_xdp_pass()
    try:
        net.attach_xdp_pass(prog_fd)
        prog_ids = {net.xdp_prog_id(peer.ns, peer.ifindex) for peer in peers}
        assert len(prog_ids) == 1 and None not in prog_ids

        for family in (4, 6):
            addr, client_addr = _addresses(net, family)
            tcp = net.run_client("tcp-spread", "--addr", addr, "--port", TCP_PORT, "--count", 3)
            udp = net.run_client("udp-spread", "--addr", addr, "--port", UDP_PORT, "--count", 3)
            assert tcp["counts"] == udp["counts"] == {"be0": 3}
            assert tcp["seen_peers"] == udp["seen_peers"] == {"be0": [str(client_addr)]}
    finally:
        net.detach_xdp_pass()
        os.close(prog_fd)
    assert {net.xdp_prog_id(peer.ns, peer.ifindex) for peer in peers} == {None}


def test_lab_leaves_nothing_behind():
    with netlab.lab(backends=1) as the_lab:
        the_lab.start_servers()
        assert len(netlab.leftovers(the_lab.prefix)) == 3 + 1  # namespaces + server

    assert netlab.leftovers(the_lab.prefix) == []


def test_lab_cleans_up_when_the_body_raises():
    prog_fd = netlab.load_xdp_pass()
    try:
        with pytest.raises(RuntimeError, match="body failed"):
            with netlab.lab(backends=1) as the_lab:
                the_lab.start_servers()
                the_lab.attach_xdp_pass(prog_fd)
                the_lab.start_tcp_session(the_lab.backends[0].v4, TCP_PORT)
                raise RuntimeError("body failed")
    finally:
        os.close(prog_fd)

    assert netlab.leftovers(the_lab.prefix) == []


def test_lab_cleans_up_when_setup_fails_halfway():
    prefix = netlab.new_prefix()
    not_ours = f"{prefix}-be1"
    netns.create(not_ours)  # the lab's second backend namespace cannot be created
    try:
        with pytest.raises(FileExistsError):
            with netlab.lab(backends=2, prefix=prefix):
                pytest.fail("the lab should not have been built")

        assert netlab.leftovers(prefix) == [f"netns {not_ours}"]  # not removed: not ours
    finally:
        netns.remove(not_ours)


def test_lab_cleans_up_when_setup_fails_after_links_exist(monkeypatch):
    def fail(ns, ifname):
        raise OSError("ethtool failed")

    monkeypatch.setattr(netlab, "_disable_tx_checksum_offload", fail)
    prefix = netlab.new_prefix()

    with pytest.raises(OSError, match="ethtool failed"):
        with netlab.lab(backends=2, prefix=prefix):
            pytest.fail("the lab should not have been built")

    assert netlab.leftovers(prefix) == []
