"""Per-packet cost of two builds of the data path, measured in one run, interleaved.

    sudo .venv/bin/python -m bench.packet_compare --baseline <git ref> [--runs 15]

As a part of `make bench` (bench.run's `packet_compare`), the baseline is the one named in
bench/baselines.py, both hooks, the runs below.

The baseline is checked out into a throwaway git worktree and each build runs in a
worker process of its own (its own ctl/, bpf/ and bench/packet.py, so the two may differ
in map layouts and ABI); the parent sends both workers the same sequence of
measurements, alternating which build goes first, so that drift on a shared machine
hits both alike. Each worker measures exactly as bench/packet.py does (BPF_PROG_TEST_RUN
under the replay wrapper, its own cost subtracted, ratio to the MAC-swap floor of the
same round). Reported per case: both medians, after/before, and both ratios to the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import baselines
from .common import ROOT, summary

PART = "packet_compare"
TITLE = "Before/after: the per-packet path of issue 10"
# (runs, repeat, new flows per run, hooks) in a full and a quick run
SETTINGS = {False: (11, 100_000, 1_000, ("xdp", "tc")), True: (3, 20_000, 200, ("xdp",))}
# Issue 10's aims, on the XDP hook: after / before at most this.
AIMS = {"new-flow": 0.70, "established": 0.50, "udp": 0.50, "reply": 0.50}
LABELS = {"new-flow": "new TCP flow (SYN)", "established": "established TCP", "udp": "established UDP",
          "reply": "reply from the backend", "no-match": "no-match"}
CASES = ("new-flow", "established", "udp", "reply", "no-match")
REFERENCES = ("floor", "floor via replay", "floor via replay+port")

WORKER = r"""
import sys, json
from contextlib import ExitStack
import ctl
from bench.packet import Bench
with ExitStack() as stack:
    bench = Bench(stack)
    print(json.dumps({"ready": ctl.__file__}), flush=True)
    for line in sys.stdin:
        hook, what, repeat, new_batch = json.loads(line)
        print(json.dumps({"ns": bench.measure(hook, what, repeat, new_batch)}), flush=True)
"""


class Worker:
    def __init__(self, tree: Path, label: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
        self.label = label
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER], cwd=tree, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = json.loads(self._line())
        if not ready["ready"].startswith(str(tree)):
            raise SystemExit(f"{label}: imported ctl from {ready['ready']}, not from {tree}")

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.label}: worker exited ({self.proc.wait()})")
        return line

    def measure(self, hook: str, what: str, repeat: int, new_batch: int) -> float:
        self.proc.stdin.write(json.dumps([hook, what, repeat, new_batch]) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())["ns"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def compare(baseline: str, runs: int, repeat: int, new_batch: int, hooks: tuple[str, ...]) -> dict:
    sha = subprocess.run(["git", "rev-parse", baseline], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="xg-baseline-"))
    tree = tmp / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], cwd=ROOT, check=True,
                   capture_output=True)
    workers: dict[str, Worker] = {}
    try:
        workers = {"before": Worker(tree, f"baseline {sha[:10]}"), "after": Worker(ROOT, "this tree")}
        plan = [(h, w) for h in hooks for w in REFERENCES + CASES]
        samples = {(side, h, w): [] for side in workers for h, w in plan}
        for r in range(runs):
            shift = r % len(plan)
            for hook, what in plan[shift:] + plan[:shift]:
                sides = ("before", "after") if r % 2 == 0 else ("after", "before")
                for side in sides:
                    samples[(side, hook, what)].append(
                        workers[side].measure(hook, what, repeat, new_batch))
    finally:
        for worker in workers.values():
            worker.close()
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for hook in hooks:
        for case in CASES:
            out = {"hook": hook, "case": case}
            for side in ("before", "after"):
                floor = samples[(side, hook, "floor")]
                wrapper = samples[(side, hook, "floor via replay+port" if case == "new-flow"
                                   else "floor via replay")]
                raw = samples[(side, hook, case)]
                cost = [v - (w - f) for v, w, f in zip(raw, wrapper, floor)]
                out[side] = summary(cost)
                out[f"{side}_x_floor"] = summary([c / f for c, f in zip(cost, floor)])["median"]
                out[f"{side}_floor"] = summary(floor)["median"]
            out["after_over_before"] = summary(
                [a / b for a, b in zip(_cost(samples, "after", hook, case), _cost(samples, "before", hook, case))]
            )["median"]
            rows.append(out)
    return {"baseline": sha, "head": head, "dirty": _dirty(), "runs": runs, "repeat": repeat,
            "new_batch": new_batch, "rows": rows}


def _cost(samples, side, hook, case):
    floor = samples[(side, hook, "floor")]
    wrapper = samples[(side, hook, "floor via replay+port" if case == "new-flow" else "floor via replay")]
    return [v - (w - f) for v, w, f in zip(samples[(side, hook, case)], wrapper, floor)]


def _dirty() -> bool:
    # Only what the worker runs: a full bench run has already rewritten docs/ by now.
    return bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "ctl", "bpf", "bench", "lab"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip())


def run(quick: bool = False, only: str | None = None) -> dict:
    """The part's entry for bench.run: this tree against the per-packet baseline."""
    runs, repeat, new_batch, hooks = SETTINGS[quick]
    result = compare(baselines.PACKET.commit, runs, repeat, new_batch, hooks)
    return {"part": PART, "title": TITLE, "quick": quick, "hooks": list(hooks), **result}


def aim_text(hook: str, case: str, ratio: float) -> str:
    target = AIMS.get(case) if hook == "xdp" else None
    if target is None:
        return ""
    return f"<= {target:.2f}: " + ("met" if ratio <= target else "**not met**")


def table(result: dict) -> list[str]:
    lines = ["| hook | case | before ns [p25-p75] | after ns [p25-p75] | after / before | aim | before x floor "
             "| after x floor |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['hook']} | {LABELS.get(r['case'], r['case'])} | {b['median']:.0f} "
                     f"[{b['p25']:.0f}-{b['p75']:.0f}] | {a['median']:.0f} [{a['p25']:.0f}-{a['p75']:.0f}] | "
                     f"{r['after_over_before']:.2f} | {aim_text(r['hook'], r['case'], r['after_over_before'])} | "
                     f"{r['before_x_floor']:.1f}x | {r['after_x_floor']:.1f}x |")
    return lines


def floors(result: dict) -> str:
    by_hook: dict[str, tuple[float, float]] = {}
    for r in result["rows"]:
        by_hook.setdefault(r["hook"], (r["before_floor"], r["after_floor"]))
    return ", ".join(f"{hook} {b:.0f} / {a:.0f} ns" for hook, (b, a) in by_hook.items())


def markdown(result: dict) -> str:
    hooks = ",".join(result.get("hooks") or sorted({r["hook"] for r in result["rows"]}))
    lines = [f"## {result.get('title', TITLE)}", "",
             f"The build before issue 10's per-packet work (`{result['baseline'][:10]}`, see *Baselines*) and "
             f"this tree (`{result['head'][:10]}`{' + uncommitted changes' if result['dirty'] else ''}), "
             "measured in this run, interleaved: each build runs in a worker process of its own (its own "
             "ctl/, bpf/ and bench/packet.py, checked out into a throwaway git worktree), both get the same "
             "sequence of measurements, which build goes first alternates per round, and each subtracts its "
             "own replay-wrapper cost and divides by its own MAC-swap floor of the same round "
             f"(`bench/packet_compare.py`). Median of {result['runs']} runs of repeat={result['repeat']} "
             f"(new flows: {result['new_batch']} distinct SYNs per run); after / before is the median of the "
             "per-round ratios. Aims (issue 10, XDP hook): established TCP, UDP and reply at most 0.50 of "
             "before, a new flow at most 0.70.", "",
             f"Rerun: `sudo .venv/bin/python -m bench.packet_compare --baseline {result['baseline'][:10]} "
             f"--runs {result['runs']} --repeat {result['repeat']} --new-batch {result['new_batch']} "
             f"--hooks {hooks}` (floor medians before / after: {floors(result)}).", ""]
    lines += table(result)
    return "\n".join(lines) + "\n"


def charts(result: dict, outdir: Path) -> list[Path]:
    return []


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.packet_compare")
    parser.add_argument("--baseline", required=True, help="git ref of the build to compare against")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=200_000)
    parser.add_argument("--new-batch", type=int, default=1_000)
    parser.add_argument("--hooks", default="xdp,tc", help="comma-separated: xdp, tc")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = compare(args.baseline, args.runs, args.repeat, args.new_batch, tuple(args.hooks.split(",")))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.stdout.write(markdown(result))


if __name__ == "__main__":
    main()
