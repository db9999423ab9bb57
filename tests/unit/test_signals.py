"""The agent stops on SIGTERM whenever it arrives, and dumps its threads on SIGUSR1.

Each child process installs the agent's handlers and spins on `stop.wait(0)`, the
agent's idle loop made as hot as it gets, so a SIGTERM very likely lands while the
main thread holds the event's lock: a handler calling `stop.set()` itself hangs more
than half of these children for good."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

CHILD = """
import sys, threading
from ctl.agent.signals import stop_on_signals
stop = threading.Event()
stop_on_signals(stop)
print("ready", flush=True)
while not stop.wait(0):
    pass
print("stopped", flush=True)
"""
CHILDREN = 30


def _child() -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    return child


def test_sigterm_always_stops_the_agent_loop():
    hung = 0
    for _ in range(CHILDREN):
        child = _child()
        time.sleep(0.01)
        child.send_signal(signal.SIGTERM)
        try:
            out, _ = child.communicate(timeout=5)
            assert out == "stopped\n"
        except subprocess.TimeoutExpired:
            hung += 1
            child.kill()
            child.communicate()
    assert hung == 0, f"{hung} of {CHILDREN} loops never saw SIGTERM"


def test_sigusr1_writes_every_threads_stack_and_keeps_running():
    child = _child()
    try:
        child.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=20)
    finally:
        child.kill()
    assert out == "stopped\n"
    assert "Current thread" in err and "<module>" in err, err
