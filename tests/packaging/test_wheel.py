"""The product leaves the workspace: the wheel carries what it needs, and its runtime
dependencies are what it imports.

The wheel is built from a copy of the checkout (an in-tree build would write build/ into
it) and installed without dependencies into a fresh venv. The dependencies come from the
project's venv through a .pth line, which only appends that directory to sys.path: the
wheel's own site-packages comes first and the editable install's finder (a .pth in the
project venv) is never run, so `ctl` is imported from the wheel. gwctl then runs from a
directory with no ../shared beside it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("ctl", "l7sidecar")
# Linked in from Debian (python3-bpfcc), not a PyPI distribution.
SYSTEM_MODULES = {"bcc"}
_IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                  ".pytest_cache", "out", "tests", "bench", "docs")


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XDPGW_GATEWAY_API_CRDS", "PYTHONPATH")}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from this checkout; returns its python."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=_IGNORED)
    built = run(sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                "-w", root / "dist", source)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    license_warnings = [line for line in (built.stdout + built.stderr).splitlines()
                        if "warning" in line.lower() and "licen" in line.lower()]
    assert not license_warnings, license_warnings
    (wheel,) = (root / "dist").glob("xdp_gateway-*.whl")

    venv = root / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    added = run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel)
    assert added.returncode == 0, added.stderr
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    (Path(site) / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_installed_package_carries_bpf_sources_and_schemas(installed: Path, tmp_path: Path) -> None:
    probe = (
        "import json, ctl, ctl.dataplane.source as s, ctl.api.crds as c;"
        "from importlib import resources;"
        "schemas = resources.files('ctl.api').joinpath('schemas');"
        "print(json.dumps({'ctl': ctl.__file__, 'bpf': str(s.BPF_DIR), 'source': c.source(),"
        " 'files': sorted(p.name for p in s.BPF_DIR.rglob('*')),"
        " 'schemas': sorted(p.name for p in schemas.joinpath('standard').iterdir()),"
        " 'upstream': json.loads(schemas.joinpath('UPSTREAM.json').read_text())['version'],"
        " 'license': 'Apache License' in schemas.joinpath('LICENSE').read_text(),"
        " 'served': c.served_versions('TCPRoute')}))"
    )
    found = run(installed, "-c", probe, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    facts = json.loads(found.stdout)
    venv = installed.parents[1]
    assert Path(facts["ctl"]).is_relative_to(venv), f"ctl imported from {facts['ctl']}, not the wheel"
    assert Path(facts["bpf"]).is_relative_to(venv)
    assert {"xdp_lb.c", "tc_lb.c", "xdp_pass.c", "structs.h", "maps.h"} <= set(facts["files"])
    assert not {"mac_swap.c", "replay.c"} & set(facts["files"]), "bench/bpf must stay out of the wheel"
    assert facts["source"] == "package"
    assert "tcproutes.json" in facts["schemas"] and "gateways.json" in facts["schemas"]
    assert facts["upstream"] == "v1.6.1" and facts["license"]
    assert facts["served"] == ["v1", "v1alpha2"]


def test_installed_gwctl_validates_the_example_without_shared(installed: Path, tmp_path: Path) -> None:
    config = tmp_path / "standalone"
    shutil.copytree(REPO / "examples" / "standalone", config)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    assert not (workdir.parent / "shared").exists()
    gwctl = installed.parent / "gwctl"
    result = run(gwctl, "validate", "--address", "192.0.2.10", "-o", "json", config, cwd=workdir)
    assert result.returncode == 0, result.stderr
    programmed = json.loads(result.stdout)["programmed"]
    assert {s["frontend"].rpartition("/")[2] for s in programmed} == {"TCP", "UDP"}
    assert all(s["backends"] for s in programmed)
    # the same plan as the checkout's own gwctl
    checkout = run(sys.executable, "-m", "ctl.cli", "validate", "--address", "192.0.2.10", "-o", "json",
                   config, cwd=REPO)
    assert checkout.returncode == 0, checkout.stderr
    assert programmed == json.loads(checkout.stdout)["programmed"]

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "gw.yaml").write_text("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
                                    "metadata: {name: g}\nspec: {gatewayClassName: c, listeners: []}\n")
    refused = run(gwctl, "validate", broken, cwd=workdir)
    assert refused.returncode == 1
    assert "Gateway default/g" in refused.stderr and "Traceback" not in refused.stderr


def _third_party_imports() -> set[str]:
    found: set[str] = set()
    for package in PRODUCT:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.partition(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.partition(".")[0])
    return found - set(sys.stdlib_module_names) - set(PRODUCT) - SYSTEM_MODULES - {"__future__"}


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_runtime_dependencies_are_what_the_product_imports() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    declared_names = {_normalised(re.match(r"[A-Za-z0-9._-]+", d).group()) for d in declared}
    distributions = packages_distributions()
    imported = {}
    for module in _third_party_imports():
        assert module in distributions, f"the product imports {module}, which no installed distribution provides"
        imported[module] = {_normalised(d) for d in distributions[module]}
    unmet = {m: d for m, d in imported.items() if not d & declared_names}
    assert not unmet, f"imported by the product but not runtime dependencies: {unmet}"
    unused = declared_names - set().union(*imported.values())
    assert not unused, f"runtime dependencies the product never imports: {sorted(unused)}"
