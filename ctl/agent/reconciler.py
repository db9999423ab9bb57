"""The single apply point: a load result in, the data path and statuses out.

Level-triggered: every reconcile computes the whole desired state from the snapshot
(an edit of routes, Services or EndpointSlices recomputes only what it touches, with
the same result, ``ctl.translate.incremental``) and lets the planner write only the
difference. Bad input never reaches the kernel:
if the new snapshot has problems, or its desired state cannot be programmed, the last
good state keeps serving and the problems are reported. Neither does a defect: an
exception inside a reconcile is reported like any other problem, never the end of the
agent."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from ctl.model import DesiredState
from ctl.dataplane.plan import Plan, PlanError
from ctl.sources import LoadResult
from ctl.translate import ObjectStatus, TranslateConfig, Translation
from ctl.translate.incremental import Translator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileOutcome:
    applied: bool  # the data path now reflects this input
    problems: tuple[str, ...]  # why not, when it does not
    writes: int  # map writes the plan needed
    seconds: float


@dataclass
class AgentState:
    """What the agent knows; read by the HTTP API (replaced whole, never mutated)."""

    translation: Translation | None = None
    problems: tuple[str, ...] = ()
    # Objects of kinds the agent does not read, named so that none vanishes unnoticed.
    ignored: tuple[str, ...] = ()
    last_outcome: ReconcileOutcome | None = None
    reconciles: int = 0
    errors: int = 0
    ready: bool = False


@dataclass
class Reconciler:
    program: Callable[[DesiredState], Plan]  # the data path's writer (an effect)
    config: TranslateConfig
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    state: AgentState = field(default_factory=AgentState)
    # Serves an applied translation to Envoy and returns it with Envoy's answers so far
    # in its statuses (ctl.agent.l7); those answers arrive later too, under `lock`.
    publish_l7: Callable[[Translation], Translation] | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    translator: Translator = field(default_factory=Translator)

    def reconcile(self, loaded: LoadResult) -> ReconcileOutcome:
        started = time.perf_counter()
        problems = tuple(str(p) for p in loaded.problems)
        writes = 0
        translation = None
        if not problems:
            try:
                previous = self.state.translation.statuses if self.state.translation else ()
                translation = self.translator.translate(loaded.snapshot, replace(self.config, now=self.clock()), previous)
                writes = len(self.program(translation.desired).ops)
            except PlanError as error:
                problems = (f"cannot program the data path: {error}",)
            except OSError as error:
                problems = (f"writing BPF maps failed: {error}",)
            except Exception as error:  # noqa: BLE001 - a defect must not end the agent
                log.exception("reconcile failed", extra={"event": "reconcile_failed"})
                problems = (f"internal error while reconciling (a defect; please report it): {error!r}",)
        if problems:
            self.translator.forget()  # the next translation carries from what is applied
        outcome = ReconcileOutcome(not problems, problems, writes, time.perf_counter() - started)
        with self.lock:
            if translation is not None and not problems and self.publish_l7 is not None:
                try:
                    translation = self.publish_l7(translation)
                except Exception:  # noqa: BLE001 - the kernel is programmed; L7 waits for the next change
                    log.exception("serving the L7 configuration failed", extra={"event": "l7_publish_failed"})
            self._record(outcome, translation if not problems else None, tuple(str(i) for i in loaded.ignored))
        return outcome

    def translate_ahead(self, loaded: LoadResult) -> None:
        """Translates `loaded` before its reconcile, e.g. while the programs load at a
        start: the reconcile of the same input then reuses this pass (the translator's
        edit of nothing). Records, programs and reports nothing; input with problems,
        or a translation that fails, is left to the reconcile, which reports it."""
        if loaded.problems:
            return
        previous = self.state.translation.statuses if self.state.translation else ()
        try:
            self.translator.translate(loaded.snapshot, replace(self.config, now=self.clock()), previous)
        except Exception:  # noqa: BLE001 - the reconcile meets it again and reports it
            self.translator.forget()

    def _record(self, outcome: ReconcileOutcome, translation: Translation | None, ignored: tuple[str, ...]) -> None:
        state = self.state
        for warning in ignored:
            if warning not in state.ignored:
                log.warning("object not read", extra={"event": "ignored", "object": warning})
        self.state = AgentState(
            translation=translation or state.translation,
            problems=outcome.problems,
            ignored=ignored,
            last_outcome=outcome,
            reconciles=state.reconciles + 1,
            errors=state.errors + (0 if outcome.applied else 1),
            ready=state.ready or outcome.applied,
        )
        if outcome.applied:
            log.info("reconciled", extra={"event": "reconciled", "writes": outcome.writes,
                                          "seconds": round(outcome.seconds, 4)})
        else:
            for problem in outcome.problems:
                log.error("rejected input, last good state keeps serving",
                          extra={"event": "rejected", "problem": problem})

    @property
    def statuses(self) -> tuple[ObjectStatus, ...]:
        return self.state.translation.statuses if self.state.translation else ()
