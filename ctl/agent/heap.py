"""Keeping Python's cyclic garbage collector out of the way of a reconcile.

A reconcile at 10,000 routes creates millions of small objects (parsed manifests,
their models, the translation, the plan) that mostly live until the next one. The
collector runs a full pass whenever the heap has grown by a quarter, so a cold start
walks every live object several times over and an edit that builds a new translation
walks all of the old state again: at 10,000 routes, collections took 13.4 of the 43.4
CPU seconds of a cold load, translate and plan, 2.2 with this policy
(docs/performance-history.md, measured by hand on 2026-11-30).

So during a reconcile only the young generation is collected (short-lived cycles, such
as a parser's, are still freed at once); what survives it waits in the middle
generation instead of being promoted to a full pass. Afterwards the young generation
is collected once more and everything the reconcile left is frozen (``gc.freeze``):
later collections never walk it again. Reference counting frees frozen objects as
usual; only a reference cycle that became garbage after surviving a young collection
(or after being frozen) stays until the next full collection, which ``settle`` does
every ``FULL_EVERY`` reconciles. A full pass after every reconcile would walk all of
its survivors for almost nothing: after a cold start at 10,000 routes it took 1.2 CPU
seconds and found 1,943 garbage objects (measured by hand on 2026-11-30).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

FULL_EVERY = 64  # reconciles between full collections (frozen cycles are freed there)


class Collector:
    """Keeps full collections out of a unit of work; one unit at a time (the agent's
    loop), not thread-safe by design."""

    def __init__(self, full_every: int = FULL_EVERY, full_when_idle: bool = False) -> None:
        self.full_every = full_every
        self.passes = 0
        # The full pass walks everything (about a second at 10,000 routes): with
        # full_when_idle it waits for idle() (the watcher calls it while nothing
        # changes) instead of delaying the edit that follows the reconcile.
        self.full_when_idle = full_when_idle
        self.full_due = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        thresholds = gc.get_threshold()
        # The young generation as usual; the older ones never fill up meanwhile.
        gc.set_threshold(thresholds[0], 1 << 30, 1 << 30)
        try:
            yield
        finally:
            gc.set_threshold(*thresholds)
            self.settle()

    def settle(self) -> None:
        """Collects the young generation and freezes the survivors; every ``full_every``
        calls, a full collection of everything, frozen or not, instead (or, with
        ``full_when_idle``, at the next ``idle``)."""
        self.passes += 1
        if self.passes % self.full_every == 0:
            if self.full_when_idle:
                self.full_due = True
            else:
                gc.unfreeze()
                gc.collect()
        gc.collect(0)
        gc.freeze()

    def idle(self) -> None:
        """The full pass that ``settle`` left for a quiet moment, if one is due."""
        if self.full_due:
            self.full_due = False
            gc.unfreeze()
            gc.collect()
            gc.freeze()
