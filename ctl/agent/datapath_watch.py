"""Two things the agent watches beside its manifests, each in its own thread:

* routes, neighbours and links (netlink): any change bumps the FIB generation, so that
  flows look their next hop up again once instead of using the one they cached; a link
  change also unmarks interfaces in peer_devs that no longer have their peer in another
  namespace (gone, or the peer moved here), to which a peer redirect would be dropped;
* SNAT exhaustion (the data path's DROP_SNAT_EXHAUSTED counter): logged once per
  interval while it grows, so a pool that runs dry is never silent (it is also the
  metric xdpgw_drops{reason="snat_exhausted"}).

The decisions are pure functions; the threads only read, wait and write."""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ctl.dataplane import abi
from ctl.dataplane.pinned import PinnedMaps
from ctl.dataplane.writer import bump_generation

log = logging.getLogger(__name__)

# rtnetlink message types that can change where a flow's packets go.
RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
FORWARDING_EVENTS = frozenset({RTM_NEWLINK, RTM_DELLINK, RTM_NEWROUTE, RTM_DELROUTE,
                               RTM_NEWNEIGH, RTM_DELNEIGH})


def changes_forwarding(message_types: Iterable[int]) -> bool:
    """Whether a batch of rtnetlink messages may have changed a next hop."""
    return any(t in FORWARDING_EVENTS for t in message_types)


def changes_links(message_types: Iterable[int]) -> bool:
    return any(t in (RTM_NEWLINK, RTM_DELLINK) for t in message_types)


def unmark_stale_peers(maps: PinnedMaps) -> list[int]:
    """Removes the peer_devs marks of interfaces (in the calling thread's namespace)
    whose peer is no longer in another namespace; returns their ifindexes."""
    from ctl.dataplane.loader import has_peer_elsewhere

    stale = [ifindex for ifindex in maps.keys("peer_devs") if not has_peer_elsewhere(ifindex)]
    for ifindex in stale:
        maps.delete("peer_devs", ifindex)
    return stale


@dataclass(frozen=True)
class ExhaustionReport:
    dropped: int        # SYNs/datagrams dropped for want of a SNAT port since the last report
    total: int


def exhaustion_report(previous: int | None, current: int) -> ExhaustionReport | None:
    """A report when the counter grew since the last look (not on the first look:
    drops from before the agent started were reported by its predecessor)."""
    if previous is None or current <= previous:
        return None
    return ExhaustionReport(current - previous, current)


def watch_routes(pin_dir: Path, stop: threading.Event,
                 on_bump: Callable[[int], None] | None = None,
                 on_listening: Callable[[], None] | None = None) -> None:
    """Bumps generations[GEN_FIB] after every batch of routing changes in the calling
    thread's network namespace, until `stop`."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.rtnl import (RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_LINK,
                                       RTMGRP_NEIGH)

    groups = RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
    with IPRoute() as ipr:
        ipr.bind(groups=groups)
        if on_listening:
            on_listening()
        while not stop.is_set():
            ready, _, _ = select.select([ipr.fileno()], [], [], 0.5)
            if not ready:
                continue
            types = [m["header"]["type"] for m in ipr.get()]
            if changes_forwarding(types):
                with PinnedMaps.open(pin_dir) as maps:
                    if changes_links(types) and (stale := unmark_stale_peers(maps)):
                        log.info("interfaces no longer redirect to a peer namespace",
                                 extra={"event": "peer_devs", "unmarked": stale})
                    gen = bump_generation(maps, abi.Gen.FIB)
                log.debug("routing changed: next hops will be looked up again",
                          extra={"event": "fib_generation", "generation": gen})
                if on_bump:
                    on_bump(gen)


def watch_snat_exhaustion(pin_dir: Path, stop: threading.Event, interval: float = 10.0) -> None:
    """Logs a warning at most once per `interval` while SNAT exhaustion drops grow."""
    previous: int | None = None
    while True:
        try:
            with PinnedMaps.open(pin_dir) as maps:
                current = maps.percpu_sum("reasons", int(abi.Reason.DROP_SNAT_EXHAUSTED))
        except (FileNotFoundError, OSError):
            current = previous or 0
        report = exhaustion_report(previous, current)
        if report:
            log.warning(
                "SNAT ports exhausted: %d new flows dropped in the last %.0f s (%d in all); "
                "add SNAT addresses (--snat-address, or the Gateway's "
                "xdp-gateway.io/snat-addresses annotation) or widen the port range",
                report.dropped, interval, report.total,
                extra={"event": "snat_exhausted", "dropped": report.dropped, "total": report.total})
        previous = current
        if stop.wait(interval):
            return


def start(target: Callable[..., None], *args, **kwargs) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True,
                              name=target.__name__)
    thread.start()
    return thread
