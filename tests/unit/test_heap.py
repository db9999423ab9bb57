"""The agent's collector policy around a reconcile: full passes kept out of it, garbage
cycles still freed, survivors frozen, frozen cycles freed by the periodic full pass."""

from __future__ import annotations

import gc
import weakref

import pytest

from ctl.agent.heap import Collector


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


@pytest.fixture(autouse=True)
def _unfrozen():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_older_generations_wait_during_the_unit_and_thresholds_come_back() -> None:
    before = gc.get_threshold()
    with Collector().paused():
        inside = gc.get_threshold()
    assert inside[0] == before[0] and inside[1] > 1_000_000 and inside[2] > 1_000_000
    assert gc.get_threshold() == before


def test_a_cycle_dropped_during_the_unit_is_freed_and_survivors_are_frozen() -> None:
    collector = Collector()
    with collector.paused():
        dropped = weakref.ref(_Node())
        kept = _Node()
    assert dropped() is None
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(kept) and kept.me is kept


def test_a_frozen_cycle_is_freed_by_the_periodic_full_pass() -> None:
    collector = Collector(full_every=3)
    with collector.paused():
        node = _Node()
    frozen = weakref.ref(node)
    del node
    with collector.paused():
        pass
    assert frozen() is not None  # frozen: young collections do not see it
    with collector.paused():
        pass
    assert frozen() is None  # the third pass unfroze and collected everything


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _frozen_cycle(collector: Collector) -> weakref.ref:
    """A cycle that becomes garbage after it was frozen: only a full pass frees it."""
    with collector.paused():
        node = _Node()
    frozen = weakref.ref(node)
    del node
    return frozen


def test_the_full_pass_waits_for_a_quiet_moment() -> None:
    clock = _Clock()
    collector = Collector(full_every=2, full_when_idle=True, quiet=10, clock=clock)
    frozen = _frozen_cycle(collector)
    with collector.paused():
        pass
    assert frozen() is not None and collector.full_due  # due, not done inside the reconciles
    clock.now += 9
    collector.idle()
    assert frozen() is not None and collector.full_due, "ran while edits came less than `quiet` apart"
    clock.now += 1
    collector.idle()
    assert frozen() is None and not collector.full_due


def test_an_overdue_full_pass_runs_at_the_first_idle_moment() -> None:
    """Edits that never leave a quiet spell: the pass runs anyway once ``overdue``
    units have passed since the last one."""
    clock = _Clock()
    collector = Collector(full_every=2, full_when_idle=True, quiet=10, overdue=4, clock=clock)
    frozen = _frozen_cycle(collector)
    for unit in range(2, 5):
        with collector.paused():
            pass
        clock.now += 1
        if unit < 4:
            collector.idle()
            assert frozen() is not None and collector.full_due, f"ran after {unit} units, edits a second apart"
    collector.idle()
    assert frozen() is None and not collector.full_due
