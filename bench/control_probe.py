"""Helpers bench/control.py runs inside the lab's namespaces (one process each, never
one per attempt). Every time printed is time.monotonic(), which is the same clock in
every network namespace, so the caller subtracts its own readings from ours.

    python -m bench.control_probe wait-ready --url URL [--timeout S] [--interval-ms MS]
        polls URL until it answers 200; prints {"ready_at": t, "polls": n}.

    python -m bench.control_probe flip --addr A --port P [--interval-ms MS] [--timeout S]
        reads commands from stdin, one per line: "expect <backend>". For each, opens new
        TCP connections (at most one per --interval-ms) until the greeting names
        <backend>, then prints {"backend", "syn_at", "done_at", "attempts", "other",
        "errors"}: syn_at is when the connect of the first connection that landed on
        <backend> started (its SYN), done_at when its greeting arrived. "quit" ends it.

    python -m bench.control_probe breakdown --config DIR [--edit-route NAME]
        in-process timing of the reconcile's pure steps on DIR: load_directory,
        translate, plan against empty maps; then the same three steps again for a
        one-weight edit planned against maps that already hold the first result.
        Prints one JSON object (seconds per step, op counts, peak RSS).

    python -m bench.control_probe memory --config DIR
        what a cold reconcile leaves resident, the agent's way without the kernel: load
        (parse cache, generation book), translate, plan against empty maps, what the
        agent remembers it wrote; VmRSS after each step (the last after the agent's
        collector pass, Dataplane.settle and malloc_trim), VmHWM, and the MiB each holder keeps (objects
        reachable from it and from no holder listed before it, by sys.getsizeof).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import struct
import sys
import time
import urllib.error
import urllib.request

# What the backends greet with: "<name> <peer_ip> <peer_port>\n" (lab/servers.py).
_LINGER_RST = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT piles up on the client


def wait_ready(args: argparse.Namespace) -> dict:
    deadline = time.monotonic() + args.timeout
    polls = 0
    while time.monotonic() < deadline:
        polls += 1
        try:
            # a busy agent answers late (its HTTP thread waits for the GIL): be patient
            with urllib.request.urlopen(args.url, timeout=10) as response:
                if response.status == 200:
                    return {"ready_at": time.monotonic(), "polls": polls}
        except urllib.error.HTTPError:
            pass  # 503: not programmed yet
        except OSError:
            pass  # not listening yet
        time.sleep(args.interval_ms / 1000)
    return {"ready_at": None, "polls": polls, "error": "timeout"}


def _greeting(sock: socket.socket) -> str:
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(256)
        if not chunk:
            raise ConnectionError("closed before the greeting")
        line += chunk
    return line.decode().split(" ", 1)[0]


def attempt(addr: str, port: int, timeout: float) -> str:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        sock.settimeout(timeout)
        sock.connect((addr, port))
        return _greeting(sock)


def flip(args: argparse.Namespace) -> None:
    interval = args.interval_ms / 1000
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        want = words[1]
        attempts, other, errors = 0, 0, {}
        deadline = time.monotonic() + args.timeout
        result = None
        while time.monotonic() < deadline:
            started = time.monotonic()
            attempts += 1
            try:
                backend = attempt(args.addr, args.port, args.connect_timeout)
            except OSError as error:
                name = type(error).__name__
                errors[name] = errors.get(name, 0) + 1
                backend = None
            if backend == want:
                result = {"backend": want, "syn_at": started, "done_at": time.monotonic()}
                break
            if backend is not None:
                other += 1
            pause = interval - (time.monotonic() - started)
            if pause > 0:
                time.sleep(pause)
        print(json.dumps({**(result or {"backend": None, "syn_at": None, "done_at": None,
                                        "error": "timeout"}),
                          "attempts": attempts, "other": other, "errors": errors}), flush=True)


def breakdown(args: argparse.Namespace) -> dict:
    from dataclasses import replace
    from datetime import datetime, timezone
    from ipaddress import ip_address
    from pathlib import Path

    import ctl.sources
    from ctl.dataplane.plan import ActualState, DataplaneConfig, FrontendRecord, Limits, plan
    from ctl.translate import TranslateConfig, translate

    config_dir = Path(args.config)
    limits = Limits(args.maglev_size, args.max_services, args.max_backends)
    tconfig = TranslateConfig(now=datetime.now(timezone.utc), addresses=(),
                              snat_addresses=(ip_address(args.snat_address),))
    dconfig = DataplaneConfig()
    out: dict = {}

    cpu: dict[str, float] = {}
    out["cpu"] = cpu  # CPU seconds per step: steadier than wall time on a shared machine

    def timed(name: str, fn):
        started, started_cpu = time.perf_counter(), time.process_time()
        value = fn()
        out[name] = time.perf_counter() - started
        cpu[name] = time.process_time() - started_cpu
        return value

    # As the agent loads: with its parse cache, where this version of ctl has one.
    cache = ctl.sources.ParseCache() if hasattr(ctl.sources, "ParseCache") else None
    out["parse_cache"] = cache is not None

    # As the agent numbers generations after each load, where this version of ctl does.
    try:
        from ctl.sources.generations import GenerationBook
        book = [GenerationBook()]
    except ImportError:
        book = None

    def load_directory(path):
        loaded = ctl.sources.load_directory(path, cache) if cache is not None else ctl.sources.load_directory(path)
        if book is not None:
            numbered, book[0] = book[0].assign(loaded.snapshot)
            loaded = replace(loaded, snapshot=numbered)
        return loaded

    # As the agent pauses the garbage collector around a reconcile, where this version
    # of ctl does (--plain-gc: as before it did); "gc"/"edit_gc" time the pass after.
    try:
        from ctl.agent.heap import Collector
    except ImportError:
        Collector = None
    collector = Collector() if Collector is not None and not args.plain_gc else None
    out["gc_paused"] = collector is not None

    def paused():
        return collector.paused() if collector is not None else contextlib.nullcontext()

    # As the agent translates and plans an edit, where this version of ctl can: only
    # what the edit touches (ctl.translate.incremental), planned against what the
    # first plan wrote (plan_edit) instead of against every map read back.
    try:
        from ctl.translate.incremental import Translator
        translate = Translator().translate  # noqa: F811 - the same function, remembering its last pass
    except ImportError:
        pass
    try:
        from ctl.dataplane.plan import Written, plan_edit
    except ImportError:
        Written = plan_edit = None
    out["incremental"] = plan_edit is not None

    with paused():
        loaded = timed("load", lambda: load_directory(config_dir))
        if loaded.problems:
            raise SystemExit(f"problems in {config_dir}: {loaded.problems[:3]}")
        translation = timed("translate", lambda: translate(loaded.snapshot, tconfig))
        first = timed("plan", lambda: plan(translation.desired, ActualState(), dconfig, limits))
        settling, settling_cpu = time.perf_counter(), time.process_time()
    out["gc"], cpu["gc"] = time.perf_counter() - settling, time.process_time() - settling_cpu
    out["services"] = len(translation.desired.services)
    out["ops"] = len(first.ops)

    # The maps as the first plan left them, as the reader would return them.
    services = translation.desired.by_frontend()
    actual = ActualState(
        frontends={k: FrontendRecord(first.service_ids[k], s.nat, s.snat_addresses) for k, s in services.items()},
        backends={i: ep for ep, i in first.backend_ids.items()},
        table_digests={op.service_id: op.digest for op in first.ops if type(op).__name__ == "PutTable"},
        tables=frozenset(first.service_ids.values()),
        vips={op.address: op.count for op in first.ops if type(op).__name__ == "PutVip"},
        config=dconfig,
        owners={op.service_id: op.owner for op in first.ops if type(op).__name__ == "PutOwner"},
        members={(op.service_id, op.backend_id): op.weight_milli for op in first.ops
                 if type(op).__name__ == "PutMember"},
    )
    with paused():
        same = timed("plan_unchanged", lambda: plan(translation.desired, actual, dconfig, limits))
    out["ops_unchanged"] = len(same.ops)
    if args.edit_file:
        path = config_dir / args.edit_file
        original = path.read_text()
        with paused():
            try:
                path.write_text(original.replace(args.edit_from, args.edit_to, 1))
                loaded2 = timed("edit_load", lambda: load_directory(config_dir))
            finally:
                path.write_text(original)
            translation2 = timed("edit_translate", lambda: translate(loaded2.snapshot, replace(tconfig), translation.statuses))
            if plan_edit is not None:
                written = Written.after(translation.desired, ActualState(), first)
                edited = timed("edit_plan", lambda: plan_edit(translation2.desired, written, dconfig, limits)[0])
            else:
                edited = timed("edit_plan", lambda: plan(translation2.desired, actual, dconfig, limits))
            settling, settling_cpu = time.perf_counter(), time.process_time()
        out["edit_gc"], cpu["edit_gc"] = time.perf_counter() - settling, time.process_time() - settling_cpu
        out["edit_ops"] = len(edited.ops)
    out["max_rss_mib"] = _peak_rss_mib()
    return out


def memory(args: argparse.Namespace) -> dict:
    import ctypes
    import gc
    from datetime import datetime, timezone
    from ipaddress import ip_address

    import ctl.sources
    from ctl.agent.heap import Collector
    from ctl.dataplane.plan import ActualState, DataplaneConfig, Limits, Written, forget_tables, plan
    from ctl.sources.generations import GenerationBook
    from ctl.translate import TranslateConfig
    from ctl.translate.incremental import Translator

    out: dict = {"rss_mib": {}}
    step = lambda name: out["rss_mib"].__setitem__(name, _status_mib("VmRSS"))  # noqa: E731
    step("imports")
    limits = Limits(args.maglev_size, args.max_services, args.max_backends)
    tconfig = TranslateConfig(now=datetime.now(timezone.utc), addresses=(),
                              snat_addresses=(ip_address(args.snat_address),))
    cache, book, translator = ctl.sources.ParseCache(), GenerationBook(), Translator()
    with Collector().paused():
        loaded = ctl.sources.load_directory(args.config, cache)
        if loaded.problems:
            raise SystemExit(f"problems in {args.config}: {loaded.problems[:3]}")
        step("load")
        snapshot, book = book.assign(loaded.snapshot)
        translation = translator.translate(snapshot, tconfig)
        del loaded, snapshot
        step("translate")
        result = plan(translation.desired, ActualState(), DataplaneConfig(), limits)
        step("plan")
        written = Written.after(translation.desired, ActualState(), result)
        out["ops"] = len(result.ops)
        del result, translation
    written = written.compacted()  # as the agent after a reconcile (Dataplane.settle)
    forget_tables()
    ctypes.CDLL(None).malloc_trim(0)  # and then release_free_memory
    step("after")
    out["peak_mib"] = _status_mib("VmHWM")
    holders = {"parse cache": cache, "generation book": book, "translator": translator, "written": written}
    seen = {id(holders)}
    kept = {}
    for name, holder in holders.items():
        size, stack = 0, [holder]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or isinstance(obj, (type, type(sys), type(len))):
                continue
            seen.add(id(obj))
            size += sys.getsizeof(obj)
            stack.extend(gc.get_referents(obj))
        kept[name] = round(size / 2**20, 1)
    out["kept_mib"] = kept
    return out


def _status_mib(key: str) -> float:
    from pathlib import Path

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no {key} in /proc/self/status")


def _peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM, which belongs to the address space exec
    made (getrusage's ru_maxrss keeps the high-water mark of the parent it was forked from)."""
    from pathlib import Path

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.control_probe")
    modes = parser.add_subparsers(dest="mode", required=True)
    ready = modes.add_parser("wait-ready")
    ready.add_argument("--url", required=True)
    ready.add_argument("--timeout", type=float, default=600)
    ready.add_argument("--interval-ms", type=float, default=10)
    flipper = modes.add_parser("flip")
    flipper.add_argument("--addr", required=True)
    flipper.add_argument("--port", type=int, required=True)
    flipper.add_argument("--interval-ms", type=float, default=1.0)
    flipper.add_argument("--timeout", type=float, default=30)
    flipper.add_argument("--connect-timeout", type=float, default=1.0)
    split = modes.add_parser("breakdown")
    split.add_argument("--config", required=True)
    split.add_argument("--snat-address", default="10.99.0.1")
    split.add_argument("--maglev-size", type=int, default=16381)
    split.add_argument("--max-services", type=int, default=16384)
    split.add_argument("--max-backends", type=int, default=131072)
    split.add_argument("--edit-file", help="file to edit for the second pass")
    split.add_argument("--plain-gc", action="store_true",
                       help="leave the garbage collector as Python sets it (the agent pauses it)")
    split.add_argument("--edit-from", default="weight: 1}")
    split.add_argument("--edit-to", default="weight: 0}")
    kept = modes.add_parser("memory")
    kept.add_argument("--config", required=True)
    kept.add_argument("--snat-address", default="10.99.0.1")
    kept.add_argument("--maglev-size", type=int, default=16381)
    kept.add_argument("--max-services", type=int, default=16384)
    kept.add_argument("--max-backends", type=int, default=131072)
    args = parser.parse_args(argv)
    if args.mode == "wait-ready":
        print(json.dumps(wait_ready(args)), flush=True)
    elif args.mode == "flip":
        flip(args)
    elif args.mode == "memory":
        print(json.dumps(memory(args)), flush=True)
    else:
        print(json.dumps(breakdown(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
