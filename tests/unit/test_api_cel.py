"""The hand-written CEL rules stay in step with the CRDs, and the CRD schemas are usable
by Python's regular expressions."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ctl.api import crds
from ctl.api.cel import ENFORCED, NOT_ENFORCED, rule_messages
from ctl.api.parse import _GATEWAY_API_KINDS

SERVED = [(kind, version) for kind in sorted(_GATEWAY_API_KINDS) for version in crds.served_versions(kind)]


def schema(kind: str, version: str) -> dict[str, Any]:
    found = crds.version_schema(kind, version)
    assert found is not None
    return found.openapi


@pytest.mark.parametrize(("kind", "version"), SERVED)
def test_every_cel_rule_is_enforced_or_listed_as_not(kind: str, version: str) -> None:
    unknown = rule_messages(schema(kind, version)) - ENFORCED - NOT_ENFORCED
    assert not unknown, f"{kind} {version}: CEL rules neither enforced nor listed in NOT_ENFORCED: {sorted(unknown)}"


def test_enforced_rules_exist_in_the_crds() -> None:
    present = set().union(*(rule_messages(schema(kind, version)) for kind, version in SERVED))
    assert ENFORCED <= present, f"no CRD carries: {sorted(ENFORCED - present)}"
    assert not ENFORCED & NOT_ENFORCED


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


@pytest.mark.parametrize(("kind", "version"), SERVED)
def test_schema_patterns_compile_in_python(kind: str, version: str) -> None:
    for pattern in _patterns(schema(kind, version)):
        re.compile(pattern)


def test_served_versions() -> None:
    assert crds.served_versions("TCPRoute") == ("v1", "v1alpha2")
    assert crds.version_schema("TCPRoute", "v1").channel == "standard"
    assert crds.version_schema("TCPRoute", "v1alpha2").channel == "experimental"
    assert crds.served_versions("ReferenceGrant") == ("v1", "v1beta1")
    assert crds.version_schema("Gateway", "v1alpha1") is None
