"""A throwaway network of namespaces for the net test tier.

    client --veth-- gw --veth-- be0
                       +--veth-- be1 ...

The gateway namespace (gw) routes between a "front" segment to the client and one
segment per backend. Each backend has its own veth pair (no bridge) because the data
path redirects per interface. Frontend ("VIP") addresses are assigned nowhere: the client
reaches them through its default route via gw, where the load balancer picks them up.

Topology is built with pyroute2 over netlink. Sysctls, ethtool and the programs under
test are run through `ip netns exec`, which pyroute2 cannot replace (see `_sysctl` and
`_disable_tx_checksum_offload`).

Usage:

    with lab(backends=3) as net:
        net.start_servers(tcp_ports=(8080,), udp_ports=(5353,))
        report = net.run_client("tcp-spread", "--addr", net.vip4, "--port", 8080)
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import re
import secrets
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns
from pyroute2.netlink.rtnl.ifinfmsg import XDP_FLAGS_DRV_MODE

# The repository root: `python -m lab.servers` must run from here.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

CLIENT_NET4 = IPv4Network("10.99.0.0/24")
CLIENT_NET6 = IPv6Network("fd99::/64")
VIP_NET4 = IPv4Network("10.99.100.0/24")
VIP_NET6 = IPv6Network("fd99:100::/64")
# Backend i lives on 10.99.(10+i).0/24 and fd99:(10+i)::/64; stay below the VIP range.
FIRST_BACKEND_SUBNET = 10
MAX_BACKENDS = VIP_NET4.network_address.packed[2] - FIRST_BACKEND_SUBNET

# Interface names inside the namespaces. Namespaces isolate them, so they need not be
# unique. Deliberately not "eth0": a command run in the wrong namespace then fails
# instead of touching the host's NIC.
UPLINK_IFNAME = "uplink"  # the client's and each backend's link to gw
FRONT_IFNAME = "front"  # gw's link to the client

# Set on every process the lab starts, so `leftovers` can find strays even after their
# namespace lost its name.
LAB_ENV_VAR = "XDP_GATEWAY_NETLAB"

IFNAMSIZ = 15  # usable characters; netns names are kept as short for uniformity
_LONGEST_ROLE = "-client"
PREFIX_PATTERN = re.compile(r"[a-z0-9]{1,%d}" % (IFNAMSIZ - len(_LONGEST_ROLE)))


def backend_name(index: int) -> str:
    """What backend `index` calls itself in greetings: be0, be1, ..."""
    return f"be{index}"


def backend_net4(index: int) -> IPv4Network:
    return IPv4Network(f"10.99.{FIRST_BACKEND_SUBNET + index}.0/24")


def backend_net6(index: int) -> IPv6Network:
    # The group is written with the same digits as the v4 octet (be0: 10.99.10.x and
    # fd99:10::x) so that the two are easy to match by eye.
    return IPv6Network(f"fd99:{FIRST_BACKEND_SUBNET + index}::/64")


@dataclass(frozen=True)
class Host:
    """A namespace at the far end of a segment from the gateway."""

    ns: str
    ifname: str
    ifindex: int  # in ns
    v4: IPv4Address
    v6: IPv6Address
    net4: IPv4Network
    net6: IPv6Network
    gw_v4: IPv4Address  # gw's address on the segment, next hop of the default routes
    gw_v6: IPv6Address

    @classmethod
    def at(cls, segment: Segment, ifindex: int, **more):
        """The host at the far end of segment, whose interface there is ifindex."""
        return cls(ns=segment.far_ns, ifname=segment.far_ifname, ifindex=ifindex,
                   v4=segment.far_v4.ip, v6=segment.far_v6.ip,
                   net4=segment.far_v4.network, net6=segment.far_v6.network,
                   gw_v4=segment.near_v4.ip, gw_v6=segment.near_v6.ip, **more)


@dataclass(frozen=True)
class Client(Host):
    pass


@dataclass(frozen=True)
class Gateway:
    ns: str
    front_ifname: str
    front_ifindex: int  # in ns
    front_v4: IPv4Address
    front_v6: IPv6Address


@dataclass(frozen=True)
class Backend(Host):
    index: int
    name: str  # the name its servers greet with
    gw_ifname: str
    gw_ifindex: int  # in the gateway's namespace


@dataclass(frozen=True)
class Segment:
    """One veth pair: `near` in the namespace that creates it, `far` in `far_ns`."""

    near_ifname: str
    near_v4: IPv4Interface
    near_v6: IPv6Interface
    far_ns: str
    far_ifname: str
    far_v4: IPv4Interface
    far_v6: IPv6Interface

    @classmethod
    def on(
        cls, net4: IPv4Network, net6: IPv6Network, near_ifname: str, far_ns: str, far_ifname: str
    ) -> Segment:
        """The near end (gw) takes host 1 of each network, the far end host 2."""
        return cls(
            near_ifname=near_ifname,
            near_v4=IPv4Interface((net4.network_address + 1, net4.prefixlen)),
            near_v6=IPv6Interface((net6.network_address + 1, net6.prefixlen)),
            far_ns=far_ns,
            far_ifname=far_ifname,
            far_v4=IPv4Interface((net4.network_address + 2, net4.prefixlen)),
            far_v6=IPv6Interface((net6.network_address + 2, net6.prefixlen)),
        )


def new_prefix() -> str:
    """A short random token that names one lab's namespaces: xg<6 hex>."""
    return "xg" + secrets.token_hex(3)


@contextlib.contextmanager
def lab(backends: int = 3, prefix: str | None = None) -> Iterator[Lab]:
    """Build a lab and tear it down on exit, also when the body raises."""
    the_lab = Lab(backends=backends, prefix=prefix or new_prefix())
    try:
        yield the_lab
    finally:
        the_lab.cleanup()


class Lab:
    """A built topology plus the processes, XDP attachments and netlink handles it owns.

    The constructor builds everything; if that fails halfway it removes what it made and
    re-raises. `cleanup` is idempotent.
    """

    prefix: str
    client: Client
    gw: Gateway
    backends: tuple[Backend, ...]
    vip4: IPv4Address = VIP_NET4.network_address + 1
    vip6: IPv6Address = VIP_NET6.network_address + 1
    vip4_net: IPv4Network = VIP_NET4
    vip6_net: IPv6Network = VIP_NET6

    def __init__(self, backends: int, prefix: str) -> None:
        if not PREFIX_PATTERN.fullmatch(prefix):
            raise ValueError(f"prefix must match {PREFIX_PATTERN.pattern}: {prefix!r}")
        if not 1 <= backends <= MAX_BACKENDS:
            raise ValueError(f"backends must be in 1..{MAX_BACKENDS}: {backends}")
        self.prefix = prefix
        self._namespaces: list[str] = []  # only those this lab created, in order
        self._iproutes: dict[str, IPRoute] = {}
        self._processes: list[subprocess.Popen] = []
        self._servers: list[subprocess.Popen] = []
        self._xdp_attached: list[tuple[str, int]] = []  # (ns, ifindex)
        try:
            self._build(backends)
        except BaseException:
            self.cleanup()
            raise

    # -- building -----------------------------------------------------------------

    def _build(self, backend_count: int) -> None:
        client_ns = f"{self.prefix}-client"
        gw_ns = f"{self.prefix}-gw"
        backend_nss = [f"{self.prefix}-{backend_name(i)}" for i in range(backend_count)]

        for ns in (client_ns, gw_ns, *backend_nss):
            netns.create(ns)
            self._namespaces.append(ns)
            # Before any link exists, so that links inherit "default": without DAD,
            # IPv6 addresses are usable at once instead of tentative for a second or so.
            _sysctl(ns, {"net.ipv6.conf.all.accept_dad": 0, "net.ipv6.conf.default.accept_dad": 0})
            self._iproutes[ns] = IPRoute(netns=ns, flags=0)  # flags=0: never create it
            _set_up(self._iproutes[ns], "lo")
        _sysctl(
            gw_ns,
            {
                "net.ipv4.ip_forward": 1,
                "net.ipv6.conf.all.forwarding": 1,
                # The data path hands the stack packets whose source need not route back
                # out of the interface they arrived on; reverse-path filtering (which a
                # new namespace inherits from the host for IPv4) would drop them.
                "net.ipv4.conf.all.rp_filter": 0,
                "net.ipv4.conf.default.rp_filter": 0,
            },
        )

        front = Segment.on(CLIENT_NET4, CLIENT_NET6, FRONT_IFNAME, client_ns, UPLINK_IFNAME)
        gw_front_ifindex, client_ifindex = self._add_host_segment(gw_ns, front)
        self.gw = Gateway(
            ns=gw_ns,
            front_ifname=front.near_ifname,
            front_ifindex=gw_front_ifindex,
            front_v4=front.near_v4.ip,
            front_v6=front.near_v6.ip,
        )
        self.client = Client.at(front, client_ifindex)

        backends = []
        for index, ns in enumerate(backend_nss):
            segment = Segment.on(backend_net4(index), backend_net6(index), backend_name(index), ns, UPLINK_IFNAME)
            gw_ifindex, backend_ifindex = self._add_host_segment(gw_ns, segment)
            backends.append(Backend.at(segment, backend_ifindex, index=index, name=backend_name(index),
                                       gw_ifname=segment.near_ifname, gw_ifindex=gw_ifindex))
        self.backends = tuple(backends)

    def _add_host_segment(self, gw_ns: str, segment: Segment) -> tuple[int, int]:
        """A segment from gw to a host that routes everything through gw; returns (gw, host)
        ifindexes."""
        indexes = self._add_segment(gw_ns, segment)
        # Replies must return through gw, or dnat mode (client address kept) breaks.
        self._add_default_routes(segment.far_ns, segment.near_v4.ip, segment.near_v6.ip)
        _disable_tx_checksum_offload(segment.far_ns, segment.far_ifname)
        return indexes

    def _add_segment(self, near_ns: str, segment: Segment) -> tuple[int, int]:
        """Create, address and bring up a veth pair; return (near, far) ifindexes."""
        near, far = self._iproutes[near_ns], self._iproutes[segment.far_ns]
        # The peer is created directly in its namespace: nothing ever appears in the
        # root namespace, so nothing can leak there.
        near.link(
            "add",
            ifname=segment.near_ifname,
            kind="veth",
            peer={"ifname": segment.far_ifname, "net_ns_fd": segment.far_ns},
        )
        near_index = _configure(near, segment.near_ifname, segment.near_v4, segment.near_v6)
        far_index = _configure(far, segment.far_ifname, segment.far_v4, segment.far_v6)
        return near_index, far_index

    def _add_default_routes(self, ns: str, via4: IPv4Address, via6: IPv6Address) -> None:
        ipr = self._iproutes[ns]
        ipr.route("add", dst="0.0.0.0/0", gateway=str(via4))
        ipr.route("add", dst="::/0", gateway=str(via6))

    # -- running things in namespaces -------------------------------------------------

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self._namespaces)

    def run(self, ns: str, argv: Sequence[Any], **kw: Any) -> subprocess.CompletedProcess:
        """subprocess.run inside `ns`, from the project root.

        Defaults differ from subprocess.run to suit tests: check=True, text=True,
        output captured (unless stdout/stderr are given), timeout=60 s.
        """
        kw.setdefault("check", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        return subprocess.run(self._netns_exec(ns, argv), **self._process_defaults(kw))

    def popen(self, ns: str, argv: Sequence[Any], *, host_mounts: bool = False,
              **kw: Any) -> subprocess.Popen:
        """subprocess.Popen inside `ns`, from the project root; killed at cleanup.

        host_mounts: enter only the network namespace (nsenter --net). `ip netns exec`
        remounts /sys for the namespace, which hides the host's bpffs at /sys/fs/bpf;
        a process that pins BPF maps for others to read needs the host's mounts.
        """
        command = self._nsenter(ns, argv) if host_mounts else self._netns_exec(ns, argv)
        proc = subprocess.Popen(command, **self._process_defaults(kw))
        self._processes.append(proc)
        return proc

    @staticmethod
    def python_argv(module: str, *args: Any) -> list[str]:
        """argv running `module` with this interpreter (so the venv's packages)."""
        return [sys.executable, "-m", module, *(str(a) for a in args)]

    def run_client(self, mode: str, *args: Any, timeout: float = 60) -> dict[str, Any]:
        """Run lab.client in the client namespace; return its JSON report."""
        done = self.run(
            self.client.ns, self.python_argv("lab.client", mode, *args), timeout=timeout
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    def start_tcp_session(
        self, addr: Any, port: int, *args: Any, connect_timeout: float = 10
    ) -> TcpSession:
        """Open one long-lived echo connection from the client; stop it with .stop()."""
        proc = self.popen(
            self.client.ns,
            self.python_argv("lab.client", "tcp-session", "--addr", addr, "--port", port, *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return TcpSession.wait_connected(proc, connect_timeout)

    def _netns_exec(self, ns: str, argv: Sequence[Any]) -> list[str]:
        if ns not in self._namespaces:
            raise ValueError(f"{ns!r} is not a namespace of this lab")
        return ["ip", "netns", "exec", ns, *(str(a) for a in argv)]

    def _nsenter(self, ns: str, argv: Sequence[Any]) -> list[str]:
        if ns not in self._namespaces:
            raise ValueError(f"{ns!r} is not a namespace of this lab")
        return ["nsenter", f"--net=/run/netns/{ns}", "--", *(str(a) for a in argv)]

    def _process_defaults(self, kw: dict[str, Any]) -> dict[str, Any]:
        kw.setdefault("cwd", PROJECT_ROOT)
        kw["env"] = {**(kw.get("env") or os.environ), LAB_ENV_VAR: self.prefix}
        return kw

    # -- servers --------------------------------------------------------------------

    def start_servers(
        self,
        tcp_ports: Sequence[int] = (8080,),
        udp_ports: Sequence[int] = (5353,),
        ready_timeout: float = 10,
    ) -> None:
        """Start lab.servers in every backend, named be<i>; wait until they listen."""
        started = []
        for backend in self.backends:
            args = ["--name", backend.name]
            args += [a for port in tcp_ports for a in ("--tcp", port)]
            args += [a for port in udp_ports for a in ("--udp", port)]
            proc = self.popen(
                backend.ns,
                self.python_argv("lab.servers", *args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
            )
            self._servers.append(proc)
            started.append((backend, proc))
        deadline = time.monotonic() + ready_timeout
        for backend, proc in started:
            line = _read_line(proc, deadline)
            if line.strip() != b"ready":
                raise RuntimeError(
                    f"server in {backend.ns} did not get ready: {line!r}, exit {proc.poll()}"
                )

    def stop_servers(self) -> None:
        while self._servers:
            _stop(self._servers.pop())

    # -- XDP ------------------------------------------------------------------------

    def attach_xdp_pass(self, prog_fd: int) -> None:
        """Attach `prog_fd` (native mode) to the client's and every backend's veth end.

        A frame that gw's XDP program bounces (XDP_TX) or redirects into a veth is
        dropped unless the receiving peer runs an XDP program, so the far ends need one,
        even if it only passes everything (see `load_xdp_pass`).
        """
        for node in (self.client, *self.backends):
            _set_xdp(self._iproutes[node.ns], node.ifindex, prog_fd)
            self._xdp_attached.append((node.ns, node.ifindex))

    def detach_xdp_pass(self) -> None:
        while self._xdp_attached:
            ns, ifindex = self._xdp_attached.pop()
            _set_xdp(self._iproutes[ns], ifindex, -1)

    def xdp_prog_id(self, ns: str, ifindex: int) -> int | None:
        """The id of the native XDP program on an interface of the lab, if any."""
        (link,) = self._iproutes[ns].link("get", index=ifindex)
        xdp = link.get("IFLA_XDP")
        return xdp.get("IFLA_XDP_DRV_PROG_ID") if xdp else None

    # -- teardown -------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop processes, detach XDP, remove namespaces. Safe to call repeatedly.

        Every step runs even if an earlier one failed; failures are raised together at
        the end so that nothing is silently left behind.
        """
        errors: list[str] = []

        def attempt(what: str, action) -> None:
            try:
                action()
            except Exception as e:  # noqa: BLE001 - collected and re-raised below
                errors.append(f"{what}: {e!r}")

        self._servers.clear()  # they are in _processes too
        while self._processes:
            proc = self._processes.pop()
            attempt(f"stop {proc.args}", lambda: _stop(proc))
        # Removing a namespace destroys its veths and so detaches their programs; this
        # explicit detach keeps cleanup correct should the lab ever reuse namespaces.
        while self._xdp_attached:
            ns, ifindex = self._xdp_attached.pop()
            attempt(f"detach XDP {ns}/{ifindex}", lambda: _set_xdp(self._iproutes[ns], ifindex, -1))
        # Netlink sockets opened in a namespace keep it alive, so close them first.
        while self._iproutes:
            ns, ipr = self._iproutes.popitem()
            attempt(f"close netlink {ns}", ipr.close)
        while self._namespaces:
            ns = self._namespaces.pop()
            attempt(f"remove netns {ns}", lambda: netns.remove(ns))
        if errors:
            raise RuntimeError("lab cleanup failed: " + "; ".join(errors))


class TcpSession:
    """A running `client tcp-session`: one connection exchanging echoes until stopped."""

    def __init__(self, proc: subprocess.Popen, backend: str) -> None:
        self.proc = proc
        self.backend = backend  # which backend greeted the connection

    @classmethod
    def wait_connected(cls, proc: subprocess.Popen, timeout: float) -> TcpSession:
        line = _read_line(proc, time.monotonic() + timeout)
        match line.split():
            case ["connected", backend]:
                return cls(proc, backend)
        _stop(proc)
        raise RuntimeError(f"tcp-session did not connect: {line!r}")

    def stop(self, timeout: float = 10) -> dict[str, Any]:
        """End the session; return the client's report (backend, exchanges, errors)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])


# -- module-level helpers -------------------------------------------------------------


def leftovers(prefix: str) -> list[str]:
    """What of lab `prefix` still exists: namespaces, root-namespace links, processes."""
    found = [f"netns {name}" for name in netns.listnetns() if name.startswith(prefix)]
    with IPRoute() as ipr:
        for link in ipr.link("dump"):
            ifname = link.get("IFLA_IFNAME") or ""
            if ifname.startswith(prefix):
                found.append(f"link {ifname}")
    # A child shows its new environment only once exec'd, so a process caught between
    # fork and exec is missed; for the check after cleanup that window is long gone.
    marker = f"{LAB_ENV_VAR}={prefix}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:  # exited meanwhile
            continue
        if marker in environ:
            found.append(f"process {pid}")
    return found


def _configure(ipr: IPRoute, ifname: str, v4: IPv4Interface, v6: IPv6Interface) -> int:
    (index,) = ipr.link_lookup(ifname=ifname)
    for addr in (v4, v6):
        ipr.addr("add", index=index, address=str(addr.ip), prefixlen=addr.network.prefixlen)
    ipr.link("set", index=index, state="up")
    return index


def _set_up(ipr: IPRoute, ifname: str) -> None:
    (index,) = ipr.link_lookup(ifname=ifname)
    ipr.link("set", index=index, state="up")


def _sysctl(ns: str, settings: dict[str, int]) -> None:
    # pyroute2 has no sysctl API, and /proc/sys/net shows the namespace of the reader.
    assignments = [f"{key}={value}" for key, value in settings.items()]
    subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *assignments],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _disable_tx_checksum_offload(ns: str, ifname: str) -> None:
    # A locally generated TCP/UDP packet leaves a veth with its checksum only partly
    # computed (CHECKSUM_PARTIAL), left for "hardware" to finish. An XDP program on the
    # other end sees the raw frame and cannot finish it, so a rewritten packet would go
    # out with a wrong checksum. With tx offload off the stack computes it in full
    # (and TSO goes off with it, so XDP never sees super-sized segments either).
    # Not pyroute2's Ethtool: it works in the caller's namespace only (its ioctl socket
    # is created there), so "uplink" would be looked up on the host, not in `ns`.
    subprocess.run(
        ["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off"],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _set_xdp(ipr: IPRoute, ifindex: int, prog_fd: int) -> None:
    """Attach prog_fd in native (driver) mode; prog_fd=-1 detaches."""
    # pyroute2 0.9 needs IFLA_XDP spelled out as a nested attribute list. Shorter forms
    # such as xdp={"fd": fd, "flags": ...} or xdp_flags= are accepted and ignored
    # without error, so the result is checked below.
    ipr.link(
        "set",
        index=ifindex,
        xdp={"attrs": [("IFLA_XDP_FD", prog_fd), ("IFLA_XDP_FLAGS", XDP_FLAGS_DRV_MODE)]},
    )
    (link,) = ipr.link("get", index=ifindex)
    xdp = link.get("IFLA_XDP")
    attached = xdp.get("IFLA_XDP_ATTACHED") if xdp else None
    if (prog_fd >= 0) != (attached == "xdp"):
        raise RuntimeError(f"XDP {'attach' if prog_fd >= 0 else 'detach'} on ifindex "
                           f"{ifindex} did not take effect (IFLA_XDP_ATTACHED={attached})")


def _read_line(proc: subprocess.Popen, deadline: float) -> Any:
    """The next stdout line of `proc` (empty at EOF); raise once `deadline` passes.

    Only for the first line: select() cannot see what readline() already buffered.
    """
    remaining = deadline - time.monotonic()
    readable, _, _ = select.select([proc.stdout], [], [], max(remaining, 0))
    if not readable:
        raise TimeoutError(f"no output from {proc.args} in time")
    return proc.stdout.readline()


def _stop(proc: subprocess.Popen, grace: float = 5) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream:
            stream.close()


# -- a minimal XDP program, without bcc or a compiler ---------------------------------

_BPF_PROG_LOAD = 5
_BPF_PROG_TYPE_XDP = 6
_XDP_PASS = 2
_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}


class _BpfProgLoadAttr(ctypes.Structure):
    """The leading fields of union bpf_attr used by BPF_PROG_LOAD; the kernel treats
    fields past the size we pass as zero."""

    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
    ]


def _bpf_insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def load_xdp_pass() -> int:
    """Load `r0 = XDP_PASS; exit` and return its fd (the caller closes it)."""
    program = _bpf_insn(0xB7, dst=0, imm=_XDP_PASS) + _bpf_insn(0x95)  # mov64 r0, imm; exit
    insns = ctypes.create_string_buffer(program, len(program))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = _BpfProgLoadAttr(
        prog_type=_BPF_PROG_TYPE_XDP,
        insn_cnt=len(program) // 8,
        insns=ctypes.addressof(insns),
        license=ctypes.addressof(license_),
        prog_name=b"netlab_pass",
    )
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(_NR_BPF[platform.machine()], _BPF_PROG_LOAD, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_LOAD of XDP_PASS failed: {os.strerror(err)}")
    return fd
