"""What every part of the end-to-end bench agrees on: the paths, the metrics, the
services' ports and the tuning applied in every namespace."""

from __future__ import annotations

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
    # Diagnostic, the bound: gw only routes (no NAT, no program, no conntrack); the client
    # addresses the backends themselves. No gateway in this topology can do more.
    "route": "bound: plain routing in gw, client to backends",
}
# Diagnostic paths: not peers, visited for tcp-cps only.
DIAGNOSTIC_PATHS = ("xdp-dnat", "route")
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
