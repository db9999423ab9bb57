"""The chart rendered by Helm's own engine (scripts/render_manifests.py), with the
default values and with non-default ones."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_manifests", ROOT / "scripts" / "render_manifests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def renderer() -> ModuleType:
    try:
        import helm_python  # noqa: F401
    except ImportError:
        pytest.skip("needs helm-python-sdk (Helm's library; the dev extra, scripts/setup.sh)")
    return _load_renderer()


# Non-default values: the optional parts switched the other way, several interfaces.
CUSTOM_VALUES = {
    "dataplane": {"interfaces": ["ens5", "ens6"], "nat": "dnat", "attach": "tc",
                  "addresses": ["192.0.2.10", "2001:db8::10"], "maglevSize": 65521, "ctSize": 1048576},
    "l7": {"enabled": False},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "gatewayClass": {"name": "kernel-l4"},
    "tolerations": [{"operator": "Exists"}],
    "image": {"repository": "registry.example/xdp-gateway", "tag": "v9"},
}


@pytest.fixture(scope="session")
def default_objects(renderer) -> list[dict]:
    return renderer.documents(renderer.render())


@pytest.fixture(scope="session")
def custom_objects(renderer) -> list[dict]:
    return renderer.documents(renderer.render(CUSTOM_VALUES, release="edge", namespace="net-system"))


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def bpf_missing() -> str | None:
    """Why BPF programs cannot be loaded here, or None."""
    if os.geteuid() != 0:
        return "needs root (loads BPF programs)"
    if not os.path.ismount("/sys/fs/bpf"):
        return "needs bpffs mounted at /sys/fs/bpf (scripts/setup.sh mounts it)"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "needs bcc (python3-bpfcc, linked into the venv by scripts/setup.sh)"
    return None
