"""Loader behaviour that needs a real kernel: pinned maps of another shape are refused
with a message that names the map, instead of being reused blindly."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from ctl.dataplane.loader import DataplaneSpec, PinnedMapMismatch, check_pinned_maps, compile_programs

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
