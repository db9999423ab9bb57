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
