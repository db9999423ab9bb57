"""The identity of a program build: what, if it changed, could change the loaded programs.

A digest of the expanded source texts, the compiler flags, the kernel release, bcc's
version and the layouts of the Python mirrors (abi.py) the programs were checked
against. Programs pinned under a name carrying it can be reused by the next start
instead of compiling again. Pure apart from reading files and uname.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Iterable
from pathlib import Path

from . import abi, abicheck
from .source import BPF_DIR, expand_includes

ENTRY_FILES = ("xdp_lb.c", "tc_lb.c")


def bcc_version() -> str:
    """bcc's version without importing bcc (which maps libbcc and clang/LLVM)."""
    spec = importlib.util.find_spec("bcc")
    if spec is None or not spec.submodule_search_locations:
        return "none"
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    except OSError:
        return "unknown"
    found = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
    return found.group(1) if found else "unknown"


def abi_layout() -> str:
    """Every mirrored key and value layout, field by field."""
    return repr([(name, abicheck.layout(key_t), abicheck.layout(value_t))
                 for name, (_, key_t, value_t) in sorted(abi.PINNED_MAPS.items())])


def digest(sources: Iterable[str], cflags: Iterable[str], kernel: str, bcc: str, layout: str) -> str:
    h = hashlib.sha256()
    for part in (*sources, "\0cflags", *cflags, "\0kernel", kernel, "\0bcc", bcc, "\0abi", layout):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def build_digest(cflags: Iterable[str]) -> str:
    """The digest of this build of bpf/ with `cflags` on this kernel."""
    return digest((expand_includes(BPF_DIR / f) for f in ENTRY_FILES), cflags, os.uname().release,
                  bcc_version(), abi_layout())
