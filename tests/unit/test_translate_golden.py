"""Golden files: tests/golden/<case>/input.yaml -> expected.yaml.

expected.yaml holds the load problems (if any), the desired data path Services in a
readable form, and the k8s status stanza of every object we report on. Set
UPDATE_GOLDEN=1 to rewrite the expected files, then read the diff before committing:
a golden file is only worth what its review was.

An optional config.yaml per case overrides the translation config (addresses,
snatAddresses, nat, xffNumTrustedHops, passthroughProxyProtocol).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ctl.api import crds, openapi
from ctl.model import NatMode
from ctl.sources import parse_documents
from ctl.sources.documents import assemble
from ctl.translate import TranslateConfig, render_desired, status_to_k8s, translate

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").is_file())
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def case_config(case: Path) -> TranslateConfig:
    overrides: dict[str, Any] = {}
    if (case / "config.yaml").is_file():
        overrides = yaml.safe_load((case / "config.yaml").read_text()) or {}
    ips = lambda values: tuple(ipaddress.ip_address(v) for v in values)  # noqa: E731
    return TranslateConfig(
        now=NOW,
        addresses=ips(overrides.get("addresses", ["192.0.2.10"])),
        snat_addresses=ips(overrides.get("snatAddresses", ["192.0.2.1", "2001:db8::1"])),
        nat=NatMode(overrides.get("nat", "snat")),
        xff_num_trusted_hops=overrides.get("xffNumTrustedHops", 0),
        passthrough_proxy_protocol=overrides.get("passthroughProxyProtocol", False),
    )


def render_case(case: Path) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    parsed = parse_documents((case / "input.yaml").read_text(), "input.yaml")
    loaded = assemble([parsed])
    translation = translate(loaded.snapshot, case_config(case))
    statuses = [
        {
            "apiVersion": s.api_version,
            "kind": s.kind,
            **({"namespace": s.namespace} if s.namespace else {}),
            "name": s.name,
            "status": status_to_k8s(s),
        }
        for s in translation.statuses
    ]
    document: dict[str, Any] = {}
    if loaded.problems:
        document["problems"] = [str(p) for p in loaded.problems]
    document["services"] = render_desired(translation.desired)
    document["statuses"] = statuses
    text = yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=True)
    return text, [(s["apiVersion"], s) for s in statuses]


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    case = GOLDEN / name
    actual, statuses = render_case(case)
    expected_path = case / "expected.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected_path.write_text(actual)
    assert expected_path.is_file(), f"{expected_path} missing: run with UPDATE_GOLDEN=1 and review it"
    expected = expected_path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                fromfile=f"{name}/expected.yaml", tofile=f"{name} (translated now)",
            )
        )
        pytest.fail(f"golden case {name} changed (UPDATE_GOLDEN=1 rewrites it):\n{diff}", pytrace=False)
    for api_version, entry in statuses:
        assert_status_valid(api_version, entry)


def assert_status_valid(api_version: str, entry: dict[str, Any]) -> None:
    """Every stanza must be one the API server accepts: the CRD's own status schema."""
    version = api_version.rpartition("/")[2]
    schema = crds.version_schema(entry["kind"], version)
    assert schema is not None
    validator = openapi.validator_for(schema.openapi["properties"]["status"])
    problems = openapi.schema_problems(validator, entry["status"])
    assert not problems, f"{entry['kind']} {entry.get('namespace')}/{entry['name']}: invalid status {problems}"
