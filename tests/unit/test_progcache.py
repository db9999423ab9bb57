"""Which pinned programs a start may reuse, and which an upgrade unpins (pure parts)."""

from __future__ import annotations


from ctl.dataplane import buildid
from ctl.dataplane.loader import stale_maps, superseded_pins

BUILD, OLD = "0123456789abcdef", "fedcba9876543210"


def test_program_pins_of_other_builds_are_superseded_only_when_the_build_is_known():
    names = [f"prog_{BUILD}_xdp", f"prog_{OLD}_xdp", f"prog_{OLD}_tc_ingress", f"prog_{OLD}_tc_egress",
             "prog_notadigest_xdp", f"prog_{OLD}_other", "ct_fwd_v2", "ct_fwd_v1"]
    assert superseded_pins(names, BUILD) == sorted(["ct_fwd_v1", f"prog_{OLD}_xdp", f"prog_{OLD}_tc_ingress",
                                                    f"prog_{OLD}_tc_egress"])
    assert superseded_pins(names) == ["ct_fwd_v1"]


def test_programs_are_stale_when_a_map_is_missing_or_replaced():
    pinned = {"frontends": 10, "ct_fwd": 11, "a_long_map_name_x": 12}
    assert stale_maps(pinned, {("frontends", 10), ("ct_fwd", 11), ("scratch_map", 3)}) == []
    assert stale_maps(pinned, {("frontends", 10), ("ct_fwd", 9)}) == ["ct_fwd"]
    assert stale_maps({**pinned, "vips": None}, {("frontends", 10)}) == ["vips"]
    # the kernel keeps 15 bytes of a name
    assert stale_maps(pinned, {("a_long_map_name", 4)}) == ["a_long_map_name"]


def test_the_build_digest_follows_every_input():
    base = dict(sources=["int x;"], cflags=["-DA=1"], kernel="6.18", bcc="0.26.0", layout="L")
    digest = buildid.digest(**base)
    assert digest == buildid.digest(**base) and len(digest) == 16
    for field, other in (("sources", ["int y;"]), ("cflags", ["-DA=2"]), ("kernel", "6.1"),
                         ("bcc", "0.27.0"), ("layout", "M")):
        assert buildid.digest(**{**base, field: other}) != digest, field
    # parts cannot run into each other
    assert buildid.digest(**{**base, "sources": ["int x;", "-DA=1"], "cflags": []}) != digest


def test_this_build_has_a_digest_without_importing_bcc():
    import sys

    before = "bcc" in sys.modules
    assert len(buildid.build_digest(["-DX=1"])) == 16
    assert buildid.bcc_version() != "none"
    assert ("bcc" in sys.modules) == before
    assert buildid.build_digest(["-DX=1"]) != buildid.build_digest(["-DX=2"])


# -- the program cache's pure parts (progcache.py) ----------------------------------------

import struct  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from ctl.dataplane import progcache  # noqa: E402


def _insn(opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", opcode, dst | src << 4, off, imm)


MAP_LOAD = _insn(0x18, dst=1, src=1, imm=7) + _insn(0)  # r1 = map fd 7 (two slots)
CONST_LOAD = _insn(0x18, dst=2, imm=-1) + _insn(0, imm=0x12345678)  # r2 = a 64-bit constant
PROGRAM = _insn(0xB7, dst=0, imm=2) + MAP_LOAD + CONST_LOAD + _insn(0x85, imm=1) + MAP_LOAD + _insn(0x95)


def test_map_fd_loads_are_found_and_the_second_slot_of_a_wide_load_is_not_an_instruction():
    assert progcache.map_fd_loads(PROGRAM) == [(1, 7), (6, 7)]
    patched = progcache.with_immediates(PROGRAM, {1: 42, 6: 43})
    assert progcache.map_fd_loads(patched) == [(1, 42), (6, 43)]
    assert progcache.with_immediates(patched, {1: 7, 6: 7}) == PROGRAM


@pytest.mark.parametrize("insns, why", [
    (_insn(0x18, src=2) + _insn(0), "64-bit load of kind 2"),  # a map value's address
    (_insn(0x85, src=2, imm=5), "call of kind 2"),  # a kernel function
    (PROGRAM[:-3], "not a whole number"),
])
def test_what_the_cache_cannot_reproduce_is_refused_when_recording(insns, why):
    with pytest.raises(progcache.Unrecordable, match=why):
        progcache.map_fd_loads(insns)


def _entry(build: str = BUILD) -> progcache.Entry:
    maps = (progcache.MapDef("frontends", 1, 24, 80, 64, 0, "frontends_v2"),
            progcache.MapDef("maglev_inner", 2, 4, 4, 1022, 0x1400, "maglev_template_v2"),
            progcache.MapDef("maglev_outer", 13, 4, 4, 64, 0, "maglev_v3", "maglev_inner"),
            progcache.MapDef("scratch_map", 6, 4, 128, 1, 0, None))
    programs = tuple(progcache.ProgramDef(pin, name, source, prog_type, "GPL", 0,
                                          progcache.with_immediates(PROGRAM, {1: 0, 6: 0}),
                                          ((1, "frontends"), (6, "scratch_map")))
                     for pin, name, source, prog_type in progcache.PROGRAMS)
    return progcache.Entry(build, programs, maps, {"config": {"key": ("c_uint", {"<self>": (0, 4)}),
                                                              "value": ("struct config", {"<self>": (0, 28)})}})


def test_an_entry_survives_encoding():
    entry = _entry()
    assert progcache.decode(progcache.encode(entry), BUILD) == entry


@pytest.mark.parametrize("damage, why", [
    (lambda data: data[: len(data) // 2], "not a cache entry"),
    (lambda data: b"", "not a cache entry"),
    (lambda data: data.replace(b'"format": 1', b'"format": 2'), "format 2, this agent reads format 1"),
    (lambda data: data.replace(b'"GPL"', b'"MIT"', 1), "checksum mismatch"),
    (lambda data: b"[1, 2]", "format None"),
])
def test_a_damaged_or_foreign_entry_is_refused_with_the_reason(damage, why):
    with pytest.raises(progcache.CacheEntryError, match=why):
        progcache.decode(damage(progcache.encode(_entry())), BUILD)


def test_an_entry_of_another_build_is_refused_even_when_intact():
    with pytest.raises(progcache.CacheEntryError, match=f"holds build '{OLD}', not {BUILD}"):
        progcache.decode(progcache.encode(_entry(OLD)), BUILD)


def test_only_the_newest_entries_are_kept():
    mtimes = {f"{n:016x}.json": float(n) for n in range(7)}
    assert progcache.to_prune(mtimes, keep=4) == [f"{n:016x}.json" for n in (2, 1, 0)]
    assert progcache.to_prune(mtimes, keep=10) == []


def test_a_map_of_maps_names_its_template_in_bccs_declaration():
    source = '''BPF_TABLE_PINNED("array", __u32, __u32, maglev_inner, 1022, "/p/t", 0);
BPF_TABLE_PINNED("hash_of_maps$maglev_inner", __u32, int, maglev_outer, MAX_SERVICES,
		 PIN_DIR "/maglev_v3");
BPF_TABLE_PINNED("hash", struct frontend_key, struct frontend, frontends, 64, "/p/f");'''
    assert progcache.inner_maps(source) == {"maglev_outer": "maglev_inner"}


def test_the_pin_directory_is_not_part_of_the_build():
    assert buildid.build_digest(['-DPIN_DIR="/sys/fs/bpf/a"', "-DX=1"]) == \
        buildid.build_digest(['-DPIN_DIR="/sys/fs/bpf/b"', "-DX=1"])


def test_where_the_sources_sit_is_not_part_of_the_build(tmp_path: Path):
    """Two checkouts (or installs) of the same sources share a digest; a changed header does not."""
    import shutil

    from ctl.dataplane.source import BPF_DIR

    here, there = tmp_path / "a" / "bpf", tmp_path / "elsewhere" / "b" / "bpf"
    shutil.copytree(BPF_DIR, here)
    shutil.copytree(BPF_DIR, there)
    assert buildid.build_digest(["-DX=1"], here) == buildid.build_digest(["-DX=1"], there)
    header = there / "lib" / "parse.h"
    header.write_text(header.read_text() + "\n/* changed */\n")
    assert buildid.build_digest(["-DX=1"], here) != buildid.build_digest(["-DX=1"], there)


def test_the_headers_identity_follows_the_files_bcc_compiles_against(tmp_path: Path):
    tree = tmp_path / "linux-headers-common"
    autoconf = tree / "include" / "generated" / "autoconf.h"
    autoconf.parent.mkdir(parents=True)
    autoconf.write_text("#define CONFIG_BPF 1\n")
    environ = {"BCC_KERNEL_SOURCE": str(tree)}
    before = buildid.headers_identity([], environ, modules_dir=tmp_path / "none")
    assert str(autoconf) in before
    autoconf.write_text("#define CONFIG_BPF 1\n#define CONFIG_X 1\n")  # the same release's headers, rebuilt
    assert buildid.headers_identity([], environ, modules_dir=tmp_path / "none") != before
    assert buildid.digest(["s"], [], "k", "b", "l", before) != buildid.digest(["s"], [], "k", "b", "l", "")


def test_a_relocation_must_point_at_a_map_load():
    entry = _entry()
    program = entry.programs[0]
    for relocations in (((0, "frontends"),), ((2, "frontends"),), ((1000, "frontends"),), ((1, "nothing"),)):
        broken = replace(entry, programs=(replace(program, relocations=relocations),
                                                    *entry.programs[1:]))
        with pytest.raises(progcache.CacheEntryError, match="relocation"):
            progcache.decode(progcache.encode(broken), BUILD)


def test_the_pinned_maps_are_read_from_bccs_declarations():
    from ctl.dataplane import abi
    from ctl.dataplane.buildid import ENTRY_FILES
    from ctl.dataplane.source import BPF_DIR, expand_includes

    declared = set().union(*(progcache.pinned_declarations(expand_includes(BPF_DIR / f)) for f in ENTRY_FILES))
    # every map bcc pins is one the loader knows by name (else the cache would make it private)
    assert declared == set(abi.PINNED_MAPS) | {"maglev_inner"}
