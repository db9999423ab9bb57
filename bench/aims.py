"""Issue 10's aims against one run's results: the table at the top of docs/benchmarks.md.

Pure: reads the results bench.run collected (whatever parts and rows exist) and says, per
aim, the measured figure, met or not, why where the run shows it, and which section holds
the evidence. An aim whose figure this run did not measure says so; it never borrows an
older number.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

NOT_MEASURED = "not measured by this run"


@dataclass(frozen=True)
class Aim:
    aim: str
    measured: str
    met: bool | None  # None: not measured
    evidence: str  # markdown link(s) to the section(s) holding the figures
    why: str = ""


def anchor(title: str) -> str:
    """GitHub's anchor for a markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return "#" + slug.replace(" ", "-")


def _link(results: dict, part: str, heading: str | None = None) -> str:
    result = results["parts"].get(part) or {}
    title = heading or result.get("title") or part
    return f"[{title}]({anchor(title)})"


def _rows(results: dict, part: str) -> list[dict]:
    result = results["parts"].get(part) or {}
    return [] if result.get("error") else result.get("rows", [])


# -- new connections (e2e) ----------------------------------------------------------------------
def _cps(results: dict) -> dict[str, dict]:
    return {r["path"]: r for r in _rows(results, "e2e") if r.get("metric_key") == "tcp-cps"}


def _per_round_ratio(a: dict, b: dict) -> float | None:
    """Median of per-round ratios a/b where both visited the same rounds, else ratio of medians."""
    ra, rb = a.get("per_round") or [], b.get("per_round") or []
    if ra and len(ra) == len(rb) and all(rb):
        return statistics.median(x / y for x, y in zip(ra, rb))
    return a["median"] / b["median"] if b.get("median") else None


def _snat_drops(row: dict) -> int:
    return sum(e.get("dp_DROP_SNAT_EXHAUSTED", 0) for e in row.get("evidence", []) if "error" not in e)


def _tc_hook(tc: dict | None, peer: dict) -> str:
    """The tc hook runs the same program logic in snat mode without veth's XDP conversions."""
    if not tc or not peer.get("median"):
        return ""
    return f"; the tc hook (same logic, snat, no XDP on veth) reached {tc['median'] / peer['median']:.2f}x the same peer"


def _bound(cps: dict, peer: dict) -> str:
    """The most any gateway could reach here: gw only routing, the client addressing the
    backends itself (e2e's route path)."""
    route = cps.get("route")
    if not route or not peer.get("per_round"):
        return ""
    ratio = _per_round_ratio(route, peer)
    return (f"; the bound, plain routing in gw without NAT or program ({route['median']:,.0f} conn/s), "
            f"is {ratio:.2f}x the same peer" if ratio else "")


def connection_aims(results: dict) -> list[Aim]:
    cps = _cps(results)
    link = _link(results, "e2e", "new TCP connections per second (connections/s)") if cps else ""
    why_link = _link(results, "e2e", "Where XDP loses or wins less, and why") if cps else ""
    out = []
    xdp, tc = cps.get("xdp"), cps.get("tc")
    drops = ""
    if xdp:
        dropped = _snat_drops(xdp)
        drops = (f"{dropped:,} SYNs dropped for want of a SNAT port over the run" if dropped
                 else "no SYN dropped for want of a SNAT port")
    for peer, target, text in (("nft", 1.2, "new TCP conn/s, snat mode, >= 1.2x nftables DNAT"),
                               ("envoy", 1.0, "new TCP conn/s, snat mode, more than Envoy")):
        row = cps.get(peer)
        got = row.get("xdp_advantage") if row else None
        if xdp is None or got is None:
            out.append(Aim(text, NOT_MEASURED, None, link))
            continue
        met = got >= target if target > 1 else got > 1
        measured = f"{got:.2f}x ({xdp['median']:,.0f} vs {row['median']:,.0f} conn/s)"
        why = ""
        if not met:
            why = drops
            dnat = cps.get("xdp-dnat")
            if dnat and xdp.get("median"):
                why += (f"; the same XDP program in DNAT mode (no SNAT ports) reached "
                        f"{dnat['median'] / xdp['median']:.2f}x its snat rate")
            why += _tc_hook(tc, row) + _bound(cps, row) + f"; see {why_link}"
        out.append(Aim(text, measured, met, link, why))
    dnat, nft = cps.get("xdp-dnat"), cps.get("nft")
    text = "new TCP conn/s, dnat mode, more than nftables DNAT"
    if dnat and nft:
        got = _per_round_ratio(dnat, nft)
        met = got is not None and got > 1
        why = "" if met else (_bound(cps, nft).removeprefix("; ") + f"; see {why_link}").removeprefix("; ")
        out.append(Aim(text, f"{got:.2f}x ({dnat['median']:,.0f} vs {nft['median']:,.0f} conn/s)", met, link, why))
    else:
        out.append(Aim(text, NOT_MEASURED, None, link))
    return out


# -- per-packet (packet_compare, packet_profile) --------------------------------------------------
PACKET_AIMS = (("established", 0.50, "established TCP"), ("udp", 0.50, "established UDP"),
               ("reply", 0.50, "reply from the backend"), ("new-flow", 0.70, "new TCP flow"))


def _own_code_share(results: dict, case: str) -> float | None:
    profile = results["parts"].get("packet_profile") or {}
    found = next((p for p in profile.get("profiles", []) if (p["hook"], p["case"]) == ("xdp", case)), None)
    if not found or not found.get("samples"):
        return None
    own = sum(count for leaf, count in found["leaves"] if leaf.startswith("(the program's own code)"))
    return own / found["samples"]


def packet_aims(results: dict) -> list[Aim]:
    rows = {r["case"]: r for r in _rows(results, "packet_compare") if r.get("hook") == "xdp"}
    link = _link(results, "packet_compare") if rows else ""
    profile_link = _link(results, "packet_profile") if "packet_profile" in results["parts"] else ""
    out = []
    for case, target, label in PACKET_AIMS:
        text = f"XDP {label}: <= {target:.2f}x of before (per-packet cost, ratio to the MAC-swap floor)"
        r = rows.get(case)
        if r is None:
            out.append(Aim(text, NOT_MEASURED, None, link))
            continue
        ratio = r["after_over_before"]
        measured = (f"{ratio:.2f}x ({r['before']['median']:.0f} -> {r['after']['median']:.0f} ns; "
                    f"{r['before_x_floor']:.1f}x -> {r['after_x_floor']:.1f}x the floor)")
        met = ratio <= target
        why = ""
        if not met:
            own = _own_code_share(results, case)
            if own is not None:
                why = (f"the program's own code is {100 * own:.0f}% of this case's samples; even at zero cost "
                       f"it would leave {ratio * (1 - own):.2f}x of before (the rest is kernel map and helper "
                       f"work); see {profile_link}")
            else:
                why = "no profile of this case in this run"
        out.append(Aim(text, measured, met, link, why))
    return out


# -- control plane (control) ----------------------------------------------------------------------
def _control_row(results: dict, name: str) -> dict | None:
    return next((r for r in _rows(results, "control") if r.get("name") == name), None)


def _edit_at(results: dict, routes: int) -> dict | None:
    """An edit-to-packet row measured with at least `routes` routes configured, if the control
    part has one: a row whose name speaks of an edit and a packet, with a p99, that says its
    routes (a `routes` field, or a name ending in the number, e.g. edit-to-packet-10000)."""
    for r in _rows(results, "control"):
        name = r.get("name", "")
        if "edit" not in name or "packet" not in name or r.get("p99") is None or r.get("in_read_back"):
            continue
        size = r.get("routes")
        if size is None:
            digits = re.search(r"(\d+)$", name)
            size = int(digits.group(1)) if digits else None
        if size is not None and size >= routes:
            return r
    return None


def _edit_in_read_back_at(results: dict, routes: int) -> dict | None:
    """The edit-to-packet row of edits timed into the agent's read-backs, at `routes` or more."""
    return next((r for r in _rows(results, "control") if r.get("in_read_back") and r.get("p99") is not None
                 and r.get("routes", 0) >= routes), None)


def _pure_steps(results: dict, routes: int) -> dict | None:
    """This tree's side of the control_compare part at this size: CPU seconds of the cold
    steps and the probe's peak RSS (no bcc), medians."""
    result = results["parts"].get("control_compare") or {}
    size = next((s for s in result.get("sizes", []) if s["routes"] == routes), None)
    if result.get("error") or size is None or not size["per_run"].get("after"):
        return None
    runs = size["per_run"]["after"]
    cold = {step: statistics.median(r["cpu"].get(step, 0) for r in runs) for step in ("load", "translate", "plan", "gc")}
    edit = statistics.median(sum(r["cpu"].get(step, 0) for step in ("edit_load", "edit_translate", "edit_plan"))
                             for r in runs)
    return {"cold": cold, "edit": edit, "rss": statistics.median(r["max_rss_mib"] for r in runs)}


def _pure_link(results: dict) -> str:
    return _link(results, "control_compare")


def control_aims(results: dict) -> list[Aim]:
    control = results["parts"].get("control") or {}
    link = _link(results, "control", "Cold start") if control else ""
    out = []
    for routes, target in ((1_000, 1.0), (10_000, 5.0)):
        text = f"{routes:,} routes x 8 backends ready <= {target:g} s"
        r = _control_row(results, f"cold-start-{routes}")
        if r is None:
            out.append(Aim(text, NOT_MEASURED, None, link))
            continue
        # A node compiles once (its first start); every later start without pinned programs
        # loads them from the node's program cache. The aim is judged on the latter, with the
        # first start's figure beside it in the same cell.
        cached = (r.get("cached_ready_s") or {}).get("median")
        prefix = "cached_" if cached is not None else ""
        figure = cached if cached is not None else r["median"]
        met = figure <= target
        measured = (f"{cached:.2f} s with the node's program cache; first start on a node (compiling) "
                    f"{r['median']:.2f} s" if cached is not None else f"{r['median']:.2f} s")
        startup = (r.get(f"{prefix}serving_s") or {}).get("median")
        reconcile = (r.get(f"{prefix}reconcile_s") or {}).get("median")
        why = ""
        if not met and startup is not None:
            # Since the program load overlaps the YAML, startup covers both (see the Cold start notes).
            why = (f"startup (interpreter, imports, programs compiled or loaded and attached while the YAML is "
                   f"read, validated and translated) {startup:.2f} s; first reconcile (read maps, plan, write) "
                   f"{reconcile:.2f} s" if reconcile is not None else f"startup {startup:.2f} s")
            pure = _pure_steps(results, routes)
            if pure:
                why += ("; the pure steps alone take " + ", ".join(f"{k} {v:.2f}" for k, v in pure["cold"].items())
                        + f" CPU s (see {_pure_link(results)})")
        out.append(Aim(text, measured, met, link, why))
    text = "RSS <= 250 MiB at 10,000 routes"
    r = _control_row(results, "cold-start-10000")
    if r is None or not r.get("rss_mib"):
        out.append(Aim(text, NOT_MEASURED, None, link))
    else:
        rss, peak = r["rss_mib"]["median"], (r.get("hwm_mib") or {}).get("median")
        measured = f"{rss:.0f} MiB" + (f" (peak {peak:.0f})" if peak else "")
        pure = _pure_steps(results, 10_000)
        why = (f"the pure steps alone, without bcc, peak at {pure['rss']:.0f} MiB (see {_pure_link(results)})"
               if pure and rss > 250 else "")
        out.append(Aim(text, measured, rss <= 250, link, why))
    text = "one weight edit at 10,000 routes reaches the data path: p99 <= 100 ms"
    edit = _edit_at(results, 10_000)
    if edit is None:
        nearest = _control_row(results, "cold-start-10000")
        hint = ""
        if nearest and (nearest.get("edit_to_reconciled_s") or {}).get("median") is not None:
            hint = (f"; nearest figure: file write to the agent's reconcile done at 10,000 routes, "
                    f"{1000 * nearest['edit_to_reconciled_s']['median']:.0f} ms (median, not p99, not to a packet)")
        pure = _pure_steps(results, 10_000)
        if pure:
            hint += (f"; the pure steps of one edit (load, translate, plan) take {1000 * pure['edit']:.0f} ms of CPU "
                     f"at 10,000 routes (see {_pure_link(results)})")
        out.append(Aim(text, NOT_MEASURED, None, link, hint.lstrip("; ")))
    else:
        # A sporadic edit can meet the idle agent's read-back of the maps: that case counts too.
        during = _edit_in_read_back_at(results, 10_000)
        measured = f"p99 {edit['p99']:.0f} ms over {edit.get('edits', '?')} edits"
        met = edit["p99"] <= 100
        if during is not None:
            measured += f"; edits during a read-back: p99 {during['p99']:.0f} ms over {during.get('edits', '?')}"
            met = met and during["p99"] <= 100
        out.append(Aim(text, measured, met, _link(results, "control", "Edit to packet")))
    return out


def aims(results: dict) -> list[Aim]:
    return connection_aims(results) + packet_aims(results) + control_aims(results)


def _verdict(aim: Aim) -> str:
    return "-" if aim.met is None else ("met" if aim.met else "**not met**")


def markdown(results: dict) -> str:
    found = aims(results)
    quick = " This was a quick run: fewer repetitions, the figures are indicative only." if results.get("quick") else ""
    lines = ["## Issue 10 aims", "",
             "Each aim of issue 10 against this run's figures (generated by `bench/aims.py` from the same "
             "results as the sections below; the link names the section with the evidence)." + quick, "",
             "| aim | measured | met | why, where not met | evidence |", "|---|---|---|---|---|"]
    for a in found:
        lines.append(f"| {a.aim} | {a.measured} | {_verdict(a)} | {a.why} | {a.evidence} |")
    met = sum(1 for a in found if a.met)
    missed = sum(1 for a in found if a.met is False)
    unmeasured = sum(1 for a in found if a.met is None)
    lines += ["", f"{met} met, {missed} not met, {unmeasured} not measured by this run, of {len(found)}.", ""]
    return "\n".join(lines)
