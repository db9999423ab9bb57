"""Validate an object against a CRD's openAPIV3Schema the way the API server does:
apply defaults first, then check the structural schema.

The schemas are OpenAPI v3 with Kubernetes extensions; jsonschema speaks Draft 7. The
differences that matter are bridged here: ``nullable`` becomes a ``"null"`` type, every
``x-kubernetes-*`` key is dropped (list-type and map-type only guide server-side apply;
int-or-string arrives with its own ``anyOf``), and only the formats Gateway API uses for
values we care about are checked (``ipv4``, ``ipv6``). CEL rules
(``x-kubernetes-validations``) are not evaluated here: see ``ctl.api.cel``.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from ctl.api.schemacheck import Check, compile_check

_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("ipv4", raises=ValueError)
def _is_ipv4(value: object) -> bool:
    return not isinstance(value, str) or bool(ipaddress.IPv4Address(value))


@_FORMATS.checks("ipv6", raises=ValueError)
def _is_ipv6(value: object) -> bool:
    return not isinstance(value, str) or bool(ipaddress.IPv6Address(value))


def to_json_schema(node: Any) -> Any:
    """The Draft 7 equivalent of an OpenAPI v3 structural schema node."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("description", "nullable"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            converted[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key == "default":
            converted[key] = value
        else:
            converted[key] = to_json_schema(value)
    if node.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    if node.get("x-kubernetes-int-or-string") and "type" not in converted and "anyOf" not in converted:
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return converted


@dataclass(frozen=True)
class SchemaValidator:
    """jsonschema's validator, which explains violations, and the compiled yes/no check
    that spares asking it about valid objects (None where the schema is not compiled)."""

    explain: jsonschema.Draft7Validator
    accepts: Check | None


def validator_for(openapi: dict[str, Any]) -> SchemaValidator:
    """A validator for the schema; build it once per schema, it is not cheap."""
    schema = to_json_schema(openapi)
    return SchemaValidator(jsonschema.Draft7Validator(schema, format_checker=_FORMATS),
                           compile_check(schema, _FORMATS))


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """A copy of value with the schema's defaults filled in, recursively.

    Like the API server: a missing property with a default gets a copy of it, the copy
    is itself defaulted, and an explicit null on a non-nullable field counts as missing.
    """
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            sub = schema["properties"].get(key)
            if item is None and sub is not None and not sub.get("nullable"):
                continue
            result[key] = item
        for key, sub in schema["properties"].items():
            if key not in result and "default" in sub:
                default = sub["default"]
                result[key] = copy.deepcopy(default) if isinstance(default, (dict, list)) else default
            # Scalars come back as they are: only containers can hold anything to fill.
            if key in result and isinstance(result[key], (dict, list)):
                result[key] = apply_defaults(sub, result[key])
        return result
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: apply_defaults(schema["additionalProperties"], v) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def format_path(parts: Iterable[str | int]) -> str:
    """``("spec", "listeners", 0, "port")`` -> ``spec.listeners[0].port``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def schema_problems(validator: SchemaValidator, instance: Any) -> list[tuple[str, str]]:
    """Every schema violation as (field path, message), in document order."""
    if validator.accepts is not None and validator.accepts(instance):
        return []
    errors = sorted(validator.explain.iter_errors(instance), key=_document_order)
    return [_describe(error) for error in errors]


def _document_order(error: ValidationError) -> tuple[str, ...]:
    return tuple(f"{part:08d}" if isinstance(part, int) else part for part in error.absolute_path)


def _describe(error: ValidationError) -> tuple[str, str]:
    error = _most_specific(error)
    path: Sequence[str | int] = list(error.absolute_path)
    if error.validator == "required":
        # jsonschema reports at the parent; the missing field itself is more useful.
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return format_path([*path, missing]), "Required value"
    if error.validator in ("anyOf", "oneOf") and error.context and all(
        sub.validator == "format" for sub in error.context
    ):
        formats = " or ".join(sorted({str(sub.validator_value) for sub in error.context}))
        return format_path(path), f"{error.instance!r} is not a valid {formats} address"
    # The stock messages repeat the whole (possibly long) list or string.
    if error.validator in ("maxItems", "minItems"):
        bound = "at most" if error.validator == "maxItems" else "at least"
        return format_path(path), f"must have {bound} {error.validator_value} items (has {len(error.instance)})"
    if error.validator in ("maxLength", "minLength"):
        bound = "at most" if error.validator == "maxLength" else "at least"
        return format_path(path), f"must be {bound} {error.validator_value} characters long (is {len(error.instance)})"
    return format_path(path), error.message


def _most_specific(error: ValidationError) -> ValidationError:
    """For oneOf/anyOf, the branch failure that points deepest into the instance."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        deepest = max(error.context, key=lambda sub: len(sub.absolute_path))
        if len(deepest.absolute_path) <= len(error.absolute_path):
            break
        error = deepest
    return error
