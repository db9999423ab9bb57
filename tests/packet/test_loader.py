"""Loader behaviour that needs a real kernel: pinned maps of another shape are refused
with a message that names the map, instead of being reused blindly."""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from ctl.dataplane import abi, bpfsys
from ctl.dataplane.loader import (DataplaneSpec, PinnedMapMismatch, check_pinned_maps, compile_programs,
                                  remove_superseded_pins)

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
