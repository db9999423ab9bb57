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

from .measure import run
from .report import charts, markdown
from .settings import METRICS, PART, PATH_LABELS, PATHS, ROW_METRICS, TITLE

__all__ = ["METRICS", "PART", "PATHS", "PATH_LABELS", "ROW_METRICS", "TITLE", "charts", "markdown", "run"]
