"""In the agent's container /proc/sys is read-only (only the privileged node-setup init
container can write it). The agent must start when node-setup has set what it needs,
and say which setting is missing when it has not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

PREPARE = """
from ctl.agent.run import prepare_kernel
from ctl.model import NatMode
prepare_kernel(("xgro0",), NatMode.SNAT)
print("prepared")
"""


def _run(preset: list[str]) -> subprocess.CompletedProcess:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (network and mount namespaces)")
    settings = "; ".join(f"echo 1 > /proc/sys/{key}" for key in preset)
    script = (
        "set -e; ip link add xgro0 type veth peer name xgro1; "
        f"{settings}{';' if settings else ''} "
        # What a container runtime does: /proc/sys bind-mounted read-only.
        "mount --bind /proc/sys /proc/sys; mount -o remount,bind,ro /proc/sys; "
        'exec "$@"')
    # A private network and mount namespace: nothing here reaches the host.
    return subprocess.run(["unshare", "--net", "--mount", "--", "sh", "-c", script, "sh",
                           sys.executable, "-c", PREPARE], capture_output=True, text=True, timeout=60)


NODE_SETUP = ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding",
              "net/ipv4/conf/all/accept_local", "net/ipv4/conf/xgro0/accept_local"]


def test_agent_starts_on_a_read_only_proc_sys_prepared_by_node_setup():
    done = _run(NODE_SETUP)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "prepared"


def test_a_setting_node_setup_missed_is_named():
    done = _run(NODE_SETUP[:-1])
    assert done.returncode != 0
    assert "Read-only file system" in done.stderr and "xgro0/accept_local" in done.stderr
