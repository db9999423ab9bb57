"""The chart's capability set for the agent is the least that works: `gwctl run` with
exactly the capabilities the rendered DaemonSet grants becomes ready, and without
SYS_ADMIN or NET_ADMIN it fails. Runs the real agent (bcc, verifier, netlink) in a network
namespace under `setpriv --bounding-set`, on the standalone example."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, bpf_missing, one

pytestmark = pytest.mark.net

SIZES = ["--maglev-size", "1021", "--max-services", "64", "--max-backends", "256", "--ct-size", "4096"]
PROBE = ("import sys, urllib.request\n"
         "try: print(urllib.request.urlopen('http://127.0.0.1:9481/readyz', timeout=2).status)\n"
         "except Exception as e: print(e)")


@pytest.fixture
def netns():
    reason = bpf_missing() or (None if shutil.which("setpriv") else "needs setpriv (util-linux)")
    if reason:
        pytest.skip(reason)
    name = f"xgcap{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (["link", "set", "lo", "up"],
                        ["link", "add", "xgc0", "type", "veth", "peer", "name", "xgc1"],
                        ["addr", "add", "10.99.100.2/24", "dev", "xgc0"],
                        ["link", "set", "xgc0", "up"], ["link", "set", "xgc1", "up"]):
            subprocess.run(["ip", "-n", name, *command], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _agent_capabilities(default_objects) -> list[str]:
    pod = one(default_objects, "DaemonSet")["spec"]["template"]["spec"]
    agent = next(c for c in pod["containers"] if c["name"] == "agent")
    assert agent["securityContext"]["capabilities"]["drop"] == ["ALL"]
    return agent["securityContext"]["capabilities"]["add"]


def _run_agent(netns: str, capabilities: list[str], timeout: float = 150) -> tuple[bool, str]:
    """(became ready, output) for `gwctl run` bounded to these capabilities."""
    pin_dir = Path(f"/sys/fs/bpf/{netns}")
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in capabilities)])
    gwctl = Path(sys.executable).parent / "gwctl"
    agent = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{netns}", "setpriv", "--bounding-set", bounding, "--inh-caps", "-all", "--",
         str(gwctl), "run", "--config", str(ROOT / "examples" / "standalone"), "-i", "xgc0",
         "--attach", "xdp-generic", "--pin-dir", str(pin_dir), "--listen", "127.0.0.1:9481", *SIZES],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = False
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and agent.poll() is None:
            probe = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", PROBE],
                                   capture_output=True, text=True, timeout=10)
            if probe.stdout.strip() == "200":
                ready = True
                break
            time.sleep(1)
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        try:
            output, _ = agent.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            agent.kill()
            output, _ = agent.communicate()
        shutil.rmtree(pin_dir, ignore_errors=True)
    return ready, output


def test_the_charts_capabilities_are_enough(netns, default_objects):
    capabilities = _agent_capabilities(default_objects)
    ready, output = _run_agent(netns, capabilities)
    assert ready, output[-3000:]


@pytest.mark.parametrize("missing", ["SYS_ADMIN", "NET_ADMIN"])
def test_each_capability_the_chart_needs_is_needed(netns, default_objects, missing):
    capabilities = [c for c in _agent_capabilities(default_objects) if c != missing]
    ready, output = _run_agent(netns, capabilities)
    assert not ready
    assert "not permitted" in output.lower(), output[-3000:]
