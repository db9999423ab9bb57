"""The reconcile's pure steps with the control plane before issue 10's scale work and with
this tree, interleaved in one run.

    sudo .venv/bin/python -m bench.control_compare [--quick] [--only 1000]

The baseline's `ctl` (bench/baselines.py) is extracted with `git archive` into a
throwaway directory; both codes run the same probe (`bench.control_probe breakdown`, this
tree's, which adapts to what the older `ctl` lacks) on the same generated configuration,
each in a fresh process, alternating which goes first per round. CPU seconds per step
(`time.process_time`) are what the tables compare: steadier than wall time on a shared
machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import baselines
from .common import ROOT, main_for, summary

PART = "control_compare"
TITLE = "Before/after: the control plane's reconcile steps"
# routes -> interleaved rounds (each round runs both codes once)
SIZES = {False: {1_000: 3, 10_000: 1}, True: {200: 1}}
STEPS = ("load", "translate", "plan", "gc", "plan_unchanged", "edit_load", "edit_translate", "edit_plan", "edit_gc")
STEP_LABELS = {"load": "load", "translate": "translate", "plan": "plan (cold)", "gc": "collection after",
               "plan_unchanged": "plan (unchanged)", "edit_load": "edit: load", "edit_translate": "edit: translate",
               "edit_plan": "edit: plan", "edit_gc": "edit: collection"}
COLD = ("load", "translate", "plan", "gc")
EDIT = ("edit_load", "edit_translate", "edit_plan", "edit_gc")


def extract(commit: str, into: Path) -> Path:
    """This repository's `ctl` at `commit`, as files under `into` (git archive, no worktree)."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "ctl"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, capture_output=True)
    return into


def _env(tree: Path | None) -> dict[str, str]:
    path = f"{tree}{os.pathsep}{ROOT}" if tree else str(ROOT)
    return dict(os.environ, PYTHONPATH=path, PYTHONDONTWRITEBYTECODE="1")


def _check_ctl(tree: Path | None, cwd: Path) -> str:
    """Where `ctl` comes from for this code: the probe must measure the code it claims to."""
    where = subprocess.run([sys.executable, "-c", "import ctl; print(ctl.__file__)"], cwd=cwd, env=_env(tree),
                           check=True, capture_output=True, text=True).stdout.strip()
    expected = tree if tree else ROOT
    if not where.startswith(str(expected)):
        raise SystemExit(f"control_compare: ctl imported from {where}, not from {expected}")
    return where


def probe(tree: Path | None, config: Path, cwd: Path) -> dict:
    from .control import MAX_BACKENDS, MAX_SERVICES, WEIGHT_OFF, WEIGHT_ON, edit_file

    argv = [sys.executable, "-m", "bench.control_probe", "breakdown", "--config", config,
            "--max-services", MAX_SERVICES, "--max-backends", MAX_BACKENDS, "--edit-file", edit_file(config),
            "--edit-from", WEIGHT_ON, "--edit-to", WEIGHT_OFF]
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=_env(tree), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"control_compare: the probe failed ({'baseline' if tree else 'this tree'}):\n"
                         f"{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False, only: str | None = None, log=None) -> dict:
    from .control import generate

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    sizes = {n: r for n, r in SIZES[quick].items() if only in (None, str(n))}
    if only and not sizes:
        sizes = {int(only): 1}
    base = baselines.CONTROL
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "ctl"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    work = Path(tempfile.mkdtemp(prefix="xg-bench-cmp-"))
    results = []
    try:
        old = extract(base.commit, work / "before")
        codes = {"before": old, "after": None}
        where = {side: _check_ctl(tree, work) for side, tree in codes.items()}
        for routes, rounds in sizes.items():
            config = work / f"routes-{routes}"
            generate(config, routes)
            per_run: dict[str, list[dict]] = {"before": [], "after": []}
            for r in range(rounds):
                for side in (("before", "after") if r % 2 == 0 else ("after", "before")):
                    per_run[side].append(probe(codes[side], config, work))
                    log(f"control_compare: {routes} routes round {r + 1}/{rounds} {side}: "
                        f"cold {sum(per_run[side][-1]['cpu'].get(s, 0) for s in COLD):.2f} CPU s")
            shutil.rmtree(config, ignore_errors=True)
            results.append({"routes": routes, "rounds": rounds, "per_run": per_run})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"part": PART, "title": TITLE, "quick": quick, "baseline": base.commit, "head": head, "dirty": dirty,
            "ctl": where, "sizes": results}


def steps(runs: list[dict]) -> dict[str, dict]:
    """CPU seconds per step (median over runs), the cold and edit totals, peak RSS and ops."""
    out: dict[str, dict] = {}
    for step in STEPS:
        values = [r["cpu"][step] for r in runs if step in r.get("cpu", {})]
        if values:
            out[step] = summary(values)
    out["cold"] = summary([sum(r["cpu"].get(s, 0) for s in COLD) for r in runs])
    out["edit"] = summary([sum(r["cpu"].get(s, 0) for s in EDIT) for r in runs])
    out["max_rss_mib"] = summary([r["max_rss_mib"] for r in runs])
    return out


def _cell(stats: dict | None, digits: int) -> str:
    return f"{stats['median']:.{digits}f}" if stats else "-"


def markdown(result: dict) -> str:
    lines = [f"## {result.get('title', TITLE)}", "",
             f"The control plane before issue 10's scale work (`{result['baseline'][:10]}`, see *Baselines*) "
             f"and this tree (`{result['head'][:10]}`{' + uncommitted changes to ctl' if result['dirty'] else ''}) "
             "in this run: the baseline's `ctl` extracted with `git archive` into a throwaway directory, both run "
             "this tree's probe (`python -m bench.control_probe breakdown`, in-process, no kernel) on the same "
             "generated configuration, each in a fresh process, alternating which goes first per round. Steps: "
             "reading and validating the YAML, translate, plan against empty maps (a cold start: every Maglev "
             "table built), the garbage collection the agent runs after a reconcile (where the code has it), "
             "plan against maps that already hold the result (a restart), then a one-weight edit: load, "
             "translate, plan. CPU seconds of the process (`time.process_time`), median over rounds; peak RSS "
             "of the probe process (no bcc).", ""]
    for size in result["sizes"]:
        before, after = steps(size["per_run"]["before"]), steps(size["per_run"]["after"])
        lines += [f"### {size['routes']:,} routes x 8 backends, {size['rounds']} round(s)", "",
                  "| code | " + " | ".join(STEP_LABELS[s] for s in STEPS) + " | cold total | edit total "
                  "| peak RSS MiB |",
                  "|---|" + "---:|" * (len(STEPS) + 3)]
        for label, data in ((f"before ({result['baseline'][:10]})", before), (f"after ({result['head'][:10]})", after)):
            lines.append(f"| {label} | " + " | ".join(_cell(data.get(s), 2) for s in STEPS)
                         + f" | {_cell(data['cold'], 2)} | {_cell(data['edit'], 2)} | {_cell(data['max_rss_mib'], 0)} |")
        ratio = lambda key: after[key]["median"] / before[key]["median"] if before[key]["median"] else float("nan")  # noqa: E731
        lines += ["", f"After / before: cold load + translate + plan {ratio('cold'):.2f}, one edit "
                  f"{ratio('edit'):.2f}, peak RSS {ratio('max_rss_mib'):.2f}.", ""]
    lines += [f"Rerun: `sudo .venv/bin/python -m bench.control_compare --only {result['sizes'][0]['routes']}` "
              "(by hand: `git archive "
              f"{result['baseline'][:10]} ctl | tar -x -C /tmp/old`; from `/tmp`: `PYTHONPATH=/tmp/old:REPO "
              ".venv/bin/python -m bench.control_probe breakdown --config DIR --edit-file gw-0003.yaml`, then the "
              "same with `PYTHONPATH=REPO`; DIR from `bench.control.generate(DIR, 1000)`)." if result["sizes"] else
              "No size was compared in this run."]
    return "\n".join(lines) + "\n"


def charts(result: dict, outdir: Path) -> list[Path]:
    return []


if __name__ == "__main__":
    main_for(PART, run)
