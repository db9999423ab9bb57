"""Loader behaviour that needs a real kernel: pinned maps of another shape are refused
with a message that names the map, instead of being reused blindly; the agent's programs
are compiled in a child process and pinned per build, so a restart reuses them."""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ctl.dataplane import abi, bpfsys, buildid, compiler, loader
from ctl.dataplane.loader import (CompileError, DataplaneSpec, PinnedMapMismatch, check_pinned_maps,
                                  compile_programs, load_programs, program_pins, remove_superseded_pins)

from ctl.dataplane.pinned import PinnedMaps
from lab.harness import TEST_SPEC_SIZES

pytestmark = pytest.mark.packet


@pytest.fixture
def pin_dir(packet_lab):  # packet_lab: only for its requirement checks
    path = Path(f"/sys/fs/bpf/xgldr{secrets.token_hex(3)}")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_pinned_maps_of_another_shape_are_refused(pin_dir):
    programs = compile_programs(DataplaneSpec(pin_dir=pin_dir, **TEST_SPEC_SIZES))
    del programs
    check_pinned_maps(DataplaneSpec(pin_dir=pin_dir, **TEST_SPEC_SIZES))  # same shape: fine
    bigger = dict(TEST_SPEC_SIZES, ct_size=TEST_SPEC_SIZES["ct_size"] * 2)
    with pytest.raises(PinnedMapMismatch, match=r"ct_fwd_v2: pinned map .* use another --pin-dir"):
        compile_programs(DataplaneSpec(pin_dir=pin_dir, **bigger))


def test_maglev_size_must_be_prime():
    with pytest.raises(ValueError, match="16380 is not prime"):
        DataplaneSpec(maglev_size=16380)


def test_inner_maps_are_made_like_the_pinned_template(pin_dir):
    """Debian's 6.1 kernel refuses an inner map whose BTF differs from the template's even
    when every size matches (its check compares timer_off, which BTF sets). Inner maps
    are therefore created with the template's type information; 6.18 would accept either,
    so the shape is compared here and the VM tier proves the insert on 6.1."""
    programs = compile_programs(DataplaneSpec(pin_dir=pin_dir, **TEST_SPEC_SIZES))
    try:
        with PinnedMaps.open(pin_dir, create_control_maps=True) as maps:
            maps.swap_table(7, [1] * TEST_SPEC_SIZES["maglev_size"], digest=1)
            template_fd = bpfsys.obj_get(pin_dir / abi.MAGLEV_TEMPLATE_FILE)
            inner_fd = bpfsys.map_fd_by_id(maps.get("maglev_outer", 7))
            try:
                template, inner = bpfsys.map_shape(template_fd), bpfsys.map_shape(inner_fd)
            finally:
                os.close(template_fd)
                os.close(inner_fd)
            assert template.btf_id != 0, "bcc created the template with type information"
            # Alike in all but max_entries, which BPF_F_INNER_MAP lets each table choose.
            assert inner == replace(template, max_entries=TEST_SPEC_SIZES["maglev_size"] + 1)
            assert template.flags == bpfsys.BPF_F_INNER_MAP | bpfsys.BPF_F_MMAPABLE
            maps.swap_table(8, [2] * 126 + [3], digest=2)
            assert maps.read_table(8) == [2] * 126 + [3]
            # What the programs see (element by element, not through mmap): the size
            # word, then the slots.
            small_fd = bpfsys.map_fd_by_id(maps.get("maglev_outer", 8))
            try:
                seen = []
                for index in (0, 1, 127):
                    value = ctypes.c_uint32()
                    assert bpfsys.map_lookup(small_fd, ctypes.c_uint32(index), value)
                    seen.append(value.value)
                assert seen == [127, 2, 3]
                assert bpfsys.map_shape(small_fd).max_entries == 128
            finally:
                os.close(small_fd)
            cap = TEST_SPEC_SIZES["maglev_size"]
            with pytest.raises(ValueError, match=f"a Maglev table of {cap + 2} slots, the pinned template "
                                                 f"allows at most {cap}"):
                maps.swap_table(9, [1] * (cap + 2), digest=3)
            assert maps.get("maglev_outer", 9) is None
    finally:
        del programs


def test_a_template_of_another_size_is_refused(pin_dir):
    programs = compile_programs(DataplaneSpec(pin_dir=pin_dir, **TEST_SPEC_SIZES))
    del programs
    other = dict(TEST_SPEC_SIZES, maglev_size=251)
    with pytest.raises(PinnedMapMismatch, match=r"maglev_template_v2: the pinned Maglev template holds \d+ slots, "
                                                r"this build expects 251"):
        check_pinned_maps(DataplaneSpec(pin_dir=pin_dir, **other))


def test_an_upgrade_unpins_the_maps_of_older_layouts_and_nothing_else(pin_dir):
    """An older build's maps (e.g. maglev_v2 after the move to maglev_v3) are unpinned once
    the new programs run; this build's maps and files that are not ours stay."""
    current = ["maglev_v3", "ct_fwd_v2", abi.MAGLEV_TEMPLATE_FILE, "maglev_digest_v1"]
    older = ["maglev_v2", "maglev_template_v1", "frags_v1", "ct_fwd_v1"]
    foreign = ["someone_elses_v1", "maglev_backup"]
    pin_dir.mkdir()
    for name in current + older + foreign:
        fd = bpfsys.map_create(bpfsys.MAP_TYPE_ARRAY, name, 4, 4, 1)
        try:
            bpfsys.obj_pin(fd, pin_dir / name)
        finally:
            os.close(fd)
    assert remove_superseded_pins(pin_dir) == sorted(older)
    assert sorted(p.name for p in pin_dir.iterdir()) == sorted(current + foreign)
    assert remove_superseded_pins(pin_dir) == []


# -- the agent's loading: a compiler child process and programs pinned per build -----------

def _ids(programs) -> list[tuple[int, str]]:
    return [(info.id, info.tag) for info in
            (bpfsys.prog_info(fd) for fd in (programs.xdp_fd, programs.tc_ingress_fd, programs.tc_egress_fd))]


def _program_pins(pin_dir: Path) -> list[str]:
    return sorted(p.name for p in pin_dir.iterdir() if p.name.startswith("prog_"))


def _no_compile(spec):
    raise AssertionError("compiled although this build's programs are pinned")


def test_a_second_start_reuses_the_pinned_programs(pin_dir, monkeypatch):
    spec = DataplaneSpec(pin_dir=pin_dir, **TEST_SPEC_SIZES)
    first = load_programs(spec)
    try:
        assert not first.reused
        assert _program_pins(pin_dir) == sorted(p.name for p in program_pins(pin_dir, first.build))
        monkeypatch.setattr(compiler, "compile_in_child", _no_compile)
        second = load_programs(spec)
        try:
            assert second.reused and second.build == first.build
            assert _ids(second) == _ids(first)  # the very programs, not a compile of the same code
            assert [info.name for info in map(bpfsys.prog_info, (second.xdp_fd, second.tc_ingress_fd))] == \
                ["xdp_lb", "tc_ingress"]
        finally:
            second.close()
    finally:
        first.close()


def test_a_changed_build_recompiles_and_its_start_unpins_the_old_programs(pin_dir, monkeypatch):
    spec = DataplaneSpec(pin_dir=pin_dir, **TEST_SPEC_SIZES)
    old = load_programs(spec)
    old_pins = _program_pins(pin_dir)
    monkeypatch.setattr(buildid, "bcc_version", lambda: "99.0.0")  # as after a bcc upgrade
    new = load_programs(spec)
    try:
        assert not new.reused and new.build != old.build
        assert {i for i, _ in _ids(new)}.isdisjoint(i for i, _ in _ids(old))
        assert _program_pins(pin_dir) == sorted(old_pins + [p.name for p in program_pins(pin_dir, new.build)])
        # What the agent does once the new programs are attached:
        assert remove_superseded_pins(pin_dir, new.build) == old_pins
        assert _program_pins(pin_dir) == sorted(p.name for p in program_pins(pin_dir, new.build))
        assert remove_superseded_pins(pin_dir, new.build) == []
    finally:
        old.close()
        new.close()


@pytest.mark.parametrize("unpinned", [abi.PINNED_MAPS["ct_fwd"][0], abi.MAGLEV_TEMPLATE_FILE])
def test_programs_compiled_with_a_map_no_longer_pinned_are_not_reused(pin_dir, unpinned):
    """A program holds the maps it was loaded with; if one was unpinned since, this start
    pins a new one, which a reused program would never read. (The template: the compile
    creates it, the agent makes its tables from it.)"""
    spec = DataplaneSpec(pin_dir=pin_dir, **TEST_SPEC_SIZES)
    first = load_programs(spec)
    first.close()
    (pin_dir / unpinned).unlink()
    second = load_programs(spec)
    try:
        assert not second.reused
        assert (pin_dir / unpinned).exists()
        held = loader.held_maps([bpfsys.prog_info(second.xdp_fd)])
        assert ("ct_fwd", loader.pinned_map_ids(pin_dir)["ct_fwd"]) in held
        assert _program_pins(pin_dir) == sorted(p.name for p in program_pins(pin_dir, second.build))
        third = load_programs(spec)  # and the recompiled programs are reused in turn
        assert third.reused and _ids(third) == _ids(second)
        third.close()
    finally:
        second.close()


def test_a_compile_error_in_the_child_is_a_clear_error_with_clangs_messages(capfd):
    """bcc cannot pin its maps outside bpffs: clang reports each map access as an error."""
    not_bpffs = Path(f"/tmp/xgldr{secrets.token_hex(3)}")
    try:
        with pytest.raises(CompileError, match=r"bcc could not compile or load bpf/xdp_lb.c .*its own messages "
                                               r"are above"):
            load_programs(DataplaneSpec(pin_dir=not_bpffs, **TEST_SPEC_SIZES))
        assert "error: bpf_table frontends failed to open" in capfd.readouterr().err
        assert not list(not_bpffs.glob("prog_*"))
    finally:
        shutil.rmtree(not_bpffs, ignore_errors=True)


_LOAD_AND_SHOW_MAPPINGS = """
import json, sys
from pathlib import Path
from ctl.dataplane.loader import DataplaneSpec, load_programs
programs = load_programs(DataplaneSpec(pin_dir=Path(sys.argv[1]), **json.loads(sys.argv[2])))
maps = Path("/proc/self/maps").read_text().splitlines()
print(json.dumps({"reused": programs.reused, "bcc_imported": "bcc" in sys.modules,
                  "mapped": sorted({line.split()[-1] for line in maps
                                    if any(lib in line for lib in ("libbcc", "libclang", "libLLVM"))})}))
"""


def test_the_loading_process_never_maps_bcc_or_clang(pin_dir):
    """In a fresh process (pytest has imported bcc for the other tests), both when it
    compiles (in its child) and when it reuses the pins."""
    seen = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _LOAD_AND_SHOW_MAPPINGS, str(pin_dir),
                              json.dumps(TEST_SPEC_SIZES)], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        seen.append(json.loads(out.stdout))
    assert seen == [{"reused": False, "bcc_imported": False, "mapped": []},
                    {"reused": True, "bcc_imported": False, "mapped": []}]


def test_tables_swapped_in_several_chunks_all_arrive(pin_dir, monkeypatch):
    """swap_tables builds a chunk of inner maps, then updates the outer map once per
    chunk (each update of a map of maps waits for an RCU grace period): every table and
    digest of every chunk lands, the last chunk a short one."""
    from ctl.dataplane import pinned

    monkeypatch.setattr(pinned, "_SWAP_CHUNK", 2)
    programs = compile_programs(DataplaneSpec(pin_dir=pin_dir, **TEST_SPEC_SIZES))
    try:
        with PinnedMaps.open(pin_dir, create_control_maps=True) as maps:
            tables = [(service_id, [service_id] * 7 + [service_id + 100], 1000 + service_id)
                      for service_id in range(1, 6)]
            maps.swap_tables(tables)
            for service_id, slots, _ in tables:
                assert maps.read_table(service_id) == slots
            assert maps.table_digests() == {service_id: digest for service_id, _, digest in tables}
    finally:
        del programs

