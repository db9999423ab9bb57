"""A node without kernel headers: the agent's container mounts nothing of the node's
/lib/modules, so the loader must compile against the headers the image carries.

The loader runs in a private mount namespace where /lib/modules is an empty tmpfs (as in
the container on a managed node), compiles the XDP and tc programs through the real
verifier and pins their maps; the parent then sees the maps in bpffs."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ctl.dataplane.abi import PINNED_MAPS
from ctl.dataplane.headers import find_carried_headers

pytestmark = pytest.mark.packet

SIZES = dict(maglev_size=1021, max_services=64, max_backends=256, ct_size=4096)

# Runs inside the private mount namespace; prints what it found and what it loaded.
CHILD = """
import json, os, sys
from pathlib import Path
from ctl.dataplane.loader import DataplaneSpec, compile_programs
release = os.uname().release
hidden = sorted(os.listdir("/lib/modules"))
programs = compile_programs(DataplaneSpec(pin_dir=Path(sys.argv[1]), **json.loads(sys.argv[2])))
print(json.dumps({"lib_modules": hidden,
                  "release_dir_exists": os.path.exists(f"/lib/modules/{release}"),
                  "bcc_kernel_source": os.environ.get("BCC_KERNEL_SOURCE"),
                  "fds": [programs.xdp_fd, programs.tc_ingress_fd, programs.tc_egress_fd]}))
"""


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mount namespaces, BPF)"
    if not os.path.ismount("/sys/fs/bpf"):
        return "needs bpffs mounted at /sys/fs/bpf (scripts/setup.sh mounts it)"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    if find_carried_headers(os.uname().machine) is None:
        return "needs Debian's kernel headers in /usr/src (linux-headers-amd64, scripts/setup.sh)"
    return None


@pytest.fixture
def pin_dir():
    reason = _missing()
    if reason:
        pytest.skip(reason)
    path = Path(f"/sys/fs/bpf/xghdr{secrets.token_hex(3)}")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_loader_compiles_and_loads_with_no_lib_modules(pin_dir):
    env = {k: v for k, v in os.environ.items() if k != "BCC_KERNEL_SOURCE"}
    # unshare makes the new mount namespace private, so the tmpfs never reaches the host.
    script = 'mount -t tmpfs -o size=1m xg-empty /lib/modules && exec "$@"'
    done = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-c", script, "sh",
         sys.executable, "-c", CHILD, str(pin_dir), json.dumps(SIZES)],
        capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["lib_modules"] == [] and not seen["release_dir_exists"]
    carried = find_carried_headers(os.uname().machine)
    assert seen["bcc_kernel_source"] == str(carried.source)
    assert all(fd > 0 for fd in seen["fds"])
    # The programs passed the verifier and created their pinned maps in the shared bpffs.
    assert {p.name for p in pin_dir.iterdir()} >= {file for file, _, _ in PINNED_MAPS.values()}
    # The host's own /lib/modules was never touched.
    assert os.listdir("/lib/modules")
