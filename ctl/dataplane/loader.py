"""Compiling bpf/ with bcc, reusing pinned maps, attaching to interfaces.

Programs are attached through pyroute2 (netlink), never by bcc, and nothing here
detaches on exit: an agent that stops leaves the kernel forwarding with the maps it
programmed. Upgrades replace programs in place (XDP by setting a new fd, tc by
replacing the filter at the same priority and handle), so traffic never sees a gap.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ctl.capacity import DEFAULT as DEFAULT_CAPACITY
from ctl.capacity import Capacity

from . import abi, abicheck, bpfsys, buildid
from .headers import bcc_header_flags
from .source import BPF_DIR, expand_includes

log = logging.getLogger(__name__)

XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
TC_INGRESS_PARENT = "ffff:fff2"
TC_EGRESS_PARENT = "ffff:fff3"
TC_PRIO = 1
TC_HANDLE = 1


class XdpMode(enum.Enum):
    NATIVE = "native"
    GENERIC = "generic"
    AUTO = "auto"  # native, else generic with a warning


@dataclass(frozen=True)
class DataplaneSpec:
    """Compile-time sizes (C defines), where the maps are pinned and where compiled
    programs are cached (None: no cache, every start without pinned programs compiles)."""

    pin_dir: Path = Path("/sys/fs/bpf/xdp-gateway")
    maglev_size: int = DEFAULT_CAPACITY.maglev_size
    max_services: int = DEFAULT_CAPACITY.max_services
    max_backends: int = DEFAULT_CAPACITY.max_backends
    ct_size: int = DEFAULT_CAPACITY.ct_size
    program_cache: Path | None = None

    def __post_init__(self) -> None:
        self.capacity  # noqa: B018 - validates the sizes (ValueError)

    @property
    def capacity(self) -> Capacity:
        return Capacity(self.maglev_size, self.max_services, self.max_backends, self.ct_size)

    def cflags(self) -> list[str]:
        return [
            f'-DPIN_DIR="{self.pin_dir}"',
            f"-DMAGLEV_SIZE={self.maglev_size}",
            f"-DMAX_SERVICES={self.max_services}",
            f"-DMAX_BACKENDS={self.max_backends}",
            f"-DCT_SIZE={self.ct_size}",
            "-Wno-unused-function",
        ]

    def max_entries(self, map_name: str) -> int:
        return {
            "frontends": self.max_services, "vips": self.max_services,
            "backends": self.max_backends, "maglev_outer": self.max_services,
            "ct_fwd": self.ct_size, "ct_rev": self.ct_size, "config": 1,
            "generations": abi.GEN_MAX, "frags": abi.FRAG_SIZE, "peer_devs": abi.PEER_DEVS_SIZE,
            "svc_stats": self.max_services, "be_stats": self.max_backends,
            "reasons": abi.REASON_MAX, "verdicts": len(abi.Hook) * len(abi.Verdict),
        }[map_name]


class PinnedMapMismatch(RuntimeError):
    """A pinned map exists with another layout or size than this build expects."""


def check_pinned_maps(spec: DataplaneSpec) -> None:
    """Refuses to load over pinned maps of another shape: bcc would reuse them blindly
    and the programs would read garbage. The fix is a new pin directory or removing
    the old maps (which drops live flows), a decision for the operator."""
    for name, (file, key_t, value_t) in abi.PINNED_MAPS.items():
        path = spec.pin_dir / file
        if not path.exists():
            continue
        fd = bpfsys.obj_get(path)
        try:
            info = bpfsys.map_info(fd)
        finally:
            os.close(fd)
        value_size = 4 if name == "maglev_outer" else _size(value_t)
        expected = (_size(key_t), value_size, spec.max_entries(name))
        actual = (info.key_size, info.value_size, info.max_entries)
        if actual != expected:
            raise PinnedMapMismatch(
                f"{path}: pinned map has key/value size and capacity {actual}, this build "
                f"expects {expected}; use another --pin-dir or remove the old maps "
                f"(live flows through them will break)"
            )
    template = spec.pin_dir / abi.MAGLEV_TEMPLATE_FILE
    if template.exists():
        fd = bpfsys.obj_get(template)
        try:
            slots = bpfsys.map_info(fd).max_entries - 1  # element 0 is a table's size
        finally:
            os.close(fd)
        if slots != spec.maglev_size:
            raise PinnedMapMismatch(
                f"{template}: the pinned Maglev template holds {slots} slots, this build expects "
                f"{spec.maglev_size}; keep --maglev-size or use another --pin-dir"
            )
    # The tables themselves need no check: each inner map carries its own size.


def superseded_pins(names: Iterable[str], build: str | None = None) -> list[str]:
    """The pins among `names` that an older build left: one of our maps under a layout
    version this build no longer uses (e.g. maglev_v2 once maglev_v3 exists), and, given
    this build's digest, the programs another build pinned. Nothing reads them any more;
    a conntrack map among them can hold megabytes of kernel memory."""
    current = ({file for file, *_ in abi.PINNED_MAPS.values()} | {file for file, *_ in abi.CONTROL_MAPS.values()}
               | {abi.MAGLEV_TEMPLATE_FILE})
    ours = {file.rsplit("_v", 1)[0] for file in current}
    return sorted(name for name in names if name not in current
                  and (((versioned := re.fullmatch(r"(.+)_v\d+", name)) and versioned.group(1) in ours)
                       or (build is not None and (pinned := _PROGRAM_PIN.fullmatch(name))
                           and pinned.group(1) != build)))


def remove_superseded_pins(pin_dir: Path, build: str | None = None) -> list[str]:
    """Unpins what `superseded_pins` finds in `pin_dir`. Safe while old programs still run:
    a map lives as long as a program or fd holds it, the pin is only its name; an attached
    program lives as long as its interface holds it."""
    removed = superseded_pins((entry.name for entry in pin_dir.iterdir()), build) if pin_dir.is_dir() else []
    for name in removed:
        (pin_dir / name).unlink(missing_ok=True)
    return removed


def _size(ctype: type) -> int:
    import ctypes

    return ctypes.sizeof(ctype)


@dataclass
class Programs:
    """Loaded programs: fds this process owns, or (compiled in this process) fds that
    the bcc modules held here own."""

    xdp_fd: int
    tc_ingress_fd: int
    tc_egress_fd: int
    _modules: tuple = ()
    build: str = ""  # the build digest the programs are pinned under ("": not pinned)
    reused: bool = False  # opened from an earlier start's pins, not compiled
    cached: bool = False  # loaded from the program cache, not compiled

    def close(self) -> None:
        """Closes our fds (attached programs stay attached, pinned ones pinned)."""
        if not self._modules:
            for fd in (self.xdp_fd, self.tc_ingress_fd, self.tc_egress_fd):
                os.close(fd)


# prog_<build digest>_<program>: the loaded programs, pinned for the next start.
_PROGRAM_PIN = re.compile(r"prog_([0-9a-f]{16})_(xdp|tc_ingress|tc_egress)")
PROGRAM_NAMES = ("xdp", "tc_ingress", "tc_egress")


def program_pins(pin_dir: Path, build: str) -> list[Path]:
    return [pin_dir / f"prog_{build}_{name}" for name in PROGRAM_NAMES]


def load_programs(spec: DataplaneSpec) -> Programs:
    """The agent's way to get programs: the ones an earlier start of the same build pinned,
    else the program cache's entry of this build (progcache.py), else compiled in a child
    process (ctl.dataplane.compiler, which writes the cache entry); pinned for the next
    start. This process never imports bcc, so clang/LLVM never stay resident in it."""
    check_pinned_maps(spec)
    build = buildid.build_digest(spec.cflags() + bcc_header_flags())
    cached = open_pinned_programs(spec.pin_dir, build)
    if cached is not None:
        log.info("reusing the programs an earlier start pinned",
                 extra={"event": "programs_reused", "build": build})
        return Programs(*cached, build=build, reused=True)
    if spec.program_cache is not None:
        from . import progcache

        if (loaded := progcache.load_cached(spec, spec.program_cache, build)) is not None:
            fds, entry = loaded
            _pin_programs(fds, spec.pin_dir, build)
            log.info("loaded the programs from the program cache",
                     extra={"event": "programs_from_cache", "build": build, "file": str(entry)})
            return Programs(*fds, build=build, cached=True)
    from .compiler import compile_in_child  # imports this module

    fds = compile_in_child(spec, build)
    _pin_programs(fds, spec.pin_dir, build)
    log.info("compiled the programs", extra={"event": "programs_compiled", "build": build})
    return Programs(*fds, build=build)


def _pin_programs(fds: tuple[int, int, int], pin_dir: Path, build: str) -> None:
    for fd, path in zip(fds, program_pins(pin_dir, build)):
        path.unlink(missing_ok=True)  # a stale pin of this build (its maps were replaced)
        bpfsys.obj_pin(fd, path)


def open_pinned_programs(pin_dir: Path, build: str) -> tuple[int, int, int] | None:
    """The fds of `build`'s pinned programs, or None if they are missing or stale.

    A program holds the maps it was loaded with, not their pin paths: bcc resolved each
    BPF_TABLE_PINNED to whatever map was pinned there at compile time. The digest says
    the code is the same, not that the maps are. If a map was unpinned since (by hand, or
    a partial cleanup) and is created afresh by this start, a reused program would go on
    reading the old map while the agent writes the new one: it would forward on nothing.
    So a cached program is reused only if every map it was compiled with is pinned now
    and each one it holds under one of our names is the very map (by id) pinned under it."""
    paths = program_pins(pin_dir, build)
    if not all(path.exists() for path in paths):
        return None
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(bpfsys.obj_get(path))
        stale = stale_maps(pinned_map_ids(pin_dir), held_maps(bpfsys.prog_info(fd) for fd in fds))
    except OSError as error:
        log.warning("cannot reuse the pinned programs (%s): compiling", error)
        stale = ["(unreadable)"]
    if stale:
        for fd in fds:
            os.close(fd)
        if fds:
            log.info("the pinned programs hold maps that are no longer pinned: compiling",
                     extra={"event": "programs_stale", "build": build, "maps": stale})
        return None
    return fds[0], fds[1], fds[2]


def pinned_map_ids(pin_dir: Path) -> dict[str, int | None]:
    """C map name -> id of the map pinned for it now (None: not pinned). The Maglev
    template is among them though no program holds it: bcc creates it with the maps,
    and the agent makes every table from it."""
    ids: dict[str, int | None] = {}
    files = {name: file for name, (file, *_) in abi.PINNED_MAPS.items()} | {"maglev_inner": abi.MAGLEV_TEMPLATE_FILE}
    for name, file in files.items():
        try:
            fd = bpfsys.obj_get(pin_dir / file)
        except FileNotFoundError:
            ids[name] = None
            continue
        try:
            ids[name] = bpfsys.map_info(fd).id
        finally:
            os.close(fd)
    return ids


def held_maps(programs: Iterable[bpfsys.ProgInfo]) -> set[tuple[str, int]]:
    """(kernel name, id) of every map the programs hold."""
    held = set()
    for info in programs:
        for map_id in info.map_ids:
            fd = bpfsys.map_fd_by_id(map_id)
            try:
                held.add((bpfsys.map_info(fd).name, map_id))
            finally:
                os.close(fd)
    return held


def stale_maps(pinned: dict[str, int | None], held: set[tuple[str, int]]) -> list[str]:
    """The maps that make reused programs wrong: ours not pinned now, or held by the
    programs under our name but not the one pinned. Kernel names are cut at 15 bytes."""
    missing = [name for name, map_id in pinned.items() if map_id is None]
    by_name = {name[:15]: map_id for name, map_id in pinned.items()}
    replaced = [name for name, map_id in held if name in by_name and by_name[name] != map_id]
    return sorted({*missing, *replaced})


def compile_programs(spec: DataplaneSpec) -> Programs:
    """Compiles and loads the XDP and tc programs in this process (bcc's clang/LLVM stay
    mapped here afterwards); creates or reuses pinned maps. The compiler child and the
    packet tests use it; the agent uses load_programs."""
    from bcc import BPF  # imported late: gwctl's read-only commands must not need it

    check_pinned_maps(spec)
    spec.pin_dir.mkdir(parents=True, exist_ok=True)
    cflags = spec.cflags() + bcc_header_flags()
    xdp = _bcc_module(BPF, "xdp_lb.c", cflags)
    tc = _bcc_module(BPF, "tc_lb.c", cflags)
    # Before any program is loaded or any entry written: the maps are only read and
    # written through the mirrors.
    for module in (xdp, tc):
        abicheck.check(lambda name, module=module: module.get_table(name.encode()))
    return Programs(
        xdp_fd=xdp.load_func(b"xdp_lb", BPF.XDP).fd,
        tc_ingress_fd=tc.load_func(b"tc_ingress", BPF.SCHED_CLS).fd,
        tc_egress_fd=tc.load_func(b"tc_egress", BPF.SCHED_CLS).fd,
        _modules=(xdp, tc),
    )


class CompileError(RuntimeError):
    """bcc could not compile a program or create its maps; bcc has printed why."""


def _bcc_module(bpf_class, file: str, cflags: list[str]):
    try:
        return bpf_class(text=expand_includes(BPF_DIR / file).encode(), cflags=cflags)
    except Exception as error:  # bcc raises a bare Exception after printing the cause
        raise CompileError(
            f"bcc could not compile or load bpf/{file} ({error}); its own messages are above. "
            f"'Operation not permitted' means a missing capability: the agent needs CAP_BPF, "
            f"CAP_NET_ADMIN, CAP_PERFMON and CAP_SYS_ADMIN (deploy/README.md says why)") from error


def compile_xdp_pass():
    """An XDP program that only passes; see bpf/xdp_pass.c for why it exists."""
    from bcc import BPF

    module = BPF(src_file=str(BPF_DIR / "xdp_pass.c").encode(), cflags=bcc_header_flags())
    return module, module.load_func(b"xdp_pass", BPF.XDP).fd


def _iproute(netns: str | None):
    from pyroute2 import IPRoute, NetNS

    return NetNS(netns) if netns else IPRoute()


def attach_xdp(ifindex: int, prog_fd: int, mode: XdpMode = XdpMode.AUTO,
               netns: str | None = None) -> XdpMode:
    """Attaches (or atomically replaces) the XDP program; returns the mode used."""
    with _iproute(netns) as ipr:
        if mode in (XdpMode.NATIVE, XdpMode.AUTO):
            try:
                _set_xdp(ipr, ifindex, prog_fd, XDP_FLAGS_DRV_MODE)
                return XdpMode.NATIVE
            except Exception as exc:  # pyroute2 raises NetlinkError
                if mode is XdpMode.NATIVE:
                    raise
                log.warning("native XDP unavailable on ifindex %d (%s); using generic XDP, "
                            "which is much slower", ifindex, exc)
        _set_xdp(ipr, ifindex, prog_fd, XDP_FLAGS_SKB_MODE)
        return XdpMode.GENERIC


def _set_xdp(ipr, ifindex: int, fd: int, flags: int) -> None:
    # pyroute2 ignores xdp_flags=; the nested attribute carries both fd and mode.
    ipr.link("set", index=ifindex, xdp={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]})


def attach_tc(ifindex: int, programs: Programs, ingress: bool = True, egress: bool = True,
              netns: str | None = None) -> None:
    """Attaches (or replaces) the tc programs on a clsact qdisc in direct-action mode."""
    with _iproute(netns) as ipr:
        try:
            ipr.tc("add", "clsact", ifindex)
        except Exception as exc:
            if getattr(exc, "code", None) != errno.EEXIST:
                raise
        for wanted, parent, fd, name in (
            (ingress, TC_INGRESS_PARENT, programs.tc_ingress_fd, "xg_tc_ingress"),
            (egress, TC_EGRESS_PARENT, programs.tc_egress_fd, "xg_tc_egress"),
        ):
            if wanted:
                ipr.tc("replace-filter", "bpf", ifindex, TC_HANDLE, fd=fd, name=name,
                       prio=TC_PRIO, parent=parent, classid=1, direct_action=True)


def has_peer_elsewhere(ifindex: int, netns: str | None = None) -> bool:
    """Whether tc ingress may hand packets for this interface straight to its peer
    (bpf_redirect_peer): a veth or netkit device whose peer lives in another network
    namespace (the link then carries the peer's namespace id); the kernel drops a peer
    redirect to anything else. An interface that is gone has none."""
    with _iproute(netns) as ipr:
        try:
            (link,) = ipr.link("get", index=ifindex)
        except Exception as exc:  # pyroute2 raises NetlinkError
            if getattr(exc, "code", None) == errno.ENODEV:
                return False
            raise
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return kind in ("veth", "netkit") and link.get_attr("IFLA_LINK_NETNSID") is not None


def detach_xdp(ifindex: int, netns: str | None = None) -> None:
    """Removes any XDP program (both modes), e.g. when switching an interface to tc."""
    with _iproute(netns) as ipr:
        for flags in (XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE):
            try:
                _set_xdp(ipr, ifindex, -1, flags)
            except Exception:
                pass  # not attached in that mode


@dataclass(frozen=True)
class Attachment:
    """One of our programs attached to an interface, as the kernel reports it."""

    interface: str
    ifindex: int
    hook: str  # "xdp", "tc ingress" or "tc egress"


_TC_FILTER_NAMES = {"xg_tc_ingress": "tc ingress", "xg_tc_egress": "tc egress"}


def _program_maps(prog_id: int) -> frozenset[int] | None:
    """The ids of the maps a loaded program holds (None: it is gone)."""
    try:
        fd = bpfsys.prog_fd_by_id(prog_id)
    except OSError:
        return None
    try:
        return frozenset(bpfsys.prog_info(fd).map_ids)
    finally:
        os.close(fd)


def our_attachments(pin_dir: Path, netns: str | None = None) -> list[Attachment]:
    """Every interface of this network namespace running a program of this pin
    directory: our XDP program, or a clsact filter under the names we attach with,
    holding one of the maps pinned there (another gateway's programs, with a pin
    directory of their own, are left alone)."""
    ours = {i for i in pinned_map_ids(pin_dir).values() if i is not None}
    found: list[Attachment] = []
    if not ours:
        return found
    with _iproute(netns) as ipr:
        for link in ipr.get_links():
            ifindex, name = link["index"], link.get_attr("IFLA_IFNAME")
            xdp = link.get_attr("IFLA_XDP")
            prog_id = xdp.get_attr("IFLA_XDP_PROG_ID") if xdp is not None else None
            if prog_id and (_program_maps(prog_id) or frozenset()) & ours:
                found.append(Attachment(name, ifindex, "xdp"))
            for parent in (TC_INGRESS_PARENT, TC_EGRESS_PARENT):
                try:
                    filters = ipr.get_filters(index=ifindex, parent=parent)
                except Exception:
                    continue  # no clsact qdisc
                for message in filters:
                    options = message.get_attr("TCA_OPTIONS")
                    if options is None:
                        continue
                    hook = _TC_FILTER_NAMES.get(options.get_attr("TCA_BPF_NAME"))
                    prog_id = options.get_attr("TCA_BPF_ID")
                    if (hook and prog_id and (_program_maps(prog_id) or frozenset()) & ours
                            and Attachment(name, ifindex, hook) not in found):
                        found.append(Attachment(name, ifindex, hook))
    return found


_TC_PARENTS = {"tc ingress": TC_INGRESS_PARENT, "tc egress": TC_EGRESS_PARENT}


def remove_attachment(attachment: Attachment, netns: str | None = None) -> None:
    """Takes one of our programs off its interface (as ``our_attachments`` found it)."""
    if attachment.hook == "xdp":
        detach_xdp(attachment.ifindex, netns)
        return
    with _iproute(netns) as ipr:
        ipr.tc("del-filter", "bpf", attachment.ifindex, TC_HANDLE, prio=TC_PRIO,
               parent=_TC_PARENTS[attachment.hook])


def detach(ifindex: int, netns: str | None = None) -> None:
    """Removes our XDP program and tc filters from an interface (on request only)."""
    for hook in ("xdp", *_TC_PARENTS):
        try:
            remove_attachment(Attachment("", ifindex, hook), netns)
        except Exception:
            pass  # not attached there
