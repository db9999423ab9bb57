"""Every header of bpf/lib includes what it uses: each compiles alone through bcc, with
an implicit function declaration an error (C would otherwise only warn and the call
would fail at load). lb.h, which includes them all, is what the loader compiles."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from ctl.dataplane.headers import bcc_header_flags
from ctl.dataplane.loader import DataplaneSpec
from ctl.dataplane.source import BPF_DIR, expand_includes
from lab.harness import TEST_SPEC_SIZES, missing_requirements

pytestmark = pytest.mark.packet

HEADERS = sorted(p.name for p in (BPF_DIR / "lib").glob("*.h") if p.name != "lb.h")


@pytest.fixture
def pin_dir():
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    path = Path(f"/sys/fs/bpf/xghdr{secrets.token_hex(3)}")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("header", HEADERS)
def test_header_compiles_alone(header: str, pin_dir: Path, tmp_path: Path) -> None:
    from bcc import BPF

    entry = tmp_path / "alone.c"
    entry.write_text(f'#define LB_HOOK_XDP 1\n#include "{BPF_DIR / "lib" / header}"\n')
    flags = DataplaneSpec(pin_dir=pin_dir, **TEST_SPEC_SIZES).cflags() + bcc_header_flags()
    module = BPF(text=expand_includes(entry).encode(), cflags=[*flags, "-Werror=implicit-function-declaration"])
    module.cleanup()


def test_header_list_is_complete() -> None:
    assert {"structs.h", "maps.h", "conntrack.h", "icmp.h", "nat.h"} <= set(HEADERS)
