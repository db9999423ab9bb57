"""The identity of a program build: what, if it changed, could change the loaded programs.

A digest of the expanded source texts, the compiler flags, the kernel release, the
kernel headers compiled against, bcc's version and the layouts of the Python mirrors
(abi.py) the programs were checked against. Programs pinned under a name carrying it
can be reused by the next start instead of compiling again, and so can the program
cache's entry of that name (progcache.py). Pure apart from reading files, stat and uname.

Where the sources sit is left out (the #line directives name them relative to bpf/): the
programs' instructions do not depend on it, so two checkouts or installs of one build share
the cache. The pin directory (-DPIN_DIR) is left out too: bcc reads it from the map declarations to
find or pin each map, and it never reaches the instructions, so programs compiled for
one pin directory are the same for any other (a fresh directory may use the cache).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Iterable, Mapping
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


def digest(sources: Iterable[str], cflags: Iterable[str], kernel: str, bcc: str, layout: str,
           headers: str = "") -> str:
    h = hashlib.sha256()
    for part in (*sources, "\0cflags", *cflags, "\0kernel", kernel, "\0bcc", bcc, "\0abi", layout,
                 "\0headers", headers):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


# Files whose identity stands for a header tree's: the kernel configuration, the UAPI
# our programs use most, and the version header. A Debian headers package of the same
# kernel release rebuilt (a security update) ships them with a new mtime, so an upgrade
# of the headers alone compiles again. Cheap: a few stat calls, no hashing of the tree.
_HEADER_MARKS = ("include/generated/autoconf.h", "generated/autoconf.h", "include/uapi/linux/bpf.h",
                 "uapi/linux/bpf.h", "include/linux/kconfig.h", "include/generated/uapi/linux/version.h",
                 "generated/uapi/linux/version.h")


def headers_identity(cflags: Iterable[str], environ: Mapping[str, str] = os.environ,
                     modules_dir: Path = Path("/lib/modules")) -> str:
    """The resolved path, size and mtime of the marker files of every header tree bcc may
    compile against: BCC_KERNEL_SOURCE, the running kernel's build and source trees, and
    the include directories in `cflags` (the arch tree of carried headers)."""
    release = os.uname().release
    trees = [environ.get("BCC_KERNEL_SOURCE", ""), str(modules_dir / release / "build"),
             str(modules_dir / release / "source"),
             *(flag[2:] for flag in cflags if flag.startswith("-I"))]
    marks = []
    for tree in filter(None, trees):
        for mark in _HEADER_MARKS:
            path = Path(tree, mark)
            try:
                st = path.stat()
            except OSError:
                continue
            marks.append(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(marks)


def build_digest(cflags: Iterable[str], bpf_dir: Path = BPF_DIR) -> str:
    """The digest of this build of `bpf_dir` with `cflags` on this kernel (bcc_header_flags()
    among them, called first: it chooses the header tree)."""
    cflags = list(cflags)
    code_flags = [flag for flag in cflags if not flag.startswith("-DPIN_DIR=")]
    sources = (expand_includes(bpf_dir / f, names_under=bpf_dir) for f in ENTRY_FILES)
    return digest(sources, code_flags, os.uname().release,
                  bcc_version(), abi_layout(), headers_identity(cflags))
