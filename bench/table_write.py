"""Writing Maglev tables into the kernel, interleaved in one process so every layout
sees the same machine load:

* per_slot: one array element per slot, a batch update of `size` elements (the layout
  before maglev_v2);
* one_value: one element holding the whole table of `size` slots (maglev_v2);
* mapped: the size word and `--mapped-size` slots in an mmapable BPF_F_INNER_MAP array,
  written with one copy into its pages (maglev_v3, where each service has its own size).

    sudo .venv/bin/python -m bench.table_write [--tables N] [--size S] [--mapped-size M]
        [--rounds R] [--layouts per_slot,one_value,mapped]

Prints one JSON object: seconds (wall and CPU) per layout for N tables, and the kernel
memory one table's inner map is charged (memlock in its fdinfo). Only the inner maps are
written (create, fill, close); the outer map update is the same for every layout.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
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


def mapped(words: np.ndarray) -> None:
    fd = bpfsys.map_create(bpfsys.MAP_TYPE_ARRAY, "xg_bench_mapped", 4, 4, len(words),
                           flags=bpfsys.BPF_F_INNER_MAP | bpfsys.BPF_F_MMAPABLE)
    try:
        with mmap.mmap(fd, words.nbytes) as view:
            view.write(words.tobytes())
    finally:
        os.close(fd)


def memlock(create) -> int:
    """Bytes the kernel charges one inner map of this layout (fdinfo's memlock)."""
    fd = create()
    try:
        with open(f"/proc/self/fdinfo/{fd}") as info:
            return next(int(line.split()[1]) for line in info if line.startswith("memlock:"))
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table_write")
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--size", type=int, default=16381)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mapped-size", type=int, default=1021)
    parser.add_argument("--layouts", default="per_slot,one_value,mapped")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    table = rng.integers(1, 8, args.size, dtype=np.uint32)
    slots = (ctypes.c_uint32 * args.size).from_buffer_copy(table)
    # u32 elements lie 8 bytes apart in the kernel's array (ctl/dataplane/pinned.py)
    words = np.zeros((args.mapped_size + 1, 2), dtype=np.uint32)
    words[:, 0] = np.concatenate(([args.mapped_size], rng.integers(1, 8, args.mapped_size)))
    layouts = {"per_slot": lambda: per_slot(slots), "one_value": lambda: one_value(slots),
               "mapped": lambda: mapped(words)}
    chosen = args.layouts.split(",")
    creates = {
        "per_slot": lambda: bpfsys.map_create(bpfsys.MAP_TYPE_ARRAY, "xg_bench_slot", 4, 4, args.size),
        "one_value": lambda: bpfsys.map_create(bpfsys.MAP_TYPE_ARRAY, "xg_bench_table", 4,
                                               ctypes.sizeof(slots), 1),
        "mapped": lambda: bpfsys.map_create(bpfsys.MAP_TYPE_ARRAY, "xg_bench_mapped", 4, 4, len(words),
                                            flags=bpfsys.BPF_F_INNER_MAP | bpfsys.BPF_F_MMAPABLE),
    }
    totals = {name: {"wall": [], "cpu": []} for name in chosen}
    for _ in range(args.rounds):
        for name in chosen:
            write = layouts[name]
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.tables):
                write()
            totals[name]["wall"].append(time.perf_counter() - wall)
            totals[name]["cpu"].append(time.process_time() - cpu)
    print(json.dumps({"tables": args.tables, "size": args.size, "mapped_size": args.mapped_size,
                      "rounds": args.rounds,
                      **{name: {**{k: sorted(v)[len(v) // 2] for k, v in t.items()},
                                "memlock_bytes": memlock(creates[name])}
                         for name, t in totals.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
