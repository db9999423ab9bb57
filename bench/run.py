"""One command for every benchmark: runs each part in turn on this machine and writes
docs/benchmarks.md, docs/bench/results.json (also bench/out/) and docs/bench/*.png.

    sudo make bench                   # everything, about half an hour
    sudo .venv/bin/python -m bench.run --quick --parts packet,maglev   # into bench/out/quick/
    sudo .venv/bin/python -m bench.run --parts control_compare --merge   # redo one part, keep the rest
    .venv/bin/python -m bench.run --from-results docs/bench/results.json --out /tmp/re  # render only

The report is the run's alone: the issue 10 aims at the top are computed from the same
results as the sections below (bench/aims.py), the before/after parts measure the
baselines named in bench/baselines.py in the same run, and earlier hand-run measurements
live in docs/performance-history.md, which the report links to and never rewrites.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from . import aims, baselines
from .common import OUT, ROOT, machine

# Run and report order. Names are modules of bench/ (each with run/markdown/charts).
PARTS = ("packet", "packet_compare", "packet_profile", "maglev", "e2e", "control", "control_compare", "l7")
# About how long each part takes in a full run on the 2-core machine (seconds; from the runs
# of 2026-11-22 and 2026-11-30 and quick runs scaled up): printed before a run starts.
TYPICAL_SECONDS = {"packet": 25, "packet_compare": 60, "packet_profile": 70, "maglev": 25, "e2e": 470,
                   "control": 900, "control_compare": 240, "l7": 360}
DOCS = ROOT / "docs"
HISTORY = "performance-history.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: a smoke run")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    parser.add_argument("--out", type=Path,
                        help="directory for benchmarks.md and bench/ (charts, results.json); default docs/, "
                             "or bench/out/quick with --quick (a quick run never overwrites the report)")
    parser.add_argument("--merge", action="store_true",
                        help="run only --parts and keep the other parts of the results.json already in --out "
                             "(to redo a part that failed; the report says which parts ran when)")
    parser.add_argument("--from-results", type=Path,
                        help="run nothing: render the report (and charts) from this results.json")
    args = parser.parse_args(argv)
    args.out = args.out or (OUT / "quick" if args.quick else DOCS)
    charts_dir = args.out / "bench"
    charts_dir.mkdir(parents=True, exist_ok=True)
    if args.from_results:
        results = json.loads(args.from_results.read_text())
        for part, result in results["parts"].items():
            if not result.get("error"):
                result["charts"] = [str(p.relative_to(args.out)) for p in
                                    importlib.import_module(f"bench.{part}").charts(result, charts_dir)]
        return write(results, args.out)

    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; parts: {', '.join(PARTS)}")
    # Progress goes to bench/out only for a run into docs/, so a check elsewhere touches nothing there.
    progress = (OUT if args.out.resolve() == DOCS.resolve() else charts_dir) / "results.json"
    progress.parent.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "quick": args.quick, "parts": {}}
    kept: dict[str, dict] = {}
    if args.merge:
        previous = json.loads((charts_dir / "results.json").read_text())
        if previous.get("quick") != args.quick:
            parser.error("--merge: the results there are from a " + ("quick" if previous.get("quick") else "full")
                         + " run; merge like with like")
        results["machine"] = previous["machine"]
        kept = {part: {"when": previous["machine"]["when"], **result} for part, result in previous["parts"].items()}
    if not args.quick:
        expected = sum(TYPICAL_SECONDS.get(p, 0) for p in parts)
        print(f"bench: {', '.join(parts)}: about {expected / 60:.0f} min on a quiet 2-core machine", file=sys.stderr)
    failed = []
    for part in parts:
        started, when = time.monotonic(), machine()["when"]
        print(f"bench: running {part} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"bench.{part}")
            result = module.run(quick=args.quick)
            result["charts"] = [str(p.relative_to(args.out)) for p in module.charts(result, charts_dir)]
        except (Exception, SystemExit) as error:  # one broken part must not lose the others' figures
            traceback.print_exc()
            failed.append(part)
            result = {"part": part, "error": f"{type(error).__name__}: {error}"}
        result["elapsed_s"] = round(time.monotonic() - started, 1)
        result["when"] = when
        if args.merge:
            result["merged_at"] = when  # the report names parts run apart from the rest
        print(f"bench: {part} took {result['elapsed_s']} s", file=sys.stderr, flush=True)
        kept[part] = result
        results["parts"] = {p: kept[p] for p in PARTS if p in kept}
        progress.write_text(json.dumps(results, indent=2, default=str))
    write(results, args.out)
    if failed:
        print(f"bench: FAILED parts: {', '.join(failed)} (their sections say so)", file=sys.stderr)
    return 1 if failed else 0


def write(results: dict, out: Path) -> int:
    (out / "bench").mkdir(parents=True, exist_ok=True)
    (out / "bench" / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "benchmarks.md").write_text(report(results))
    print(f"bench: wrote {out / 'benchmarks.md'} and {out / 'bench' / 'results.json'}", file=sys.stderr)
    return 0


def elapsed(result: dict) -> float | None:
    # `seconds` in results recorded before elapsed_s existed (l7 uses `seconds` for its own setting)
    return result.get("elapsed_s", result.get("seconds") if result.get("part") != "l7" else None)


def report(results: dict) -> str:
    m = results["machine"]
    took = [f"{part} {elapsed(r):,.0f} s" for part, r in results["parts"].items() if elapsed(r) is not None]
    apart = [f"{part} at {r['merged_at']}" for part, r in results["parts"].items() if r.get("merged_at")]
    lines = [
        "# Benchmarks",
        "",
        "Measured by `sudo make bench` (`python -m bench.run`) in one run on one machine; every",
        "line below can be rerun alone with the command shown next to it. The machines are",
        "shared and noisy, so figures are medians over repeated runs, and comparisons are",
        "ratios measured side by side in the same run, never lone absolute times.",
        f"Earlier measurements run by hand, and what changed in which commit, are in [{HISTORY}]({HISTORY});",
        "nothing below comes from there.",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores)",
        f"- Kernel: {m['kernel']}; Python {m['python']}",
        f"- Run: {m['when']}" + (" (quick mode: fewer repetitions, figures are indicative only)" if results["quick"] else ""),
        f"- Parts and their run time: {', '.join(took)}" + (f"; {sum(elapsed(r) for r in results['parts'].values() if elapsed(r)) / 60:.1f} min in all" if took else ""),
        *([f"- Run again separately (`bench.run --merge`): {', '.join(apart)}"] if apart else []),
        "",
        aims.markdown(results).rstrip(),
        "",
        "## Baselines",
        "",
        "The before/after parts compare this tree with these commits, measured in this run (bench/baselines.py):",
        "",
        baselines.markdown().rstrip(),
        "",
    ]
    for part, result in results["parts"].items():
        if result.get("error"):
            lines += [f"## {result.get('title', part)}", "",
                      f"**This part failed in this run**: `{result['error']}`. Rerun it alone with "
                      f"`sudo .venv/bin/python -m bench.run --parts {part}`.", ""]
            continue
        module = importlib.import_module(f"bench.{part}")
        lines += [module.markdown(result).rstrip(), ""]
        lines += [f"![{part}]({chart})" for chart in result.get("charts", [])]
        lines += [""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
