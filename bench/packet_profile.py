"""Where one case of the per-packet bench spends its time in the kernel: a perf profile.

    sudo .venv/bin/python -m bench.packet_profile [--hook xdp] [--case new-flow] [--seconds 30]

As a part of `make bench` (bench.run's `packet_profile`): the XDP hook's new flow and
established TCP flow, a short profile each, rendered as shares of kernel work.

Times the case in a loop exactly as bench.packet does (BPF_PROG_TEST_RUN under the replay
wrapper), with `perf record` (cpu-clock, call graphs) sampling this process meanwhile.
Every sample whose call chain passes through the program under test is counted for the
function it was in: the program's own JITed code, or the kernel function it called (a
map's insert, the FIB lookup...). Needs the `perf` tool (Debian's linux-perf) and
net.core.bpf_jit_kallsyms=1 (the default), so that JITed programs have symbols.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from . import packet

PART = "packet_profile"
TITLE = "Where the per-packet time goes: a perf profile of the XDP program"
# (hook, case) profiled by the part, seconds each in a full and a quick run
PROFILED = (("xdp", "new-flow"), ("xdp", "established"))
SECONDS = {False: 15.0, True: 2.0}
CASE_LABELS = {"new-flow": "new TCP flow", "established": "established TCP", "udp": "established UDP",
               "reply": "reply"}
OWN_CODE = "(the program's own code)"

# Leaf functions grouped by the work they do, by name prefix; first match wins.
GROUPS = (
    ("the program's own code", (OWN_CODE,)),
    ("LRU hash insert (`bpf_lru_*`, `htab_lru_map_update_elem`, `prealloc_lru_pop`, bucket locks, "
     "copying the entry)",
     ("bpf_lru_", "bpf_common_lru", "bpf_percpu_lru", "htab_lru_map_update_elem", "prealloc_lru_pop",
      "htab_lock_bucket", "htab_unlock_bucket", "_raw_spin", "__pi_memcpy", "memcpy")),
    ("hash lookups (`lookup_nulls_elem_raw`, `htab_map_hash`, `__htab_map_lookup_elem`, `memcmp`)",
     ("lookup_nulls_elem_raw", "lookup_elem_raw", "htab_map_hash", "__htab_map_lookup_elem",
      "htab_map_lookup_elem", "htab_lru_map_lookup_elem", "memcmp", "jhash")),
    ("FIB and neighbour lookup (`bpf_ipv4_fib_lookup`, `fib_table_lookup`, ...)",
     ("bpf_ipv4_fib_lookup", "bpf_ipv6_fib_lookup", "bpf_xdp_fib_lookup", "bpf_skb_fib_lookup", "fib",
      "__fib", "ip_mtu_from_fib", "ip6_", "__ipv6_", "neigh", "__neigh", "___neigh")),
    ("clock (`bpf_ktime_get_coarse_ns` and below)", ("bpf_ktime", "ktime_get", "read_tsc", "kvm_clock",
                                                     "pvclock", "set_normalized_timespec")),
)
OTHER = "other kernel functions"


def group_of(leaf: str) -> str:
    return next((label for label, prefixes in GROUPS if leaf.startswith(prefixes)), OTHER)


def shares(result: dict) -> dict[str, float]:
    """Share of the samples per group, 0-1 (every group present, OTHER last)."""
    total = result["samples"] or 1
    out = {label: 0.0 for label, _ in GROUPS} | {OTHER: 0.0}
    for leaf, count in result["leaves"]:
        out[group_of(leaf)] += count / total
    return out


def own_code_share(result: dict) -> float:
    return shares(result)["the program's own code"]


# The program each hook's case runs (bpf_prog_<tag>_<name> in the kernel's symbols).
PROGRAM = {"xdp": "xdp_lb", "tc": "tc_ingress"}


def leaf_functions(script_output: str, program: str) -> Counter[str]:
    """Samples per leaf function, of the call chains that pass through `program`.

    `script_output` is `perf script -F ip,sym`: one block per sample, separated by blank
    lines, the leaf frame first."""
    leaves: Counter[str] = Counter()
    for block in script_output.split("\n\n"):
        frames = [line.split(None, 1) for line in block.strip().splitlines()]
        symbols = [frame[1].split("+", 1)[0] for frame in frames if len(frame) == 2]
        if symbols and any(s.startswith("bpf_prog_") and s.endswith(f"_{program}") for s in symbols):
            leaf = symbols[0]
            leaves[f"(the program's own code) {program}" if leaf.endswith(f"_{program}") else leaf] += 1
    return leaves


def profile(hook: str, case: str, seconds: float, new_batch: int = 1_000, repeat: int = 200_000) -> dict:
    perf = shutil.which("perf")
    if perf is None:
        raise SystemExit("needs perf (apt install linux-perf)")
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="xg-prof-") as tmp:
        bench = packet.Bench(stack)
        bench.measure(hook, case, repeat, new_batch)  # warm: first-use costs out of the profile
        data = Path(tmp) / "perf.data"
        recorder = subprocess.Popen([perf, "record", "-q", "-g", "-F", "4000", "-e", "cpu-clock",
                                     "-p", str(os.getpid()), "-o", str(data)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1)  # perf attaches
        samples, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples.append(bench.measure(hook, case, repeat, new_batch))
        recorder.send_signal(signal.SIGINT)
        _, err = recorder.communicate(timeout=120)
        if recorder.returncode not in (0, -signal.SIGINT):
            raise SystemExit(f"perf record failed: {err}")
        script = subprocess.run([perf, "script", "-i", str(data), "-F", "ip,sym"], capture_output=True,
                                text=True, check=True).stdout
    leaves = leaf_functions(script, PROGRAM[hook])
    return {"hook": hook, "case": case, "samples": sum(leaves.values()), "runs": len(samples),
            "median_ns": sorted(samples)[len(samples) // 2], "leaves": leaves.most_common()}


def case_markdown(result: dict, top: int = 15) -> str:
    total = result["samples"]
    lines = [f"{result['hook']} {result['case']}: {total} samples in the program's call chains over "
             f"{result['runs']} timed runs (median {result['median_ns']:.0f} ns per packet, replay wrapper included)", "",
             "| function | samples | share |", "|---|---|---|"]
    lines += [f"| {name} | {count} | {100 * count / total:.1f}% |" for name, count in result["leaves"][:top]]
    return "\n".join(lines)


def run(quick: bool = False, only: str | None = None) -> dict:
    """The part's entry for bench.run: each (hook, case) of PROFILED, a short profile each."""
    wanted = [(h, c) for h, c in PROFILED if only in (None, c, f"{h} {c}")]
    profiles = [profile(hook, case, SECONDS[quick]) for hook, case in wanted]
    return {"part": PART, "title": TITLE, "quick": quick, "seconds_each": SECONDS[quick], "profiles": profiles}


def find(result: dict, hook: str, case: str) -> dict | None:
    return next((p for p in result.get("profiles", []) if (p["hook"], p["case"]) == (hook, case)), None)


def markdown(result: dict) -> str:
    profiles = result.get("profiles", [])
    lines = [f"## {result.get('title', TITLE)}", "",
             "`perf record` (cpu-clock, call graphs; no kprobes needed) samples this process while it times "
             f"the case in a loop, {result['seconds_each']:g} s each, exactly as the per-packet bench does "
             "(BPF_PROG_TEST_RUN under the replay wrapper). Every sample whose call chain passes through the "
             "program counts for the function it was in: the program's own JITed code, or the kernel "
             "function it called. Shares of those samples, grouped by the work they do "
             "(`bench/packet_profile.py`, GROUPS):", ""]
    if not profiles:
        return "\n".join(lines + ["No case was profiled in this run.", ""])
    header = " | ".join(f"{p['hook']} {CASE_LABELS.get(p['case'], p['case'])} ({p['samples']:,} samples)"
                        for p in profiles)
    lines += [f"| work | {header} |", "|---|" + "---:|" * len(profiles)]
    by_case = [shares(p) for p in profiles]
    for label in [g for g, _ in GROUPS] + [OTHER]:
        lines.append(f"| {label} | " + " | ".join(f"{100 * s[label]:.1f}%" for s in by_case) + " |")
    lines += ["", "The functions behind those groups, per case (the most sampled first; rerun with "
              "`sudo .venv/bin/python -m bench.packet_profile --hook HOOK --case CASE --seconds 30`):", ""]
    for p in profiles:
        lines += [case_markdown(p, top=10), ""]
    return "\n".join(lines) + "\n"


def charts(result: dict, outdir: Path) -> list[Path]:
    return []


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.packet_profile")
    parser.add_argument("--hook", choices=sorted(PROGRAM), default="xdp")
    parser.add_argument("--case", default="new-flow", help="a case of bench.packet (new-flow, established, udp, reply)")
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    print(case_markdown(profile(args.hook, args.case, args.seconds)))


if __name__ == "__main__":
    sys.exit(main())
