"""The gateway in a VM: Debian's own kernel, virtio-net NICs, native XDP in the driver,
`gwctl run` in standalone mode, and real traffic from the client namespace on the host
to the backend namespaces, through the guest's data path.

The tests share one VM and one agent (whose start, a bcc compile under emulation, is the
tier's largest cost) and run in file order."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import pytest
import yaml

from lab.client import share_mismatches
from lab.examples import example_files, with_tcp_weights

from conftest import FIGURES, REMOTE_GATEWAY

pytestmark = pytest.mark.vm
IPV6 = Path(__file__).resolve().parent / "ipv6.yaml"
NICS = ("front", "be0", "be1", "be2")
TOLERANCE = 0.05  # as in the net tier
XDP_ATTACHED_DRV = 1  # IFLA_XDP_ATTACHED: the program runs in the driver (native mode)


def spread(agent, proto: str, addr, port: int, count: int) -> dict:
    mode = "tcp-spread" if proto == "tcp" else "udp-spread"
    return agent.gw.net.run_client(mode, "--addr", addr, "--port", port, "--count", count, "--timeout", 5,
                                   timeout=900)


def assert_shares(report: dict, shares: dict[str, float], count: int) -> None:
    assert report["timeout"] == 0 and report.get("refused", 0) == 0, report
    mismatches = share_mismatches(report, shares, count, TOLERANCE)
    assert not mismatches, f"{mismatches}; {report}"


def test_guest_runs_debians_kernel_as_provisioned(gateway):
    """provision.sh built this guest: Debian's 6.1 kernel (not the host's), bcc and the
    runtime dependencies in /opt/xdp-gateway, forwarding on."""
    assert gateway.kernel.startswith("6.1."), gateway.kernel
    if not REMOTE_GATEWAY:
        assert gateway.kernel != platform.release(), "the guest must prove a second kernel"
    imports = gateway.vm.run("/opt/xdp-gateway/bin/python -c 'import bcc, pyroute2, pydantic, typer, "
                             "prometheus_client, ctl; print(bcc.__version__, ctl.__file__)'").out.split()
    assert imports[0].startswith("0.26"), imports
    # the wheel of the tree under test (qemu) or the package provision.sh installed (Vagrant)
    assert imports[1].startswith("/opt/xdp-gateway/lib/" if REMOTE_GATEWAY else "/mnt/wheel/ctl/"), imports
    sysctls = gateway.vm.run("sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding").out.split()
    assert sysctls == ["1", "1"]


def test_agent_attaches_native_xdp_to_virtio_net(agent):
    modes = []
    for nic in NICS:
        info = agent.gw.vm.run(f"ethtool -i {nic}").out
        assert "driver: virtio_net" in info, info
        (link,) = json.loads(agent.gw.vm.run(f"ip -d -j link show dev {nic}").out)
        xdp = link.get("xdp", {})
        assert xdp.get("mode") == XDP_ATTACHED_DRV, f"{nic}: {link.get('xdp')}"
        modes.append(f"{nic} virtio_net xdp/id:{xdp['prog']['id']} mode {xdp['mode']} (native)")
    FIGURES["attach"] = "; ".join(modes)
    FIGURES["attach (ip link)"] = agent.gw.vm.run("ip -d link show dev front | grep -o 'prog/xdp id [0-9]*\\|xdp[a-z]*' "
                                                  "| tr '\\n' ' '").out.strip()


def test_weighted_tcp_and_udp_split(agent):
    agent.replace_config(example_files())
    vip = agent.gw.net.vip4
    assert_shares(spread(agent, "tcp", vip, 80, 500), {"be0": 0.7, "be1": 0.3}, 500)
    assert_shares(spread(agent, "udp", vip, 53, 500), {"be0": 0.5, "be1": 0.5}, 500)


def test_gwctl_status_in_the_vm_shows_the_counters(agent):
    done = agent.gwctl("status", "-o", "json")
    assert done.rc == 0, done.err
    frontends = {f["frontend"]: f for f in yaml.safe_load(done.out)["frontends"]}
    assert frontends["10.99.100.1:80/TCP"]["new_flows"] >= 500, frontends
    # 500 datagrams from random ephemeral ports: a few reuse a port (birthday odds, about
    # 4 in 28,000 ports) and so continue a flow instead of starting one.
    assert frontends["10.99.100.1:53/UDP"]["new_flows"] >= 480, frontends
    FIGURES["gwctl status -o json (in the VM)"] = ", ".join(
        f"{name} new_flows={frontends[name]['new_flows']}" for name in ("10.99.100.1:80/TCP", "10.99.100.1:53/UDP"))


def test_a_live_weight_edit(agent):
    agent.replace_config(with_tcp_weights(0, 0, 1))
    report = spread(agent, "tcp", agent.gw.net.vip4, 80, 50)
    assert report["counts"] == {"be2": 50}, report


def test_ipv6_weighted_split(agent):
    agent.replace_config({**example_files(), "40-ipv6.yaml": IPV6.read_text()})
    vip6 = agent.gw.net.vip6
    assert_shares(spread(agent, "tcp", vip6, 80, 500), {"be0": 0.7, "be1": 0.3}, 500)
    assert_shares(spread(agent, "udp", vip6, 53, 500), {"be0": 0.5, "be1": 0.5}, 500)


def test_an_established_connection_survives_an_agent_restart(agent):
    """The agent stops and a new one starts, this time in dnat mode, while one TCP
    connection keeps exchanging through the guest's data path: the pinned conntrack
    entries carry each flow's translation, so neither the restart nor the new mode (which
    applies to new flows) touches it. One restart serves both scenarios (it reuses the
    programs the first start pinned; that start, a bcc compile under emulation, took minutes)."""
    agent.replace_config(example_files())
    session = agent.gw.net.start_tcp_session(agent.gw.net.vip4, 80, "--interval-ms", 100, connect_timeout=60)
    try:
        time.sleep(2)
        agent.stop()
        time.sleep(2)  # no agent at all: the kernel keeps forwarding
        agent.nat = "dnat"
        FIGURES["agent restart"] = f"{agent.start():.0f} s to ready, a live connection exchanging throughout"
        time.sleep(2)
    finally:
        report = session.stop()
    assert report["errors"] == [] and report["exchanges"] >= 40, report
    assert report["peer"] not in (None, str(agent.gw.net.client.v4)), f"the connection began in snat mode: {report}"


def test_dnat_mode_shows_the_client_address_to_the_backend(agent):
    assert agent.nat == "dnat", "the restart test before this one started the agent in dnat mode"
    assert agent.problems() == []
    report = spread(agent, "tcp", agent.gw.net.vip4, 80, 30)
    assert report["timeout"] == 0 and report.get("refused", 0) == 0, report
    peers = {peer for seen in report["seen_peers"].values() for peer in seen}
    assert peers == {str(agent.gw.net.client.v4)}, report
