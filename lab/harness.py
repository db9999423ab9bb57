"""Running the data-path programs on single packets with BPF_PROG_TEST_RUN.

The programs are compiled once per test module against a private pin directory. Test
runs happen inside a private network namespace whose two interfaces and permanent
neighbour entries make bpf_fib_lookup() deterministic:

    cl0 (10.99.0.1, fd99::1)          client 10.99.0.2 / fd99::2 is a neighbour here
    be0 (10.99.10.1, fd99:10::1)      backends 10.99.10.2.. / fd99:10::2.. are here
"""

from __future__ import annotations

import secrets
import shutil
import struct
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from pyroute2 import NetNS, netns

from ctl.dataplane import abi, bpfsys, loader
from ctl.dataplane.dataplane import Dataplane
from ctl.dataplane.loader import DataplaneSpec
from ctl.model import DesiredState
from ctl.dataplane.pinned import PinnedMaps
from ctl.dataplane.plan import DataplaneConfig
from lab.requirements import missing

CLIENT4, CLIENT6 = ip_address("10.99.0.2"), ip_address("fd99::2")
GW_FRONT4, GW_FRONT6 = ip_address("10.99.0.1"), ip_address("fd99::1")
GW_BACK4, GW_BACK6 = ip_address("10.99.10.1"), ip_address("fd99:10::1")
VIP4, VIP6 = ip_address("10.99.100.1"), ip_address("fd99:100::1")
CLIENT_MAC = "02:00:00:00:00:02"


def backend4(i: int):
    return ip_address(f"10.99.10.{2 + i}")


def backend6(i: int):
    return ip_address(f"fd99:10::{2 + i:x}")


def backend_mac(i: int) -> str:
    return f"02:00:00:00:10:{2 + i:02x}"


# Small sizes keep per-test resets cheap; the network tier uses the defaults.
TEST_SPEC_SIZES = dict(maglev_size=1021, max_services=64, max_backends=256, ct_size=4096)
XDP_RETVAL = {0: "ABORTED", 1: "DROP", 2: "PASS", 3: "TX", 4: "REDIRECT"}
TC_RETVAL = {0: "PASS", 2: "DROP", 7: "REDIRECT"}  # TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT


@dataclass(frozen=True)
class Result:
    verdict: str
    data: bytes


class PacketLab:
    """Programs, maps and a namespace for table-driven packet tests."""

    def __init__(self, name: str = "xgpkt", sizes: dict | None = None) -> None:
        """`sizes`: DataplaneSpec sizes; the tests' small ones by default (cheap resets),
        the production defaults when given {} (the benchmarks)."""
        token = secrets.token_hex(3)
        self.netns = f"{name}{token}"
        self.pin_dir = Path(f"/sys/fs/bpf/{name}{token}")
        self.spec = DataplaneSpec(pin_dir=self.pin_dir,
                                  **(TEST_SPEC_SIZES if sizes is None else sizes))
        self.dataplane: Dataplane | None = None
        try:
            self._build_netns()
            # In this process: the ABI tests read bcc's tables of the compiled modules.
            self.dataplane = Dataplane(self.spec, loader.compile_programs(self.spec))
        except BaseException:
            self.close()
            raise

    # -- topology ---------------------------------------------------------------------
    def _build_netns(self) -> None:
        netns.create(self.netns)
        with NetNS(self.netns, flags=0) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            for name, v4, v6 in (("cl0", GW_FRONT4, GW_FRONT6), ("be0", GW_BACK4, GW_BACK6)):
                ns.link("add", ifname=name, kind="veth", peer={"ifname": name + "p"})
                for ifname in (name, name + "p"):
                    ns.link("set", index=ns.link_lookup(ifname=ifname)[0], state="up")
                idx = ns.link_lookup(ifname=name)[0]
                ns.addr("add", index=idx, address=str(v4), prefixlen=24)
                ns.addr("add", index=idx, address=str(v6), prefixlen=64, flags=0x80)  # nodad
            self.ifindex = {n: ns.link_lookup(ifname=n)[0] for n in ("cl0", "be0")}
            self.mac = {n: ns.get_links(i)[0].get_attr("IFLA_ADDRESS") for n, i in self.ifindex.items()}
            neighbours = [("cl0", CLIENT4, CLIENT_MAC), ("cl0", CLIENT6, CLIENT_MAC)]
            for i in range(4):
                neighbours += [("be0", backend4(i), backend_mac(i)), ("be0", backend6(i), backend_mac(i))]
            for ifname, addr, mac in neighbours:
                ns.neigh("add", dst=str(addr), lladdr=mac, ifindex=self.ifindex[ifname], state=0x80)
        for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
            subprocess.run(["ip", "netns", "exec", self.netns, "sysctl", "-qw", f"{key}=1"], check=True)

    @contextmanager
    def _inside(self):
        netns.pushns(self.netns)
        try:
            yield
        finally:
            netns.popns()

    # -- programming ------------------------------------------------------------------
    def program(self, desired: DesiredState, config: DataplaneConfig = DataplaneConfig()):
        return self.dataplane.program(desired, config)

    def maps(self):
        return PinnedMaps.open(self.pin_dir)

    def reset(self) -> None:
        """Empties every map, so each test starts from a data path that knows nothing."""
        with PinnedMaps.open(self.pin_dir, create_control_maps=True) as maps:
            for name in ("frontends", "vips", "backends", "maglev_outer", "ct_fwd", "ct_rev", "frags",
                         "owners", "members"):
                for key in maps.keys(name):
                    maps.delete(name, key)
            for service_id in maps.table_digests():
                maps.delete_table(service_id)
            for name, size in (("reasons", abi.REASON_MAX), ("verdicts", 12),
                               ("svc_stats", self.spec.max_services),
                               ("be_stats", self.spec.max_backends)):
                for i in range(size):
                    maps.percpu_reset(name, i)
            maps.put("config", 0, abi.Config())

    # -- running ----------------------------------------------------------------------
    def xdp(self, packet: bytes, ingress: str = "cl0") -> Result:
        ctx = struct.pack("6I", 0, len(packet), 0, self.ifindex[ingress], 0, 0)
        with self._inside():
            run = bpfsys.prog_test_run(self.dataplane.programs.xdp_fd, packet, ctx=ctx)
        return Result(XDP_RETVAL.get(run.retval, str(run.retval)), run.data)

    def tc(self, packet: bytes, ingress: str = "cl0", egress: bool = False) -> Result:
        # struct __sk_buff up to ifindex: ingress_ifindex at 36, ifindex at 40.
        ctx = bytearray(44)
        struct.pack_into("II", ctx, 36, self.ifindex[ingress], self.ifindex[ingress])
        fd = (self.dataplane.programs.tc_egress_fd if egress
              else self.dataplane.programs.tc_ingress_fd)
        with self._inside():
            run = bpfsys.prog_test_run(fd, packet, ctx=bytes(ctx))
        return Result(TC_RETVAL.get(run.retval, str(run.retval)), run.data)

    def reasons(self) -> dict[abi.Reason, int]:
        with self.maps() as maps:
            return {r: maps.percpu_sum("reasons", int(r)) for r in abi.Reason}

    def close(self) -> None:
        self.dataplane = None  # drops the bcc modules and their program fds
        if self.netns in netns.listnetns():
            netns.remove(self.netns)
        if self.pin_dir.exists():
            shutil.rmtree(self.pin_dir)


def missing_requirements() -> str | None:
    """Why the packet tier cannot run here, or None."""
    return missing(why_root="loads BPF programs, creates network namespaces")
