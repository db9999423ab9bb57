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
every ``FULL_EVERY`` units. A full pass after every reconcile would walk all of its
survivors for almost nothing: after a cold start at 10,000 routes it took 1.2 CPU
seconds and found 1,943 garbage objects (measured by hand on 2026-11-30).

The agent (``full_when_idle``) leaves that pass to an idle moment, and then waits for a
quiet one: no unit of work for QUIET_SECONDS. The pass cannot be interrupted, and an
edit that arrives meanwhile waits for all of it. Measured at 10,000 routes x 8 backends
with edits timed into the agent's read-backs (``bench.control``'s
edit-to-packet-in-read-back-10000, a shared machine at load average 4.3, 2026-11-30):
each pass took 1.7-4.1 s, walked about 950,000 frozen objects and found 20,373-21,051
garbage objects, some 320 per unit (edits and read-back attempts both count). Too
little to be worth a second-long pause at the first idle moment, when the next edit
may be on its way. Under edits that never leave a quiet spell the pass runs anyway at
the first idle moment after OVERDUE_EVERY units, so the frozen garbage stays within some
80,000 objects (a few MiB). What remains: an edit that arrives during a pass waits
for it, which needs a quiet spell of 10 s just before it, or a steady stream of edits
hitting the pass that comes once per OVERDUE_EVERY units. Growth as the trigger
(gc.get_freeze_count()) would cost a walk of every frozen object to measure (0.25 s at
5 million), and freezing cannot be undone in part, so the pass cannot be made cheaper
from Python.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

FULL_EVERY = 64  # units of work between full collections (frozen cycles are freed there)
# Waiting for idle (``full_when_idle``): a due pass waits until no unit of work has come
# for QUIET_SECONDS, or, under a steady trickle of edits, until it is overdue.
QUIET_SECONDS = 10.0
OVERDUE_EVERY = 4 * FULL_EVERY


class Collector:
    """Keeps full collections out of a unit of work; one unit at a time (the agent's
    loop), not thread-safe by design."""

    def __init__(self, full_every: int = FULL_EVERY, full_when_idle: bool = False,
                 quiet: float = QUIET_SECONDS, overdue: int = OVERDUE_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.full_every = full_every
        self.quiet = quiet
        self.overdue = max(overdue, full_every)
        self.clock = clock
        self.passes = 0  # units since the last full collection
        self.last_unit = clock()
        # The full pass walks everything (1.7 s at 10,000 routes on a busy machine):
        # with full_when_idle it waits for idle() (the watcher calls it while nothing
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
        ``full_when_idle``, at an ``idle`` moment)."""
        self.passes += 1
        self.last_unit = self.clock()
        gc.collect(0)
        gc.freeze()
        if self.passes >= self.full_every:
            if self.full_when_idle:
                self.full_due = True
            else:
                self._full()

    def idle(self) -> None:
        """The full pass that ``settle`` left for a quiet moment, if one is due: once no
        unit of work has come for ``quiet`` seconds, or once ``overdue`` units have
        passed since the last one (edits that never pause still get their garbage
        freed)."""
        if self.full_due and (self.clock() - self.last_unit >= self.quiet or self.passes >= self.overdue):
            self._full()

    def _full(self) -> None:
        started = time.monotonic()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.full_due = False
        self.passes = 0
        log.debug("full collection", extra={"event": "full_collection", "seconds": time.monotonic() - started,
                                            "garbage": found})
