"""CPU to build many services' Maglev tables: one at a time at the old fixed size, one at
a time at the per-service size, and all together at that size (build_tables), in
interleaved rounds of one process so every variant sees the same machine load.

    .venv/bin/python -m bench.maglev_batch [--services N] [--backends B] [--rounds R]

Prints one JSON object: CPU seconds per variant and round, and whether the tables built
together equal those built alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ctl.dataplane.maglev import DEFAULT_SIZE, MaglevBackend, build_table, build_tables, table_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.maglev_batch")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--backends", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    size = table_size(args.backends)
    services = [[MaglevBackend(f"10.{s // 250}.{s % 250}.{i}:80/TCP".encode(), i + 1, 1.0)
                 for i in range(args.backends)] for s in range(args.services)]
    variants = {
        f"one_at_a_time_{DEFAULT_SIZE}": lambda: [build_table(b, size=DEFAULT_SIZE) for b in services],
        f"one_at_a_time_{size}": lambda: [build_table(b, size=size) for b in services],
        f"together_{size}": lambda: build_tables([(b, size) for b in services]),
    }
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    built = {}
    for _ in range(args.rounds):
        for name, build in variants.items():
            started = time.process_time()
            built[name] = build()
            cpu[name].append(round(time.process_time() - started, 3))
    alone, together = built[f"one_at_a_time_{size}"], built[f"together_{size}"]
    print(json.dumps({"services": args.services, "backends": args.backends, "size": size,
                      "cpu_s": cpu, "identical": all(np.array_equal(a, b) for a, b in zip(alone, together))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
