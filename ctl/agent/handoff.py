"""The kernel side of the L7 handoff: the addresses of L7 listeners made local, so that
the stack delivers their traffic to Envoy. Apart from ``ctl.agent.l7`` because an agent
without L7 listeners still retracts what an earlier agent made local, without loading
gRPC and the Envoy protos."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from ipaddress import ip_address

from pyroute2 import IPRoute

from ctl.model import IPAddress

log = logging.getLogger(__name__)

# Routes this agent owns in the local table are tagged with this routing protocol number
# (an unassigned one, like the numbers routing daemons pick), so it finds and retracts
# exactly its own after a restart.
HANDOFF_PROTO = 0x58
LOCAL_TABLE = 255


class LocalAddresses:
    """The handoff: every L7 listener address gets a route of type `local` in the kernel's
    local table (AnyIP), so the kernel accepts, answers ARP/ND for, and delivers its
    traffic to the sockets bound to it: Envoy's listeners (freebind). The XDP program
    matches only L4 frontends (address, port, protocol) and passes everything else up
    untouched, so L4 frontends on the same address never see Envoy. Addresses already
    local (assigned to an interface) are left alone. A route rather than an address on a
    dummy link: it needs no link type the kernel may lack, and no address shows up where
    routing daemons or the SNAT address choice would pick it."""

    def ensure(self, wanted: Iterable[IPAddress]) -> None:
        wanted = {ip_address(a) for a in wanted if not ip_address(a).is_unspecified}
        with IPRoute() as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            ours = {}
            for route in ipr.get_routes(table=LOCAL_TABLE):
                if route["proto"] == HANDOFF_PROTO and route.get_attr("RTA_DST"):
                    ours[ip_address(route.get_attr("RTA_DST"))] = route["family"]
            assigned = {ip_address(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr()}
            for address in sorted(wanted - set(ours) - assigned, key=str):
                ipr.route("add", dst=f"{address}/{address.max_prefixlen}", table=LOCAL_TABLE, type="local",
                          oif=lo, proto=HANDOFF_PROTO, scope=254)
                log.info("L7 address made local", extra={"event": "l7_address", "address": str(address)})
            for address in sorted(set(ours) - wanted, key=str):
                ipr.route("del", dst=f"{address}/{address.max_prefixlen}", table=LOCAL_TABLE, type="local",
                          oif=lo, proto=HANDOFF_PROTO, scope=254)
                log.info("L7 address released", extra={"event": "l7_address_released", "address": str(address)})
