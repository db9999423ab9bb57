"""Unknown fields, refused as ``kubectl apply --validate=strict`` refuses them.

The API server prunes fields a structural schema does not declare; with strict field
validation it reports them instead, and so do we: a misspelt field (``weigth``) would
otherwise be dropped and its default used without a word. A node marked
``x-kubernetes-preserve-unknown-fields`` keeps whatever it holds, and a node without
``properties`` (a free-form ``object``) declares nothing to compare against.

Custom resources get their schema from the CRD, except ``metadata``, which every CRD
leaves as a bare ``object``: the API server checks it against ObjectMeta, as we do. The
core kinds (Service, EndpointSlice, Namespace) have no CRD; their schema is derived from
the models of the official Kubernetes client, which are generated from the API
server's own OpenAPI document.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

from ctl.api.openapi import format_path

Problem = tuple[str, str]
Path = tuple[str | int, ...]

_PRESERVE = "x-kubernetes-preserve-unknown-fields"


def unknown_fields(schema: dict[str, Any], value: Any) -> list[Problem]:
    """Every field of value that schema does not declare, as (path, message), in
    document order."""
    if not _any_unknown(schema, value):
        return []  # the common case, without building a path for every node
    return [(format_path(path), "unknown field") for path in _unknown(schema, value, ())]


def _any_unknown(schema: dict[str, Any], value: Any) -> bool:
    """Whether _unknown would yield anything: the same walk, stopping at the first."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        declared = isinstance(properties, dict)
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if declared and key in properties:
                inner = properties[key]
            elif isinstance(extra, dict):
                inner = extra
            elif declared and not schema.get(_PRESERVE) and extra is not True:
                return True
            else:
                continue
            if isinstance(item, (dict, list)) and _any_unknown(inner, item):
                return True
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return any(_any_unknown(items, item) for item in value if isinstance(item, (dict, list)))
    return False


def _unknown(schema: dict[str, Any], value: Any, path: Path) -> Iterator[Path]:
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if isinstance(properties, dict) and key in properties:
                yield from _unknown(properties[key], item, (*path, key))
            elif isinstance(extra, dict):
                yield from _unknown(extra, item, (*path, key))
            elif isinstance(properties, dict) and not schema.get(_PRESERVE) and extra is not True:
                yield (*path, key)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _unknown(schema["items"], item, (*path, i))


def with_object_meta(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's schema with ``metadata`` described as the API server checks it."""
    properties = dict(schema.get("properties", {}))
    properties["metadata"] = client_schema("V1ObjectMeta")
    return {**schema, "properties": properties}


# -- schemas from the Kubernetes client's models ------------------------------------------

# Client releases spell containers either way: ``list[X]``/``dict(str, X)`` or
# ``List[X]``/``Dict[str, X]``.
_LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\(str, (.+)\)|Dict\[str, (.+)\])$")
_SCALARS = frozenset({"str", "int", "float", "bool", "bytes", "date", "datetime", "object"})


# The models whose schemas the package carries (core-fields.json, written by
# scripts/gen_core_fields.py from derive_client_schema): every object's metadata and
# the core kinds parse.py reads. Importing the client takes 0.2 CPU s and 9 MiB at
# every start of the agent, for 6 KB of schema.
CORE_MODELS = ("V1ObjectMeta", "V1Service", "V1EndpointSlice", "V1Namespace", "V1Secret")
CORE_FIELDS = pathlib.Path(__file__).parent / "core-fields.json"


@functools.cache
def client_schema(type_name: str) -> dict[str, Any]:
    """The structural schema of a Kubernetes client model (``V1Service``), as
    derive_client_schema gives it: from the package's copy for CORE_MODELS, from the
    client's models for any other."""
    carried = _core_fields().get(type_name)
    return carried if carried is not None else derive_client_schema(type_name)


@functools.cache
def _core_fields() -> dict[str, dict[str, Any]]:
    try:
        return json.loads(CORE_FIELDS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a broken installation: derived from the client instead, as before


def core_fields_text() -> str:
    """What core-fields.json holds for the installed client."""
    schemas = {name: derive_client_schema(name) for name in CORE_MODELS}
    return json.dumps(schemas, indent=1, sort_keys=True) + "\n"


@functools.cache
def derive_client_schema(type_name: str) -> dict[str, Any]:
    """The structural schema of a Kubernetes client model (``V1Service``): its
    properties by wire name, recursively. Scalars and ``object`` (free-form) declare
    no properties."""
    if match := _LIST.match(type_name):
        return {"type": "array", "items": derive_client_schema(match[1])}
    if match := _DICT.match(type_name):
        return {"type": "object", "additionalProperties": derive_client_schema(match[1] or match[2])}
    if type_name in _SCALARS:
        return {}
    model = _client_model(type_name)
    return {
        "type": "object",
        "properties": {model.attribute_map[attr]: derive_client_schema(kind)
                       for attr, kind in model.openapi_types.items()},
    }


def _client_model(type_name: str) -> Any:
    # Imported on first use: the client's models package is large, and only the core
    # kinds and metadata need it.
    from kubernetes.client import models

    return getattr(models, type_name)
