"""Where one case of the per-packet bench spends its time in the kernel: a perf profile.

    sudo .venv/bin/python -m bench.packet_profile [--hook xdp] [--case new-flow] [--seconds 30]

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


def markdown(result: dict, top: int = 15) -> str:
    total = result["samples"]
    lines = [f"{result['hook']} {result['case']}: {total} samples in the program's call chains over "
             f"{result['runs']} timed runs (median {result['median_ns']:.0f} ns per packet, replay wrapper included)", "",
             "| function | samples | share |", "|---|---|---|"]
    lines += [f"| {name} | {count} | {100 * count / total:.1f}% |" for name, count in result["leaves"][:top]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.packet_profile")
    parser.add_argument("--hook", choices=sorted(PROGRAM), default="xdp")
    parser.add_argument("--case", default="new-flow", help="a case of bench.packet (new-flow, established, udp, reply)")
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    print(markdown(profile(args.hook, args.case, args.seconds)))


if __name__ == "__main__":
    sys.exit(main())
