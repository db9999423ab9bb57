"""Taking the gateway off this host (`gwctl down`): the programs off the interfaces, the
Envoy the agent started, the pinned maps and programs, the run directory. The program
cache stays (it is only compiled code: the next start loads from it)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ctl.dataplane import loader
from l7sidecar.envoy import RunPaths, stop_envoy


class AgentRunning(RuntimeError):
    """An agent still runs with this pin directory: it would attach everything again."""


@dataclass(frozen=True)
class DownReport:
    detached: tuple[loader.Attachment, ...]
    envoy_stopped: bool
    pins_removed: int
    pin_dir: Path
    run_dir: Path


def run_paths(pin_dir: Path, run_dir: Path | None = None) -> RunPaths:
    """The agent's private run directory: given, else /run/<name of the pin directory>."""
    return RunPaths(run_dir or Path("/run") / pin_dir.name)


def running_agent(paths: RunPaths) -> int | None:
    """The pid of the agent whose pid file is in this run directory, if it still runs."""
    try:
        pid = int(paths.agent_pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"run" in cmdline else None  # a pid reused by something else is not ours


def record_agent(paths: RunPaths) -> None:
    paths.create()
    paths.agent_pid_file.write_text(f"{os.getpid()}\n")


def forget_agent(paths: RunPaths) -> None:
    if running_agent(paths) == os.getpid():
        paths.agent_pid_file.unlink(missing_ok=True)


def take_down(pin_dir: Path, paths: RunPaths) -> DownReport:
    """Removes what the gateway of ``pin_dir`` put on this host; what is already gone
    is skipped, so it can run again after a partial failure."""
    pid = running_agent(paths)
    if pid is not None:
        raise AgentRunning(f"the agent (pid {pid}) still runs with {pin_dir}: stop it first "
                           "(it would attach its programs again)")
    # Found before the pins go: a program is ours if it holds a map pinned there.
    attachments = tuple(loader.our_attachments(pin_dir))
    for attachment in attachments:
        loader.remove_attachment(attachment)
    envoy = stop_envoy(paths)
    pins = sum(1 for path in pin_dir.rglob("*") if not path.is_dir()) if pin_dir.is_dir() else 0
    shutil.rmtree(pin_dir, ignore_errors=not pin_dir.exists())
    shutil.rmtree(paths.run_dir, ignore_errors=True)
    return DownReport(attachments, envoy, pins, pin_dir, paths.run_dir)
