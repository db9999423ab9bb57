"""Fixtures of the VM tier: the cached guest, one gateway VM with the lab around it, and
the agent (`gwctl run`) inside the VM. One VM serves the whole tier: under software
emulation a boot costs tens of seconds, and a bcc compile in the guest even more."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import netlab
from qemu_vm import GatewayVm, Nic, accelerator
from vmlab import VmLab, guest_network_script, nics, segments

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BACKENDS = 3
API_PORT = 9480
# Set by the Vagrantfile's peers VM: the gateway is a running machine whose runner serves
# this host:port, and the peers' own NICs (found by MAC) take the place of tap devices.
REMOTE_GATEWAY = os.environ.get("XG_VM_GATEWAY")
PEER_MAC_PREFIX = "52:54:00:99:01:"
# The VM tier's figures, printed in pytest's summary (the report's numbers come from here).
FIGURES: dict[str, str] = {}


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (taps, namespaces, debootstrap)"
    if REMOTE_GATEWAY:
        return None
    for tool in ("qemu-system-x86_64", "debootstrap", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"needs {tool} (vm-tests/setup.sh installs it)"
    return None


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("VM tier")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def guest() -> Path | None:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    if REMOTE_GATEWAY:
        return None
    if os.environ.get("XG_VM_GUEST"):  # a guest directory to boot instead of building one
        return Path(os.environ["XG_VM_GUEST"])
    started = time.monotonic()
    # A mount namespace of its own: the chroot's bind mounts of /proc, /sys and /dev must
    # never propagate to the host, where a second bpffs over /sys/fs/bpf would hide the
    # pins of every agent and test running beside the build.
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "bash",
                           str(HERE / "build-guest.sh")], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        pytest.fail(f"guest build failed:\n{done.stderr[-4000:]}")
    path = Path(done.stdout.strip().splitlines()[-1])
    spent = time.monotonic() - started
    built = (path / "build-seconds").read_text().strip()
    FIGURES["guest build"] = (f"{spent:.0f} s (cached; first build took {built} s)" if "cached" in done.stderr
                              else f"{spent:.0f} s (built now)")
    return path


@dataclass
class Gateway:
    """The running VM and the lab around it."""

    vm: GatewayVm
    net: VmLab
    work: Path
    kernel: str = ""


# What a wheel build leaves out of its copy of the checkout (an in-tree build writes build/).
_NOT_BUILT = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", "out", "tests", "bench", "docs", "vm-tests")


def build_wheel(work: Path) -> Path:
    """The wheel of the tree under test, installed (without dependencies: the guest has
    them) into a directory of its own, which is shared with the guest."""
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_NOT_BUILT)
    dist, site = work / "dist", work / "wheel"
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", dist, source)
    (wheel,) = dist.glob("xdp_gateway-*.whl")
    _pip("install", "--no-deps", "--no-index", "--target", site, wheel)
    shutil.rmtree(source)
    return site


def _pip(*args) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "-q", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        pytest.fail(f"pip {args[0]} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _peer_links(nic_list: list[Nic]) -> list[Nic]:
    """The Vagrant peers VM: its NIC i (MAC ...:01:0i) stands for tap i."""
    by_mac = {Path(f"/sys/class/net/{name}/address").read_text().strip(): name for name in os.listdir("/sys/class/net")}
    return [Nic(nic.name, by_mac[PEER_MAC_PREFIX + nic.mac[-2:]], nic.mac) for nic in nic_list]


@pytest.fixture(scope="module")
def gateway(guest, tmp_path_factory):
    work = tmp_path_factory.mktemp("vm")
    prefix = netlab.new_prefix()
    nic_list = nics(prefix, BACKENDS)
    cpus = int(os.environ.get("XG_VM_CPUS", "1"))
    env = {**os.environ, netlab.LAB_ENV_VAR: prefix}
    if REMOTE_GATEWAY:
        nic_list = _peer_links(nic_list)
        vm = GatewayVm.remote(REMOTE_GATEWAY, work, nic_list)
    else:
        vm = GatewayVm.start(guest, nic_list, work, env=env, cpus=cpus, wheel_dir=build_wheel(work),
                             memory_mb=int(os.environ.get("XG_VM_MEMORY_MB", "1536")))
    net = None
    try:
        net = VmLab(BACKENDS, prefix, nic_list)
        boot = vm.wait_booted()
        if not REMOTE_GATEWAY:
            FIGURES["boot"] = f"{boot:.1f} s to the command runner ({accelerator()}, {cpus} vCPU)"
        vm.run(guest_network_script(nic_list, segments(prefix, BACKENDS)))
        if not REMOTE_GATEWAY:
            # The wheel of the tree under test, installed by pip on the host into a
            # directory shared over 9p, joins the guest's venv through a .pth line (pip
            # itself takes minutes under emulation; its .pyc files suit the guest's 3.11).
            vm.run("mkdir -p /mnt/wheel && mount -t 9p -o trans=virtio,version=9p2000.L,ro wheel /mnt/wheel && "
                   "echo /mnt/wheel > $(python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')"
                   "/xdp-gateway-wheel.pth && "
                   "printf '#!/bin/sh\\nexec /opt/xdp-gateway/bin/python -m ctl.cli \"$@\"\\n' > /opt/xdp-gateway/bin/gwctl && "
                   "chmod +x /opt/xdp-gateway/bin/gwctl")
        kernel = vm.run("uname -r").out.strip()
        FIGURES["guest kernel"] = f"{kernel} (host {platform.release()})"
        net.start_servers(tcp_ports=(8080,), udp_ports=(5353,), ready_timeout=30)
        yield Gateway(vm=vm, net=net, work=work, kernel=kernel)
    finally:
        try:
            if REMOTE_GATEWAY:  # a machine that stays up: leave it as provisioned
                vm.run("for nic in " + " ".join(n.name for n in nic_list) + "; do ip link set dev $nic xdp off; done; "
                       "rm -rf /sys/fs/bpf/xdp-gateway /tmp/config /tmp/agent.log", check=False)
        finally:
            vm.stop()
        if net is not None:
            net.cleanup()
    assert not netlab.leftovers(prefix), netlab.leftovers(prefix)


class GuestAgent:
    """`gwctl run` inside the VM, watched from the client namespace through its API."""

    CONFIG = "/tmp/config"
    LOG = "/tmp/agent.log"

    def __init__(self, gw: Gateway, nat: str = "snat"):
        self.gw = gw
        self.nat = nat
        self.api = str(gw.net.gw.front_v4)
        self.pid: int | None = None

    def start(self, timeout: float = 1800) -> float:
        """Start the agent; return the seconds until it was ready."""
        started = time.monotonic()
        interfaces = " ".join(f"-i {nic}" for nic in ["front"] + [b.gw_ifname for b in self.gw.net.backends])
        out = self.gw.vm.run(
            f"mkdir -p {self.CONFIG} && cd /tmp && setsid gwctl run --config {self.CONFIG} {interfaces} "
            f"--attach xdp-native --nat {self.nat} --listen {self.api}:{API_PORT} "
            f"</dev/null >>{self.LOG} 2>&1 & echo $!").out
        self.pid = int(out.strip())
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.gw.vm.run(f"kill -0 {self.pid}", check=False).rc != 0:
                raise RuntimeError(f"agent exited:\n{self.log()}")
            if self.get("/readyz").get("status") == 200:
                return time.monotonic() - started
            time.sleep(1)
        raise TimeoutError(f"agent not ready in {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 60) -> None:
        if self.pid is None:
            return
        started = time.monotonic()
        self.gw.vm.run(f"kill -TERM {self.pid}", check=False)
        # Each request reaps orphans first, so a finished agent is gone, not a zombie.
        while self.gw.vm.run(f"kill -0 {self.pid}", check=False).rc == 0:
            if time.monotonic() > started + timeout:
                self.gw.vm.run(f"kill -USR1 {self.pid}; sleep 2; kill -KILL {self.pid}", check=False)
                raise TimeoutError(f"agent did not stop within {timeout} s of SIGTERM; its log ends:\n"
                                   + "\n".join(self.log().splitlines()[-80:]))
            time.sleep(0.5)
        FIGURES.setdefault("agent stop", "")
        FIGURES["agent stop"] += f"{time.monotonic() - started:.1f} s "
        self.pid = None

    def log(self) -> str:
        return self.gw.vm.run(f"cat {self.LOG}", check=False).out

    def events(self, name: str) -> list[dict]:
        lines = [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]
        return [entry for entry in lines if entry.get("event") == name]

    def get(self, path: str) -> dict:
        return self.gw.net.run_client("http-get", "--addr", self.api, "--port", API_PORT, "--path", path,
                                      "--timeout", 5)

    def reconciles(self) -> int:
        return self.get("/api/v1/problems")["json"]["reconciles"]

    def problems(self) -> list[str]:
        return self.get("/api/v1/problems")["json"]["problems"]

    def replace_config(self, files: dict[str, str], timeout: float = 60) -> None:
        """Swap the guest's config directory for `files`; wait until reconciled cleanly."""
        before = self.reconciles()
        keep = " ".join(files)
        self.gw.vm.run(f"cd {self.CONFIG} && for f in *.yaml; do case \" {keep} \" in *\" $f \"*) ;; "
                       f"*) rm -f \"$f\";; esac; done",
                       files={f"{self.CONFIG}/{name}": text for name, text in files.items()})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.reconciles() > before and not self.problems():
                return
            time.sleep(0.5)
        raise TimeoutError(f"agent did not reconcile; problems: {self.problems()}")

    def gwctl(self, *args: str, timeout: float = 300):
        """gwctl inside the VM."""
        return self.gw.vm.run("gwctl " + " ".join(args), timeout=timeout, check=False)


@pytest.fixture(scope="module")
def agent(gateway):
    running = GuestAgent(gateway)
    FIGURES["agent start"] = f"{running.start():.0f} s to ready (bcc compiles the data path in the guest)"
    try:
        yield running
    finally:
        if running.pid is not None:
            running.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: a qemu VM with virtio-net NICs running the gateway")


def pytest_collection_modifyitems(items):
    # The first test pays for the guest build, the boot and the agent's first compile under
    # software emulation: far beyond the suite's default per-test timeout.
    for item in items:
        item.add_marker(pytest.mark.timeout(3600))
