"""The agent's data-path watchers: which netlink messages bump the FIB generation, and
when SNAT exhaustion is reported."""

from __future__ import annotations

from ctl.agent import datapath_watch as w


def test_route_neighbour_and_link_changes_move_next_hops():
    for t in (w.RTM_NEWROUTE, w.RTM_DELROUTE, w.RTM_NEWNEIGH, w.RTM_DELNEIGH, w.RTM_NEWLINK, w.RTM_DELLINK):
        assert w.changes_forwarding([t])
    assert not w.changes_forwarding([20, 21])  # RTM_NEWADDR, RTM_DELADDR
    assert not w.changes_forwarding([])


def test_exhaustion_is_reported_when_the_counter_grows_and_only_then():
    assert w.exhaustion_report(None, 50) is None, "drops from before this agent are not news"
    assert w.exhaustion_report(50, 50) is None
    assert w.exhaustion_report(50, 80) == w.ExhaustionReport(dropped=30, total=80)
