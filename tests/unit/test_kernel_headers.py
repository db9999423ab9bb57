"""Choosing kernel headers for bcc: the running kernel's when present, else the newest
complete Debian pair the image carries (tested on directory trees made here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ctl.dataplane.headers import (BCC_KERNEL_SOURCE, KernelHeaders, NoKernelHeaders,
                                   bcc_header_flags, find_carried_headers, has_headers)

MACHINE = os.uname().machine
SUFFIX = {"x86_64": "amd64", "aarch64": "arm64"}.get(MACHINE)
pytestmark = pytest.mark.skipif(SUFFIX is None, reason=f"no Debian header layout known for {MACHINE}")


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")


def _debian_pair(root: Path, version: str, *, complete: bool = True) -> None:
    _touch(root / f"linux-headers-{version}-{SUFFIX}" / "include/generated/autoconf.h")
    if complete:
        _touch(root / f"linux-headers-{version}-common" / "include/linux/kconfig.h")


def test_newest_complete_pair_is_chosen(tmp_path):
    _debian_pair(tmp_path, "6.1.0-9")
    _debian_pair(tmp_path, "6.1.0-57")
    _debian_pair(tmp_path, "6.1.0-60", complete=False)  # arch tree without its common tree
    found = find_carried_headers(MACHINE, tmp_path)
    assert found is not None
    assert found.source == tmp_path / "linux-headers-6.1.0-57-common"
    assert found.build == tmp_path / f"linux-headers-6.1.0-57-{SUFFIX}"


def test_no_headers_and_unknown_machines(tmp_path):
    assert find_carried_headers(MACHINE, tmp_path) is None
    _debian_pair(tmp_path, "6.1.0-57")
    assert find_carried_headers("s390x", tmp_path) is None


def test_arch_tree_generated_dirs_become_include_paths():
    headers = KernelHeaders(Path("/src/common"), Path("/src/amd64"), "x86")
    assert headers.cflags() == [
        "-I/src/amd64/arch/x86/include/generated",
        "-I/src/amd64/include",
        "-I/src/amd64/arch/x86/include/generated/uapi",
        "-I/src/amd64/include/generated/uapi",
    ]


def test_running_kernel_with_headers_needs_nothing(tmp_path):
    release = tmp_path / "modules" / os.uname().release
    _touch(release / "build/include/generated/autoconf.h")
    assert not has_headers(release)
    _touch(release / "source/include/linux/kconfig.h")
    assert has_headers(release)
    _debian_pair(tmp_path / "src", "6.1.0-57")
    env: dict[str, str] = {}
    assert bcc_header_flags(env, tmp_path / "modules", tmp_path / "src") == []
    assert env == {}


def test_headerless_kernel_points_bcc_at_carried_headers(tmp_path):
    _debian_pair(tmp_path / "src", "6.1.0-57")
    env: dict[str, str] = {}
    flags = bcc_header_flags(env, tmp_path / "modules", tmp_path / "src")
    assert env[BCC_KERNEL_SOURCE] == str(tmp_path / "src/linux-headers-6.1.0-57-common")
    assert flags and all(f.startswith(f"-I{tmp_path}/src/linux-headers-6.1.0-57-{SUFFIX}") for f in flags)
    # A second compile in the same process still gets the arch tree's include paths.
    assert bcc_header_flags(env, tmp_path / "modules", tmp_path / "src") == flags


def test_operators_own_kernel_source_is_left_alone(tmp_path):
    _debian_pair(tmp_path / "src", "6.1.0-57")
    env = {BCC_KERNEL_SOURCE: "/opt/my-kernel"}
    assert bcc_header_flags(env, tmp_path / "modules", tmp_path / "src") == []
    assert env == {BCC_KERNEL_SOURCE: "/opt/my-kernel"}


def test_no_headers_anywhere_is_a_clear_error(tmp_path):
    with pytest.raises(NoKernelHeaders, match=r"has no headers in .* none are installed in .*linux-headers-amd64"):
        bcc_header_flags({}, tmp_path / "modules", tmp_path / "src")
