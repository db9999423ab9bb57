"""How the agent learns it should stop, and how to see where it is stuck."""

from __future__ import annotations

import faulthandler
import signal
import threading


def stop_on_signals(stop: threading.Event, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Set `stop` when one of `signals` arrives; `kill -USR1` writes every thread's stack to stderr.

    The handler runs in the main thread between two bytecodes, possibly while that thread
    holds the lock inside `stop` (it spends its life in `stop.wait(...)`); `Event.set` takes
    that same lock, so calling it from the handler can deadlock the agent for good. A short
    thread sets the event instead, once the main thread lets go of the lock."""
    def handler(*_) -> None:
        threading.Thread(target=stop.set, name="stop-signal", daemon=True).start()

    for sig in signals:
        signal.signal(sig, handler)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
