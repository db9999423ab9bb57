"""The chart's agent container, emulated without a container engine, starts: with the
capabilities the rendered DaemonSet grants and nothing of the node's kernel headers. And
that capability set is the least that works: without SYS_ADMIN or NET_ADMIN the agent
fails. Runs the real agent (bcc, verifier, netlink) in a network namespace under
`setpriv --bounding-set`, on the standalone example."""

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


def _bounded(capabilities: list[str]) -> list[str]:
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in capabilities)])
    return ["setpriv", "--bounding-set", bounding, "--inh-caps", "-all", "--"]


def _standalone(netns: str, program_cache: Path) -> list[str]:
    gwctl = Path(sys.executable).parent / "gwctl"
    return [str(gwctl), "run", "--config", str(ROOT / "examples" / "standalone"), "-i", "xgc0",
            "--attach", "xdp-generic", "--pin-dir", f"/sys/fs/bpf/{netns}", "--listen", "127.0.0.1:9481",
            "--program-cache", str(program_cache), *SIZES]


def _run_agent(netns: str, command: list[str], timeout: float = 180) -> tuple[bool, str]:
    """(became ready, output) for an agent command run in the network namespace."""
    agent = subprocess.Popen(["nsenter", f"--net=/run/netns/{netns}", *command],
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
        shutil.rmtree(f"/sys/fs/bpf/{netns}", ignore_errors=True)
    return ready, output


def test_the_daemonsets_agent_container_starts(netns, renderer):
    """The agent container as the chart describes it, emulated without a container
    engine: the chart's node-setup script run first, then the agent with the chart's own
    arguments (a directory instead of the cluster) and exactly its capabilities, in a
    mount namespace where /lib/modules is empty (no headers from the node), /proc/sys and
    /sys are read-only, and only bpffs is writable under /sys."""
    values = {"dataplane": {"interfaces": ["xgc0"], "attach": "xdp-generic", "pinDir": f"/sys/fs/bpf/{netns}",
                            "maglevSize": 1021, "maxServices": 64, "maxBackends": 256, "ctSize": 4096},
              "agent": {"listenAddress": "127.0.0.1", "port": 9481}}
    pod = one(renderer.documents(renderer.render(values)), "DaemonSet")["spec"]["template"]["spec"]
    (node_setup,) = pod["initContainers"]
    agent = next(c for c in pod["containers"] if c["name"] == "agent")
    assert agent["args"][:2] == ["run", "--kubernetes"]
    args = ["run", "--config", str(ROOT / "examples" / "standalone"), *agent["args"][2:]]
    gwctl = str(Path(sys.executable).parent / agent["command"][0])
    container = (
        f"{node_setup['args'][0]}\n"
        "mount -t tmpfs -o size=1m xg-empty /lib/modules\n"
        "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys\n"
        "mount -o remount,bind,ro /sys\n"
        # Checked, not assumed: an empty /lib/modules and a /proc/sys that refuses writes.
        '[ -z "$(ls /lib/modules)" ] || { echo "/lib/modules not empty"; exit 91; }\n'
        'if touch /proc/sys/net/ipv4/ip_forward 2>/dev/null; then echo "/proc/sys writable"; exit 92; fi\n'
        'exec "$@"\n')
    command = ["unshare", "--mount", "--", "sh", "-c", container, "sh",
               *_bounded(agent["securityContext"]["capabilities"]["add"]), gwctl, *args]
    ready, output = _run_agent(netns, command)
    assert ready, output[-3000:]
    assert "compiling against carried ones" in output


@pytest.mark.parametrize("missing", ["SYS_ADMIN", "NET_ADMIN"])
def test_each_capability_the_chart_needs_is_needed(netns, default_objects, missing, tmp_path):
    """A node's first start, which compiles: the program cache is empty. (A start that loads
    from the node's cache gets to ready without SYS_ADMIN, so the set is the first start's.)"""
    capabilities = [c for c in _agent_capabilities(default_objects) if c != missing]
    ready, output = _run_agent(netns, [*_bounded(capabilities), *_standalone(netns, tmp_path / "programs")])
    assert not ready
    assert "not permitted" in output.lower(), output[-3000:]
    assert "Traceback" not in output and "error:" in output, output[-3000:]
    if missing == "SYS_ADMIN":
        assert "bcc could not compile or load bpf/" in output and "CAP_SYS_ADMIN" in output
