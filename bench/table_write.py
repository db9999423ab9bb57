"""Writing Maglev tables into the kernel: one array element per slot (a batch update
of `size` elements, the layout before maglev_v2) against one element holding the whole
table (maglev_v2), interleaved in one process so both see the same machine load.

    sudo .venv/bin/python -m bench.table_write [--tables N] [--size S] [--rounds R]

Prints one JSON object: seconds (wall and CPU) per layout for N tables of S slots.
Only the inner maps are written (create, fill, close); the outer map update is the same
for both layouts.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time

import numpy as np

from ctl.dataplane import bpfsys


def per_slot(slots: ctypes.Array) -> None:
    fd = bpfsys.map_create(bpfsys.MAP_TYPE_ARRAY, "xg_bench_slot", 4, 4, len(slots))
    try:
        bpfsys.array_write_all(fd, slots)
    finally:
        os.close(fd)


def one_value(slots: ctypes.Array) -> None:
    fd = bpfsys.map_create(bpfsys.MAP_TYPE_ARRAY, "xg_bench_table", 4, ctypes.sizeof(slots), 1)
    try:
        bpfsys.map_update(fd, ctypes.c_uint32(0), slots)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table_write")
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--size", type=int, default=16381)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    table = rng.integers(1, 8, args.size, dtype=np.uint32)
    slots = (ctypes.c_uint32 * args.size).from_buffer_copy(table)
    totals = {name: {"wall": [], "cpu": []} for name in ("per_slot", "one_value")}
    for _ in range(args.rounds):
        for name, write in (("per_slot", per_slot), ("one_value", one_value)):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.tables):
                write(slots)
            totals[name]["wall"].append(time.perf_counter() - wall)
            totals[name]["cpu"].append(time.process_time() - cpu)
    print(json.dumps({"tables": args.tables, "size": args.size, "rounds": args.rounds,
                      **{name: {k: sorted(v)[len(v) // 2] for k, v in t.items()}
                         for name, t in totals.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
