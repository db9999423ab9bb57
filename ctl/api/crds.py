"""Where the upstream Gateway API CRDs are, and the schema each kind/version serves.

Nothing is vendored: the v1.6.1 release files live beside the repository, in
``../shared/gateway-api/v1.6.1/crd`` (override with ``XDPGW_GATEWAY_API_CRDS``). A
version is validated with the standard channel's schema when the standard channel
serves it, otherwise with the experimental channel's (TCPRoute and UDPRoute v1alpha2 are
only served there).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ENV_VAR = "XDPGW_GATEWAY_API_CRDS"
CHANNELS = ("standard", "experimental")

_REPO_ROOT = Path(__file__).resolve().parents[2]
_DEFAULT_DIRECTORY = _REPO_ROOT.parent / "shared" / "gateway-api" / "v1.6.1" / "crd"

_PLURALS = {
    "GatewayClass": "gatewayclasses",
    "Gateway": "gateways",
    "TCPRoute": "tcproutes",
    "UDPRoute": "udproutes",
    "TLSRoute": "tlsroutes",
    "HTTPRoute": "httproutes",
    "GRPCRoute": "grpcroutes",
    "ReferenceGrant": "referencegrants",
}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CrdsNotFoundError(FileNotFoundError):
    """The CRD directory is missing: a broken installation, not bad input."""


@dataclass(frozen=True)
class VersionSchema:
    kind: str
    version: str
    channel: str
    # The version's openAPIV3Schema exactly as the CRD states it.
    openapi: dict[str, Any]


def crd_directory() -> Path:
    configured = os.environ.get(ENV_VAR)
    directory = Path(configured) if configured else _DEFAULT_DIRECTORY
    if not (directory / "standard").is_dir():
        hint = f"set {ENV_VAR}" if not configured else f"check {ENV_VAR}"
        raise CrdsNotFoundError(
            f"Gateway API CRDs not found: no {directory / 'standard'} directory "
            f"(expected the v1.6.1 release CRDs with standard/ and experimental/; {hint})"
        )
    return directory


def served_versions(kind: str) -> tuple[str, ...]:
    """Every version of the kind served by either channel, standard first."""
    directory = str(crd_directory())
    versions: list[str] = []
    for channel in CHANNELS:
        for version in _served(directory, channel, kind):
            if version not in versions:
                versions.append(version)
    return tuple(versions)


def version_schema(kind: str, version: str) -> VersionSchema | None:
    directory = str(crd_directory())
    for channel in CHANNELS:
        schema = _served(directory, channel, kind).get(version)
        if schema is not None:
            return VersionSchema(kind, version, channel, schema)
    return None


@functools.cache
def _served(directory: str, channel: str, kind: str) -> dict[str, dict[str, Any]]:
    path = Path(directory) / channel / f"gateway.networking.k8s.io_{_PLURALS[kind]}.yaml"
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as stream:
        crd = yaml.load(stream, Loader=_Loader)  # noqa: S506 - a safe loader
    return {
        entry["name"]: entry["schema"]["openAPIV3Schema"]
        for entry in crd["spec"]["versions"]
        if entry.get("served")
    }
