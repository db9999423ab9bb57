"""The program cache against a real kernel: a start on a fresh pin directory loads the
programs a compile recorded, through the verifier, without compiling; what it loads
forwards exactly like the compiled programs; unusable entries are removed and compiled
over; the loading process never maps bcc or clang."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from ctl.dataplane import bpfsys, buildid, compiler, loader, progcache
from ctl.dataplane.dataplane import Dataplane
from ctl.dataplane.headers import bcc_header_flags
from ctl.dataplane.loader import DataplaneSpec, load_programs
from ctl.model import NatMode, Protocol
from lab.harness import TEST_SPEC_SIZES
from lab.packets import service, state, syn4, udp4

from .test_conntrack import reply_from_backend

pytestmark = pytest.mark.packet


class CompileAttempted(AssertionError):
    pass


def _no_compile(spec, build=""):
    raise CompileAttempted("compiled although the program cache holds this build")


@pytest.fixture
def pin_dirs(packet_lab):  # packet_lab: its requirement checks, and the compiled programs
    made: list[Path] = []

    def new() -> Path:
        made.append(Path(f"/sys/fs/bpf/xgpc{secrets.token_hex(3)}"))
        return made[-1]
    yield new
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cache_dir(tmp_path):
    path = tmp_path / f"programs{secrets.token_hex(3)}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _spec(pin_dir: Path, cache: Path) -> DataplaneSpec:
    return DataplaneSpec(pin_dir=pin_dir, program_cache=cache, **TEST_SPEC_SIZES)


def _build(spec: DataplaneSpec) -> str:
    return buildid.build_digest(spec.cflags() + bcc_header_flags())


def _record_lab(lab, cache: Path) -> progcache.Entry:
    """The entry of the packet lab's programs (compiled in this process), written to `cache`."""
    entry = progcache.record(lab.spec, lab.dataplane.programs, _build(lab.spec))
    progcache.write(cache, entry)
    return entry


def _fds(programs: loader.Programs) -> tuple[int, int, int]:
    return programs.xdp_fd, programs.tc_ingress_fd, programs.tc_egress_fd


@contextmanager
def _running(lab, programs: loader.Programs, spec: DataplaneSpec):
    """The lab's packet runs going through `programs` (and the maps of spec.pin_dir)."""
    own = lab.dataplane
    lab.dataplane = Dataplane(spec, programs)
    try:
        yield lab
    finally:
        lab.dataplane = own


def test_a_fresh_pin_dir_loads_the_cached_programs_and_they_forward_like_the_compiled_ones(
        plab, pin_dirs, cache_dir, monkeypatch):
    entry = _record_lab(plab, cache_dir)
    monkeypatch.setattr(compiler, "compile_in_child", _no_compile)
    spec = _spec(pin_dirs(), cache_dir)
    cached = load_programs(spec)
    try:
        assert cached.cached and not cached.reused and cached.build == entry.build
        # The kernel's tag hashes the instructions (map references left out): the same
        # program bcc loaded, not something like it.
        assert ([bpfsys.prog_info(fd).tag for fd in _fds(cached)]
                == [bpfsys.prog_info(fd).tag for fd in _fds(plab.dataplane.programs)])
        # Every map it holds under our names is the one pinned now, and all are pinned.
        held = loader.held_maps(bpfsys.prog_info(fd) for fd in _fds(cached))
        pinned = loader.pinned_map_ids(spec.pin_dir)
        assert loader.stale_maps(pinned, held) == []
        assert {("ct_fwd", pinned["ct_fwd"]), ("frontends", pinned["frontends"])} <= held
        assert sorted(p.name for p in spec.pin_dir.glob("prog_*")) == \
            sorted(p.name for p in loader.program_pins(spec.pin_dir, entry.build))

        desired = state(service(), service(port=53, proto=Protocol.UDP,
                                           backends=((0, 1), (1, 1)), nat=NatMode.DNAT))
        plab.program(desired)
        compiled_runs = []
        for hook in ("xdp", "tc"):
            run = getattr(plab, hook)
            out = run(bytes(syn4()))
            compiled_runs += [out, run(bytes(reply_from_backend(out.data)), ingress="be0"), run(bytes(udp4()))]
        with _running(plab, cached, spec) as lab:
            lab.program(desired)
            cached_runs = []
            for hook in ("xdp", "tc"):
                run = getattr(lab, hook)
                out = run(bytes(syn4()))
                cached_runs += [out, run(bytes(reply_from_backend(out.data)), ingress="be0"), run(bytes(udp4()))]
        assert [r.verdict for r in compiled_runs] == ["REDIRECT"] * 6
        assert cached_runs == compiled_runs  # same verdicts, byte for byte the same frames
    finally:
        cached.close()


def _damaged(entry: progcache.Entry, how: str) -> bytes:
    data = progcache.encode(entry)
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "corrupt":  # one instruction byte changed, the checksum left as it was
        document = json.loads(data)
        insns = bytearray(progcache.base64.b64decode(document["entry"]["programs"][0]["insns"]))
        insns[80] ^= 0xFF
        document["entry"]["programs"][0]["insns"] = progcache.base64.b64encode(bytes(insns)).decode()
        return json.dumps(document).encode()
    if how == "wrong version":
        document = json.loads(data)
        document["format"] = progcache.FORMAT + 1
        return json.dumps(document).encode()
    if how == "refused by the verifier":  # well-formed, but reads a register never written
        program = entry.programs[0]
        bad = bytes([0xBF, 0x70, 0, 0, 0, 0, 0, 0]) + program.insns  # r0 = r7
        relocations = tuple((index + 1, name) for index, name in program.relocations)
        programs = (replace(program, insns=bad, relocations=relocations), *entry.programs[1:])
        return progcache.encode(replace(entry, programs=programs))
    raise ValueError(how)


@pytest.mark.parametrize("how", ["truncated", "corrupt", "wrong version", "refused by the verifier"])
def test_an_unusable_entry_is_removed_with_one_warning_and_compiled_over(plab, pin_dirs, cache_dir, how,
                                                                          monkeypatch, caplog):
    entry = _record_lab(plab, cache_dir)
    path = progcache.entry_path(cache_dir, entry.build)
    path.write_bytes(_damaged(entry, how))
    spec = _spec(pin_dirs(), cache_dir)
    compiles = []
    real_compile = compiler.compile_in_child

    def compile_once(spec, build=""):
        compiles.append(build)
        if how != "refused by the verifier":  # one real compile is enough to prove the rewrite
            raise CompileAttempted
        return real_compile(spec, build)
    monkeypatch.setattr(compiler, "compile_in_child", compile_once)
    with caplog.at_level(logging.INFO):
        if how == "refused by the verifier":
            programs = load_programs(spec)
        else:
            with pytest.raises(CompileAttempted):
                load_programs(spec)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage(), warnings
    assert "removed it" in warnings[0].getMessage()
    assert compiles == [entry.build]
    # Nothing half done: no program pinned, and the maps this attempt created were unpinned.
    if how != "refused by the verifier":
        assert not path.exists()
        assert not list(spec.pin_dir.glob("prog_*"))
        return
    assert "the verifier said:" in warnings[0].getMessage()
    try:
        assert not programs.cached and not programs.reused
        rewritten = progcache.decode(path.read_bytes(), entry.build)  # the compile wrote a new entry
        assert [p.insns for p in rewritten.programs] == [p.insns for p in entry.programs]
    finally:
        programs.close()


def test_a_changed_build_writes_its_own_entry_and_old_entries_are_pruned(plab, pin_dirs, cache_dir, monkeypatch):
    entry = _record_lab(plab, cache_dir)
    monkeypatch.setattr(buildid, "bcc_version", lambda: "99.0.0")  # as after a bcc upgrade
    programs = load_programs(_spec(pin_dirs(), cache_dir))
    try:
        assert not programs.cached and programs.build != entry.build
        assert sorted(p.name for p in cache_dir.iterdir()) == sorted([f"{entry.build}.json",
                                                                      f"{programs.build}.json"])
    finally:
        programs.close()
    # Only the newest KEEP entries stay, whatever writes next.
    now = time.time()
    for age, build in enumerate(f"{n:016x}" for n in range(1, 6)):  # older and older
        old = progcache.entry_path(cache_dir, build)
        old.write_bytes(progcache.encode(replace(entry, build=build)))
        os.utime(old, (now - 1000 * (age + 1),) * 2)
    progcache.write(cache_dir, entry)
    kept = sorted(p.name for p in cache_dir.iterdir())
    assert len(kept) == progcache.KEEP and f"{entry.build}.json" in kept and f"{programs.build}.json" in kept
    assert kept == sorted([f"{entry.build}.json", f"{programs.build}.json", f"{1:016x}.json", f"{2:016x}.json"])


_LOAD_AND_SHOW_MAPPINGS = """
import json, sys
from pathlib import Path
from ctl.dataplane import compiler
from ctl.dataplane.loader import DataplaneSpec, load_programs
def no_compile(*args):
    raise SystemExit("compiled although the program cache holds this build")
compiler.compile_in_child = no_compile
programs = load_programs(DataplaneSpec(pin_dir=Path(sys.argv[1]), program_cache=Path(sys.argv[2]),
                                       **json.loads(sys.argv[3])))
maps = Path("/proc/self/maps").read_text().splitlines()
print(json.dumps({"cached": programs.cached, "bcc_imported": "bcc" in sys.modules,
                  "mapped": sorted({line.split()[-1] for line in maps
                                    if any(lib in line for lib in ("libbcc", "libclang", "libLLVM"))})}))
"""


def test_loading_from_the_cache_never_maps_bcc_or_clang(plab, pin_dirs, cache_dir):
    _record_lab(plab, cache_dir)
    out = subprocess.run([sys.executable, "-c", _LOAD_AND_SHOW_MAPPINGS, str(pin_dirs()), str(cache_dir),
                          json.dumps(TEST_SPEC_SIZES)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"cached": True, "bcc_imported": False, "mapped": []}


def test_an_entry_that_fails_for_a_reason_of_its_own_is_kept(plab, cache_dir, monkeypatch, caplog):
    """Maps cannot be pinned outside bpffs: the start cannot use the entry, but the next
    start with a usable pin directory can, so the entry stays."""
    entry = _record_lab(plab, cache_dir)
    not_bpffs = Path(f"/tmp/xgpc{secrets.token_hex(3)}")
    monkeypatch.setattr(compiler, "compile_in_child", _no_compile)
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(CompileAttempted):
            load_programs(_spec(not_bpffs, cache_dir))
        (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warning.startswith(f"cannot load the program cache entry {progcache.entry_path(cache_dir, entry.build)}")
        assert progcache.entry_path(cache_dir, entry.build).exists()
        assert not list(not_bpffs.iterdir())  # nothing pinned, nothing half made
    finally:
        shutil.rmtree(not_bpffs, ignore_errors=True)
