"""The compiled yes/no schema check says "valid" exactly when jsonschema finds no error:
keyword by keyword on chosen edge cases, and on every Gateway API object of the
upstream and repository manifests, each also mutated in many seeded random ways."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ctl.api import crds, openapi
from ctl.api.base import GATEWAY_GROUP
from ctl.api.parse import _GATEWAY_API_KINDS, _compiled_schema
from ctl.api.schemacheck import compile_check

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent.parent / "shared" / "gateway-api"


def jsonschema_accepts(schema: Any, instance: Any) -> bool:
    validator = jsonschema.Draft7Validator(schema, format_checker=openapi._FORMATS)
    return next(iter(validator.iter_errors(instance)), None) is None


EDGE_CASES: list[tuple[dict[str, Any], list[Any]]] = [
    ({"type": "integer"}, [1, 1.0, 1.5, True, "1", None, -0.0]),
    ({"type": "number"}, [1, 1.5, True, False, "1", None, float("inf")]),
    ({"type": ["string", "null"]}, ["", None, 0, [], {}]),
    ({"type": "boolean"}, [True, False, 0, 1, "true"]),
    ({"enum": ["A", "B"]}, ["A", "a", None, 1, ["A"]]),
    ({"enum": [301, 302]}, [301, 301.0, 302.5, True, "301", None, [301]]),
    ({"enum": [0, 1]}, [0, 1, False, True, 0.0]),
    ({"minimum": 1, "maximum": 65535}, [0, 1, 65535, 65536, 0.5, True, False, "x", None]),
    ({"minLength": 1, "maxLength": 3}, ["", "a", "abc", "abcd", "\u00e9\u00e9\u00e9", 12345, None]),
    ({"pattern": "^[a-z]+$"}, ["abc", "ABC", "", "abc\n", 5]),
    ({"pattern": "b"}, ["abc", "xyz"]),
    ({"format": "ipv4"}, ["10.0.0.1", "10.0.0.256", "::1", "", 5, None]),
    ({"format": "ipv6"}, ["::1", "10.0.0.1", "fe80::1%eth0", 5]),
    ({"format": "hostname"}, ["not a hostname!", 5]),
    ({"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}, ["10.0.0.1", "::1", "x"]),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, [1, 1.5, "x"]),
    ({"oneOf": [{"minimum": 1}, {"maximum": 5}]}, [0, 3, 9, "x"]),
    ({"not": {"type": "string"}}, ["x", 1]),
    ({"required": ["a", "b"]}, [{"a": 1, "b": None}, {"a": 1}, [], "ab"]),
    ({"properties": {"a": {"type": "string"}}, "additionalProperties": False},
     [{"a": "x"}, {"a": 1}, {"b": 1}, {}, ["a"]]),
    ({"properties": {"a": {}}, "additionalProperties": {"type": "integer"}}, [{"a": "x", "b": 1}, {"b": "x"}]),
    ({"additionalProperties": True}, [{"x": 1}]),
    ({"minProperties": 1, "maxProperties": 2}, [{}, {"a": 1}, {"a": 1, "b": 2, "c": 3}, []]),
    ({"items": {"type": "string"}, "minItems": 1, "maxItems": 2}, [[], ["a"], ["a", 1], ["a", "b", "c"], "ab", {}]),
    ({"items": [{"type": "string"}, {"type": "integer"}]}, [["a", 1], ["a", "b"], ["a"], ["a", 1, None]]),
    ({"items": False}, [[], [1]]),
    ({"type": "object", "x-unknown-keyword": "ignored", "default": 3}, [{}, 3]),
]


@pytest.mark.parametrize(("schema", "instances"), EDGE_CASES, ids=[repr(s)[:40] for s, _ in EDGE_CASES])
def test_each_keyword_agrees_with_jsonschema(schema, instances) -> None:
    check = compile_check(schema, openapi._FORMATS)
    assert check is not None
    for instance in instances:
        assert check(instance) == jsonschema_accepts(schema, instance), instance


@pytest.mark.parametrize("schema", [
    {"$ref": "#/definitions/x", "definitions": {"x": {}}},
    {"patternProperties": {"^a": {}}},
    {"properties": {"a": {"uniqueItems": True}}},
    {"enum": [True, "x"]},
])
def test_keywords_it_does_not_compile_are_left_to_jsonschema(schema) -> None:
    assert compile_check(schema, openapi._FORMATS) is None


def _gateway_api_documents() -> list[dict[str, Any]]:
    documents = []
    for root in (SHARED, REPO / "examples", REPO / "tests"):
        for path in sorted(root.rglob("*.yaml")):
            try:
                loaded = list(yaml.safe_load_all(path.read_text()))
            except (yaml.YAMLError, UnicodeDecodeError):
                continue
            documents += [d for d in loaded if isinstance(d, dict) and isinstance(d.get("apiVersion"), str)
                          and d["apiVersion"].startswith(GATEWAY_GROUP + "/") and isinstance(d.get("kind"), str)]
    return documents


_ODD_VALUES = [None, True, False, 0, -1, 1.5, 70000, "", "x" * 300, "not an address", "10.0.0.1", "::1",
               "Exact", "PathPrefix", [], {}, ["a"], {"unknown": 1}]


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


def _mutated(document: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    mutant = copy.deepcopy(document)
    path = rng.choice(_paths(mutant)[1:])
    parent = mutant
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    action = rng.randrange(4)
    if action == 0 and isinstance(parent, dict):
        del parent[last]
    elif action == 1 and isinstance(parent[last], dict):
        parent[last][rng.choice(["unknown", "name", "port", "hostname", "kind"])] = rng.choice(_ODD_VALUES)
    elif action == 2 and isinstance(parent[last], list) and parent[last]:
        parent[last] = parent[last] * rng.choice([2, 20])
    else:
        parent[last] = copy.deepcopy(rng.choice(_ODD_VALUES))
    return mutant


def test_every_manifest_and_its_mutants_are_judged_as_jsonschema_judges_them() -> None:
    documents = _gateway_api_documents()
    assert len(documents) > 200
    rng = random.Random(20261130)
    compared = rejected = 0
    for document in documents:
        group, _, version = document["apiVersion"].partition("/")
        if document["kind"] not in _GATEWAY_API_KINDS or version not in crds.served_versions(document["kind"]):
            continue
        for channel in (None, "experimental"):
            if crds.version_schema(document["kind"], version, channel) is None:
                continue
            compiled = _compiled_schema(crds.source(), document["kind"], version, channel)
            assert compiled.validator.accepts is not None
            for candidate in [document] + [_mutated(document, rng) for _ in range(6)]:
                body = openapi.apply_defaults(compiled.openapi, candidate)
                expected = next(iter(compiled.validator.explain.iter_errors(body)), None) is None
                assert compiled.validator.accepts(body) == expected, (document["kind"], candidate)
                compared += 1
                rejected += not expected
    assert compared > 5000 and rejected > 1000  # valid and invalid objects both seen
