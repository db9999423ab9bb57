"""A yes/no check of a Draft 7 schema, compiled once into plain Python closures.

jsonschema explains every violation (path, message), and pays for it on valid objects
too: each step into a subschema builds a new validator. At 10,000 routes that was about
a third of loading a directory. Nearly every object is valid, so ``compile_check``
answers only "valid?", with jsonschema's own semantics for each keyword, and the caller
asks jsonschema for the explanation only when the answer is no.

fastjsonschema, the maintained compiler of schemas into Python, cannot take these
schemas: it rewrites ``$`` to ``\\Z`` also inside a character class (the CRDs' header
name patterns hold ``[...$...]``), and Python's ``re`` refuses that escape there.

Only the keywords the Gateway API schemas use are compiled; a schema with any other
Draft 7 keyword (``$ref``, ``patternProperties``...) is not (``None``), and jsonschema
checks it alone. Keys Draft 7 does not define are ignored, as jsonschema ignores them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jsonschema

Check = Callable[[Any], bool]

_DRAFT7 = jsonschema.Draft7Validator
_KEYWORDS = frozenset(_DRAFT7.VALIDATORS)


class _NotCompilable(Exception):
    pass


def compile_check(schema: Any, format_checker: jsonschema.FormatChecker) -> Check | None:
    """True exactly when ``jsonschema.Draft7Validator(schema, format_checker=...)`` finds
    no error; None when the schema uses a keyword this module does not compile."""
    try:
        return _compile(schema, format_checker)
    except _NotCompilable:
        return None


def _always(instance: Any) -> bool:
    return True


def _never(instance: Any) -> bool:
    return False


def _is_number(instance: Any) -> bool:
    return _DRAFT7.TYPE_CHECKER.is_type(instance, "number")


_TYPES: dict[str, Check] = {
    "string": lambda i: isinstance(i, str),
    "object": lambda i: isinstance(i, dict),
    "array": lambda i: isinstance(i, list),
    "boolean": lambda i: isinstance(i, bool),
    "null": lambda i: i is None,
    "integer": lambda i: _DRAFT7.TYPE_CHECKER.is_type(i, "integer"),
    "number": _is_number,
}


def _compile(schema: Any, formats: jsonschema.FormatChecker) -> Check:
    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict) or "$ref" in schema:
        raise _NotCompilable
    checks = [_keyword(key, value, schema, formats) for key, value in schema.items() if key in _KEYWORDS]
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]

    def every(instance: Any) -> bool:
        for check in checks:
            if not check(instance):
                return False
        return True

    return every


def _keyword(key: str, value: Any, schema: dict[str, Any], formats: jsonschema.FormatChecker) -> Check:
    match key:
        case "type":
            names = [value] if isinstance(value, str) else list(value)
            if not all(name in _TYPES for name in names):
                raise _NotCompilable
            tests = [_TYPES[name] for name in names]
            return tests[0] if len(tests) == 1 else (lambda i: any(test(i) for test in tests))
        case "properties":
            properties = [(name, _compile(sub, formats)) for name, sub in value.items()]

            def each_property(i: Any) -> bool:
                if not isinstance(i, dict):
                    return True
                for name, check in properties:
                    if name in i and not check(i[name]):
                        return False
                return True

            return each_property
        case "additionalProperties":
            if "patternProperties" in schema:
                raise _NotCompilable
            declared = frozenset(schema.get("properties", {}))
            if isinstance(value, dict):
                extra = _compile(value, formats)
                return lambda i: not isinstance(i, dict) or all(extra(v) for k, v in i.items() if k not in declared)
            if value:
                return _always
            return lambda i: not isinstance(i, dict) or all(k in declared for k in i)
        case "required":
            names = list(value)
            return lambda i: not isinstance(i, dict) or all(name in i for name in names)
        case "maxProperties":
            return lambda i: not isinstance(i, dict) or len(i) <= value
        case "minProperties":
            return lambda i: not isinstance(i, dict) or len(i) >= value
        case "items":
            if isinstance(value, list):
                positional = [_compile(sub, formats) for sub in value]
                return lambda i: not isinstance(i, list) or all(check(item) for check, item in zip(positional, i))
            item_check = _compile(value, formats)
            return lambda i: not isinstance(i, list) or all(item_check(item) for item in i)
        case "maxItems":
            return lambda i: not isinstance(i, list) or len(i) <= value
        case "minItems":
            return lambda i: not isinstance(i, list) or len(i) >= value
        case "maxLength":
            return lambda i: not isinstance(i, str) or len(i) <= value
        case "minLength":
            return lambda i: not isinstance(i, str) or len(i) >= value
        case "pattern":
            search = re.compile(value).search
            return lambda i: not isinstance(i, str) or search(i) is not None
        case "format":
            return lambda i: formats.conforms(i, value)
        case "minimum":
            return lambda i: not _is_number(i) or not i < value
        case "maximum":
            return lambda i: not _is_number(i) or not i > value
        case "enum":
            # jsonschema compares a string only with strings, and a number (never a
            # bool) with numbers by value; other members are left to it.
            members = frozenset(value)
            if all(isinstance(member, str) for member in value):
                return lambda i: isinstance(i, str) and i in members
            if all(type(member) is int for member in value):
                return lambda i: type(i) is not bool and isinstance(i, (int, float)) and i in members
            raise _NotCompilable
        case "anyOf":
            branches = [_compile(sub, formats) for sub in value]
            return lambda i: any(branch(i) for branch in branches)
        case "oneOf":
            branches = [_compile(sub, formats) for sub in value]
            return lambda i: sum(1 for branch in branches if branch(i)) == 1
        case "not":
            negated = _compile(value, formats)
            return lambda i: not negated(i)
        case _:
            raise _NotCompilable
