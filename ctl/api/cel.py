"""The CRDs' CEL rules (``x-kubernetes-validations``) that matter to us, by hand.

jsonschema cannot evaluate CEL, so the rules that decide whether we can forward traffic
correctly are rewritten here in Python, keyed by the rule's own message. A rule runs only
when the schema of the object's kind/version carries that message, so channel and
version differences (e.g. "sectionName" vs "sectionName or port" for parentRefs) follow
the CRDs by construction.

Enforced (see ``_CHECKS``): every Gateway listener rule (tls and hostname forbidden on
TCP/UDP, unique names, unique port/protocol/hostname, TLS mode rules), Gateway address
uniqueness and hostname form, route parentRef distinctness (both channel variants),
"Must have port for Service reference" on route rule backendRefs, unique rule names.

Not enforced (``NOT_ENFORCED``): rules about fields we do not read yet — Gateway
infrastructure label/annotation keys and per-port frontend TLS, every HTTPRoute/GRPCRoute
filter, match, CORS, timeout and session-persistence rule, TLSRoute hostname forms — and
GatewayClass "Value is immutable", a transition rule that needs the previous object.
``tests/unit/test_api_cel.py`` fails when a CRD update adds a rule missing from both lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

Problem = tuple[str, str]

_L4_OR_HTTP = ("HTTP", "TCP", "UDP")
_HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _listeners(obj: dict[str, Any]) -> list[dict[str, Any]]:
    listeners = (obj.get("spec") or {}).get("listeners") or []
    return [item for item in listeners if isinstance(item, dict)]


def _tls_forbidden(obj: dict[str, Any]) -> Iterator[Problem]:
    for i, listener in enumerate(_listeners(obj)):
        if listener.get("protocol") in _L4_OR_HTTP and "tls" in listener:
            yield f"spec.listeners[{i}].tls", "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"


def _https_terminate(obj: dict[str, Any]) -> Iterator[Problem]:
    for i, listener in enumerate(_listeners(obj)):
        tls = listener.get("tls")
        if listener.get("protocol") == "HTTPS" and isinstance(tls, dict):
            if tls.get("mode", "") not in ("", "Terminate"):
                yield f"spec.listeners[{i}].tls.mode", "tls mode must be Terminate for protocol HTTPS"


def _tls_mode_set(obj: dict[str, Any]) -> Iterator[Problem]:
    for i, listener in enumerate(_listeners(obj)):
        tls = listener.get("tls")
        if listener.get("protocol") == "TLS" and not (isinstance(tls, dict) and tls.get("mode")):
            yield f"spec.listeners[{i}].tls", "tls mode must be set for protocol TLS"


def _hostname_forbidden(obj: dict[str, Any]) -> Iterator[Problem]:
    for i, listener in enumerate(_listeners(obj)):
        if listener.get("protocol") in ("TCP", "UDP") and listener.get("hostname"):
            yield f"spec.listeners[{i}].hostname", "hostname must not be specified for protocols ['TCP', 'UDP']"


def _listener_names_unique(obj: dict[str, Any]) -> Iterator[Problem]:
    seen: set[object] = set()
    for i, listener in enumerate(_listeners(obj)):
        if listener.get("name") in seen:
            yield f"spec.listeners[{i}].name", "Listener name must be unique within the Gateway"
        seen.add(listener.get("name"))


def _listener_combination_unique(obj: dict[str, Any]) -> Iterator[Problem]:
    seen: set[tuple[object, object, object]] = set()
    for i, listener in enumerate(_listeners(obj)):
        key = (listener.get("port"), listener.get("protocol"), listener.get("hostname"))
        if key in seen:
            yield (
                f"spec.listeners[{i}]",
                "Combination of port, protocol and hostname must be unique for each listener",
            )
        seen.add(key)


def _terminate_needs_certificates(obj: dict[str, Any]) -> Iterator[Problem]:
    for i, listener in enumerate(_listeners(obj)):
        tls = listener.get("tls")
        if isinstance(tls, dict) and tls.get("mode") == "Terminate":
            if not tls.get("certificateRefs") and not tls.get("options"):
                yield f"spec.listeners[{i}].tls", "certificateRefs or options must be specified when mode is Terminate"


def _addresses(obj: dict[str, Any]) -> list[dict[str, Any]]:
    addresses = (obj.get("spec") or {}).get("addresses") or []
    return [item for item in addresses if isinstance(item, dict)]


def _address_values_unique(address_type: str, message: str) -> Callable[[dict[str, Any]], Iterator[Problem]]:
    def check(obj: dict[str, Any]) -> Iterator[Problem]:
        seen: set[object] = set()
        for i, address in enumerate(_addresses(obj)):
            if address.get("type") != address_type or "value" not in address:
                continue
            if address["value"] in seen:
                yield f"spec.addresses[{i}].value", message
            seen.add(address["value"])

    return check


def _hostname_address_form(obj: dict[str, Any]) -> Iterator[Problem]:
    for i, address in enumerate(_addresses(obj)):
        value = address.get("value")
        if address.get("type") == "Hostname" and isinstance(value, str) and not re.match(_HOSTNAME_PATTERN, value):
            yield (
                f"spec.addresses[{i}].value",
                f"Hostname value must be empty or contain only valid characters (matching {_HOSTNAME_PATTERN})",
            )


def _parent_refs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    refs = (obj.get("spec") or {}).get("parentRefs") or []
    return [item for item in refs if isinstance(item, dict)]


def _same_parent(a: dict[str, Any], b: dict[str, Any]) -> bool:
    # Literally the CEL: an absent namespace only equals another absent (or empty) one.
    if (a.get("group"), a.get("kind"), a.get("name")) != (b.get("group"), b.get("kind"), b.get("name")):
        return False
    return (a.get("namespace") or None) == (b.get("namespace") or None)


def _set(ref: dict[str, Any], field: str) -> bool:
    return ref.get(field) not in (None, "", 0)


def _parent_refs_specified(fields: tuple[str, ...], message: str) -> Callable[[dict[str, Any]], Iterator[Problem]]:
    def check(obj: dict[str, Any]) -> Iterator[Problem]:
        refs = _parent_refs(obj)
        for j, later in enumerate(refs):
            for earlier in refs[:j]:
                if _same_parent(earlier, later) and any(_set(earlier, f) != _set(later, f) for f in fields):
                    yield f"spec.parentRefs[{j}]", message
                    break

    return check


def _parent_refs_unique(fields: tuple[str, ...], message: str) -> Callable[[dict[str, Any]], Iterator[Problem]]:
    def check(obj: dict[str, Any]) -> Iterator[Problem]:
        refs = _parent_refs(obj)
        for j, later in enumerate(refs):
            for earlier in refs[:j]:
                if _same_parent(earlier, later) and all(
                    (earlier.get(f) or None) == (later.get(f) or None) for f in fields
                ):
                    yield f"spec.parentRefs[{j}]", message
                    break

    return check


def _rules(obj: dict[str, Any]) -> list[dict[str, Any]]:
    rules = (obj.get("spec") or {}).get("rules") or []
    return [item for item in rules if isinstance(item, dict)]


def _service_refs_have_port(obj: dict[str, Any]) -> Iterator[Problem]:
    for i, rule in enumerate(_rules(obj)):
        for j, ref in enumerate(rule.get("backendRefs") or []):
            if isinstance(ref, dict) and ref.get("group", "") == "" and ref.get("kind") == "Service" and "port" not in ref:
                yield f"spec.rules[{i}].backendRefs[{j}].port", "Must have port for Service reference"


def _rule_names_unique(obj: dict[str, Any]) -> Iterator[Problem]:
    seen: set[object] = set()
    for i, rule in enumerate(_rules(obj)):
        name = rule.get("name")
        if name is not None and name in seen:
            yield f"spec.rules[{i}].name", "Rule name must be unique within the route"
        seen.add(name)


_SECTION = "sectionName must be {} when parentRefs includes 2 or more references to the same parent"
_SECTION_OR_PORT = "sectionName or port must be {} when parentRefs includes 2 or more references to the same parent"

_CHECKS: dict[str, Callable[[dict[str, Any]], Iterator[Problem]]] = {
    "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']": _tls_forbidden,
    "tls mode must be Terminate for protocol HTTPS": _https_terminate,
    "tls mode must be set for protocol TLS": _tls_mode_set,
    "hostname must not be specified for protocols ['TCP', 'UDP']": _hostname_forbidden,
    "Listener name must be unique within the Gateway": _listener_names_unique,
    "Combination of port, protocol and hostname must be unique for each listener": _listener_combination_unique,
    "certificateRefs or options must be specified when mode is Terminate": _terminate_needs_certificates,
    "IPAddress values must be unique": _address_values_unique("IPAddress", "IPAddress values must be unique"),
    "Hostname values must be unique": _address_values_unique("Hostname", "Hostname values must be unique"),
    f"Hostname value must be empty or contain only valid characters (matching {_HOSTNAME_PATTERN})": _hostname_address_form,
    _SECTION.format("specified"): _parent_refs_specified(("sectionName",), _SECTION.format("specified")),
    _SECTION.format("unique"): _parent_refs_unique(("sectionName",), _SECTION.format("unique")),
    _SECTION_OR_PORT.format("specified"): _parent_refs_specified(
        ("sectionName", "port"), _SECTION_OR_PORT.format("specified")
    ),
    _SECTION_OR_PORT.format("unique"): _parent_refs_unique(("sectionName", "port"), _SECTION_OR_PORT.format("unique")),
    "Must have port for Service reference": _service_refs_have_port,
    "Rule name must be unique within the route": _rule_names_unique,
}

ENFORCED: frozenset[str] = frozenset(_CHECKS)

NOT_ENFORCED: frozenset[str] = frozenset(
    {
        # GatewayClass: a transition rule (self == oldSelf); files have no old object.
        "Value is immutable",
        # Gateway fields we do not read yet.
        "Annotation keys must be in the form of an optional DNS subdomain prefix followed by a required name segment of up to 63 characters.",
        "If specified, the annotation key's prefix must be a DNS subdomain not longer than 253 characters in total.",
        "Label keys must be in the form of an optional DNS subdomain prefix followed by a required name segment of up to 63 characters.",
        "If specified, the label key's prefix must be a DNS subdomain not longer than 253 characters in total.",
        "Port for TLS configuration must be unique within the Gateway",
        # TLSRoute hostnames (forwarded later by the L7 sidecar).
        "Hostnames cannot contain an IP",
        "Hostnames must be valid based on RFC-1123",
        "Wildcards on hostnames must be the first label, and the rest of hostname must be valid based on RFC-1123",
        # HTTPRoute / GRPCRoute matching, filters and policies (L7 sidecar).
        "AbsoluteTimeout must be specified when cookie lifetimeType is Permanent",
        "AllowHeaders cannot contain '*' alongside other methods",
        "AllowMethods cannot contain '*' alongside other methods",
        "AllowOrigins cannot contain '*' alongside other origins",
        "CORS filter cannot be repeated",
        "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both",
        "One or both of 'service' or 'method' must be specified",
        "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter",
        "RequestHeaderModifier filter cannot be repeated",
        "RequestRedirect filter cannot be repeated",
        "RequestRedirect filter must not be used together with backendRefs",
        "ResponseHeaderModifier filter cannot be repeated",
        "URLRewrite filter cannot be repeated",
        "When using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
        "When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
        "While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than 128",
        "Within backendRefs, When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
        "Within backendRefs, when using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
        "backendRequest timeout cannot be longer than request timeout",
        "cookieConfig can only be set with type Cookie",
        "filter.cors must be nil if the filter.type is not CORS",
        "filter.cors must be specified for CORS filter.type",
        "filter.extensionRef must be nil if the filter.type is not ExtensionRef",
        "filter.extensionRef must be specified for ExtensionRef filter.type",
        "filter.externalAuth must be nil if the filter.type is not ExternalAuth",
        "filter.externalAuth must be specified for ExternalAuth filter.type",
        "filter.requestHeaderModifier must be nil if the filter.type is not RequestHeaderModifier",
        "filter.requestHeaderModifier must be specified for RequestHeaderModifier filter.type",
        "filter.requestMirror must be nil if the filter.type is not RequestMirror",
        "filter.requestMirror must be specified for RequestMirror filter.type",
        "filter.requestRedirect must be nil if the filter.type is not RequestRedirect",
        "filter.requestRedirect must be specified for RequestRedirect filter.type",
        "filter.responseHeaderModifier must be nil if the filter.type is not ResponseHeaderModifier",
        "filter.responseHeaderModifier must be specified for ResponseHeaderModifier filter.type",
        "filter.urlRewrite must be nil if the filter.type is not URLRewrite",
        "filter.urlRewrite must be specified for URLRewrite filter.type",
        "grpc must be specified when protocol is set to 'GRPC'",
        "http must be specified when protocol is set to 'HTTP'",
        "method must only contain valid characters (matching ^[A-Za-z_][A-Za-z_0-9]*$)",
        "must not contain '#' when type one of ['Exact', 'PathPrefix']",
        "must not contain '%2F' when type one of ['Exact', 'PathPrefix']",
        "must not contain '%2f' when type one of ['Exact', 'PathPrefix']",
        "must not contain '/../' when type one of ['Exact', 'PathPrefix']",
        "must not contain '/./' when type one of ['Exact', 'PathPrefix']",
        "must not contain '//' when type one of ['Exact', 'PathPrefix']",
        "must not end with '/.' when type one of ['Exact', 'PathPrefix']",
        "must not end with '/..' when type one of ['Exact', 'PathPrefix']",
        "must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for types ['Exact', 'PathPrefix']",
        "numerator must be less than or equal to denominator",
        "protocol must be 'GRPC' when grpc is set",
        "protocol must be 'HTTP' when http is set",
        "replaceFullPath must be specified when type is set to 'ReplaceFullPath'",
        "replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'",
        "service must only contain valid characters (matching ^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$)",
        "type must be 'ReplaceFullPath' when replaceFullPath is set",
        "type must be 'ReplacePrefixMatch' when replacePrefixMatch is set",
        "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']",
        "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
    }
)


def rule_messages(openapi: dict[str, Any]) -> frozenset[str]:
    """The message of every CEL rule in a schema's spec (status is never validated)."""
    found: set[str] = set()

    def walk(node: Any, top: bool) -> None:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations") or ():
                found.add(rule.get("message") or rule["rule"])
            for key, value in node.items():
                if key == "properties":
                    for name, sub in value.items():
                        if not (top and name == "status"):
                            walk(sub, False)
                elif key in ("items", "additionalProperties"):
                    walk(value, False)

    walk(openapi, True)
    return frozenset(found)


def cel_problems(present: frozenset[str], instance: dict[str, Any]) -> list[Problem]:
    """Violations of the enforced rules among ``present`` (a schema's rule messages)."""
    problems = [problem for message, check in _CHECKS.items() if message in present for problem in check(instance)]
    return sorted(problems)
