"""One command for every benchmark: runs each part in turn on this machine and writes
docs/benchmarks.md, docs/bench/results.json (also bench/out/) and docs/bench/*.png.

    sudo make bench                   # everything (tens of minutes)
    sudo .venv/bin/python -m bench.run --quick --parts packet,maglev
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from .common import OUT, ROOT, machine

PARTS = ("packet", "maglev", "e2e", "control", "l7")
DOCS = ROOT / "docs"
CHARTS = DOCS / "bench"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: a smoke run")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    OUT.mkdir(parents=True, exist_ok=True)
    CHARTS.mkdir(parents=True, exist_ok=True)

    results = {"machine": machine(), "quick": args.quick, "parts": {}}
    for part in parts:
        module = importlib.import_module(f"bench.{part}")
        started = time.monotonic()
        print(f"bench: running {part} ...", file=sys.stderr, flush=True)
        result = module.run(quick=args.quick)
        result["seconds"] = round(time.monotonic() - started, 1)
        result["charts"] = [str(p.relative_to(DOCS)) for p in module.charts(result, CHARTS)]
        results["parts"][part] = result
        (OUT / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (CHARTS / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (DOCS / "benchmarks.md").write_text(report(results))
    print(f"bench: wrote {DOCS / 'benchmarks.md'} and {OUT / 'results.json'}", file=sys.stderr)
    return 0


def report(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Measured by `sudo make bench` (`python -m bench.run`) in one run on one machine; every",
        "line below can be rerun alone with the command shown next to it. The machines are",
        "shared and noisy, so figures are medians over repeated runs, and comparisons are",
        "ratios measured side by side in the same run, never lone absolute times.",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores)",
        f"- Kernel: {m['kernel']}; Python {m['python']}",
        f"- Run: {m['when']}" + (" (quick mode: fewer repetitions, figures are indicative only)" if results["quick"] else ""),
        "",
    ]
    for part, result in results["parts"].items():
        module = importlib.import_module(f"bench.{part}")
        lines += [module.markdown(result).rstrip(), ""]
        lines += [f"![{part}]({chart})" for chart in result.get("charts", [])]
        lines += [""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
