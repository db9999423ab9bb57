"""What every benchmark part shares: the machine's description, medians over repeated
runs, and the row format the report renders.

Contract for a part (bench/<part>.py):
    run(quick: bool = False) -> dict   # {"part", "title", "rows": [row...], "notes": [...]}
    markdown(result: dict) -> str      # its section of docs/benchmarks.md
    charts(result: dict, outdir: Path) -> list[Path]   # PNGs it wants in the report
and `python -m bench.<part> [--quick] [--only NAME] [--json FILE]` runs it alone.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def summary(values: list[float]) -> dict:
    """Median and spread of repeated runs (the median is what the report compares)."""
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "p25": q[0], "p75": q[2], "runs": ordered}


def repeat(measure: Callable[[], float], runs: int) -> dict:
    return summary([measure() for _ in range(runs)])


def row(name: str, metric: str, unit: str, stats: dict, command: str, **extra) -> dict:
    """One line of the report; `command` reruns exactly this line."""
    return {"name": name, "metric": metric, "unit": unit, **stats, "command": command, **extra}


def rerun(part: str, name: str, quick: bool = False) -> str:
    return f"sudo .venv/bin/python -m bench.{part} --only '{name}'" + (" --quick" if quick else "")


def main_for(part: str, run: Callable[..., dict]) -> None:
    """The `python -m bench.<part>` entry point."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m bench.{part}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--only", help="run only the row of this name")
    parser.add_argument("--json", type=Path, help="write the result here as well")
    args = parser.parse_args()
    result = run(quick=args.quick, only=args.only)
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    sys.stdout.write(text + "\n")


def sh(*argv, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run([str(a) for a in argv], **kw)


def grouped_bars(target: Path, title: str, unit: str, groups: list[str], series: dict[str, dict[str, dict]],
                 colors: dict[str, str], fmt: Callable[[float], str]) -> Path:
    """One PNG of bars grouped by `groups` (x labels), one bar per series in each group:
    series label -> group label -> a row's stats (median with p25-p75 as its whisker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    width = 0.8 / max(len(series), 1)
    for i, (label, by_group) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * width
        placed = [(j + offset, by_group[g]) for j, g in enumerate(groups) if g in by_group]
        ys = [s["median"] for _, s in placed]
        bars = ax.bar([x for x, _ in placed], ys, width,
                      yerr=[[s["median"] - s["p25"] for _, s in placed], [s["p75"] - s["median"] for _, s in placed]],
                      capsize=3, label=label, color=colors.get(label))
        ax.bar_label(bars, labels=[fmt(y) for y in ys], fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
