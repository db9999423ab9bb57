"""The package's own Gateway API schemas: generated from the upstream release, never stale,
and the same as validating against the release CRDs themselves."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from ctl.api import crds

REPO = Path(__file__).resolve().parents[2]
RELEASE = REPO.parent / "shared" / "gateway-api" / crds.UPSTREAM_VERSION
needs_release = pytest.mark.skipif(
    not (RELEASE / "crd" / "standard").is_dir(), reason=f"upstream release CRDs not found at {RELEASE}"
)


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_schemas", REPO / "scripts" / "gen_schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_release
def test_committed_schemas_are_what_the_generator_makes() -> None:
    gen = generator()
    wanted = gen.generate(RELEASE / "crd", RELEASE / "LICENSE")
    present = gen.on_disk(gen.OUTPUT)
    stale = sorted(name for name in wanted.keys() | present.keys() if wanted.get(name) != present.get(name))
    assert not stale, f"ctl/api/schemas is stale ({', '.join(stale)}): run python scripts/gen_schemas.py"


def test_package_data_records_upstream_version_and_license() -> None:
    root = REPO / "ctl" / "api" / crds.SCHEMAS
    assert json.loads((root / "UPSTREAM.json").read_text())["version"] == crds.UPSTREAM_VERSION
    assert "Apache License" in (root / "LICENSE").read_text()
    assert "Version 2.0" in (root / "LICENSE").read_text()


def test_package_data_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(crds.ENV_VAR, raising=False)
    assert crds.source() == crds.PACKAGE_SOURCE
    assert crds.served_versions("TCPRoute") == ("v1", "v1alpha2")
    schema = crds.version_schema("GatewayClass", "v1")
    assert schema is not None and schema.channel == "standard"
    assert "description" not in json.dumps(schema.openapi["properties"]["spec"]["properties"]["controllerName"])


@needs_release
def test_release_directory_override_gives_the_same_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(crds.ENV_VAR, raising=False)
    packaged = {(k, v): crds.version_schema(k, v) for k in crds.PLURALS for v in crds.served_versions(k)}
    monkeypatch.setenv(crds.ENV_VAR, str(RELEASE / "crd"))
    assert crds.source() == str(RELEASE / "crd")
    released = {(k, v): crds.version_schema(k, v) for k in crds.PLURALS for v in crds.served_versions(k)}
    assert released == packaged
    assert len(packaged) >= 14


def test_only_prose_descriptions_are_dropped() -> None:
    schema = {
        "type": "object",
        "description": "prose",
        "properties": {
            "description": {"type": "string", "description": "prose", "maxLength": 64},
            "mode": {"type": "string", "enum": ["a", "b"], "default": "a", "pattern": "^[ab]$", "format": "x"},
        },
        "x-kubernetes-validations": [{"rule": "self.mode == 'a'", "message": "m"}],
        "items": {"anyOf": [{"description": "prose", "type": "integer"}]},
    }
    assert crds.validation_schema(schema) == {
        "type": "object",
        "properties": {
            "description": {"type": "string", "maxLength": 64},
            "mode": {"type": "string", "enum": ["a", "b"], "default": "a", "pattern": "^[ab]$", "format": "x"},
        },
        "x-kubernetes-validations": [{"rule": "self.mode == 'a'", "message": "m"}],
        "items": {"anyOf": [{"type": "integer"}]},
    }
