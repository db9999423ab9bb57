"""The programs' load started before the rest of the agent is imported.

Loading is mostly the verifier's time in the kernel (about a second for xdp_lb, the GIL
free meanwhile), and importing the agent (pydantic models, the translator, pyroute2,
numpy, prometheus_client) is most of a second of Python: `gwctl run` starts the one
and then does the other, instead of one after the other. This module imports only
the loader, so that the load starts as early as it can."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from ctl.dataplane import loader


@dataclass(frozen=True)
class EarlyLoad:
    spec: loader.DataplaneSpec
    programs: Future[loader.Programs]


def check_read_back(interval: float, share: float) -> None:
    """AgentOptions' own check, here so that `gwctl run` makes it before anything loads."""
    if interval < 0 or not 0 < share <= 1:
        raise ValueError("the read-back interval must be >= 0 seconds and its share of the time in (0, 1]")


def check_interfaces(interfaces: tuple[str, ...]) -> None:
    """Before anything is loaded: a missing interface is an error that leaves nothing behind."""
    for name in interfaces:
        try:
            socket.if_nametoindex(name)
        except OSError:
            raise ValueError(f"interface {name!r} does not exist in this network namespace") from None


def start(spec: loader.DataplaneSpec, interfaces: tuple[str, ...]) -> EarlyLoad:
    """Starts loading `spec`'s programs (pinned, cached or compiled: loader.load_programs)
    in a thread of its own; the result, or its error, waits in the future."""
    check_interfaces(interfaces)
    programs: Future[loader.Programs] = Future()

    def load() -> None:
        if not programs.set_running_or_notify_cancel():
            return
        try:
            programs.set_result(loader.load_programs(spec))
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits for the result
            programs.set_exception(error)

    # Not a daemon: a start that fails meanwhile lets the load finish (or clean up after itself).
    threading.Thread(target=load, name="load-programs").start()
    return EarlyLoad(spec, programs)
