"""End to end across network namespaces: xdp-gateway against the usual alternatives.

    client --veth-- gw --veth-- be0
                       +--veth-- be1

One topology (lab/netlab.py), one VIP (10.99.100.1) and the same ports from the
client's point of view, four ways of turning the VIP into the backends, each alone on gw
while it is measured and all measured in turn in the same run (interleaved rounds):

    xdp    xdp-gateway's programs as native XDP on gw's three interfaces (SNAT mode)
    tc     the same programs on tc ingress/egress (clsact) instead of XDP
    nft    kube-proxy style nftables: nat prerouting DNAT (numgen random over endpoint
           chains for >1 backend) with conntrack, postrouting masquerade; no BPF at all
    envoy  Envoy 1.40 as an L4 proxy in gw: tcp_proxy and udp_proxy listeners on the VIP,
           which is assigned to gw's lo only for this path; no BPF at all

Metrics (what arrives / completes, never what was sent):

    udp-pps      trafgen floods 60-byte UDP frames at the VIP; rate of packets received by
                 be0's interface (cross-checked against be0's UDP layer counters)
    tcp-cps      wrk with `Connection: close` against a small C HTTP server on be0 and be1:
                 completed connections (one request each) per second
    latency-p50/-p99   sockperf TCP ping-pong on one persistent connection, round trip
    throughput   iperf3, one TCP stream, received bits per second

    sudo .venv/bin/python -m bench.e2e [--quick] [--only 'udp-pps nft'|udp-pps|nft]
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import main_for, rerun, row, summary

PART = "e2e"
TITLE = "End to end through a gateway namespace: XDP vs tc vs nftables DNAT vs Envoy"

PATHS = ("xdp", "tc", "nft", "envoy")
PATH_LABELS = {
    "xdp": "xdp-gateway, native XDP",
    "tc": "xdp-gateway, tc",
    "nft": "nftables DNAT + conntrack",
    "envoy": "Envoy L4 proxy",
    # Diagnostic, not a peer: the xdp path with the tcp-cps service in DNAT mode, which
    # needs no SNAT ports.
    "xdp-dnat": "diagnostic: xdp-gateway XDP, DNAT mode",
}
METRICS = ("udp-pps", "tcp-cps", "latency", "throughput")
# Row metric -> (measurement, title, unit, higher is better)
ROW_METRICS = {
    "udp-pps": ("udp-pps", "small UDP packets forwarded per second", "packets/s", True),
    "tcp-cps": ("tcp-cps", "new TCP connections per second", "connections/s", True),
    "latency-p50": ("latency", "TCP request/response round trip, p50", "µs", False),
    "latency-p99": ("latency", "TCP request/response round trip, p99", "µs", False),
    "throughput": ("throughput", "bulk TCP throughput, one stream", "Gbit/s", True),
}

ROUNDS, QUICK_ROUNDS = 5, 1
ATTEMPTS = 3  # a failed measurement is recorded and retried, at most this often
SECONDS, QUICK_SECONDS = 4.0, 2.0

# Services, identical for every path: VIP port -> backend port, on which backends.
UDP_VIP_PORT, UDP_BE_PORT = 5353, 5353          # udp-pps, be0 only
CPS_VIP_PORT, CPS_BE_PORT = 80, 8080            # tcp-cps, be0 and be1
RR_VIP_PORT, RR_BE_PORT = 11111, 11111          # latency, be0 only
BULK_VIP_PORT, BULK_BE_PORT = 5201, 5201        # throughput, be0 only

UDP_FLOWS = 64          # source ports trafgen cycles through
UDP_PAYLOAD = 18        # 14 eth + 20 ip + 8 udp + 18 = 60-byte frames (64 on a wire)
WRK_THREADS, WRK_CONNECTIONS = 2, 32


ENVOY_CONCURRENCY = 2   # Envoy's default here: one worker per core
LATENCY_CPU = 0         # sockperf client, server (and Envoy, meanwhile) run here
NFT_TABLE = "xgbench"

# The same tuning in every namespace and for every path: a connect/close loop at
# thousands per second otherwise runs out of ephemeral ports to TIME_WAIT, on the client
# and on Envoy's upstream side alike.
SYSCTLS = {
    "net.ipv4.ip_local_port_range": "1024 60999",  # below xdp-gateway's SNAT ports
    "net.ipv4.tcp_tw_reuse": 1,
    "net.core.somaxconn": 4096,
    "net.ipv4.tcp_max_syn_backlog": 4096,
}

# Functions whose inclusive share of the UDP flood's CPU time profile_udp() reports.
PROFILE_MARKERS = (
    "packet_sendmsg",          # the generator's system call: everything below runs inside it
    "net_rx_action",           # all receive softirq work (gw and be0)
    "veth_xdp_rcv_skb",        # gw front, native XDP on a veth: skb -> xdp_buff, program, redirect
    "skb_pp_cow_data",         # ... of which copying the skb into a page_pool page
    "bpf_prog:xdp_lb",         # xdp-gateway's XDP program, with its helpers (FIB lookup, maps)
    "bpf_prog:tc_ingress",     # xdp-gateway's tc program, likewise
    "xdp_do_redirect",
    "veth_xdp_rcv_one",        # be0: its XDP_PASS program on the redirected xdp_frame
    "veth_xdp_rcv_bulk_skb",   # be0: the redirected xdp_frames turned back into skbs
    "tcf_classify",            # tc hook (clsact) incl. its program
    "nf_hook_slow",            # all netfilter hooks (conntrack, nat) for the nft path
    "nf_conntrack_in",
    "nft_do_chain",
    "ip_forward",
    "ip_rcv",
    "ip_list_rcv",
    "__udp4_lib_rcv",          # be0's UDP layer (the sink)
    "__alloc_skb",
    "kmem_cache_free",
)

def trafgen_argv(ifname, conf) -> list:
    """One trafgen process in its blocking sendto() mode (`--gap 0`). Its default TX_RING
    mode dies with "Flushing TX_RING failed: Resource temporarily unavailable" as soon as
    the veth pushes back (the packet socket's send buffer fills, and net.core.wmem_* cannot
    be raised inside a network namespace). `--no-sock-mem`: never touch socket memory
    sysctls. trafgen forks its worker even with `--cpus 1`: stop it with _stop_group()."""
    return ["trafgen", "--dev", ifname, "--conf", conf, "--cpus", 1, "--gap", 0,
            "--no-sock-mem", "--no-cpu-stats"]


# A minimal HTTP/1.1 responder for tcp-cps: read the request, answer, close. In C so that
# the backends cost as little CPU as possible (the machine has 2 cores for everything).
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


# -- measurement results --------------------------------------------------------------


@dataclass
class Sample:
    values: dict[str, float]           # row metric -> value
    evidence: dict = field(default_factory=dict)


# -- the bench ------------------------------------------------------------------------


class Bench:
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
                snat_address=None if dnat else self.be0.gw_v4, owner="bench-e2e")

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

    # -- switching paths --------------------------------------------------------------

    def enter(self, path: str) -> None:
        from ctl.dataplane.loader import XdpMode

        assert self.current is None, self.current
        self.current = path
        if path == "xdp-dnat":
            self.program(cps_dnat=True)
        if path in ("xdp", "xdp-dnat"):
            for _, ifindex in self.gw_ifaces:
                mode = self.dataplane.attach_xdp(ifindex, XdpMode.NATIVE, netns=self.gw.ns)
                assert mode is XdpMode.NATIVE
            self.lab.attach_xdp_pass(self.pass_fd)
        elif path == "tc":
            for _, ifindex in self.gw_ifaces:
                self.dataplane.attach_tc(ifindex, netns=self.gw.ns)
        elif path == "nft":
            self.lab.run(self.gw.ns, ["nft", "-f", self.nft_file])
        elif path == "envoy":
            self.lab.run(self.gw.ns, ["ip", "addr", "add", f"{self.vip}/32", "dev", "lo"])
            self.envoy = self.lab.popen(
                self.gw.ns, [Path(sys.executable).parent / "envoy", "-c", self.envoy_config,
                             "--concurrency", ENVOY_CONCURRENCY, "--disable-hot-restart",
                             "-l", "warning", "--log-path", self.tmp / "envoy.log"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.wait_envoy_ready()
        else:
            raise ValueError(path)
        self.verify_alone(path)
        self.warm_up()

    def leave(self) -> None:
        from ctl.dataplane import loader

        path, self.current = self.current, None
        if path in ("xdp", "xdp-dnat"):
            for _, ifindex in self.gw_ifaces:
                loader.detach(ifindex, netns=self.gw.ns)
            self.lab.detach_xdp_pass()
            self.flush_dataplane_flows()
            if path == "xdp-dnat":
                self.program(cps_dnat=False)
        elif path == "tc":
            for _, ifindex in self.gw_ifaces:
                loader.detach(ifindex, netns=self.gw.ns)
                with contextlib.suppress(Exception):
                    self.ipr[self.gw.ns].tc("del", "clsact", ifindex)
            self.flush_dataplane_flows()
        elif path == "nft":
            self.lab.run(self.gw.ns, ["nft", "delete", "table", "ip", NFT_TABLE], check=False)
        elif path == "envoy":
            if self.envoy is not None:
                self.envoy.terminate()
                try:
                    self.envoy.wait(10)
                except subprocess.TimeoutExpired:
                    self.envoy.kill()
                    self.envoy.wait()
                self.envoy = None
            self.lab.run(self.gw.ns, ["ip", "addr", "del", f"{self.vip}/32", "dev", "lo"], check=False)
        self.forget_connections()

    def forget_connections(self) -> None:
        """Remove what the connections of the last path left in the endpoints' kernels.

        Sockets in TIME_WAIT on the backends (the HTTP server closes first) would otherwise
        meet the next path's SYNs: with another gateway behind the same SNAT address, a
        SYN for a tuple still in TIME_WAIT is refused by PAWS (TcpExtPAWSTimewait) and the
        client retries a second later, so a path would pay for its predecessor."""
        for ns in self.lab.namespaces:
            self.lab.run(ns, ["ss", "-K", "-Htan", "state", "time-wait"], check=False)
        self.flush_conntrack()

    def flush_dataplane_flows(self) -> int:
        """Empty xdp-gateway's conntrack (both paths share the pinned maps), so that the
        next path starts without flows, or SNAT ports, held by this one."""
        from ctl.dataplane.pinned import PinnedMaps

        flushed = 0
        with PinnedMaps.open(self.pin_dir) as maps:
            for name in ("ct_fwd", "ct_rev"):
                for key in maps.keys(name):
                    flushed += maps.delete(name, key)
        return flushed

    def conntrack_count(self) -> int | None:
        done = self.lab.run(self.gw.ns, ["cat", "/proc/sys/net/netfilter/nf_conntrack_count"], check=False)
        return int(done.stdout) if done.returncode == 0 and done.stdout.strip().isdigit() else None

    def flush_conntrack(self) -> None:
        self.lab.run(self.gw.ns, [sys.executable, "-c",
                                  "from pyroute2 import Conntrack\nwith Conntrack() as c: c.flush()"],
                     check=False)

    def wait_envoy_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.envoy.poll() is not None:
                log = (self.tmp / "envoy.log").read_text() if (self.tmp / "envoy.log").exists() else ""
                raise RuntimeError(f"envoy exited with {self.envoy.returncode}: {log[-2000:]}")
            with contextlib.suppress(OSError):
                if self.envoy_get("/ready").strip() == "LIVE":
                    return
            time.sleep(0.1)
        raise TimeoutError("envoy did not get ready")

    def envoy_get(self, path: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.envoy_admin))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if b"transfer-encoding: chunked" in head.lower():
            chunks = b""
            while body:
                size, _, rest = body.partition(b"\r\n")
                n = int(size.split(b";")[0] or b"0", 16)
                if n == 0:
                    break
                chunks, body = chunks + rest[:n], rest[n + 2:]
            body = chunks
        return body.decode()

    def envoy_stats(self, pattern: str) -> dict[str, int]:
        if self.envoy is None:
            return {}
        out = {}
        for line in self.envoy_get(f"/stats?filter={pattern}").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name] = int(value)
        return out

    def state(self) -> dict:
        """What is attached or running that any path could have left behind."""
        gw_xdp, gw_clsact = {}, {}
        for name, ifindex in self.gw_ifaces:
            gw_xdp[name] = _xdp_attached(self.ipr[self.gw.ns], ifindex)
            qdiscs = json.loads(self.lab.run(self.gw.ns, ["tc", "-j", "qdisc", "show", "dev", name]).stdout or "[]")
            gw_clsact[name] = any(q.get("kind") == "clsact" for q in qdiscs)
        far_xdp = {f"{ns}/{ifname}": _xdp_attached(self.ipr[ns], ifindex)
                   for ns, ifname, ifindex in self.far_ends}
        ruleset = self.lab.run(self.gw.ns, ["nft", "list", "ruleset"]).stdout.strip()
        vip_on_gw = any(a.get_attr("IFA_ADDRESS") == str(self.vip)
                        for a in self.ipr[self.gw.ns].get_addr(family=socket.AF_INET))
        return {"gw_xdp": gw_xdp, "gw_clsact": gw_clsact, "far_xdp": far_xdp,
                "nft_rules": bool(ruleset), "vip_on_gw": vip_on_gw,
                "envoy_pids": _processes_in_netns(self.gw.ns, "envoy")}

    def verify_alone(self, path: str | None) -> None:
        """Raises unless exactly `path` (None: nothing) is set up on the lab."""
        s = self.state()
        problems = []
        want_xdp = "xdp" if path in ("xdp", "xdp-dnat") else None
        if any(v != want_xdp for v in s["gw_xdp"].values()):
            problems.append(f"gw XDP {s['gw_xdp']}")
        if any(v != want_xdp for v in s["far_xdp"].values()):
            problems.append(f"far-end XDP {s['far_xdp']}")
        if any(v != (path == "tc") for v in s["gw_clsact"].values()):
            problems.append(f"gw clsact {s['gw_clsact']}")
        if s["nft_rules"] != (path == "nft"):
            problems.append(f"nft rules present: {s['nft_rules']}")
        if s["vip_on_gw"] != (path == "envoy"):
            problems.append(f"VIP on gw: {s['vip_on_gw']}")
        if bool(s["envoy_pids"]) != (path == "envoy") or (path == "envoy" and len(s["envoy_pids"]) != 1):
            problems.append(f"envoy processes in gw: {s['envoy_pids']}")
        if problems:
            raise RuntimeError(f"path {path} is not alone on gw: " + "; ".join(problems))

    def warm_up(self) -> None:
        """Resolve gw's neighbours and check the path answers before measuring."""
        for b in self.cps_backends:  # from gw itself: resolves its neighbour entries
            self.lab.run(self.gw.ns, ["curl", "-s", "-m", "5", f"http://{b.v4}:{CPS_BE_PORT}/"])
        for _ in range(3):
            out = self.lab.run(self.lab.client.ns, ["curl", "-s", "-m", "5", f"http://{self.vip}:{CPS_VIP_PORT}/"],
                               check=False).stdout
            if out == "ok":
                return
            time.sleep(0.5)
        raise RuntimeError(f"path {self.current}: no HTTP answer through the VIP")

    # -- counters ---------------------------------------------------------------------

    def link_stats(self, ns: str, ifindex: int) -> dict:
        (link,) = self.ipr[ns].link("get", index=ifindex)
        st = link.get_attr("IFLA_STATS64")
        return {k: st[k] for k in ("rx_packets", "tx_packets", "rx_dropped", "tx_dropped", "tx_bytes")}

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

    # -- measurements -----------------------------------------------------------------

    def write_trafgen_conf(self) -> Path:
        c, g = self.lab.client, self.gw
        client_mac = self.ipr[c.ns].link("get", index=c.ifindex)[0].get_attr("IFLA_ADDRESS")
        gw_mac = self.ipr[g.ns].link("get", index=g.front_ifindex)[0].get_attr("IFLA_ADDRESS")
        conf = self.tmp / "udp.trafgen"
        conf.write_text(
            "{\n"
            f"  eth(da={gw_mac}, sa={client_mac}),\n"
            f"  ipv4(sa={c.v4}, da={self.vip}, ttl=64),\n"
            f"  udp(sp=dinc(20000, {20000 + UDP_FLOWS - 1}), dp={UDP_VIP_PORT}),\n"
            f"  fill(0x78, {UDP_PAYLOAD})\n"
            "}\n")
        return conf

    def measure_udp_pps(self, seconds: float) -> Sample:
        c = self.lab.client
        conf = self.write_trafgen_conf()
        out = self.tmp / "trafgen.out"
        with open(out, "w") as log:
            # trafgen forks its worker: signal the whole process group, never just the parent.
            gen = self.lab.popen(c.ns, trafgen_argv(c.ifname, conf), start_new_session=True,
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            try:
                time.sleep(0.5)  # ramp up (and, for Envoy, let its sessions open)
                if gen.poll() is not None:
                    raise RuntimeError(f"trafgen exited: {out.read_text()[-2000:]}")
                before = self.snapshot()
                time.sleep(seconds)
                after = self.snapshot()
            finally:
                _stop_group(gen)
        d = _delta(before, after)
        elapsed = after["t"] - before["t"]
        rx = d["be0_uplink"]["rx_packets"]
        udp_in = d["be0_snmp"].get("UdpInDatagrams", 0) + d["be0_snmp"].get("UdpRcvbufErrors", 0)
        evidence = {
            "seconds": round(elapsed, 2),
            "sent_pps": round(d["client_uplink"]["tx_packets"] / elapsed),
            "client_tx_dropped": d["client_uplink"]["tx_dropped"],
            "gw_front_rx_pps": round(d["gw_front"]["rx_packets"] / elapsed),
            "gw_front_rx_dropped": d["gw_front"]["rx_dropped"],
            "gw_be0_tx_pps": round(d["gw_be0"]["tx_packets"] / elapsed),
            "gw_be0_tx_dropped": d["gw_be0"]["tx_dropped"],
            "be0_rx_dropped": d["be0_uplink"]["rx_dropped"],
            "be0_udp_layer_pps": round(udp_in / elapsed),
            "be0_udp_csum_errors": d["be0_snmp"].get("UdpInCsumErrors", 0),
            "gw_udp_rcvbuf_errors": d["gw_snmp"].get("UdpRcvbufErrors", 0),
            **_nonzero(d["dataplane"], prefix="dp_"),
            **_nonzero(d["envoy"], prefix=""),
            "cpu_pct": _cpu_share(d["cpu"]),
        }
        return Sample({"udp-pps": rx / elapsed}, evidence)

    def measure_tcp_cps(self, seconds: float) -> Sample:
        before = self.snapshot()
        done = self.lab.run(
            self.lab.client.ns,
            ["wrk", "-t", WRK_THREADS, "-c", WRK_CONNECTIONS, "-d", f"{seconds:g}s", "--timeout", "2s",
             "-H", "Connection: close", f"http://{self.vip}:{CPS_VIP_PORT}/"],
            timeout=seconds + 60)
        after = self.snapshot()
        text = done.stdout
        match = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+)", text, re.M)
        if not match:
            raise RuntimeError(f"unexpected wrk output: {text}")
        requests = int(match.group(1))
        wall = float(match.group(2)) * {"s": 1, "ms": 1e-3, "m": 60, "us": 1e-6}[match.group(3)]
        errors = {}
        if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
            errors = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
        if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
            errors["non_2xx"] = int(m.group(1))
        d = _delta(before, after)
        evidence = {"cpu_pct": _cpu_share(d["cpu"]), "requests": requests, "seconds": wall, "wrk_errors": errors,
                    "gw_conntrack_entries": self.conntrack_count() if self.current == "nft" else None,
                    **_nonzero(d["dataplane"], prefix="dp_")}
        return Sample({"tcp-cps": requests / wall}, evidence)

    def measure_latency(self, seconds: float) -> Sample:
        # Every process of the chain on one CPU (Envoy's workers too, for this measurement
        # only): a round trip that wakes a task on the other, idle vCPU costs tens of µs of
        # wake-up latency in this VM, and whether it does depends on the other load on the
        # machine, which made the figures bimodal (20 vs 85 µs) before.
        if self.envoy is not None:
            self.lab.run(self.gw.ns, ["taskset", "-a", "-p", "-c", LATENCY_CPU, self.envoy.pid])
        try:
            before = self.snapshot()
            done = self.lab.run(
                self.lab.client.ns,
                ["taskset", "-c", LATENCY_CPU, "sockperf", "ping-pong", "--tcp", "-i", self.vip,
                 "-p", RR_VIP_PORT, "-t", f"{seconds:g}", "--full-rtt"], timeout=seconds + 60)
            after = self.snapshot()
        finally:
            if self.envoy is not None:
                self.lab.run(self.gw.ns, ["taskset", "-a", "-p", "-c", f"0-{os.cpu_count() - 1}",
                                          self.envoy.pid], check=False)
        text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
        pct = {float(p): float(v) for p, v in re.findall(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)", text)}
        if 50.0 not in pct or 99.0 not in pct:
            raise RuntimeError(f"unexpected sockperf output: {text}")
        obs = re.search(r"Total (\d+) observations", text)
        d = _delta(before, after)
        evidence = {"cpu_pct": _cpu_share(d["cpu"]), "observations": int(obs.group(1)) if obs else None,
                    "p90_us": pct.get(90.0), "p99.9_us": pct.get(99.9),
                    **_nonzero(d["dataplane"], prefix="dp_")}
        return Sample({"latency-p50": pct[50.0], "latency-p99": pct[99.0]}, evidence)

    def measure_throughput(self, seconds: float) -> Sample:
        omit = 1 if seconds >= 3 else 0
        before = self.snapshot()
        done = self.lab.run(
            self.lab.client.ns,
            ["iperf3", "-c", self.vip, "-p", BULK_VIP_PORT, "-t", f"{seconds:g}", "-O", omit, "-J"],
            timeout=seconds + 60, check=False)
        after = self.snapshot()
        report = json.loads(done.stdout)
        d = _delta(before, after)
        if "error" in report:
            flows = d["dataplane"].get("new_flows_throughput")
            server_log = (self.tmp / "iperf3-server.log").read_text()[-600:]
            raise RuntimeError(f"iperf3: {report['error']}"
                               + (f"; xdp-gateway counted {flows} new flows for iperf3's 2 connections"
                                  if flows is not None else "")
                               + f"; iperf3 server log ends: {server_log}")
        end = report["end"]

        def avg_size(link):
            return round(d[link]["tx_bytes"] / d[link]["tx_packets"]) if d[link]["tx_packets"] else None

        evidence = {"cpu_pct": _cpu_share(d["cpu"]), "retransmits": end["sum_sent"].get("retransmits"),
                    "sender_gbps": round(end["sum_sent"]["bits_per_second"] / 1e9, 3),
                    "client_cpu_pct": round(end.get("cpu_utilization_percent", {}).get("host_total", 0), 1),
                    "client_tx_packets": d["client_uplink"]["tx_packets"],
                    "client_tx_avg_bytes": avg_size("client_uplink"),
                    "gw_to_be0_packets": d["gw_be0"]["tx_packets"],
                    "gw_to_be0_avg_bytes": avg_size("gw_be0"),
                    **_nonzero(d["dataplane"], prefix="dp_")}
        return Sample({"throughput": end["sum_received"]["bits_per_second"] / 1e9}, evidence)

    def profile_udp(self, seconds: float = 2.0) -> dict | None:
        """Where the CPU goes while the current path forwards the UDP flood: `perf record -g`
        of trafgen (and nothing else). On veth the whole chain, from the generator's
        sendto() through gw to be0's UDP layer, runs inline in trafgen's system call and
        softirqs, so this is the forwarding cost. Inclusive shares of marker functions and
        the top functions by own time, in percent of trafgen's samples. Not a measurement
        window: its rate is not used."""
        if shutil.which("perf") is None:
            return None
        c, g = self.lab.client, self.gw
        conf = self.write_trafgen_conf()
        data = self.tmp / f"perf-{self.current}.data"
        proc = self.lab.popen(c.ns, ["perf", "record", "-q", "-g", "-o", data, "--",
                                     *trafgen_argv(c.ifname, conf)],
                              start_new_session=True, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(seconds)
        finally:
            _stop_group(proc, grace=15)
        report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--children",
                                 "--sort", "sym", "-g", "none", "--percent-limit", "0.2"],
                                capture_output=True, text=True, timeout=120)
        children, self_time = {}, {}
        for line in report.stdout.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[\S\]\s+(\S+)", line)
            if m:
                name = re.sub(r"^bpf_prog_[0-9a-f]+_", "bpf_prog:", m.group(3))
                children[name] = float(m.group(1))
                self_time[name] = float(m.group(2))
        if not children:
            return {"error": (report.stderr or "no samples")[-300:]}
        top = sorted(self_time.items(), key=lambda kv: -kv[1])[:12]
        return {"inclusive_pct": {k: children[k] for k in PROFILE_MARKERS if k in children},
                "top_self_pct": dict(top)}

    def measure(self, metric: str, seconds: float) -> Sample:
        return {"udp-pps": self.measure_udp_pps, "tcp-cps": self.measure_tcp_cps,
                "latency": self.measure_latency, "throughput": self.measure_throughput}[metric](seconds)

    def offloads(self) -> dict:
        """ethtool -k of every interface a packet crosses, as the current path left them."""
        # tx-tcp-segmentation, not the summary line "tcp-segmentation-offload", which 6.18
        # reports "on" as soon as any sub-feature (tx-tcp-accecn-segmentation) is.
        wanted = ("tx-checksumming", "tx-tcp-segmentation", "generic-segmentation-offload",
                  "generic-receive-offload", "rx-gro-list")
        out = {}
        for ns, ifname in ([(self.lab.client.ns, self.lab.client.ifname)]
                           + [(self.gw.ns, name) for name, _ in self.gw_ifaces]
                           + [(b.ns, b.ifname) for b in self.lab.backends]):
            text = self.lab.run(ns, ["ethtool", "-k", ifname]).stdout
            feats = dict(line.strip().split(": ", 1) for line in text.splitlines()[1:] if ": " in line)
            role = "client" if ns == self.lab.client.ns else ("gw" if ns == self.gw.ns else ns.rsplit("-", 1)[1])
            out[f"{role}/{ifname}"] = {k: feats.get(k, "?").split()[0] for k in wanted}
        return out

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


def _delta(before, after):
    if isinstance(before, dict):
        return {k: _delta(before.get(k, 0), v) for k, v in after.items()}
    return after - before


def _nonzero(counters: dict, prefix: str) -> dict:
    return {f"{prefix}{k}": v for k, v in counters.items() if v}


# -- the part -------------------------------------------------------------------------


def _selection(only: str | None, metrics, paths):
    metrics = tuple(metrics or METRICS)
    paths = tuple(paths or PATHS)
    if only:
        name, _, path = only.partition(" ")
        if name in ROW_METRICS and path in PATH_LABELS:
            metrics, paths = (ROW_METRICS[name][0],), (path,)
        elif only in ROW_METRICS:
            metrics = (ROW_METRICS[only][0],)
        elif only in METRICS:
            metrics = (only,)
        elif only in PATH_LABELS:
            paths = (only,)
        else:
            raise ValueError(f"--only: no row, metric or path named {only!r}")
    return metrics, paths


def run(quick: bool = False, only: str | None = None, *, rounds: int | None = None,
        seconds: float | None = None, metrics=None, paths=None, diagnostics: bool = True) -> dict:
    """Measure every selected metric on every selected path, paths interleaved per round.

    Extra keywords (not part of the bench contract) let the smoke test run a tiny subset;
    `diagnostics` adds the xdp-dnat tcp-cps visit per round and one CPU profile of the
    UDP flood per kernel path in the first round.
    """
    from lab import netlab

    metrics, paths = _selection(only, metrics, paths)
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    seconds = seconds or (QUICK_SECONDS if quick else SECONDS)
    visits = [(p, metrics) for p in paths]
    if diagnostics and "xdp" in paths and "tcp-cps" in metrics and not only:
        visits.append(("xdp-dnat", ("tcp-cps",)))
    per_round: dict[tuple[str, str], dict[int, float]] = {}
    evidence: dict[str, list] = {}
    profiles: dict[str, dict | None] = {}
    started = time.monotonic()
    order_log = []
    offloads = {}
    failures: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="xg-e2e-") as tmp, netlab.lab(backends=2) as lab:
        bench = Bench(lab, Path(tmp))
        try:
            bench.setup()
            offloads["(no path)"] = bench.offloads()
            for r in range(rounds):
                # Rotate the start so that no path is always measured first or last.
                order = visits[r % len(visits):] + visits[:r % len(visits)]
                order_log.append([p for p, _ in order])
                for path, path_metrics in order:
                    bench.enter(path)
                    try:
                        if r == 0:
                            offloads[path] = bench.offloads()
                        for metric in path_metrics:
                            sample = _measure_with_retries(bench, metric, seconds, r, rounds, path, failures)
                            if sample is None:
                                continue
                            for name, value in sample.values.items():
                                per_round.setdefault((name, path), {})[r] = value
                            evidence.setdefault(f"{metric} {path}", []).append({"round": r + 1, **sample.evidence})
                        if (r == 0 and diagnostics and "udp-pps" in path_metrics
                                and path in ("xdp", "tc", "nft")):
                            profiles[path] = bench.profile_udp()
                    finally:
                        bench.leave()
                    bench.verify_alone(None)  # nothing of it remains
        finally:
            bench.close()
    leftover = netlab.leftovers(lab.prefix)
    result = _result(quick, metrics, [p for p, _ in visits], rounds, seconds, per_round, evidence)
    result.update({"round_orders": order_log, "offloads": offloads, "udp_profiles": profiles,
                   "pin_dir": str(bench.pin_dir),
                   "elapsed_s": round(time.monotonic() - started, 1),
                   "leftovers_after_cleanup": leftover, "failures": failures})
    result["aims"] = _aims(result["rows"])
    result["findings"] = _findings(result)
    result["notes"] = _notes(result)
    return result


def _measure_with_retries(bench, metric, seconds, r, rounds, path, failures) -> Sample | None:
    for attempt in range(ATTEMPTS):
        try:
            sample = bench.measure(metric, seconds)
        except Exception as e:  # noqa: BLE001 - recorded, then retried
            print(f"e2e: round {r + 1}/{rounds} {path} {metric} attempt {attempt + 1} FAILED: {e!r}"[:300],
                  file=sys.stderr, flush=True)
            failures.append({"round": r + 1, "path": path, "metric": metric, "attempt": attempt + 1,
                             "error": repr(e)[:600]})
            continue
        print(f"e2e: round {r + 1}/{rounds} {path:8} {metric:10} "
              + " ".join(f"{k}={v:,.1f}" for k, v in sample.values.items()), file=sys.stderr, flush=True)
        if os.environ.get("XG_E2E_DEBUG"):
            print(json.dumps(sample.evidence, default=str), file=sys.stderr)
        return sample
    return None


def _advantage(xdp: float, other: float, higher_better: bool) -> float | None:
    """How many times better XDP is than `other` (> 1: XDP wins), for either direction."""
    if not xdp or not other:
        return None
    return xdp / other if higher_better else other / xdp


def _result(quick, metrics, paths, rounds, seconds, per_round, evidence) -> dict:
    rows = []
    for name, (metric, title, unit, higher) in ROW_METRICS.items():
        if metric not in metrics:
            continue
        for path in paths:
            by_round = per_round.get((name, path))
            if not by_round:
                continue
            values = [by_round[r] for r in sorted(by_round)]
            stats = summary(values)
            extra = {"path": path, "path_label": PATH_LABELS[path], "metric_key": name,
                     "higher_is_better": higher, "per_round": values,
                     "evidence": evidence.get(f"{metric} {path}", [])}
            xdp = per_round.get((name, "xdp"), {})
            if xdp and path != "xdp":
                # Paired by round: both were measured minutes apart at most, in the same run.
                paired = [a for r in sorted(by_round) if r in xdp
                          if (a := _advantage(xdp[r], by_round[r], higher)) is not None]
                extra["xdp_advantage"] = statistics.median(paired) if paired else None
                extra["xdp_advantage_spread"] = summary(paired) if paired else None
                extra["xdp_advantage_of_medians"] = _advantage(
                    statistics.median(xdp.values()), stats["median"], higher)
            rows.append(row(f"{name} {path}", title, unit, stats, rerun(PART, f"{name} {path}", quick),
                            **extra))
    return {"part": PART, "title": TITLE, "rows": rows, "rounds": rounds, "seconds_per_run": seconds,
            "quick": quick}


def _find(rows, name, path):
    return next((r for r in rows if r["metric_key"] == name and r["path"] == path), None)


def _aims(rows) -> list[dict]:
    aims = []
    for name, peer, target, text in (
        ("udp-pps", "nft", 3.0, "at least 3x the small-UDP packets per second of nftables DNAT"),
        ("udp-pps", "envoy", 10.0, "at least 10x the small-UDP packets per second of Envoy"),
        ("tcp-cps", "nft", 1.0, "more new TCP connections per second than nftables DNAT"),
        ("tcp-cps", "envoy", 1.0, "more new TCP connections per second than Envoy"),
    ):
        r = _find(rows, name, peer)
        if r is None or r.get("xdp_advantage") is None:
            continue
        got = r["xdp_advantage"]
        met = got >= target if target > 1 else got > 1
        aims.append({"aim": text, "target": target, "measured": round(got, 2), "met": met})
    return aims


def _ev(rows, name, path) -> list[dict]:
    r = _find(rows, name, path)
    return [e for e in (r or {}).get("evidence", []) if "error" not in e]


def _median_of(entries, key):
    values = [e[key] for e in entries if e.get(key) is not None]
    return statistics.median(values) if values else None


def _kernel_split(entry) -> list[int]:
    """Kernel (system + softirq) percent of each CPU in one measurement window, highest first."""
    return sorted((c.get("system", 0) + c.get("softirq", 0) for c in entry.get("cpu_pct", {}).values()),
                  reverse=True)


def _findings(result) -> list[str]:
    """What the run's own counters say about each result, in sentences with the numbers."""
    rows, out = result["rows"], []
    adv = {(r["metric_key"], r["path"]): r.get("xdp_advantage") for r in rows}
    med = {(r["metric_key"], r["path"]): r["median"] for r in rows}

    # -- small UDP packets --------------------------------------------------------------
    if ("udp-pps", "xdp") in med:
        xdp_ev = _ev(rows, "udp-pps", "xdp")
        kernel = [_kernel_split(e) for e in xdp_ev if e.get("cpu_pct")]
        text = ("udp-pps: the flood's whole chain runs inline in trafgen's sendto() on one core: "
                "the client veth hands the frame to gw (veth_xmit), gw forwards it (XDP redirect, or "
                "the stack for tc/nft), be0's veth and UDP layer take it, all before the system "
                "call returns; the measured rate is 1 / (generator + gw + be0) per packet, not the "
                "gateway's alone.")
        if kernel:
            text += (f" /proc/stat over the xdp windows: one CPU spent a median "
                     f"{statistics.median(k[0] for k in kernel):.0f}% of its time in the kernel (system + "
                     f"softirq), the other {statistics.median(k[1] for k in kernel):.0f}% (its user time is "
                     "other load on the shared machine).")
        for path in ("xdp", "nft"):
            pev = _ev(rows, "udp-pps", path)
            sent = _median_of(pev, "sent_pps")
            drops = {k: sum(e.get(k, 0) for e in pev) for k in
                     ("client_tx_dropped", "gw_front_rx_dropped", "gw_be0_tx_dropped", "be0_rx_dropped")}
            moved = ", ".join(f"{k} {v:,}" for k, v in drops.items() if v) or "none"
            if sent and ("udp-pps", path) in med:
                text += (f" {path}: trafgen sent a median {sent:,.0f}/s, be0 received "
                         f"{med[('udp-pps', path)]:,.0f}/s; interface drop counters that moved, summed "
                         f"over the windows: {moved}.")
        text += (" Sent and received match: veth (almost) never drops here, it slows the sender "
                 "down to the speed of the whole chain (client_tx_dropped, if any, are frames the "
                 "client's veth refused to hand to gw).")
        out.append(text)
        prof = result.get("udp_profiles") or {}
        parts = []
        for path in ("xdp", "tc", "nft"):
            p = (prof.get(path) or {}).get("inclusive_pct")
            if not p:
                continue
            total = p.get("packet_sendmsg")
            keys = {"xdp": ("veth_xdp_rcv_skb", "skb_pp_cow_data", "bpf_prog:xdp_lb",
                            "veth_xdp_rcv_bulk_skb", "ip_list_rcv", "__udp4_lib_rcv"),
                    "tc": ("tcf_classify", "bpf_prog:tc_ingress", "ip_rcv", "__udp4_lib_rcv"),
                    "nft": ("nf_hook_slow", "nft_do_chain", "nf_conntrack_in", "ip_forward", "ip_rcv",
                            "__udp4_lib_rcv")}[path]
            got = ", ".join(f"{k} {p[k]:.1f}%" for k in keys if k in p)
            parts.append(f"{path}: sendto() {total:.0f}% in all; {got}" if total else f"{path}: {got}")
        if parts:
            out.append("udp-pps CPU profile (perf record -g of trafgen for 2 s per path, inclusive share "
                       "of its samples; everything from the generator to be0's UDP layer is in there): "
                       + " | ".join(parts) + ". On veth, native XDP is fed an skb, not a DMA buffer: "
                       "veth_xdp_rcv_skb copies it into a page_pool page with XDP headroom "
                       "(skb_pp_cow_data) before the program runs, and be0's veth turns the redirected "
                       "frames back into skbs (veth_xdp_rcv_bulk_skb). A NIC driver does neither, so on "
                       "veth the XDP fast path pays two conversions that nftables' skb path does not.")
        env_ev = _ev(rows, "udp-pps", "envoy")
        if env_ev:
            drops = _median_of(env_ev, "gw_udp_rcvbuf_errors")
            secs = _median_of(env_ev, "seconds") or 1
            rx = _median_of(env_ev, "gw_front_rx_pps")
            if drops is not None and rx:
                out.append(f"udp-pps envoy: of {rx:,.0f} datagrams/s reaching gw, {drops / secs:,.0f}/s were "
                           "dropped at Envoy's listener socket (UdpRcvbufErrors in gw): the kernel delivers "
                           "faster than Envoy's worker reads and re-sends them.")

    # -- new connections ----------------------------------------------------------------
    if ("tcp-cps", "xdp") in med:
        ev = _ev(rows, "tcp-cps", "xdp")
        drops = [e.get("dp_DROP_SNAT_EXHAUSTED", 0) for e in ev]
        conns = [e.get("requests", 0) for e in ev]
        hit = sum(1 for d in drops if d)
        text = (f"tcp-cps: xdp completed a median {med[('tcp-cps', 'xdp')]:,.0f} connections/s; in "
                f"{'every window' if hit == len(drops) else f'{hit} of {len(drops)} windows'} "
                f"xdp-gateway dropped SYNs with DROP_SNAT_EXHAUSTED (per round: "
                f"{', '.join(str(d) for d in drops)}; connections per round: {', '.join(map(str, conns))}). "
                "Its SNAT ports are 61000-65535 (4,536 per backend and SNAT address) and a closed flow "
                "keeps its port for tcp_close_timeout = 10 s, so at most about 2 x 4,536 / 10 s = 907 new "
                "connections/s can be sustained to two backends. snat_claim() tries 16 consecutive ports "
                f"from a hash, so it fails before the pool is full: about {statistics.median(conns):,.0f} "
                "connections went through at full speed in each window, then SYNs were dropped and the "
                "wrk connections sat in SYN retransmission (1 s, then 2 s backoff) for the rest of the "
                f"window. The xdp figure is therefore about {statistics.median(conns):,.0f} / window "
                "length, whatever the window.")
        if ("tcp-cps", "xdp-dnat") in med:
            text += (f" The diagnostic xdp-dnat visit (same XDP program, tcp-cps in DNAT mode, so no SNAT "
                     f"ports) reached {med[('tcp-cps', 'xdp-dnat')]:,.0f}/s")
            for peer in ("nft", "envoy"):
                if ("tcp-cps", peer) in med:
                    text += f"; {peer}: {med[('tcp-cps', peer)]:,.0f}/s"
            text += (": the port pool, not the XDP program, is what loses most of the ground; the rest "
                     "of the gap to nftables (each connection's ~10 packets through veth's XDP "
                     "conversions, two conntrack map inserts) is not broken down here.")
        nft_ev = _ev(rows, "tcp-cps", "nft")
        ct = _median_of(nft_ev, "gw_conntrack_entries")
        if ct:
            text += (f" nftables keeps no such pool: masquerade keeps the client's port when free and "
                     f"conntrack held a median {ct:,.0f} entries after a window.")
        out.append(text)

    # -- throughput -------------------------------------------------------------------------
    if ("throughput", "xdp") in med:
        sizes = {p: _median_of(_ev(rows, "throughput", p), "gw_to_be0_avg_bytes")
                 for p in PATHS if ("throughput", p) in med}
        client = _median_of(_ev(rows, "throughput", "xdp"), "client_tx_avg_bytes")
        offs = result.get("offloads", {})
        tso = {path: {k: v.get("tx-tcp-segmentation") for k, v in off.items()}
               for path, off in offs.items() if path in ("xdp", "nft")}
        text = ("throughput: average size of what gw sent to be0 per packet: "
                + ", ".join(f"{p} {v:,.0f} B" for p, v in sizes.items() if v)
                + (f" (the client sends {client:,.0f} B packets)" if client else "") + ". "
                "xdp, tc and nft forward the client's MSS-sized segments one by one; Envoy terminates "
                "TCP and re-sends from its own socket, where gw's veth has TSO, so its upstream leg "
                "moves the same bytes in a fraction of the packets.")
        if tso:
            text += (" ethtool -k tx-tcp-segmentation per path: "
                     + "; ".join(f"{path}: " + ", ".join(f"{k} {v}" for k, v in t.items())
                                 for path, t in tso.items())
                     + ". The client and backends have tx checksum offload off for every path "
                     "(netlab's workaround: XDP cannot finish a CHECKSUM_PARTIAL packet), which "
                     "turns their TSO off, so the client's packets are MSS-sized everywhere; gw's own "
                     "veths keep TSO unless an XDP program is attached (veth then drops it).")
        text += (" The XDP path also copies every forwarded segment into a page_pool page at gw's "
                 "front veth (skb_pp_cow_data, see the udp-pps profile), a cost proportional to bytes "
                 "that nftables' skb path does not have.")
        out.append(text)
    tc_fail = [f for f in result.get("failures", []) if f["path"] == "tc" and f["metric"] == "throughput"]
    if tc_fail:
        flows = sorted({m.group(1) for f in tc_fail if (m := re.search(r"counted (\d+) new flows", f["error"]))})
        out.append(
            f"throughput tc: {len(tc_fail)} iperf3 attempt(s) ended with 'Connection reset by peer'"
            + (f"; xdp-gateway counted {'/'.join(flows)} new flows for iperf3's 2 connections" if flows else "")
            + ". A flow that is re-created mid-stream gets another SNAT port, be0 sees an unknown tuple "
            "and answers RST. Cause, reproduced outside this bench: ct_expired() in bpf/lib/conntrack.h "
            "computes `now - last_seen` in unsigned 64 bits; when another CPU refreshes last_seen after "
            "this CPU read `now`, it underflows, the live flow counts as expired and starts over "
            "(snat_claim's takeover of 'expired' ports has the same race). With tc on veth a flow's "
            "packets are processed on both CPUs at once (veth_xmit queues to the sending CPU's backlog; "
            "be0 counts TcpExtTCPOFOQueue), with XDP on veth they are serialised by one NAPI ring. "
            "A copy of bpf/ with `now > last_seen &&` in ct_expired() passed 6 of 6 iperf3 runs on the "
            "tc path (2 new flows each) where the original failed 3 of 4.")
    return out


def _notes(result) -> list[str]:
    notes = [
        "On veth the traffic generator, the data path and the servers share the machine's "
        f"{os.cpu_count()} cores, so absolute numbers are low and move with other load on the "
        "machine; the ratios, measured path by path in the same run, are what matter.",
        f"{result['rounds']} interleaved round(s) of {result['seconds_per_run']:g} s per measurement; "
        "each round visits every path once (start rotated per round) and measures every metric "
        "there. Medians over rounds; the XDP advantage is the median of the per-round ratios.",
        "Before each path is measured the harness verifies it is alone: XDP attached (native) on gw "
        "and the far ends only for the xdp path, a clsact qdisc only for the tc path, nft rules only "
        "for the nft path, the VIP on gw's lo and exactly one envoy process in gw only for the envoy "
        "path.",
    ]
    for aim in result["aims"]:
        notes.append(f"Aim: {aim['aim']}: measured {aim['measured']}x -> "
                     + ("met." if aim["met"] else "NOT met."))
    if result["failures"]:
        first: dict[str, str] = {}
        count: dict[str, int] = {}
        for f in result["failures"]:
            key = f"{f['metric']} {f['path']}"
            count[key] = count.get(key, 0) + 1
            first.setdefault(key, f["error"].split("; iperf3 server log")[0][:220])
        notes.append("Failed attempts (recorded, then retried up to "
                     f"{ATTEMPTS} times; a figure always comes from a successful attempt): "
                     + "; ".join(f"{k}: {count[k]}x, e.g. {first[k]}" for k in sorted(count)))
    if result["leftovers_after_cleanup"]:
        notes.append(f"Left behind after cleanup: {result['leftovers_after_cleanup']}")
    return notes


# -- report -----------------------------------------------------------------------------

HOW = {
    "udp-pps": (
        "trafgen in the client namespace (one process, `--gap 0`: a blocking sendto() per frame, "
        "`--no-sock-mem`) sends "
        f"60-byte Ethernet frames (UDP, {UDP_PAYLOAD}-byte payload, {UDP_FLOWS} source ports) to "
        f"VIP:{UDP_VIP_PORT} as fast as it can; after 0.5 s of ramp-up the figure is the rate of packets "
        "received by be0's interface (rx_packets from netlink link stats) over the measured window. "
        "be0 has a socket bound that never reads, so nothing is answered; be0's UDP layer counters "
        "(InDatagrams + RcvbufErrors) are recorded as a cross-check, along with what the client sent "
        "and every drop counter on the way."),
    "tcp-cps": (
        f"wrk (-t{WRK_THREADS} -c{WRK_CONNECTIONS}, `Connection: close`) in the client namespace "
        f"against VIP:{CPS_VIP_PORT}, served by a 60-line C epoll HTTP responder on be0 and be1 "
        f"(port {CPS_BE_PORT}) that answers and closes: every request is a new TCP connection. "
        "Completed requests per second of the fixed duration. The same sysctls in every namespace "
        "(ip_local_port_range 1024-60999, tcp_tw_reuse=1, somaxconn 4096) so that no path runs out "
        "of ephemeral ports."),
    "latency": (
        f"sockperf ping-pong over TCP (14-byte messages, one connection, `--full-rtt`) from the client "
        f"to VIP:{RR_VIP_PORT}, sockperf server on be0; sockperf's p50 and p99 of the round trip "
        "(its 0.4 s warm-up excluded). Client, server and, for the envoy path, Envoy's threads are "
        f"pinned to CPU {LATENCY_CPU} during the measurement: a round trip that has to wake a task on "
        "the other, idle vCPU pays tens of µs of wake-up latency in this VM, and whether it does "
        "depended on the other load on the machine (unpinned, the same path measured 20 or 85 µs)."),
    "throughput": (
        f"iperf3 -c VIP -p {BULK_VIP_PORT} (one TCP stream, first second omitted when runs are 3 s or "
        "longer), server on be0; the receiver's bits per second. The client and backends have tx "
        "checksum offload (and so TSO) off, as netlab sets it for every path."),
}


def markdown(result: dict) -> str:
    lines = [f"## {result['title']}", ""]
    lines += [
        "One topology: client -- gw -- be0/be1 (veth pairs, `lab/netlab.py`), one VIP "
        "(10.99.100.1) and the same ports for every path. Paths: "
        + "; ".join(f"**{p}** = {PATH_LABELS[p]}" for p in PATHS) + ". "
        "xdp/tc run xdp-gateway's own programs in SNAT mode (programmed in-process with a "
        "`DesiredState`, maps pinned under a throwaway bpffs directory). nft is kube-proxy's "
        "nftables mode in miniature: a `service-ips` verdict map, numgen random over per-endpoint "
        "DNAT chains, `ct status dnat masquerade` in postrouting. envoy is Envoy 1.40 "
        f"(`--concurrency {ENVOY_CONCURRENCY}`, static bootstrap, admin on a unix socket) with one "
        "tcp_proxy listener per TCP service and a udp_proxy listener bound to the VIP, which is "
        "added as a /32 to gw's lo for that path only (and removed after); its upstream connections "
        "leave from gw's address on each backend segment, so backends see gw as with SNAT. Between "
        "paths, the TIME_WAIT sockets of every namespace are killed (ss -K), gw's conntrack and "
        "xdp-gateway's flow maps are flushed, so that no path inherits its predecessor's state. "
        "The far ends (client, be0, be1) run an "
        "XDP_PASS program only during the xdp path: veth drops frames redirected by XDP into a peer "
        "that has none.", ""]
    lines += [f"- {n}" for n in result.get("notes", [])]
    lines.append("")
    by_metric: dict[str, list] = {}
    for r in result["rows"]:
        by_metric.setdefault(r["metric_key"], []).append(r)
    peers = [p for p in PATHS if p != "xdp" and any(r["path"] == p for r in result["rows"])]
    if any(r["path"] == "xdp" for r in result["rows"]) and peers:
        lines += ["XDP advantage over each peer (median of the per-round ratios; above 1 the XDP path "
                  "is better: more packets, connections or bits per second, or a shorter round trip):", "",
                  "| metric | " + " | ".join(PATH_LABELS[p] for p in peers) + " |",
                  "|---|" + "---:|" * len(peers)]
        for key, rows in by_metric.items():
            cells = []
            for p in peers:
                r = next((x for x in rows if x["path"] == p), None)
                cells.append(f"{r['xdp_advantage']:.2f}x" if r and r.get("xdp_advantage") else "n/a")
            lines.append(f"| {ROW_METRICS[key][1]} | " + " | ".join(cells) + " |")
        lines.append("")
    failed: dict[tuple[str, str], int] = {}
    for f in result.get("failures", []):
        failed[(f["metric"], f["path"])] = failed.get((f["metric"], f["path"]), 0) + 1
    for key, (metric, _, _, _) in ROW_METRICS.items():
        if key not in by_metric and any(m == metric for m, _ in failed):
            by_metric[key] = []  # only failed attempts: still a table, saying so
    for key, rows in sorted(by_metric.items(), key=lambda kv: list(ROW_METRICS).index(kv[0])):
        metric, title, unit, higher = ROW_METRICS[key]
        lines += [f"### {title} ({unit})", ""]
        if key != "latency-p99":
            lines += [f"How measured: {HOW[metric]}", ""]
        lines += [f"| path | median | p25-p75 | XDP advantage{' (higher is better)' if higher else ' (lower is better: peer / XDP)'} | rerun |",
                  "|---|---:|---:|---:|---|"]
        for r in rows:
            adv, spread = r.get("xdp_advantage"), r.get("xdp_advantage_spread")
            if r["path"] == "xdp":
                adv_text = "—"
            elif r["path"] not in PATHS:
                adv_text = "(diagnostic, not a peer)"
            elif adv:
                adv_text = f"{adv:.2f}x" + (f" ({spread['p25']:.2f}–{spread['p75']:.2f})"
                                            if spread and len(spread["runs"]) > 1 else "")
            else:
                adv_text = "n/a"
            n = len(r["runs"])
            fails = failed.get((metric, r["path"]), 0)
            note = f" ({n} run{'s' if n != 1 else ''}" + (f"; {fails} failed attempts" if fails else "") + ")"
            lines.append(f"| {r['path_label']} | {_fmt(r['median'], unit)}{note} | {_fmt(r['p25'], unit)}–"
                         f"{_fmt(r['p75'], unit)} | {adv_text} | `{r['command']}` |")
        for path in PATHS:
            if not any(r["path"] == path for r in rows) and failed.get((metric, path)):
                lines.append(f"| {PATH_LABELS[path]} | no figure: all {failed[(metric, path)]} attempts "
                             f"failed (see below) | | | `{rerun(PART, f'{key} {path}', result.get('quick', False))}` |")
        lines.append("")
    if result.get("findings"):
        lines += ["### Where XDP loses or wins less, and why", ""]
        lines += [f"- {f}" for f in result["findings"]]
        lines.append("")
    return "\n".join(lines) + "\n"


def _fmt(value: float, unit: str) -> str:
    if unit in ("packets/s", "connections/s"):
        return f"{value:,.0f}"
    if unit == "Gbit/s":
        return f"{value:.2f}"
    return f"{value:.1f}"


def charts(result: dict, outdir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    by_metric: dict[str, list] = {}
    for r in result["rows"]:
        by_metric.setdefault(ROW_METRICS[r["metric_key"]][0], []).append(r)
    colors = {"xdp": "#2b7bba", "tc": "#7fb3d5", "nft": "#e67e22", "envoy": "#8e44ad", "xdp-dnat": "#b0b0b0"}
    for metric, rows in by_metric.items():
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        keys = list(dict.fromkeys(r["metric_key"] for r in rows))
        paths = list(dict.fromkeys(r["path"] for r in rows))
        width = 0.8 / len(paths)
        for i, path in enumerate(paths):
            xs, ys, lo, hi = [], [], [], []
            for j, key in enumerate(keys):
                r = next((x for x in rows if x["path"] == path and x["metric_key"] == key), None)
                if r is None:
                    continue
                xs.append(j + (i - (len(paths) - 1) / 2) * width)
                ys.append(r["median"])
                lo.append(r["median"] - r["p25"])
                hi.append(r["p75"] - r["median"])
            bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=PATH_LABELS[path],
                          color=colors.get(path))
            ax.bar_label(bars, labels=[_fmt(y, rows[0]["unit"]) for y in ys], fontsize=7, padding=2)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([ROW_METRICS[k][1] for k in keys], fontsize=8)
        ax.set_ylabel(rows[0]["unit"])
        ax.set_title(f"e2e: {metric} (median, p25-p75)", fontsize=10)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = outdir / f"e2e_{metric.replace('-', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


if __name__ == "__main__":
    main_for(PART, run)
