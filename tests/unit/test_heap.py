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


def test_the_full_pass_can_wait_for_an_idle_moment() -> None:
    collector = Collector(full_every=2, full_when_idle=True)
    with collector.paused():
        node = _Node()
    frozen = weakref.ref(node)
    del node
    with collector.paused():
        pass
    assert frozen() is not None and collector.full_due  # due, not done inside the reconciles
    collector.idle()
    assert frozen() is None and not collector.full_due
