"""The report: aims, findings drawn from the run's own counters, notes, the markdown
section and the charts."""

from __future__ import annotations

import os
import re
import statistics
from pathlib import Path

from ..common import grouped_bars, rerun
from .settings import (
    ATTEMPTS, BULK_VIP_PORT, CPS_BE_PORT, CPS_VIP_PORT, ENVOY_CONCURRENCY, LATENCY_CPU,
    PART, PATH_LABELS, PATHS, ROW_METRICS, RR_VIP_PORT, UDP_FLOWS, UDP_PAYLOAD,
    UDP_VIP_PORT, WRK_CONNECTIONS, WRK_THREADS,
)


def _find(rows, name, path):
    return next((r for r in rows if r["metric_key"] == name and r["path"] == path), None)


def _aims(rows) -> list[dict]:
    aims = []
    for name, peer, target, text in (
        ("udp-pps", "nft", 3.0, "at least 3x the small-UDP packets per second of nftables DNAT"),
        ("udp-pps", "envoy", 10.0, "at least 10x the small-UDP packets per second of Envoy"),
        ("tcp-cps", "nft", 1.2, "at least 1.2x the new TCP connections per second of nftables DNAT (issue 10)"),
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
                       + " | ".join(parts) + "."
                       + (" On veth, native XDP is fed an skb: veth_xdp_rcv_skb copies it into a "
                          "page_pool page (skb_pp_cow_data) before the program runs, and be0's veth "
                          "turns the redirected frames back into skbs (veth_xdp_rcv_bulk_skb); a NIC "
                          "driver does neither."
                          if _veth_copies(prof) else ""))
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
        text = (f"tcp-cps: xdp completed a median {med[('tcp-cps', 'xdp')]:,.0f} connections/s "
                f"(connections per round: {', '.join(map(str, conns))}); ")
        if hit:
            text += (f"in {'every window' if hit == len(drops) else f'{hit} of {len(drops)} windows'} "
                     f"xdp-gateway dropped SYNs with DROP_SNAT_EXHAUSTED (per round: "
                     f"{', '.join(str(d) for d in drops)}).")
        else:
            text += "no SYN was dropped for want of a SNAT port (DROP_SNAT_EXHAUSTED stayed 0)."
        text += _snat_budget(result.get("dataplane_config") or {}, len(conns))
        if ("tcp-cps", "xdp-dnat") in med:
            text += (f" The diagnostic xdp-dnat visit (same XDP program, tcp-cps in DNAT mode, so no SNAT "
                     f"ports) reached {med[('tcp-cps', 'xdp-dnat')]:,.0f}/s")
            for peer in ("nft", "envoy"):
                if ("tcp-cps", peer) in med:
                    text += f"; {peer}: {med[('tcp-cps', peer)]:,.0f}/s"
            snat, dnat = med[("tcp-cps", "xdp")], med[("tcp-cps", "xdp-dnat")]
            text += (f": the same program reaches {dnat / snat:.2f}x its SNAT-mode rate without SNAT "
                     "ports." if snat else ".")
        if ("tcp-cps", "route") in med and med.get(("tcp-cps", "nft")):
            bound, nft = med[("tcp-cps", "route")], med[("tcp-cps", "nft")]
            text += (f" The bound (route: gw only routes, no NAT, no program, no conntrack; the client "
                     f"connects to the backends themselves) reached {bound:,.0f}/s, {bound / nft:.2f}x "
                     f"nftables: no gateway on these veths can open more than that, so an aim above "
                     f"{bound / nft:.2f}x nftables cannot be met here.")
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
        if _veth_copies(result.get("udp_profiles") or {}):
            text += (" The XDP path also copies every forwarded segment into a page_pool page at gw's "
                     "front veth (skb_pp_cow_data, seen in this run's udp-pps profile), a cost "
                     "proportional to bytes that nftables' skb path does not have.")
        out.append(text)
    tc_fail = [f for f in result.get("failures", []) if f["path"] == "tc" and f["metric"] == "throughput"]
    if tc_fail:
        flows = sorted({m.group(1) for f in tc_fail if (m := re.search(r"counted (\d+) new flows", f["error"]))})
        out.append(
            f"throughput tc: {len(tc_fail)} iperf3 attempt(s) failed (first: {tc_fail[0]['error'][:160]})"
            + (f"; xdp-gateway counted {'/'.join(flows)} new flows for iperf3's 2 connections" if flows else "")
            + ".")
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
        "the other, idle CPU pays a wake-up latency that depends on whatever else the machine runs."),
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
    colors = {PATH_LABELS[p]: c for p, c in {"xdp": "#2b7bba", "tc": "#7fb3d5", "nft": "#e67e22", "envoy": "#8e44ad",
                                             "xdp-dnat": "#b0b0b0",
                                             "route": "#606060"}.items() if p in PATH_LABELS}
    by_metric: dict[str, list] = {}
    for r in result["rows"]:
        by_metric.setdefault(ROW_METRICS[r["metric_key"]][0], []).append(r)
    written = []
    for metric, rows in by_metric.items():
        keys = list(dict.fromkeys(r["metric_key"] for r in rows))
        series: dict[str, dict[str, dict]] = {}
        for r in rows:
            series.setdefault(PATH_LABELS[r["path"]], {})[ROW_METRICS[r["metric_key"]][1]] = r
        unit = rows[0]["unit"]
        written.append(grouped_bars(outdir / f"e2e_{metric.replace('-', '_')}.png",
                                    f"e2e: {metric} (median, p25-p75)", unit,
                                    [ROW_METRICS[k][1] for k in keys], series, colors,
                                    lambda y, unit=unit: _fmt(y, unit)))
    return written


def _snat_budget(config: dict, windows: int) -> str:
    """The SNAT port pool of this run's data path configuration, stated, not modelled: a new
    flow keeps the client's port when it is free, so there is no fixed ceiling to compute."""
    low, high = config.get("snat_port_min"), config.get("snat_port_max")
    if not (low and high):
        return ""
    held = ", ".join(f"{k} = {config[k]} s" for k in ("tcp_close_timeout", "tcp_time_wait_timeout")
                     if config.get(k) is not None)
    return (f" This run's data path had SNAT ports {low}-{high} per SNAT address and backend"
            + (f" (a closed flow holds its port for {held})" if held else "")
            + f", over {windows} window(s).")


def _veth_copies(profiles: dict) -> bool:
    """Whether this run's XDP profile shows veth's skb-to-page_pool copy."""
    return bool(((profiles.get("xdp") or {}).get("inclusive_pct") or {}).get("skb_pp_cow_data"))
