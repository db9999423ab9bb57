"""Compiled programs kept on disk, so that a start without pinned programs does not compile.

bcc 0.26 loads only from C source: every start that finds no pinned programs of its
build (the first after a node boots, a fresh pin directory, a VM) spends about ten
seconds in clang. After a compile the compiler child records, per build digest, what
bcc handed the kernel: each program's type, name, license and instructions, where
those instructions carry a map's fd (64-bit immediate loads with src_reg
BPF_PSEUDO_MAP_FD) and which map it was, every map's definition, and the key and value
layouts the compiler produced. A later start opens or creates the maps as bcc's
BPF_TABLE_PINNED does (reuse the pin if present, else create and pin it), writes their
fds into the instructions and hands the programs to the verifier through libbpf: no
clang, no bcc in the process.

Maps this path creates carry no type information (BTF): nothing in our maps needs it
(no spin locks or timers), and the agent makes each Maglev table like the pinned
template, whichever way the template was made.

An entry is one JSON file, <digest>.json, written to a temporary name and renamed, with
a format version, its digest and a checksum of its contents; any file that fails one of
those checks, or whose programs the verifier refuses, is removed with one warning and
the agent compiles instead.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import logging
import os
import re
import struct
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import abi, abicheck, bpfsys

if TYPE_CHECKING:
    from .loader import DataplaneSpec, Programs

log = logging.getLogger(__name__)

FORMAT = 1
DEFAULT_DIR = Path("/var/cache/xdp-gateway/programs")
# Entries kept after a write, newest first. A node meets a few builds at once: the one
# running, the one a rollout brings and the one a rollback returns to, and maybe a
# second agent with other map sizes sharing the directory. Older entries are dead weight
# (a few hundred KiB each) and the directory must not grow with every upgrade.
KEEP = 4
_ENTRY = re.compile(r"([0-9a-f]{16})\.json")
_TEMP_MAX_AGE = 600.0  # seconds: a temporary file older than this was left by a crash

# What bcc declares and loads: (pin name, function, source file, program type)
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_XDP = 6
PROGRAMS = (("xdp", "xdp_lb", "xdp_lb.c", BPF_PROG_TYPE_XDP),
            ("tc_ingress", "tc_ingress", "tc_lb.c", BPF_PROG_TYPE_SCHED_CLS),
            ("tc_egress", "tc_egress", "tc_lb.c", BPF_PROG_TYPE_SCHED_CLS))

_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW: two instruction slots
_CALL = 0x85  # BPF_JMP | BPF_CALL
_PSEUDO_MAP_FD = 1
_INSN = struct.Struct("<BBhi")  # opcode, dst/src registers, offset, immediate


class CacheEntryError(ValueError):
    """An entry that cannot be used: unreadable, foreign, corrupt or refused by the kernel."""


class Unrecordable(ValueError):
    """Compiled programs this cache cannot reproduce (e.g. a relocation kind it does not know)."""


@dataclass(frozen=True)
class MapDef:
    name: str  # the C name, which bcc also gives the kernel
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    pin: str | None  # file under the pin directory; None: one map per source file, unpinned
    inner: str | None = None  # a map of maps: the map its values are made like


@dataclass(frozen=True)
class ProgramDef:
    pin: str  # the loader's name for it (prog_<build>_<pin>)
    name: str
    source: str  # the bcc module (source file) it was compiled in
    type: int
    license: str
    kern_version: int
    insns: bytes  # map fds zeroed
    relocations: tuple[tuple[int, str], ...]  # (instruction index, map name)


@dataclass(frozen=True)
class Entry:
    build: str
    programs: tuple[ProgramDef, ...]
    maps: tuple[MapDef, ...]
    layouts: abicheck.CompiledLayouts


# -- pure: instructions, encoding --------------------------------------------------------

def map_fd_loads(insns: bytes) -> list[tuple[int, int]]:
    """(instruction index, fd) of every load of a map's fd. Anything else the kernel would
    have to resolve (a map value's address, a kernel function, BTF ids) is Unrecordable."""
    if len(insns) % 8:
        raise Unrecordable(f"{len(insns)} bytes of instructions is not a whole number of instructions")
    found = []
    index, count = 0, len(insns) // 8
    while index < count:
        opcode, regs, _, imm = _INSN.unpack_from(insns, index * 8)
        src = regs >> 4
        if opcode == _LD_IMM64:
            if src == _PSEUDO_MAP_FD:
                found.append((index, imm))
            elif src:
                raise Unrecordable(f"instruction {index}: a 64-bit load of kind {src} (only map fds are known)")
            index += 2
            continue
        if opcode == _CALL and src:
            raise Unrecordable(f"instruction {index}: a call of kind {src} (only helper calls are known)")
        index += 1
    return found


def with_immediates(insns: bytes, values: Mapping[int, int]) -> bytes:
    """`insns` with the immediate of instruction i set to values[i]."""
    out = bytearray(insns)
    for index, value in values.items():
        struct.pack_into("<i", out, index * 8 + 4, value)
    return bytes(out)


def _checksum(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def encode(entry: Entry) -> bytes:
    body = {
        "build": entry.build,
        "programs": [{**asdict(p), "insns": base64.b64encode(p.insns).decode(),
                      "relocations": [list(r) for r in p.relocations]} for p in entry.programs],
        "maps": [asdict(m) for m in entry.maps],
        "layouts": {name: {role: [type_name, {field: list(place) for field, place in layout.items()}]
                           for role, (type_name, layout) in roles.items()}
                    for name, roles in entry.layouts.items()},
    }
    return json.dumps({"format": FORMAT, "sha256": _checksum(body), "entry": body}).encode()


def decode(data: bytes, build: str) -> Entry:
    """The entry of `build` in `data`; CacheEntryError if it is anything else."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise CacheEntryError(f"not a cache entry ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise CacheEntryError(f"format {found!r}, this agent reads format {FORMAT}")
    body = document.get("entry")
    if not isinstance(body, dict) or document.get("sha256") != _checksum(body):
        raise CacheEntryError("checksum mismatch (a damaged or edited file)")
    if body.get("build") != build:
        raise CacheEntryError(f"it holds build {body.get('build')!r}, not {build}")
    try:
        programs = tuple(ProgramDef(**{**p, "insns": base64.b64decode(p["insns"], validate=True),
                                       "relocations": tuple((int(i), str(n)) for i, n in p["relocations"])})
                         for p in body["programs"])
        maps = tuple(MapDef(**m) for m in body["maps"])
        layouts = {name: {role: (str(type_name), {field: (int(o), int(s)) for field, (o, s) in layout.items()})
                          for role, (type_name, layout) in roles.items()}
                   for name, roles in body["layouts"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CacheEntryError(f"malformed entry ({type(error).__name__}: {error})") from None
    for definition in maps:
        if not (all(isinstance(getattr(definition, f), int)
                    for f in ("type", "key_size", "value_size", "max_entries", "flags"))
                and all(isinstance(getattr(definition, f), str | None) for f in ("name", "pin", "inner"))):
            raise CacheEntryError(f"map {definition.name!r}: malformed definition")
    for program in programs:
        if not (all(isinstance(getattr(program, f), str) for f in ("pin", "name", "source", "license"))
                and all(isinstance(getattr(program, f), int) for f in ("type", "kern_version"))):
            raise CacheEntryError(f"program {program.name!r}: malformed definition")
    names = {m.name for m in maps}
    if any(m.inner is not None and m.inner not in names for m in maps):
        raise CacheEntryError("a map of maps names an unknown template")
    if [p.pin for p in programs] != [pin for pin, *_ in PROGRAMS]:
        raise CacheEntryError(f"it holds programs {[p.pin for p in programs]}")
    for program in programs:
        if len(program.insns) % 8:
            raise CacheEntryError(f"program {program.name}: a partial instruction")
        loads = {index for index, _ in _recorded_map_loads(program.insns)}
        for index, name in program.relocations:
            if name not in names or index not in loads:
                raise CacheEntryError(f"program {program.name}: relocation ({index}, {name!r}) names no map "
                                      f"or no map load")
    return Entry(build, programs, maps, layouts)


def _recorded_map_loads(insns: bytes) -> list[tuple[int, int]]:
    try:
        return map_fd_loads(insns)
    except Unrecordable as error:
        raise CacheEntryError(str(error)) from None


def entry_path(cache_dir: Path, build: str) -> Path:
    return cache_dir / f"{build}.json"


def to_prune(entries: Mapping[str, float], keep: int = KEEP) -> list[str]:
    """The entries (name -> mtime) beyond the newest `keep`."""
    return sorted(entries, key=lambda name: (-entries[name], name))[keep:]


# -- effects: recording after a compile (in the compiler child) --------------------------

def _pinned_ids(pin_dir: Path) -> dict[int, tuple[str, str]]:
    """Map id -> (C name, file) of every map of ours pinned under pin_dir."""
    files = {name: file for name, (file, *_) in abi.PINNED_MAPS.items()} | {"maglev_inner": abi.MAGLEV_TEMPLATE_FILE}
    ids = {}
    for name, file in files.items():
        fd = bpfsys.obj_get(pin_dir / file)
        try:
            ids[bpfsys.map_info(fd).id] = (name, file)
        finally:
            os.close(fd)
    return ids


def _map_def(fd: int, name: str, pin: str | None, inner: str | None) -> MapDef:
    shape = bpfsys.map_shape(fd)
    return MapDef(name, shape.type, shape.key_size, shape.value_size, shape.max_entries, shape.flags, pin, inner)


def inner_maps(source: str) -> dict[str, str]:
    """Map of maps -> the map its values are made like, from bcc's declarations
    ("hash_of_maps$inner", key, value, name, ...)."""
    return {outer: inner for inner, outer in
            re.findall(r'"\w+_of_maps\$(\w+)"\s*,\s*[^,]+,\s*[^,]+,\s*(\w+)\s*,', source)}


def pinned_declarations(source: str) -> set[str]:
    """The maps bcc pins (BPF_TABLE_PINNED(type, key, value, name, ...))."""
    return set(re.findall(r'BPF_TABLE_PINNED\(\s*"[^"]+"\s*,\s*[^,]+,\s*[^,]+,\s*(\w+)\s*,', source))


def record(spec: DataplaneSpec, programs: Programs, build: str) -> Entry:
    """The cache entry of programs just compiled in this process (bcc's modules in
    programs._modules: xdp_lb.c's, then tc_lb.c's)."""
    from bcc import libbcc  # only the compiler child records

    from .source import BPF_DIR, expand_includes

    modules = dict(zip(("xdp_lb.c", "tc_lb.c"), programs._modules))
    pinned = _pinned_ids(spec.pin_dir)
    inner, declared_pinned = {}, set()
    for source in modules:
        text = expand_includes(BPF_DIR / source)
        inner |= inner_maps(text)
        declared_pinned |= pinned_declarations(text)
    maps: dict[str, MapDef] = {}
    for map_id, (name, file) in pinned.items():
        fd = bpfsys.map_fd_by_id(map_id)
        try:
            maps[name] = _map_def(fd, name, file, inner.get(name))
        finally:
            os.close(fd)
    recorded = []
    for pin, function, source, prog_type in PROGRAMS:
        module = modules[source]
        insns = module.dump_func(function.encode())
        relocations, seen_fds = [], {}
        for index, fd in map_fd_loads(insns):
            if fd not in seen_fds:
                info = bpfsys.map_info(fd)
                if info.id in pinned:
                    seen_fds[fd] = pinned[info.id][0]
                else:
                    seen_fds[fd] = info.name
                    known = maps.get(info.name)
                    if (known is not None and known.pin is not None) or info.name in declared_pinned:
                        # A pinned map the cache would make private: the programs would read a map
                        # the agent never writes. Every pinned map must be in abi.PINNED_MAPS.
                        raise Unrecordable(f"{function}: map {info.name} is pinned by its declaration but not "
                                           f"one of abi.PINNED_MAPS pinned under {spec.pin_dir}")
                    maps.setdefault(info.name, _map_def(fd, info.name, None, inner.get(info.name)))
            relocations.append((index, seen_fds[fd]))
        recorded.append(ProgramDef(
            pin, function, source, prog_type, libbcc.lib.bpf_module_license(module.module).decode(),
            int(libbcc.lib.bpf_module_kern_version(module.module)),
            with_immediates(insns, {index: 0 for index, _ in relocations}), tuple(relocations)))
    for definition in maps.values():
        if definition.type in (bpfsys.MAP_TYPE_HASH_OF_MAPS, 12) and definition.inner not in maps:
            raise Unrecordable(f"map {definition.name}: a map of maps whose template is unknown")
    layouts = abicheck.compiled_layouts(lambda name: modules["xdp_lb.c"].get_table(name.encode()))
    return Entry(build, tuple(recorded), tuple(maps.values()), layouts)


def write(cache_dir: Path, entry: Entry) -> Path:
    """Writes the entry atomically and prunes the directory to the newest KEEP entries."""
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # it holds code for the kernel
    path = entry_path(cache_dir, entry.build)
    temp = cache_dir / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(temp, "wb") as file:
            file.write(encode(entry))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    prune(cache_dir)
    return path


def prune(cache_dir: Path, keep: int = KEEP) -> list[str]:
    """Removes entries beyond the newest `keep`, and temporary files a crash left."""
    entries, now = {}, time.time()
    for child in cache_dir.iterdir():
        try:
            mtime = child.stat().st_mtime
        except FileNotFoundError:
            continue
        if _ENTRY.fullmatch(child.name):
            entries[child.name] = mtime
        elif child.name.endswith(".tmp") and now - mtime > _TEMP_MAX_AGE:
            child.unlink(missing_ok=True)
    removed = to_prune(entries, keep)
    for name in removed:
        (cache_dir / name).unlink(missing_ok=True)
    return removed


# -- effects: loading (in the agent) -----------------------------------------------------

def load_entry(spec: DataplaneSpec, entry: Entry) -> tuple[int, int, int]:
    """Opens or creates the entry's maps and loads its programs: (xdp, tc ingress, tc
    egress) fds. On any failure nothing is left behind: the maps it pinned are unpinned
    again, and every fd it opened is closed."""
    abicheck.check_layouts(entry.layouts)
    spec.pin_dir.mkdir(parents=True, exist_ok=True)
    definitions = {m.name: m for m in entry.maps}
    shared: dict[str, int] = {}  # pinned maps, by name
    own: dict[tuple[str, str], int] = {}  # unpinned maps, by (source file, name)
    created: list[Path] = []
    loaded: list[int] = []

    def create(definition: MapDef, source: str) -> int:
        inner_fd = map_fd(definition.inner, source) if definition.inner else 0
        return bpfsys.map_create(definition.type, definition.name, definition.key_size, definition.value_size,
                                 definition.max_entries, definition.flags, inner_fd)

    def map_fd(name: str, source: str) -> int:
        definition = definitions[name]
        if definition.pin is None:
            if (source, name) not in own:
                own[source, name] = create(definition, source)
            return own[source, name]
        if name not in shared:
            path = spec.pin_dir / definition.pin
            try:
                shared[name] = bpfsys.obj_get(path)
            except FileNotFoundError:
                shared[name] = create(definition, source)
                bpfsys.obj_pin(shared[name], path)
                created.append(path)
        return shared[name]

    try:
        for definition in entry.maps:  # every pinned map, used by a program or not (the template)
            if definition.pin is not None:
                map_fd(definition.name, "")
        patched = [with_immediates(program.insns, {index: map_fd(name, program.source)
                                                   for index, name in program.relocations})
                   for program in entry.programs]
        # The verifier takes most of a load (about a second for xdp_lb) and one program's
        # verification does not wait for another's: on two cores, loading them side by
        # side saves the second program's time. ctypes releases the GIL around the call.
        with ThreadPoolExecutor(len(patched)) as pool:
            futures = [pool.submit(bpfsys.prog_load, program.type, program.name, program.license, insns,
                                   kern_version=program.kern_version)
                       for program, insns in zip(entry.programs, patched)]
            wait(futures)
        loaded.extend(future.result() for future in futures if future.exception() is None)
        for future in futures:
            if future.exception() is not None:
                raise future.exception()
    except BaseException:
        for fd in loaded:
            os.close(fd)
        for path in created:
            path.unlink(missing_ok=True)
        raise
    finally:
        for fd in [*shared.values(), *own.values()]:
            os.close(fd)  # the programs hold what they use; the pins hold the rest
    return loaded[0], loaded[1], loaded[2]


def load_cached(spec: DataplaneSpec, cache_dir: Path, build: str) -> tuple[tuple[int, int, int], Path] | None:
    """`build`'s programs loaded from the cache, and the entry's file; None when there is
    no usable entry. An unusable one is removed after one warning naming it and why."""
    path = entry_path(cache_dir, build)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        log.warning("cannot read the program cache entry %s (%s): compiling", path, error.strerror,
                    extra={"event": "program_cache_unusable", "file": str(path)})
        return None
    try:
        return load_entry(spec, decode(data, build)), path
    except (CacheEntryError, abicheck.AbiMismatch, bpfsys.VerifierRejected) as error:
        if isinstance(error, bpfsys.VerifierRejected) and error.errno not in _REFUSED:
            return _cannot_load(path, str(error))  # e.g. EPERM: the process, not the entry
        reason = str(error)
        if isinstance(error, bpfsys.VerifierRejected) and error.log:
            reason += f"; the verifier said: {error.log.splitlines()[-1]}"
        log.warning("program cache entry %s is unusable, removed it and compiling: %s", path, reason,
                    extra={"event": "program_cache_unusable", "file": str(path), "reason": reason})
        path.unlink(missing_ok=True)
        return None
    except OSError as error:  # creating or pinning a map: nothing the entry can help
        return _cannot_load(path, str(error))


# What the kernel answers when the verifier refuses a program (the entry is at fault).
_REFUSED = (errno.EACCES, errno.EINVAL, errno.E2BIG)


def _cannot_load(path: Path, reason: str) -> None:
    log.warning("cannot load the program cache entry %s (%s): compiling", path, reason,
                extra={"event": "program_cache_unusable", "file": str(path), "reason": reason})
    return None
