"""The addresses a Gateway is served on."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ctl.api import Gateway
from ctl.model import IPAddress, NatMode
from ctl.translate.config import TranslateConfig


@dataclass(frozen=True)
class AddressAssignment:
    addresses: tuple[IPAddress, ...]
    # Why the Gateway cannot be accepted (reason UnsupportedAddress), if it cannot.
    unsupported: str | None = None


def assign_addresses(gateway: Gateway, config: TranslateConfig) -> AddressAssignment:
    """spec.addresses of type IPAddress, else the agent's configured addresses.

    An IPAddress entry without a value asks us to pick: it gets the configured ones.
    Hostname, NamedAddress and custom types cannot be bound by an XDP frontend.
    """
    chosen: list[IPAddress] = []
    if not gateway.spec.addresses:
        chosen.extend(config.addresses)
    for i, requested in enumerate(gateway.spec.addresses):
        where = f"spec.addresses[{i}]"
        if requested.type != "IPAddress":
            return AddressAssignment((), f"{where}: address type {requested.type} is not supported, only IPAddress")
        if not requested.value:
            chosen.extend(config.addresses)
            continue
        try:
            chosen.append(ipaddress.ip_address(requested.value))
        except ValueError:
            return AddressAssignment((), f"{where}: \"{requested.value}\" is not an IP address")
    unique = tuple(dict.fromkeys(chosen))
    for address in unique:
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            return AddressAssignment((), f"{address} cannot be a gateway address (unspecified, multicast or loopback)")
        if config.nat is NatMode.SNAT and config.snat_address(address.version) is None:
            return AddressAssignment(
                (), f"{address}: no IPv{address.version} SNAT source address is configured for this node"
            )
    return AddressAssignment(unique)
