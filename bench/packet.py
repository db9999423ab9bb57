"""Per-packet cost of the data path programs, through BPF_PROG_TEST_RUN.

What is timed is the kernel's own figure: BPF_PROG_TEST_RUN runs a program `repeat`
times back to back and reports the mean duration of one run, in ns, measured around
the program only (no syscall, no copy). Each case is reported as a multiple of a floor
program that only swaps MAC addresses and bounces the frame (bench/bpf/mac_swap.c).

The catch, and the method: the kernel runs all repetitions on ONE buffer, and each sees
what the previous one wrote. Our programs rewrite what they forward (addresses, ports,
checksums, MACs, TTL), so from the second repetition on a plain repeat=N would time the
*translated* packet, which the program merely passes (checked below: repeat=2 on a SYN
returns XDP_PASS). So every case runs under a replay wrapper (bench/bpf/replay.c) that
first writes the pristine frame back, then tail-calls the program under test:

* established flows, replies, no-match: repeat=N on the restored frame; the
  conntrack entry made by a setup packet is found on every repetition;
* new flows: the wrapper also writes a fresh TCP source port on every repetition, so
  each of the N SYNs is a flow the program has never seen: Maglev pick, backend
  lookup, SNAT port claim (reverse-entry insert), forward-entry insert, NAT, FIB. N is
  kept small (1,000) and the new entries are deleted between batches, so conntrack and
  the SNAT port range stay nearly empty (first port probe free) and every batch starts
  from the same state. The new_flows counter is checked to have grown by exactly N.

The wrapper's own cost (one array lookup, a 64-byte store, a tail call; plus a 2-byte
store when it varies the port) is measured in the same round by wrapping the floor
program, whose cost does not depend on the frame, and subtracted:

    cost(case) = replay(case) - (replay(floor) - floor)

"no-match" is idempotent, so it is also timed without the wrapper, as a check of that
correction. Rounds interleave every case (rotating which goes first) so that drift on a
shared machine hits all cases alike; ratios are taken per round, then the median.
"""

from __future__ import annotations

import ctypes
import os
import struct
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from .common import ROOT, rerun, row, summary

PART = "packet"
TITLE = "Per-packet cost of the XDP program (BPF_PROG_TEST_RUN)"
BENCH_BPF = ROOT / "bench" / "bpf"
FRAME_LEN = 64          # every frame is padded (Ethernet padding) or filled to this
NEW_PORT_OFF = 14 + 20  # TCP source port of an IPv4 frame without options
NEW_PORT_BASE, NEW_PORT_SPAN = 1024, 30000  # never the established flows' port (40000)
AIMS = {"established": 2.0, "new": 4.0}

XDP_CODE = {"ABORTED": 0, "DROP": 1, "PASS": 2, "TX": 3, "REDIRECT": 4}
TC_CODE = {"OK": 0, "SHOT": 2, "REDIRECT": 7}


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    aim: str | None       # key of AIMS
    ingress: str          # interface the frame arrives on
    verdict: str          # the data path's verdict (abi.Verdict name)
    new_flows: bool = False


CASES = (
    Case("new-flow", "new TCP flow (SYN): Maglev, conntrack insert, SNAT port claim, NAT, FIB",
         "new", "cl0", "REDIRECT", new_flows=True),
    Case("established", "established TCP flow (data segment)", "established", "cl0", "REDIRECT"),
    Case("udp", "established UDP flow (datagram)", "established", "cl0", "REDIRECT"),
    Case("reply", "reply from the backend, reverse-translated", "established", "be0", "REDIRECT"),
    Case("no-match", "matches nothing (TCP to another address): passed", None, "cl0", "PASS"),
)
HOOKS = ("xdp", "tc")
HOOK_TITLE = {"xdp": "XDP", "tc": "tc ingress (reference)"}


def row_name(hook: str, what: str) -> str:
    return f"{hook} {what}"


def _reference_names(hook: str) -> list[str]:
    return [row_name(hook, n) for n in ("floor", "floor via replay", "floor via replay+port",
                                        "no-match direct")]


def row_names() -> list[str]:
    return [n for hook in HOOKS for n in
            _reference_names(hook) + [row_name(hook, c.key) for c in CASES]]


# -- the lab -------------------------------------------------------------------------------
# Each service's backends as (index, weight): four of equal weight.
BACKENDS = tuple((i, 1) for i in range(4))


def _new_lab():
    """The packet tier's lab (real programs, private pin dir, deterministic FIB) with the
    production map sizes instead of the tests' small ones."""
    from lab.harness import PacketLab

    return PacketLab(name="xgbench", sizes={})


def _frames(lab, run_xdp) -> dict:
    """Sets up the flows and returns the frame of every case (64 bytes each)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from lab.packets import ack4, syn4, udp4

    def pad(frame) -> bytes:
        raw = bytes(frame)
        assert len(raw) <= FRAME_LEN, len(raw)
        return raw + bytes(FRAME_LEN - len(raw))

    syn = pad(syn4())
    out = Ether(run_xdp(syn, "cl0", "REDIRECT"))
    ip, seg = out[IP], out[TCP]

    def from_backend(flags, payload=b""):
        return (Ether(src=out[Ether].dst, dst=out[Ether].src) /
                IP(src=ip.dst, dst=ip.src, ttl=64) /
                TCP(sport=seg.dport, dport=seg.sport, flags=flags, seq=5000, ack=seg.seq + 1,
                    window=502) / payload)

    run_xdp(pad(from_backend("SA")), "be0", "REDIRECT")  # the flow is established
    frames = {
        "new-flow": pad(syn4(sport=NEW_PORT_BASE)),
        "established": pad(ack4(payload=b"x" * 10)),               # 64 bytes exactly
        "udp": pad(udp4(payload=b"q" * 22)),                       # 64 bytes exactly
        "reply": pad(from_backend("A", b"y" * 10)),
        "no-match": pad(syn4(dst="10.99.200.1")),
    }
    run_xdp(frames["established"], "cl0", "REDIRECT")
    run_xdp(frames["udp"], "cl0", "REDIRECT")
    return frames


class Bench:
    """Programs, frames and the replay wrapper, inside the lab's namespace."""

    def __init__(self, stack: ExitStack) -> None:
        from bcc import BPF
        from pyroute2 import netns

        from ctl.dataplane import abi, bpfsys
        from ctl.model import Protocol
        from lab.packets import VIP_PORT
        from lab.packets import service, state

        self.lab = lab = _new_lab()
        stack.callback(lab.close)
        plan = lab.program(state(service(backends=BACKENDS),
                                 service(port=53, proto=Protocol.UDP, backends=BACKENDS)))
        self.tcp_service = next(i for k, i in plan.service_ids.items() if k.port == VIP_PORT)
        self.udp_service = next(i for k, i in plan.service_ids.items() if k.port == 53)

        self.floor_mod = BPF(src_file=str(BENCH_BPF / "mac_swap.c").encode())
        self.replay_mod = BPF(src_file=str(BENCH_BPF / "replay.c").encode(),
                              cflags=[f"-DREPLAY_LEN={FRAME_LEN}"])
        progs = lab.dataplane.programs
        self.fd = {
            ("xdp", "lb"): progs.xdp_fd,
            ("tc", "lb"): progs.tc_ingress_fd,
            ("xdp", "floor"): self.floor_mod.load_func(b"xdp_mac_swap", BPF.XDP).fd,
            ("tc", "floor"): self.floor_mod.load_func(b"tc_mac_swap", BPF.SCHED_CLS).fd,
            ("xdp", "replay"): self.replay_mod.load_func(b"xdp_replay", BPF.XDP).fd,
            ("tc", "replay"): self.replay_mod.load_func(b"tc_replay", BPF.SCHED_CLS).fd,
        }
        self.replay_frame = self.replay_mod.get_table(b"replay_frame")
        self.target = {"xdp": self.replay_mod.get_table(b"replay_xdp_target"),
                       "tc": self.replay_mod.get_table(b"replay_tc_target")}
        self.current_target: dict[str, str | None] = {"xdp": None, "tc": None}

        netns.pushns(lab.netns)
        stack.callback(netns.popns)
        self.maps = stack.enter_context(lab.maps())

        self.frames = _frames(lab, self._run_once)
        self.keep = {name: {bytes(k) for k in bpfsys.map_keys(self.maps.fd(name), abi.PINNED_MAPS[name][1])}
                     for name in ("ct_fwd", "ct_rev")}
        self.check_in_place_rewrite()

    # -- running -------------------------------------------------------------------------
    def ctx(self, hook: str, ingress: str) -> bytes:
        ifindex = self.lab.ifindex[ingress]
        if hook == "xdp":
            return struct.pack("6I", 0, FRAME_LEN, 0, ifindex, 0, 0)
        ctx = bytearray(44)  # struct __sk_buff up to ifindex (see lab/harness.py)
        struct.pack_into("II", ctx, 36, ifindex, ifindex)
        return bytes(ctx)

    def _run_once(self, frame: bytes, ingress: str, verdict: str) -> bytes:
        from ctl.dataplane import bpfsys

        run = bpfsys.prog_test_run(self.fd[("xdp", "lb")], frame, ctx=self.ctx("xdp", ingress))
        assert run.retval == XDP_CODE[verdict], (run.retval, verdict)
        return run.data

    def check_in_place_rewrite(self) -> None:
        """Why the replay wrapper exists: without it, the second repetition of a SYN
        runs on the translated frame and is merely passed."""
        from ctl.dataplane import bpfsys

        syn = self.frames["new-flow"][:NEW_PORT_OFF] + struct.pack("!H", 39999) + \
            self.frames["new-flow"][NEW_PORT_OFF + 2:]
        run = bpfsys.prog_test_run(self.fd[("xdp", "lb")], syn, repeat=2, ctx=self.ctx("xdp", "cl0"))
        self.plain_repeat_retval = run.retval
        self.clear_new_flows()

    def set_frame(self, frame: bytes, vary: bool) -> None:
        value = self.replay_frame[ctypes.c_int(0)]
        ctypes.memmove(value.data, frame, FRAME_LEN)
        value.vary_off = NEW_PORT_OFF if vary else 0
        value.vary_base, value.vary_span = NEW_PORT_BASE, NEW_PORT_SPAN
        self.replay_frame[ctypes.c_int(0)] = value

    def set_target(self, hook: str, prog: str) -> None:
        if self.current_target[hook] != prog:
            self.target[hook][ctypes.c_int(0)] = ctypes.c_int(self.fd[(hook, prog)])
            self.current_target[hook] = prog

    def clear_new_flows(self) -> None:
        """Deletes every conntrack entry the setup did not make (the new flows')."""
        from ctl.dataplane import abi, bpfsys

        for name in ("ct_fwd", "ct_rev"):
            fd = self.maps.fd(name)
            for key in bpfsys.map_keys(fd, abi.PINNED_MAPS[name][1]):
                if bytes(key) not in self.keep[name]:
                    bpfsys.map_delete(fd, key)

    def counters(self, hook: str, verdict: str) -> tuple[int, int]:
        from ctl.dataplane import abi, reader

        h = abi.Hook.XDP if hook == "xdp" else abi.Hook.TC_INGRESS
        verdicts = self.maps.percpu_sum("verdicts", int(h) * len(abi.Verdict) + int(abi.Verdict[verdict]))
        new = sum(reader.read_counters(self.maps, "svc_stats", s).new_flows
                  for s in (self.tcp_service, self.udp_service))
        return verdicts, new

    def measure(self, hook: str, what: str, repeat: int, new_batch: int) -> float:
        """One sample of row `what`: the kernel's mean ns per repetition."""
        from ctl.dataplane import bpfsys

        floor_frame = self.frames["established"]
        floor_ret = XDP_CODE["TX"] if hook == "xdp" else TC_CODE["REDIRECT"]
        if what == "floor":
            run = bpfsys.prog_test_run(self.fd[(hook, "floor")], floor_frame, repeat=repeat,
                                       ctx=self.ctx(hook, "cl0"))
            assert run.retval == floor_ret, run.retval
            return run.duration_ns
        if what in ("floor via replay", "floor via replay+port"):
            self.set_target(hook, "floor")
            self.set_frame(floor_frame, vary=what.endswith("+port"))
            run = bpfsys.prog_test_run(self.fd[(hook, "replay")], floor_frame, repeat=repeat,
                                       ctx=self.ctx(hook, "cl0"))
            assert run.retval == floor_ret, run.retval
            return run.duration_ns
        if what == "no-match direct":
            run = bpfsys.prog_test_run(self.fd[(hook, "lb")], self.frames["no-match"],
                                       repeat=repeat, ctx=self.ctx(hook, "cl0"))
            assert run.retval == (XDP_CODE["PASS"] if hook == "xdp" else TC_CODE["OK"]), run.retval
            return run.duration_ns

        case = next(c for c in CASES if c.key == what)
        frame = self.frames[case.key]
        n = new_batch if case.new_flows else repeat
        if case.new_flows:
            self.clear_new_flows()
        self.set_target(hook, "lb")
        self.set_frame(frame, vary=case.new_flows)
        before = self.counters(hook, case.verdict)
        run = bpfsys.prog_test_run(self.fd[(hook, "replay")], frame, repeat=n,
                                   ctx=self.ctx(hook, case.ingress))
        after = self.counters(hook, case.verdict)
        expected = XDP_CODE[case.verdict] if hook == "xdp" else \
            {"REDIRECT": TC_CODE["REDIRECT"], "PASS": TC_CODE["OK"]}[case.verdict]
        assert run.retval == expected, (hook, what, run.retval)
        # Every repetition took the intended path: the verdict counter grew by n, and
        # new_flows by n for new flows, by nothing otherwise.
        assert after[0] - before[0] == n, (hook, what, "verdicts", after[0] - before[0], n)
        assert after[1] - before[1] == (n if case.new_flows else 0), \
            (hook, what, "new flows", after[1] - before[1])
        return run.duration_ns


# -- the part ------------------------------------------------------------------------------
def _plan(only: str | None) -> list[tuple[str, str]]:
    """(hook, row) pairs to measure each round."""
    if only is None:
        return [(hook, what) for hook in HOOKS for what in
                ["floor", "floor via replay", "floor via replay+port", "no-match direct"]
                + [c.key for c in CASES]]
    if only not in row_names():
        raise SystemExit(f"no row {only!r}; rows: {', '.join(row_names())}")
    hook, what = only.split(" ", 1)
    needed = ["floor", "floor via replay"]
    if what == "new-flow" or what == "floor via replay+port":
        needed.append("floor via replay+port")
    if what == "no-match direct":
        needed.append("no-match")
    return [(hook, w) for w in dict.fromkeys(needed + [what])]


def run(quick: bool = False, only: str | None = None, *, runs: int | None = None,
        repeat: int | None = None, new_batch: int | None = None) -> dict:
    from .common import machine

    runs = runs or (5 if quick else 15)
    repeat = repeat or (20_000 if quick else 200_000)
    new_batch = new_batch or (500 if quick else 1_000)
    assert new_batch <= NEW_PORT_SPAN
    plan = _plan(only)
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in plan}

    with ExitStack() as stack:
        bench = Bench(stack)
        plain_retval = bench.plain_repeat_retval
        for r in range(runs):
            shift = r % len(plan)
            for hook, what in plan[shift:] + plan[:shift]:
                samples[(hook, what)].append(bench.measure(hook, what, repeat, new_batch))

    rows = []
    for hook in HOOKS:
        if not any(h == hook for h, _ in plan):
            continue
        floor = samples.get((hook, "floor"))

        def overhead(port: bool, i: int) -> float:
            return samples[(hook, "floor via replay+port" if port else "floor via replay")][i] - floor[i]

        for what in ["floor", "floor via replay", "floor via replay+port", "no-match direct"]:
            if (hook, what) not in samples:
                continue
            values = samples[(hook, what)]
            extra = {}
            if what == "no-match direct":
                extra["ratio"] = summary([v / f for v, f in zip(values, floor)])["median"]
            rows.append(row(row_name(hook, what), "ns/packet", "ns", summary(values),
                            rerun(PART, row_name(hook, what), quick), hook=hook, case=what,
                            kind="reference", title=_reference_title(what),
                            repeat=repeat, **extra))
        for case in CASES:
            if (hook, case.key) not in samples:
                continue
            raw = samples[(hook, case.key)]
            cost = [v - overhead(case.new_flows, i) for i, v in enumerate(raw)]
            ratios = [c / f for c, f in zip(cost, floor)]
            ratio = summary(ratios)["median"]
            aim = AIMS.get(case.aim) if case.aim else None
            rows.append(row(row_name(hook, case.key), "ns/packet", "ns", summary(cost),
                            rerun(PART, row_name(hook, case.key), quick), hook=hook,
                            case=case.key, kind="case", title=case.title,
                            ratio=ratio, ratio_p25=summary(ratios)["p25"],
                            ratio_p75=summary(ratios)["p75"], aim=aim,
                            meets_aim=None if aim is None else ratio <= aim,
                            raw_median=summary(raw)["median"],
                            repeat=new_batch if case.new_flows else repeat))

    from ctl.dataplane.loader import DataplaneSpec

    sizes = DataplaneSpec()  # the production sizes _new_lab() compiles with
    notes = [
        f"Each figure: median of {runs} runs; one run = one BPF_PROG_TEST_RUN call with "
        f"repeat={repeat} (new flows: {new_batch} distinct SYNs per call), the kernel's mean "
        "ns per repetition. Ratios are taken per run (case / floor of the same round), then "
        "the median.",
        "Without the replay wrapper, repeat=2 on a SYN returns "
        f"{_xdp_name(plain_retval)} (the second repetition sees the translated frame), "
        "which is why a plain repeat=N cannot time these programs.",
        "New flow: the wrapper writes a fresh TCP source port before each repetition, so "
        "each is a never-seen flow (checked: new_flows grows by exactly the repeat count); "
        "the batch's conntrack entries are deleted between calls, so conntrack and the SNAT "
        "range start each batch in the same, nearly empty state.",
        "Wrapper cost subtracted per round: replay(floor) - floor (with the port write for "
        "new flows). 'no-match direct' times the idempotent no-match case without the "
        "wrapper, as a check of that correction.",
        f"Absolute ns are from this machine ({os.cpu_count()} cores; Spectre v2 mitigation: "
        f"{_spectre_v2()}), which slows the indirect calls into helpers and maps; the ratio to "
        "the floor, measured side by side, is what compares across machines.",
        f"Production map sizes (Maglev {sizes.maglev_size} slots, conntrack {sizes.ct_size}, "
        f"{sizes.max_services} services, {sizes.max_backends} backends); one TCP and one UDP "
        f"service of {len(BACKENDS)} backends, SNAT, default config.",
    ]
    return {"part": PART, "title": TITLE, "rows": rows, "notes": notes,
            "params": {"runs": runs, "repeat": repeat, "new_batch": new_batch,
                       "frame_len": FRAME_LEN, "only": only},
            "machine": machine()}


def _xdp_name(code: int) -> str:
    return "XDP_" + next((k for k, v in XDP_CODE.items() if v == code), str(code))


def _reference_title(what: str) -> str:
    return {
        "floor": "floor: swap MACs, bounce (bench/bpf/mac_swap.c)",
        "floor via replay": "floor under the replay wrapper (wrapper cost = this - floor)",
        "floor via replay+port": "floor under the replay wrapper writing a fresh port",
        "no-match direct": "no-match without the wrapper (check of the correction)",
    }[what]


# -- report --------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    p = result.get("params", {})
    lines = [
        f"## {result['title']}",
        "",
        "Nanoseconds the kernel measured per run of the program, through BPF_PROG_TEST_RUN, "
        "and the same as a multiple of the floor: a program that only swaps the MAC "
        "addresses and bounces the frame (`bench/bpf/mac_swap.c`), timed in the same rounds. "
        "Aims: an established flow within 2x the floor, a new flow within 4x. The absolute "
        "figures come from a small shared VM and are not comparable with published ones "
        "(Katran reports ~100-120 ns/packet on its hardware); the ratio is what matters.",
        "",
        f"Median of {p.get('runs', '?')} runs of repeat={p.get('repeat', '?')} "
        f"(new flows: {p.get('new_batch', '?')} distinct SYNs per run); p25-p75 in brackets.",
        "",
    ]
    for hook in HOOKS:
        rows = [r for r in result["rows"] if r["hook"] == hook]
        if not rows:
            continue
        lines += [f"### {HOOK_TITLE[hook]}", "",
                  "| case | ns/packet | x floor | aim | rerun |", "|---|---|---|---|---|"]
        for r in rows:
            spread = f"{r['median']:.0f} [{r['p25']:.0f}-{r['p75']:.0f}]"
            ratio = f"{r['ratio']:.1f}x" if r.get("ratio") is not None else ""
            if r["case"] == "floor":
                ratio = "1.0x"
            aim = ""
            if r.get("aim"):
                aim = f"<= {r['aim']:.0f}x: " + ("met" if r["meets_aim"] else "**not met**")
            lines.append(f"| {r['title']} | {spread} | {ratio} | {aim} | `{r['command']}` |")
        lines.append("")
    lines += ["What the figures mean:", ""]
    lines += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines) + "\n"


def charts(result: dict, outdir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hooks = [h for h in HOOKS if any(r["hook"] == h for r in result["rows"])]
    if not hooks:
        return []
    outdir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(hooks), figsize=(6.5 * len(hooks), 4.2), squeeze=False,
                             sharey=True)
    for ax, hook in zip(axes[0], hooks):
        rows = [r for r in result["rows"] if r["hook"] == hook and
                (r["case"] == "floor" or r["kind"] == "case")]
        labels = [r["case"] for r in rows]
        values = [r["median"] for r in rows]
        errors = [[r["median"] - r["p25"] for r in rows], [r["p75"] - r["median"] for r in rows]]
        colours = ["#999999" if r["case"] == "floor" else "#3b6ea8" for r in rows]
        bars = ax.bar(labels, values, yerr=errors, color=colours, capsize=3)
        for bar, r in zip(bars, rows):
            ratio = 1.0 if r["case"] == "floor" else r.get("ratio")
            if ratio is not None:
                top = max(bar.get_height(), r["p75"])  # above the error bar
                ax.annotate(f"{ratio:.1f}x", (bar.get_x() + bar.get_width() / 2, top),
                            ha="center", va="bottom", fontsize=8, xytext=(0, 3),
                            textcoords="offset points")
        ax.set_title(HOOK_TITLE[hook])
        ax.set_ylabel("ns per packet (median; ratio to floor above)")
        ax.tick_params(axis="x", labelrotation=20)
    tops = [max(r["median"], r["p75"]) for r in result["rows"]
            if r["case"] == "floor" or r["kind"] == "case"]
    axes[0][0].set_ylim(0, max(tops) * 1.12)  # room for the labels (the axes share y)
    fig.tight_layout()
    path = outdir / "packet.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _spectre_v2() -> str:
    """The kernel's own account of its Spectre v2 mitigation (retpolines, IBRS...)."""
    try:
        return Path("/sys/devices/system/cpu/vulnerabilities/spectre_v2").read_text().strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    from .common import main_for

    main_for(PART, run)
