"""Kernel headers for bcc when the running kernel ships none.

bcc compiles against /lib/modules/$(uname -r)/{build,source}. Managed node images rarely
have those, and the agent's container mounts nothing of the node's /lib/modules: the
image carries Debian's headers instead (linux-headers-amd64), which serve any recent
kernel because our programs only need type definitions and the stable BPF UAPI.

Debian splits a kernel's headers into an arch tree (``linux-headers-V-amd64``: .config
and the generated headers) and a common tree (``linux-headers-V-common``: everything
else). bcc 0.26 takes one directory in BCC_KERNEL_SOURCE (it then compiles inside it as
if it were a complete tree), so we point it at the common tree and add the arch tree's
generated directories as include paths, after bcc's own, the order the kernel's
Makefile uses for a split build. Neither tree alone compiles: the common one lacks
generated/autoconf.h, the arch one include/linux/kconfig.h.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MODULES_DIR = Path("/lib/modules")
HEADERS_DIR = Path("/usr/src")
BCC_KERNEL_SOURCE = "BCC_KERNEL_SOURCE"

# uname machine -> (kernel arch directory, Debian's architecture suffix)
_ARCHES = {"x86_64": ("x86", "amd64"), "aarch64": ("arm64", "arm64")}


@dataclass(frozen=True)
class KernelHeaders:
    """A Debian header pair: the common tree bcc compiles in, the arch tree beside it."""

    source: Path  # has include/linux/kconfig.h
    build: Path  # has include/generated/autoconf.h
    arch: str  # kernel arch directory name, e.g. x86

    def cflags(self) -> list[str]:
        generated = self.build / "arch" / self.arch / "include" / "generated"
        return [
            f"-I{generated}",
            f"-I{self.build / 'include'}",
            f"-I{generated / 'uapi'}",
            f"-I{self.build / 'include' / 'generated' / 'uapi'}",
        ]


def has_headers(tree: Path) -> bool:
    """A directory bcc can compile in unaided (a complete or a Debian build/source pair)."""
    autoconf = (tree / "build" / "include" / "generated" / "autoconf.h").is_file()
    kconfig = any((tree / d / "include" / "linux" / "kconfig.h").is_file() for d in ("source", "build"))
    return autoconf and kconfig


def _version_key(name: str) -> tuple:
    return tuple(int(n) if n.isdigit() else n for n in re.split(r"[.-]", name))


def find_carried_headers(machine: str, headers_dir: Path = HEADERS_DIR) -> KernelHeaders | None:
    """The newest complete Debian header pair under headers_dir for this machine."""
    if machine not in _ARCHES:
        return None
    arch, suffix = _ARCHES[machine]
    pairs = []
    for build in headers_dir.glob(f"linux-headers-*-{suffix}"):
        version = build.name[len("linux-headers-"):-len(suffix) - 1]
        source = headers_dir / f"linux-headers-{version}-common"
        if ((build / "include" / "generated" / "autoconf.h").is_file()
                and (source / "include" / "linux" / "kconfig.h").is_file()):
            pairs.append((_version_key(version), KernelHeaders(source, build, arch)))
    return max(pairs, key=lambda p: p[0])[1] if pairs else None


class NoKernelHeaders(FileNotFoundError):
    """Neither the running kernel's headers nor carried ones: bcc cannot compile (an
    OSError, so gwctl run reports it as one line)."""


def bcc_header_flags(environ: MutableMapping[str, str] = os.environ,
                     modules_dir: Path = MODULES_DIR, headers_dir: Path = HEADERS_DIR) -> list[str]:
    """Extra cflags for bcc; sets BCC_KERNEL_SOURCE in environ when the running kernel
    has no headers. Another BCC_KERNEL_SOURCE (the operator's) is left alone."""
    uname = os.uname()
    preset = environ.get(BCC_KERNEL_SOURCE)
    if preset:
        # Ours from an earlier compile in this process (or the same tree chosen by hand)
        # still needs the arch tree's include paths.
        carried = find_carried_headers(uname.machine, headers_dir)
        return carried.cflags() if carried and str(carried.source) == preset else []
    if has_headers(modules_dir / uname.release):
        return []
    carried = find_carried_headers(uname.machine, headers_dir)
    if carried is None:
        raise NoKernelHeaders(
            f"kernel {uname.release} has no headers in {modules_dir / uname.release} and none "
            f"are installed in {headers_dir} (Debian: apt-get install linux-headers-amd64); "
            f"or set {BCC_KERNEL_SOURCE}")
    log.info("running kernel has no headers: compiling against carried ones",
             extra={"event": "kernel_headers", "kernel": uname.release,
                    "source": str(carried.source), "build": str(carried.build)})
    # bcc reads this with getenv() at compile time, in this process.
    environ[BCC_KERNEL_SOURCE] = str(carried.source)
    return carried.cflags()
