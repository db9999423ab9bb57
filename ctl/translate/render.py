"""The desired data plane as plain, stable, readable data (golden files, gwctl)."""

from __future__ import annotations

from typing import Any

from ctl.model import DesiredState, Service


def frontend_order(service: Service) -> tuple[int, int, int, int]:
    """IPv4 before IPv6 (ipaddress refuses to compare across families), then address,
    port and protocol."""
    frontend = service.frontend
    return (frontend.address.version, int(frontend.address), frontend.port, int(frontend.protocol))


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 6)


def render_desired(desired: DesiredState) -> list[dict[str, Any]]:
    return [
        {
            "frontend": str(service.frontend),
            "owner": service.owner,
            "nat": service.nat.value,
            "snatAddress": str(service.snat_address) if service.snat_address is not None else None,
            "rejectWeight": _number(service.reject_weight),
            "backends": [
                {"endpoint": str(backend.endpoint), "weight": _number(backend.weight)} for backend in service.backends
            ],
        }
        for service in sorted(desired.services, key=frontend_order)
    ]
