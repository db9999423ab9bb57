"""Core kinds read for backend resolution and TLS: v1 Service, v1 Namespace, v1 Secret
and discovery.k8s.io/v1 EndpointSlice.

No CRD describes these, so the rules the API server applies to the fields we use are
written here: pydantic for single fields, ``cross_field_problems`` for the rest.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
from typing import Literal

from pydantic import Field, field_validator
from pydantic.dataclasses import dataclass as validated_dataclass

from ctl.api import names
from ctl.api.base import CORE_GROUP, DISCOVERY_GROUP, ApiModel, K8sObject, SharedModel

IPProtocolName = Literal["TCP", "UDP", "SCTP"]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


# Endpoint addresses are parsed when a slice is validated and again by every
# translation; at 10,000 routes that is 80,000 strings that rarely change, so both
# share one memo (ValueError is not remembered: a bad address is reported each time).
# A plain dict, emptied when full: an LRU cache's bookkeeping took 4 MiB more.
_ADDRESSES: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
_ADDRESSES_MAX = 1 << 18


def forget_ip_addresses() -> None:
    """Empties the memo once a translation is done: what it parsed is held by the
    translation's endpoints, and the next one parses only the slices that changed
    (1.8 MiB at 10,000 routes)."""
    _ADDRESSES.clear()


def parse_ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """ipaddress.ip_address(text), the same instance for the same text."""
    found = _ADDRESSES.get(text)
    if found is None:
        found = _parse_ip_address(text)
        if len(_ADDRESSES) >= _ADDRESSES_MAX:
            _ADDRESSES.clear()
        _ADDRESSES[text] = found
    return found


def _parse_ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A dotted quad goes through inet_pton first, which accepts exactly what ip_address
    accepts (four decimal octets, no leading zero) at a third of the cost; anything
    else, and every error message, is ip_address's."""
    try:
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
    except (OSError, TypeError, ValueError):
        return ipaddress.ip_address(text)


def _check(error: str | None) -> None:
    if error:
        raise ValueError(error)


class ServicePort(SharedModel):
    name: str = ""
    protocol: IPProtocolName = "TCP"
    port: int = Field(ge=1, le=65535)
    target_port: int | str | None = None
    app_protocol: str | None = None

    @field_validator("name")
    @classmethod
    def _name_is_dns_label(cls, value: str) -> str:
        if value:
            _check(names.dns1123_label(value))
        return value

    @field_validator("target_port")
    @classmethod
    def _target_port_in_range(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 1 <= value <= 65535:
            raise ValueError("must be between 1 and 65535, inclusive")
        if isinstance(value, str):
            _check(names.iana_service_name(value))
        return value


class ServiceSpec(SharedModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    ports: tuple[ServicePort, ...] = ()


class Service(K8sObject):
    GROUP = CORE_GROUP
    KIND = "Service"

    spec: ServiceSpec = ServiceSpec()

    def cross_field_problems(self) -> tuple[tuple[str, str], ...]:
        problems: list[tuple[str, str]] = []
        ports = self.spec.ports
        headless = self.spec.cluster_ip == "None"
        if not ports and self.spec.type != "ExternalName" and not headless:
            problems.append(("spec.ports", "Required value"))
        seen_names: set[str] = set()
        seen_ports: set[tuple[int, str]] = set()
        for i, port in enumerate(ports):
            if len(ports) > 1 and not port.name:
                problems.append((f"spec.ports[{i}].name", "Required value (a Service with several ports must name each)"))
            if port.name and port.name in seen_names:
                problems.append((f"spec.ports[{i}].name", f"Duplicate value: {port.name!r}"))
            if (port.port, port.protocol) in seen_ports:
                problems.append((f"spec.ports[{i}]", f"Duplicate value: port {port.port}/{port.protocol}"))
            seen_names.add(port.name)
            seen_ports.add((port.port, port.protocol))
        return tuple(problems)


class Namespace(K8sObject):
    GROUP = CORE_GROUP
    KIND = "Namespace"
    NAMESPACED = False


class Secret(K8sObject):
    """A Secret as stored: ``data`` base64 (checked here, as the API server does), and
    ``stringData``, which the API server merges over ``data`` on write."""

    GROUP = CORE_GROUP
    KIND = "Secret"

    type: str = "Opaque"
    data: dict[str, str] = Field(default_factory=dict)
    string_data: dict[str, str] = Field(default_factory=dict)

    @field_validator("data")
    @classmethod
    def _base64(cls, value: dict[str, str]) -> dict[str, str]:
        for key, encoded in value.items():
            try:
                base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as error:
                raise ValueError(f"data[{key!r}] is not valid base64: {error}") from None
        return value

    def value(self, key: str) -> bytes | None:
        if key in self.string_data:
            return self.string_data[key].encode()
        if key in self.data:
            return base64.b64decode(self.data[key])
        return None


class EndpointConditions(SharedModel):
    # None means unknown; Kubernetes tells consumers to read unknown readiness as ready.
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


# The bulk of a large configuration (80,000 at 10,000 routes of 8 backends): a slotted
# dataclass validated like the models, without the __dict__ and field set every model
# instance has (about 210 bytes each). Its conditions, nearly all {ready: true}, are
# one shared instance per value (SharedModel).
@validated_dataclass(slots=True, config=ApiModel.model_config)
class SliceEndpoint:
    addresses: tuple[str, ...] = Field(min_length=1, max_length=100)
    conditions: EndpointConditions = EndpointConditions()


class EndpointPort(SharedModel):
    name: str | None = None
    protocol: IPProtocolName = "TCP"
    # None means "every port" and only suits selector-less uses; we skip such ports.
    port: int | None = Field(default=None, ge=1, le=65535)
    app_protocol: str | None = None

    @field_validator("name")
    @classmethod
    def _name_is_dns_label(cls, value: str | None) -> str | None:
        if value:
            _check(names.dns1123_label(value))
        return value


class EndpointSlice(K8sObject):
    GROUP = DISCOVERY_GROUP
    KIND = "EndpointSlice"

    address_type: Literal["IPv4", "IPv6", "FQDN"]
    endpoints: tuple[SliceEndpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()

    @property
    def service_name(self) -> str | None:
        return self.metadata.labels.get(SERVICE_NAME_LABEL)

    def cross_field_problems(self) -> tuple[tuple[str, str], ...]:
        problems: list[tuple[str, str]] = []
        wanted = {"IPv4": 4, "IPv6": 6}.get(self.address_type)
        for i, endpoint in enumerate(self.endpoints):
            for j, address in enumerate(endpoint.addresses):
                path = f"endpoints[{i}].addresses[{j}]"
                if wanted is None:
                    error = names.dns1123_subdomain(address)
                    if error:
                        problems.append((path, f"{address!r}: {error}"))
                    continue
                try:
                    parsed = parse_ip_address(address)
                except ValueError:
                    problems.append((path, f"{address!r} is not a valid IP address"))
                    continue
                if parsed.version != wanted:
                    problems.append((path, f"{address!r} is not an {self.address_type} address"))
        return tuple(problems)
