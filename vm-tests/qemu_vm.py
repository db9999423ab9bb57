"""The gateway VM of the VM tier: qemu booting the guest that build-guest.sh made, with
one virtio-net NIC per link (a tap device on the host) and a command channel.

    vm = GatewayVm.boot(guest_dir, nics=[Nic("front", "xg12ab-front", ...), ...], work=tmp)
    vm.run("uname -r").out
    vm.stop()

The root disk is opened with snapshot=on, so the cached image never changes and every
boot starts clean. The tree under test is shared read-only over 9p (tag "xg", mounted at
/mnt/xg in the guest; the runner comes from there), and so is a directory holding its
wheel (tag "wheel", at /mnt/wheel). Commands go over a virtio-serial port to vm-tests/guest/runner.py
(one JSON line each way), so the guest needs neither a network path to the host nor SSH.

virtio-net and native XDP (Linux 6.1, drivers/net/virtio_net.c, virtnet_xdp_set): the
driver attaches in driver mode only if it can turn the host's receive offloads (GRO_HW,
checksum) off, which qemu allows by default (ctrl_guest_offloads=on), and it wants one
extra transmit queue per CPU for XDP_TX and XDP_REDIRECT. With one queue pair it still
attaches but shares the queues under a lock ("XDP request 1 queues but max is 1"), so each
NIC gets queues = 2 x vCPUs (multi-queue tap, mq=on, vectors = 2 x queues + 2).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORT_NAME = "xg.ctl"


@dataclass(frozen=True)
class Nic:
    """One virtio-net NIC: `name` inside the guest, `tap` on the host."""

    name: str
    tap: str
    mac: str


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str


class GuestCommandFailed(RuntimeError):
    pass


def accelerator() -> str:
    """KVM when this machine offers it, else software emulation (TCG); XG_VM_ACCEL
    overrides. A /dev/kvm without the CPU's virtualization flags (vmx, svm) is not
    enough: such a KVM (nested, half-exposed) fails on the first MSR write or hangs."""
    if os.environ.get("XG_VM_ACCEL"):
        return os.environ["XG_VM_ACCEL"]
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and flags & {"vmx", "svm"}:
        return "kvm"
    return "tcg"


def qemu_argv(guest: Path, nics: list[Nic], work: Path, cpus: int, memory_mb: int,
              wheel_dir: Path | None = None) -> list[str]:
    accel = accelerator()
    queues = 2 * cpus
    argv = [
        "qemu-system-x86_64", "-name", "xg-gateway", "-nodefaults", "-no-user-config",
        "-display", "none", "-no-reboot",
        "-machine", f"q35,accel={accel}", "-cpu", "host" if accel == "kvm" else "max",
        "-smp", str(cpus), "-m", str(memory_mb),
        "-kernel", str(guest / "vmlinuz"), "-initrd", str(guest / "initrd.img"),
        "-append", "root=/dev/vda rw console=ttyS0 init=/sbin/xg-init net.ifnames=0 panic=-1 quiet",
        "-drive", f"file={guest / 'rootfs.img'},if=virtio,format=raw,snapshot=on,cache=unsafe",
        "-virtfs", f"local,path={ROOT},mount_tag=xg,security_model=none,readonly=on",
        *(["-virtfs", f"local,path={wheel_dir},mount_tag=wheel,security_model=none,readonly=on"] if wheel_dir else []),
        "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=ctl,path={work / 'ctl.sock'},server=on,wait=off",
        "-device", f"virtserialport,chardev=ctl,name={PORT_NAME}",
        "-serial", f"file:{work / 'console.log'}",
    ]
    for i, nic in enumerate(nics):
        argv += ["-netdev", f"tap,id=n{i},ifname={nic.tap},script=no,downscript=no,vhost=off,queues={queues}",
                 "-device", f"virtio-net-pci,netdev=n{i},mac={nic.mac},mq=on,vectors={2 * queues + 2}"]
    return argv


class GatewayVm:
    """A gateway VM driven over the command channel: one qemu started here (`start`), or
    one already running elsewhere whose runner listens on TCP (`remote`: Vagrant)."""

    def __init__(self, proc: subprocess.Popen | None, work: Path, nics: list[Nic],
                 address: tuple[str, int] | None = None) -> None:
        self.proc = proc
        self.address = address
        self.work = work
        self.nics = nics
        self.console = work / "console.log"
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._next_id = 0
        self.boot_seconds = 0.0

    @classmethod
    def start(cls, guest: Path, nics: list[Nic], work: Path, env: dict[str, str],
              cpus: int = 1, memory_mb: int = 1536, wheel_dir: Path | None = None) -> GatewayVm:
        """Start qemu; return once its tap devices exist (the guest boots meanwhile)."""
        if shutil.which("qemu-system-x86_64") is None:
            raise FileNotFoundError("qemu-system-x86_64 (vm-tests/setup.sh installs qemu-system-x86)")
        log = (work / "qemu.log").open("w")
        proc = subprocess.Popen(qemu_argv(guest, nics, work, cpus, memory_mb, wheel_dir), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        vm = cls(proc, work, nics)
        try:
            deadline = time.monotonic() + 60
            while not all(Path(f"/sys/class/net/{nic.tap}").exists() for nic in nics):
                vm._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError("qemu did not create its tap devices")
                time.sleep(0.1)
        except BaseException:
            vm.stop()
            raise
        vm._started = time.monotonic()
        return vm

    @classmethod
    def remote(cls, address: str, work: Path, nics: list[Nic]) -> GatewayVm:
        """A running gateway whose runner serves `address` (host:port) over TCP."""
        host, port = address.rsplit(":", 1)
        vm = cls(None, work, nics, address=(host, int(port)))
        vm._started = time.monotonic()
        return vm

    def _connect(self) -> socket.socket:
        if self.address is not None:
            return socket.create_connection(self.address, timeout=10)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.work / "ctl.sock"))
        except OSError:
            sock.close()
            raise
        return sock

    def wait_booted(self, timeout: float = 900) -> float:
        """Wait for the guest's command runner; return the seconds since qemu started."""
        deadline = time.monotonic() + timeout
        while self._sock is None:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no command channel; console:\n{self.console_tail()}")
            try:
                self._sock = self._connect()
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.2)
        # Requests wait in the port until the runner opens it; each ping is answered
        # once, and answers to earlier pings are skipped by id.
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"guest did not answer in {timeout} s; console:\n{self.console_tail()}")
            try:
                self._request({"cmd": "true"}, timeout=min(5.0, remaining))
                break
            except TimeoutError:
                self._check_alive()
        self.boot_seconds = time.monotonic() - self._started
        return self.boot_seconds

    def run(self, cmd: str, timeout: float = 120, check: bool = True,
            files: dict[str, str] | None = None) -> Result:
        """Run `cmd` under /bin/sh in the guest (after writing `files`)."""
        request = {"cmd": cmd, "timeout": timeout, "files": files or {}}
        answer = self._request(request, timeout=timeout + 30)
        result = Result(answer["rc"], answer["out"], answer["err"])
        if check and result.rc != 0:
            raise GuestCommandFailed(f"guest: {cmd!r} exited {result.rc}\n{result.out}\n{result.err}")
        return result

    def write_files(self, files: dict[str, str]) -> None:
        self.run("", files=files)

    def _request(self, request: dict, timeout: float) -> dict:
        assert self._sock is not None, "wait_booted first"
        self._next_id += 1
        ident = self._next_id
        self._sock.sendall((json.dumps({**request, "id": ident}) + "\n").encode())
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                answer = json.loads(line)
                if answer.get("id") == ident:
                    return answer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer from the guest to {request.get('cmd')!r}")
            self._sock.settimeout(min(remaining, 1.0))
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                self._check_alive()
                continue
            if not chunk:
                raise ConnectionError(f"command channel closed; console:\n{self.console_tail()}")
            self._buffer += chunk

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            qemu_log = (self.work / "qemu.log").read_text(errors="replace")
            raise RuntimeError(f"qemu exited {self.proc.returncode}:\n{qemu_log}\nconsole:\n{self.console_tail()}")

    def console_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no console output)"

    def stop(self) -> None:
        """Power off at once: the disk is a throwaway snapshot, nothing to flush."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
