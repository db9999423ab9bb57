"""Measuring one metric on the path in place, and the run: interleaved rounds over every
path, retries, and the figures with their evidence."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ctl.dataplane.plan import DataplaneConfig

from ..common import rerun, row, summary
from .paths import PeerPaths
from .topology import _cpu_share, _stop_group
from .settings import (
    ATTEMPTS, BULK_VIP_PORT, DIAGNOSTIC_PATHS, LATENCY_CPU, METRICS, PART, PATH_LABELS, PATHS,
    QUICK_ROUNDS, QUICK_SECONDS, ROUNDS, ROW_METRICS, RR_VIP_PORT, SECONDS, TITLE,
    UDP_FLOWS, UDP_PAYLOAD, UDP_VIP_PORT, WRK_CONNECTIONS, WRK_THREADS,
)
from .report import _aims, _findings, _notes


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


# A minimal HTTP/1.1 responder for tcp-cps: read the request, answer, close. In C so that
# the backends cost as little CPU as possible (the machine has 2 cores for everything).


# -- measurement results --------------------------------------------------------------


@dataclass
class Sample:
    values: dict[str, float]           # row metric -> value
    evidence: dict = field(default_factory=dict)


# -- the bench ------------------------------------------------------------------------


class Bench(PeerPaths):
    """The lab, its servers and the four ways of serving the VIP; one path at a time."""

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
        # One wrk per target, together as many threads and connections as one wrk on the
        # VIP (the route path addresses both backends itself).
        urls = self.cps_urls()
        threads, connections = WRK_THREADS // len(urls), WRK_CONNECTIONS // len(urls)
        before = self.snapshot()
        procs = [self.lab.popen(self.lab.client.ns,
                                ["wrk", "-t", threads, "-c", connections, "-d", f"{seconds:g}s",
                                 "--timeout", "2s", "-H", "Connection: close", url],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
                 for url in urls]
        try:
            texts = [proc.communicate(timeout=seconds + 60)[0] for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        after = self.snapshot()
        requests, wall, errors = 0, 0.0, {}
        for text in texts:
            got, took, errs = _wrk_result(text)
            requests, wall = requests + got, max(wall, took)
            errors = {k: errors.get(k, 0) + v for k, v in errs.items()}
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

        def avg_size(link, way="tx"):
            packets = d[link][f"{way}_packets"]
            return round(d[link][f"{way}_bytes"] / packets) if packets else None

        evidence = {"cpu_pct": _cpu_share(d["cpu"]), "retransmits": end["sum_sent"].get("retransmits"),
                    "sender_gbps": round(end["sum_sent"]["bits_per_second"] / 1e9, 3),
                    "client_cpu_pct": round(end.get("cpu_utilization_percent", {}).get("host_total", 0), 1),
                    "client_tx_packets": d["client_uplink"]["tx_packets"],
                    "client_tx_avg_bytes": avg_size("client_uplink"),
                    # As be0 received them: the tc path hands packets to be0 with a peer
                    # redirect, which gw's side of the veth never transmits.
                    "gw_to_be0_packets": d["be0_uplink"]["rx_packets"],
                    "gw_to_be0_avg_bytes": avg_size("be0_uplink", "rx"),
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
        c = self.lab.client
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


def _wrk_result(text: str) -> tuple[int, float, dict[str, int]]:
    """(requests, seconds, socket errors) from one wrk run's output."""
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
    return requests, wall, errors


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
    `diagnostics` adds the xdp-dnat and route (the bound) tcp-cps visits per round and one CPU profile of the
    UDP flood per kernel path in the first round.
    """
    from lab import netlab

    metrics, paths = _selection(only, metrics, paths)
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    seconds = seconds or (QUICK_SECONDS if quick else SECONDS)
    visits = [(p, metrics) for p in paths]
    if diagnostics and "xdp" in paths and "tcp-cps" in metrics and not only:
        visits += [(path, ("tcp-cps",)) for path in DIAGNOSTIC_PATHS]
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
                   "pin_dir": str(bench.pin_dir), "dataplane_config": asdict(DataplaneConfig()),
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
