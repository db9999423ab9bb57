"""The addresses a Gateway is served on."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ctl.api import Gateway
from ctl.dataplane.abi import SNAT_MAX_ADDRS
from ctl.model import IPAddress, NatMode
from ctl.translate.config import TranslateConfig


# A Gateway may name its own SNAT sources (comma-separated IP addresses, up to
# SNAT_MAX_ADDRS per family); they replace the node's for that family on its frontends.
SNAT_ANNOTATION = "xdp-gateway.io/snat-addresses"


@dataclass(frozen=True)
class AddressAssignment:
    addresses: tuple[IPAddress, ...]
    # Why the Gateway cannot be accepted (reason UnsupportedAddress), if it cannot.
    unsupported: str | None = None
    # The Gateway's own SNAT sources (its annotation), if it names any.
    snat_addresses: tuple[IPAddress, ...] = ()

    def snat_for(self, version: int, config: TranslateConfig) -> tuple[IPAddress, ...]:
        own = tuple(a for a in self.snat_addresses if a.version == version)
        return own or config.snat_addresses_for(version)[:SNAT_MAX_ADDRS]


def gateway_snat_addresses(gateway: Gateway) -> tuple[tuple[IPAddress, ...], str | None]:
    """The SNAT sources the Gateway's annotation names, or why it is unusable."""
    raw = gateway.metadata.annotations.get(SNAT_ANNOTATION)
    if raw is None:
        return (), None
    where = f'metadata.annotations["{SNAT_ANNOTATION}"]'
    chosen: list[IPAddress] = []
    for item in (part.strip() for part in raw.split(",")):
        try:
            address = ipaddress.ip_address(item)
        except ValueError:
            return (), f'{where}: "{item}" is not an IP address'
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            return (), f"{where}: {address} cannot be a SNAT source"
        chosen.append(address)
    unique = tuple(dict.fromkeys(chosen))
    for version in (4, 6):
        if sum(a.version == version for a in unique) > SNAT_MAX_ADDRS:
            return (), f"{where}: more than {SNAT_MAX_ADDRS} IPv{version} addresses"
    if not unique:
        return (), f"{where}: names no address"
    return unique, None


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
    snat, problem = gateway_snat_addresses(gateway)
    if problem:
        return AddressAssignment((), problem)
    assignment = AddressAssignment(unique, snat_addresses=snat)
    for address in unique:
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            return AddressAssignment((), f"{address} cannot be a gateway address (unspecified, multicast or loopback)")
        if config.nat is NatMode.SNAT and not assignment.snat_for(address.version, config):
            return AddressAssignment(
                (), f"{address}: no IPv{address.version} SNAT source address is configured for this node"
            )
    return assignment
