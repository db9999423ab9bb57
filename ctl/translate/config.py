"""What translation needs from the agent besides the objects."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from ctl.model import IPAddress, NatMode

DEFAULT_CONTROLLER_NAME = "xdp-gateway.io/gateway-controller"


@dataclass(frozen=True, kw_only=True)
class TranslateConfig:
    # The clock, injected: lastTransitionTime of every condition that changes.
    now: datetime
    controller_name: str = DEFAULT_CONTROLLER_NAME
    # The agent's gateway addresses, used by Gateways that request none.
    addresses: tuple[IPAddress, ...] = ()
    # The SNAT source per family. In snat mode a Gateway address whose family has none
    # here cannot be served.
    snat_addresses: tuple[IPAddress, ...] = ()
    nat: NatMode = NatMode.SNAT
    # L7: proxies in front of Envoy trusted to append to X-Forwarded-For (0: never trust
    # a client-sent one), and whether TLS passthrough backends get a PROXY protocol header.
    xff_num_trusted_hops: int = 0
    passthrough_proxy_protocol: bool = False

    def snat_address(self, version: int) -> IPAddress | None:
        return next((a for a in self.snat_addresses if a.version == version), None)

    def snat_addresses_for(self, version: int) -> tuple[IPAddress, ...]:
        """Every configured SNAT source of that family (--snat-address repeated)."""
        return _of_version(self.snat_addresses, version)


# One tuple for every Service that uses them, not one each (10,000 at 10,000 routes).
@functools.lru_cache(maxsize=16)
def _of_version(addresses: tuple[IPAddress, ...], version: int) -> tuple[IPAddress, ...]:
    return tuple(a for a in addresses if a.version == version)
