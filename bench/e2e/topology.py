"""The lab the bench runs in: namespaces, servers on the backends, xdp-gateway's data
path loaded and programmed, and the counters read from every namespace."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from .settings import (
    BULK_BE_PORT, BULK_VIP_PORT, CPS_BE_PORT, CPS_VIP_PORT, LATENCY_CPU, NFT_TABLE,
    RR_BE_PORT, RR_VIP_PORT, SYSCTLS, UDP_BE_PORT, UDP_VIP_PORT,
)



HTTP_SERVER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char RESP[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLIN }, evs[256];
	int one = 1, ls, ep;

	if (argc != 3)
		return 2;
	sa.sin_port = htons(atoi(argv[2]));
	inet_pton(AF_INET, argv[1], &sa.sin_addr);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 4096)) {
		perror("listen");
		return 1;
	}
	ep = epoll_create1(0);
	ev.data.fd = ls;
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == ls) {
				int c;

				while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
			} else {
				char buf[2048];
				ssize_t r = read(fd, buf, sizeof(buf));

				if (r > 0 && write(fd, RESP, sizeof(RESP) - 1) < 0)
					r = -1;
				if (r >= 0 || errno != EAGAIN)
					close(fd);
			}
		}
	}
}
"""

# Binds the UDP port on be0 so that the flood is not answered with ICMP port unreachable;
# never reads: the kernel counts each datagram (RcvbufErrors once the tiny buffer is full).
UDP_SINK_PY = (
    "import socket, signal, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)\n"
    "s.bind((sys.argv[1], int(sys.argv[2])))\n"
    "print('ready', flush=True)\n"
    "signal.pause()\n"
)


class Topology:
    """The lab, its servers and the four ways of serving the VIP; one path at a time."""

    def __init__(self, lab, tmp: Path):
        from pyroute2 import IPRoute

        self.lab = lab
        self.tmp = tmp
        self.vip = lab.vip4
        self.gw = lab.gw
        self.be0 = lab.backends[0]
        self.cps_backends = lab.backends[:2]
        self.pin_dir = Path(f"/sys/fs/bpf/{lab.prefix}-e2e")
        self.dataplane = None
        self.pass_module = None
        self.pass_fd = None
        self.envoy = None
        self.current = None
        self.ipr = {}
        try:
            for ns in lab.namespaces:
                self.ipr[ns] = IPRoute(netns=ns, flags=0)  # flags=0: never create the netns
        except BaseException:
            for ipr in self.ipr.values():
                ipr.close()  # an open netlink socket would keep its namespace alive
            raise
        self.gw_ifaces = [(self.gw.front_ifname, self.gw.front_ifindex)] + [
            (b.gw_ifname, b.gw_ifindex) for b in lab.backends]
        self.far_ends = [(lab.client.ns, lab.client.ifname, lab.client.ifindex)] + [
            (b.ns, b.ifname, b.ifindex) for b in lab.backends]

    # -- setup ------------------------------------------------------------------------

    def setup(self) -> None:
        for ns in self.lab.namespaces:
            self.sysctl(ns, SYSCTLS)
        # As in tests/net/test_dataplane_net.py: with SNAT, packets whose backend
        # neighbour is not resolved yet go to the kernel with a local source address.
        ifnames = [name for name, _ in self.gw_ifaces]
        self.sysctl(self.gw.ns, {"net.ipv4.conf.all.accept_local": 1,
                                 **{f"net.ipv4.conf.{i}.accept_local": 1 for i in ifnames}})
        self.start_servers()
        self.load_dataplane()
        self.write_nft()
        self.write_envoy()

    def sysctl(self, ns: str, settings: dict) -> None:
        self.lab.run(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())])

    def start_servers(self) -> None:
        binary = self.tmp / "http_server"
        source = self.tmp / "http_server.c"
        source.write_text(HTTP_SERVER_C)
        subprocess.run(["cc", "-O2", "-o", str(binary), str(source)], check=True,
                       capture_output=True, text=True)
        ready = []
        for b in self.cps_backends:
            ready.append(self.lab.popen(b.ns, [binary, b.v4, CPS_BE_PORT],
                                        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL))
        ready.append(self.lab.popen(self.be0.ns, [sys.executable, "-c", UDP_SINK_PY, self.be0.v4,
                                                  UDP_BE_PORT],
                                    stdout=subprocess.PIPE, stdin=subprocess.DEVNULL))
        for proc in ready:
            line = _readline(proc, 10)
            if line.strip() != b"ready":
                raise RuntimeError(f"{proc.args} did not start: {line!r}, exit {proc.poll()}")
        self.lab.popen(self.be0.ns, ["taskset", "-c", LATENCY_CPU, "sockperf", "server", "--tcp",
                                     "-i", self.be0.v4, "-p", RR_BE_PORT],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(self.tmp / "iperf3-server.log", "w") as log:
            self.lab.popen(self.be0.ns, ["iperf3", "-s", "-B", self.be0.v4, "-p", BULK_BE_PORT,
                                         "--forceflush", "-V"],
                           stdout=log, stderr=subprocess.STDOUT)
        for port in (RR_BE_PORT, BULK_BE_PORT):
            self.wait_listening(self.be0.ns, "tcp", port)

    def wait_listening(self, ns: str, proto: str, port: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.lab.run(ns, ["ss", "-Hln", "-t" if proto == "tcp" else "-u",
                                    f"sport = :{port}"]).stdout
            if out.strip():
                return
            time.sleep(0.1)
        raise TimeoutError(f"nothing listens on {proto}/{port} in {ns}")

    def services(self, cps_dnat: bool = False):
        """The four services; `cps_dnat` puts tcp-cps in DNAT mode (the xdp-dnat diagnostic)."""
        from ctl.model import (Endpoint, FrontendKey, NatMode, Protocol, Service,
                                         WeightedEndpoint)

        def svc(vip_port, proto, backends, be_port, dnat=False):
            return Service(
                frontend=FrontendKey(self.vip, vip_port, proto),
                backends=tuple(WeightedEndpoint(Endpoint(b.v4, be_port), 1) for b in backends),
                nat=NatMode.DNAT if dnat else NatMode.SNAT,
                snat_addresses=() if dnat else (self.be0.gw_v4,), owner="bench-e2e")

        return (svc(UDP_VIP_PORT, Protocol.UDP, [self.be0], UDP_BE_PORT),
                svc(CPS_VIP_PORT, Protocol.TCP, self.cps_backends, CPS_BE_PORT, dnat=cps_dnat),
                svc(RR_VIP_PORT, Protocol.TCP, [self.be0], RR_BE_PORT),
                svc(BULK_VIP_PORT, Protocol.TCP, [self.be0], BULK_BE_PORT))

    def load_dataplane(self) -> None:
        from ctl.dataplane import loader
        from ctl.dataplane.dataplane import Dataplane
        from ctl.dataplane.loader import DataplaneSpec

        self.dataplane = Dataplane.load(DataplaneSpec(pin_dir=self.pin_dir))
        self.program()
        self.pass_module, self.pass_fd = loader.compile_xdp_pass()

    def program(self, cps_dnat: bool = False) -> None:
        from ctl.model import DesiredState

        self.dataplane.program(DesiredState(self.services(cps_dnat)))

    def write_nft(self) -> None:
        """kube-proxy's nftables mode in miniature: a service map, a chain per service
        that picks an endpoint chain with numgen, DNAT there, masquerade on the way out."""
        services = [("udp-pps", "udp", UDP_VIP_PORT, [self.be0], UDP_BE_PORT),
                    ("tcp-cps", "tcp", CPS_VIP_PORT, self.cps_backends, CPS_BE_PORT),
                    ("latency", "tcp", RR_VIP_PORT, [self.be0], RR_BE_PORT),
                    ("throughput", "tcp", BULK_VIP_PORT, [self.be0], BULK_BE_PORT)]
        chains, elements = [], []
        for name, proto, vport, backends, bport in services:
            for i, b in enumerate(backends):
                chains.append(f"\tchain ep-{name}-{i} {{\n\t\tmeta l4proto {proto} dnat to {b.v4}:{bport}\n\t}}")
            if len(backends) == 1:
                pick = f"goto ep-{name}-0"
            else:
                choices = ", ".join(f"{i} : goto ep-{name}-{i}" for i in range(len(backends)))
                pick = f"numgen random mod {len(backends)} vmap {{ {choices} }}"
            chains.append(f"\tchain svc-{name} {{\n\t\t{pick}\n\t}}")
            elements.append(f"{self.vip} . {proto} . {vport} : goto svc-{name}")
        self.nft_file = self.tmp / "nat.nft"
        self.nft_file.write_text(
            f"table ip {NFT_TABLE} {{\n" + "\n".join(chains) + "\n"
            "\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
            f"\t\telements = {{ {', '.join(elements)} }}\n\t}}\n"
            "\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
            "\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t}\n"
            "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
            "\t\tct status dnat masquerade\n\t}\n}\n")

    def write_envoy(self) -> None:
        vip = str(self.vip)

        def cluster(name, backends, port):
            return {"name": name, "type": "STATIC", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
                    "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": str(b.v4), "port_value": port}}}}
                        for b in backends]}]}}

        def tcp_listener(name, port):
            return {"name": name, "address": {"socket_address": {"address": vip, "port_value": port}},
                    "tcp_backlog_size": 4096,
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.tcp_proxy",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                         "stat_prefix": name, "cluster": name}}]}]}

        udp_listener = {
            "name": "udp-pps",
            "address": {"socket_address": {"protocol": "UDP", "address": vip, "port_value": UDP_VIP_PORT}},
            "listener_filters": [{
                "name": "envoy.filters.udp_listener.udp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig",
                    "stat_prefix": "udp_pps",
                    "matcher": {"on_no_match": {"action": {"name": "route", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route",
                        "cluster": "udp-pps"}}}}}}]}
        self.envoy_admin = self.tmp / "envoy-admin.sock"
        self.envoy_config = self.tmp / "envoy.json"
        self.envoy_config.write_text(json.dumps({
            "admin": {"address": {"pipe": {"path": str(self.envoy_admin)}}},
            "static_resources": {
                "listeners": [udp_listener, tcp_listener("tcp-cps", CPS_VIP_PORT),
                              tcp_listener("latency", RR_VIP_PORT),
                              tcp_listener("throughput", BULK_VIP_PORT)],
                "clusters": [cluster("udp-pps", [self.be0], UDP_BE_PORT),
                             cluster("tcp-cps", self.cps_backends, CPS_BE_PORT),
                             cluster("latency", [self.be0], RR_BE_PORT),
                             cluster("throughput", [self.be0], BULK_BE_PORT)]}}, indent=1))

    # -- counters ---------------------------------------------------------------------

    def link_stats(self, ns: str, ifindex: int) -> dict:
        (link,) = self.ipr[ns].link("get", index=ifindex)
        st = link.get_attr("IFLA_STATS64")
        return {k: st[k] for k in ("rx_packets", "tx_packets", "rx_dropped", "tx_dropped", "tx_bytes", "rx_bytes")}

    def snmp(self, ns: str) -> dict[str, int]:
        lines = self.lab.run(ns, ["cat", "/proc/net/snmp"]).stdout.splitlines()
        out = {}
        for head, values in zip(lines[::2], lines[1::2]):
            proto, names = head.split(":", 1)
            for name, value in zip(names.split(), values.split(":", 1)[1].split()):
                out[f"{proto}{name}"] = int(value)
        return out

    def dataplane_counters(self) -> dict[str, int]:
        if self.current not in ("xdp", "tc", "xdp-dnat"):
            return {}
        from ctl.dataplane import reader
        from ctl.dataplane.pinned import PinnedMaps

        names = {(UDP_VIP_PORT, 17): "udp-pps", (CPS_VIP_PORT, 6): "tcp-cps",
                 (RR_VIP_PORT, 6): "latency", (BULK_VIP_PORT, 6): "throughput"}
        with PinnedMaps.open(self.pin_dir) as maps:
            verdicts = reader.read_verdicts(maps)
            reasons = reader.read_reasons(maps)
            flows = {names.get((fk.port, int(fk.protocol)), str(fk)):
                     reader.read_counters(maps, "svc_stats", rec.service_id).new_flows
                     for fk, rec in reader.read_frontends(maps).items()}
        out = {f"{h.name}_{v.name}": n for (h, v), n in verdicts.items()}
        out.update({r.name: n for r, n in reasons.items()})
        out.update({f"new_flows_{name}": n for name, n in flows.items()})
        return out

    def snapshot(self) -> dict:
        c, g, b = self.lab.client, self.gw, self.be0
        return {
            "t": time.monotonic(),
            "client_uplink": self.link_stats(c.ns, c.ifindex),
            "gw_front": self.link_stats(g.ns, g.front_ifindex),
            "gw_be0": self.link_stats(g.ns, b.gw_ifindex),
            "be0_uplink": self.link_stats(b.ns, b.ifindex),
            "be0_snmp": self.snmp(b.ns),
            "gw_snmp": self.snmp(g.ns),
            "dataplane": self.dataplane_counters(),
            "envoy": self.envoy_stats("udp"),
            "cpu": _cpu_times(),
        }

    # -- teardown ---------------------------------------------------------------------

    def close(self) -> None:
        errors = []
        if self.current is not None:
            try:
                self.leave()
            except Exception as e:  # noqa: BLE001 - keep cleaning up
                errors.append(f"leave: {e!r}")
        if self.envoy is not None and self.envoy.poll() is None:
            self.envoy.kill()
            self.envoy.wait()
        self.dataplane = None
        self.pass_module = None
        for ipr in self.ipr.values():
            with contextlib.suppress(Exception):
                ipr.close()
        self.ipr.clear()
        shutil.rmtree(self.pin_dir, ignore_errors=True)
        if errors:
            raise RuntimeError("; ".join(errors))


# -- helpers --------------------------------------------------------------------------


def _readline(proc: subprocess.Popen, timeout: float) -> bytes:
    import select

    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if readable else b""


def _stop_group(proc: subprocess.Popen, grace: float = 5) -> None:
    """SIGINT the process group `proc` leads, SIGKILL what is left after `grace`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        # WNOWAIT: the leader stays unreaped (a zombie at worst), so the group id stays ours.
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # a forked worker may outlive its parent
    proc.wait()


def _xdp_attached(ipr, ifindex: int) -> str | None:
    (link,) = ipr.link("get", index=ifindex)
    xdp = link.get("IFLA_XDP")
    attached = xdp.get("IFLA_XDP_ATTACHED") if xdp else None
    return attached if attached not in (None, 0, "none") else None


def _processes_in_netns(ns: str, comm: str) -> list[int]:
    inode = os.stat(f"/run/netns/{ns}").st_ino
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if (Path(f"/proc/{pid}/comm").read_text().strip() == comm
                    and os.stat(f"/proc/{pid}/ns/net").st_ino == inode):
                found.append(int(pid))
        except OSError:
            continue
    return found


def _cpu_times() -> dict[str, dict[str, int]]:
    """Per-CPU jiffies by kind from /proc/stat (the whole machine, other load included)."""
    kinds = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            out[name] = dict(zip(kinds, map(int, values)))
    return out


def _cpu_share(d: dict) -> dict[str, dict[str, float]]:
    """Share of each CPU's time per kind over a snapshot delta, in percent."""
    out = {}
    for name, kinds in d.items():
        total = sum(kinds.values()) or 1
        out[name] = {k: round(100 * v / total) for k, v in kinds.items()
                     if k in ("user", "system", "softirq", "idle") }
    return out
