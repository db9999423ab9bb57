"""One YAML document in, one typed object (or one problem) out.

The order follows the API server with strict field validation (``kubectl apply
--validate=strict``): identify the kind and version, refuse duplicate and unknown fields,
check metadata, apply the schema's defaults, validate (structural schema, then the
hand-written CEL rules), and only then build the typed model. Every failure becomes a
single ``ValidationProblem`` naming the object and the first offending field; nothing
raises. Kinds we do not read (Deployments, ConfigMaps, someone's ``Widget``...) become
an ``IgnoredObject``: not an error, but never dropped without a word either.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jsonschema
from pydantic import ValidationError

from ctl.api import cel, crds, names, openapi, strict
from ctl.api.base import CORE_GROUP, DISCOVERY_GROUP, GATEWAY_GROUP, K8sObject, ObjectRef
from ctl.api.core import EndpointSlice, Namespace, Secret, Service
from ctl.api.gateway import Gateway, GatewayClass
from ctl.api.problems import IgnoredObject, ValidationProblem
from ctl.api.referencegrant import ReferenceGrant
from ctl.api.routes import ROUTE_KINDS

_GATEWAY_API_KINDS: dict[str, type[K8sObject]] = {
    model.KIND: model for model in (GatewayClass, Gateway, *ROUTE_KINDS, ReferenceGrant)
}
_CORE_KINDS: dict[tuple[str, str], type[K8sObject]] = {
    (CORE_GROUP, "Service"): Service,
    (CORE_GROUP, "Namespace"): Namespace,
    (CORE_GROUP, "Secret"): Secret,
    (DISCOVERY_GROUP, "EndpointSlice"): EndpointSlice,
}
_CORE_VERSIONS = ("v1",)
_OUR_GROUPS = (GATEWAY_GROUP, CORE_GROUP, DISCOVERY_GROUP)

# The API server's name rule per kind; custom resources (every Gateway API kind) are
# DNS-1123 subdomains, like EndpointSlices.
_NAME_RULES = {
    "Service": names.dns1035_label,
    "Namespace": names.dns1123_label,
}
# The Kubernetes client's model of each core kind: the fields its API version declares.
_CORE_CLIENT_MODELS = {
    "Service": "V1Service",
    "Namespace": "V1Namespace",
    "Secret": "V1Secret",
    "EndpointSlice": "V1EndpointSlice",
}
# metadata.annotations, keys and values together (the API server's TotalAnnotationSizeLimitB).
ANNOTATIONS_MAX_BYTES = 256 * 1024

Problem = tuple[str, str]


@dataclass(frozen=True)
class _CompiledSchema:
    channel: str
    openapi: dict[str, Any]
    validator: openapi.SchemaValidator
    rules: frozenset[str]
    # The schema strict field validation compares against (metadata as ObjectMeta).
    fields: dict[str, Any]


def parse_object(
    document: object, *, filename: str, index: int | str, duplicates: tuple[Problem, ...] = (),
    unknown_fields: bool = True,
) -> K8sObject | ValidationProblem | IgnoredObject:
    """Parse the index-th (1-based) document of a file (or a label such as ``"2,
    items[0]"`` for an item of a List). ``duplicates`` are the fields the YAML text
    sets twice, which the decoded document no longer shows.

    ``unknown_fields=False`` lets fields our schemas do not declare pass, as the API
    server prunes them: for objects an API server has already accepted, where such a
    field means a newer CRD or Kubernetes version than ours, not a typo."""
    where = f"document {index}"
    if not isinstance(document, dict):
        return ValidationProblem(filename, where, f"expected a Kubernetes object, got {_type_name(document)}")
    api_version, kind = document.get("apiVersion"), document.get("kind")
    for field, value in (("apiVersion", api_version), ("kind", kind)):
        if not isinstance(value, str) or not value:
            return ValidationProblem(filename, where, "Required value", field=field)
    assert isinstance(api_version, str) and isinstance(kind, str)
    group, _, version = api_version.rpartition("/")
    model = _model_for(group, kind)
    if model is None:
        return _misplaced_kind(document, filename, where, group, kind) or _ignored(document, filename, where)

    subject = _subject(model, document, where)

    def problem(found: list[Problem]) -> ValidationProblem:
        field, message = found[0]
        if len(found) > 1:
            message += f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})"
        return ValidationProblem(filename, subject, message, field=field)

    if duplicates:
        return problem(list(duplicates))
    metadata_problems = _metadata_problems(model, document.get("metadata"))
    if metadata_problems:
        return problem(metadata_problems)
    served = _served_versions(model)
    if version not in served:
        return problem([("apiVersion", f"{api_version} is not served for {kind} (served: {', '.join(served)})")])

    compiled = _compiled_schema(crds.source(), kind, version) if model.GROUP == GATEWAY_GROUP else None
    unknown = strict.unknown_fields(compiled.fields if compiled else _core_fields(kind), document) if unknown_fields else []
    if unknown and compiled is not None:
        compiled, unknown = _experimental_if_it_declares_all(compiled, kind, version, document, unknown)
    if unknown:
        return problem(unknown)
    body = _normalised(model, document)
    if compiled is not None:
        body = openapi.apply_defaults(compiled.openapi, body)
        # CEL rules presume the declared types, so they only see structurally valid objects.
        found = openapi.schema_problems(compiled.validator, body) or cel.cel_problems(compiled.rules, body)
        if found:
            return problem(found)
    try:
        obj = model.model_validate(body)
    except ValidationError as error:
        return problem([_pydantic_problem(detail) for detail in error.errors()])
    found = list(obj.cross_field_problems())
    return problem(found) if found else obj


def _model_for(group: str, kind: str) -> type[K8sObject] | None:
    if group == GATEWAY_GROUP:
        return _GATEWAY_API_KINDS.get(kind)
    return _CORE_KINDS.get((group, kind))


def _misplaced_kind(document: dict[str, Any], filename: str, where: str, group: str, kind: str) -> ValidationProblem | None:
    """A kind we handle under a group we know but that does not serve it is a typo, not
    someone else's API (an Istio Gateway, say, lives in its own group and is skipped)."""
    expected = [m for m in (*_GATEWAY_API_KINDS.values(), *_CORE_KINDS.values()) if m.KIND == kind]
    if not expected or group not in _OUR_GROUPS:
        return None
    model = expected[0]
    versions = ", ".join(f"{model.GROUP}/{v}" if model.GROUP else v for v in _served_versions(model))
    return ValidationProblem(
        filename,
        _subject(model, document, where),
        f"{document['apiVersion']} does not serve {kind} (use {versions})",
        field="apiVersion",
    )


def _ignored(document: dict[str, Any], filename: str, where: str) -> IgnoredObject:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    subject = f"{document['kind']} {where}"
    if isinstance(name, str) and name:
        subject = f"{document['kind']} {namespace}/{name}" if isinstance(namespace, str) and namespace else f"{document['kind']} {name}"
    return IgnoredObject(filename, subject, f"{document['apiVersion']} {document['kind']} is not a kind xdp-gateway reads")


def _core_fields(kind: str) -> dict[str, Any]:
    return strict.client_schema(_CORE_CLIENT_MODELS[kind])


def _served_versions(model: type[K8sObject]) -> tuple[str, ...]:
    return crds.served_versions(model.KIND) if model.GROUP == GATEWAY_GROUP else _CORE_VERSIONS


@functools.lru_cache(maxsize=32)
def _compiled_schema(origin: str, kind: str, version: str, channel: str | None = None) -> _CompiledSchema:
    schema = crds.version_schema(kind, version, channel)
    assert schema is not None, f"{kind} {version} is served but has no schema"
    return _CompiledSchema(
        schema.channel,
        schema.openapi,
        openapi.validator_for(schema.openapi),
        cel.rule_messages(schema.openapi),
        strict.with_object_meta(schema.openapi),
    )


def _experimental_if_it_declares_all(
    standard: _CompiledSchema, kind: str, version: str, document: dict[str, Any], unknown: list[Problem],
) -> tuple[_CompiledSchema, list[Problem]]:
    """An object whose every field the experimental channel declares (HTTPRoute
    ``retry``) is validated with that channel's schema, defaults and rules, as an API
    server with the experimental CRDs installed would. Otherwise the object is refused
    for the fields neither channel declares (the experimental schema is a superset of
    the standard one), so a typo beside ``retry`` is named, not ``retry``."""
    if standard.channel == "experimental" or crds.version_schema(kind, version, "experimental") is None:
        return standard, unknown
    experimental = _compiled_schema(crds.source(), kind, version, "experimental")
    still_unknown = strict.unknown_fields(experimental.fields, document)
    return (standard, still_unknown) if still_unknown else (experimental, [])


def _subject(model: type[K8sObject], document: dict[str, Any], where: str) -> str:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        return f"{model.KIND} in {where}"
    namespace = ""
    if model.NAMESPACED:
        namespace = metadata.get("namespace") if isinstance(metadata.get("namespace"), str) else ""
        namespace = namespace or "default"
    return str(ObjectRef(model.KIND, namespace, name))


def _metadata_problems(model: type[K8sObject], metadata: object) -> list[Problem]:
    if not isinstance(metadata, dict):
        return [("metadata.name", "Required value")]
    problems: list[Problem] = []
    name = metadata.get("name")
    if (name is None or name == "") and metadata.get("generateName"):
        # kubectl apply refuses generateName too: a generated name could never be found
        # again to update, and every reload would add another object.
        problems.append(("metadata.name", "Required value (generateName is not supported: name the object)"))
    elif name is None or name == "":
        problems.append(("metadata.name", "Required value"))
    elif not isinstance(name, str):
        problems.append(("metadata.name", f"{name!r} is not a string"))
    else:
        error = _NAME_RULES.get(model.KIND, names.dns1123_subdomain)(name)
        if error:
            problems.append(("metadata.name", f"Invalid value {name!r}: {error}"))
    namespace = metadata.get("namespace")
    if model.NAMESPACED and namespace not in (None, ""):
        error = names.dns1123_label(namespace) if isinstance(namespace, str) else "must be a string"
        if error:
            problems.append(("metadata.namespace", f"Invalid value {namespace!r}: {error}"))
    labels = metadata.get("labels")
    if isinstance(labels, dict):
        for key, value in labels.items():
            error = names.label_key(key) if isinstance(key, str) else "must be a string"
            if error:
                problems.append((f"metadata.labels[{key!r}]", f"Invalid label key: {error}"))
            elif not isinstance(value, str):
                problems.append((f"metadata.labels[{key!r}]", f"label values must be strings, got {value!r}"))
            elif names.label_value(value):
                problems.append((f"metadata.labels[{key!r}]", f"Invalid value {value!r}: {names.label_value(value)}"))
    elif labels is not None:
        problems.append(("metadata.labels", "must be a mapping of strings"))
    problems += _annotation_problems(metadata.get("annotations"))
    return problems


def _annotation_problems(annotations: object) -> list[Problem]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [("metadata.annotations", "must be a mapping of strings")]
    problems: list[Problem] = []
    size = 0
    for key, value in annotations.items():
        error = names.label_key(key) if isinstance(key, str) else "must be a string"
        if error:
            problems.append((f"metadata.annotations[{key!r}]", f"Invalid annotation key: {error}"))
        elif not isinstance(value, str):
            problems.append((f"metadata.annotations[{key!r}]", f"annotation values must be strings, got {value!r}"))
        else:
            size += len(key.encode()) + len(value.encode())
    if size > ANNOTATIONS_MAX_BYTES:
        problems.append(("metadata.annotations", f"Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes (has {size})"))
    return problems


def _normalised(model: type[K8sObject], document: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server would store it before defaulting: no status (a
    subresource, ignored on create) and the namespace kubectl would fill in."""
    body = {key: value for key, value in document.items() if key != "status"}
    metadata = dict(body["metadata"])
    if model.NAMESPACED:
        metadata["namespace"] = metadata.get("namespace") or "default"
    else:
        metadata.pop("namespace", None)
    body["metadata"] = metadata
    return body


def _pydantic_problem(detail: Any) -> Problem:
    path = openapi.format_path(part for part in detail["loc"] if not _is_union_tag(part))
    message = str(detail["msg"]).removeprefix("Value error, ")
    if detail["type"] == "missing":
        return path, "Required value"
    return path, f"{detail['input']!r}: {message}"


_UNION_BRANCHES = frozenset({"int", "str", "float", "bool", "none", "dict", "list", "tuple", "datetime"})


def _is_union_tag(part: object) -> bool:
    # pydantic names the union branch it tried ("int", "function-after[...]") inside the
    # location; the field path is the rest.
    return isinstance(part, str) and (part in _UNION_BRANCHES or "[" in part)


def _type_name(value: object) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
