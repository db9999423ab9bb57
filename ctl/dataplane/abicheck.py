"""The Python mirrors (abi.py) against the layouts the compiler gave the loaded programs.

bcc derives a ctypes type for every map's key and value from the compiled object's type
information. The loader compares each with its mirror, every field's offset and size,
recursively, before it writes a single map entry: a struct edited on one side only is
refused at start with the struct and field named, instead of corrupting maps. Pure:
takes a table lookup, returns or raises.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from typing import Any

from . import abi

# field path -> (offset, size); "<self>" is the whole type
Layout = dict[str, tuple[int, int]]
SELF = "<self>"

# A map-in-map's values are inner-map fds: nothing to compare.
_UNCHECKED = frozenset({"maglev_outer"})


class AbiMismatch(RuntimeError):
    """The compiled programs and ctl/dataplane/abi.py disagree on a layout."""


def layout(ctype: type, prefix: str = "") -> Layout:
    """Field path -> (offset, size), flattened through nested structs, unions and arrays."""
    out = {prefix or SELF: (0, ctypes.sizeof(ctype))}
    for name, field_type, *_ in getattr(ctype, "_fields_", ()):
        if name.startswith("__pad"):  # bcc's own explicit padding members
            continue
        offset = getattr(ctype, name).offset
        for path, (inner, size) in layout(field_type, f"{prefix}.{name}" if prefix else name).items():
            out[path] = (offset + inner, size)
    return out


def differences(mirror: type, compiled: type) -> list[tuple[str, str]]:
    """(field, what differs) for every field whose place or size is not the same."""
    ours, theirs = layout(mirror), layout(compiled)
    found: list[tuple[str, str]] = []
    for path in [*theirs, *(p for p in ours if p not in theirs)]:
        if path not in ours:
            found.append((path, "in the compiled program, missing from the mirror"))
        elif path not in theirs:
            found.append((path, "in the mirror, missing from the compiled program"))
        elif ours[path] != theirs[path]:
            (o_off, o_size), (c_off, c_size) = ours[path], theirs[path]
            found.append((path, f"offset {c_off} size {c_size} in the compiled program, "
                                f"offset {o_off} size {o_size} in the mirror"))
    return found


def type_name(ctype: type) -> str:
    if issubclass(ctype, ctypes.Structure):
        return f"struct {ctype.__name__}"
    if issubclass(ctype, ctypes.Union):
        return f"union {ctype.__name__}"
    return ctype.__name__


def check(get_table: Callable[[str], Any],
          maps: Mapping[str, tuple[str, type, type]] = abi.PINNED_MAPS) -> None:
    """Raises AbiMismatch naming the map, struct and field of the first difference."""
    problems: list[str] = []
    for name, (_, key_t, value_t) in maps.items():
        if name in _UNCHECKED:
            continue
        table = get_table(name)
        # per-CPU maps: bcc's Leaf is the array of one value per CPU, sLeaf the value
        compiled_value = getattr(table, "sLeaf", table.Leaf)
        for role, mirror, compiled in (("key", key_t, table.Key), ("value", value_t, compiled_value)):
            for field, why in differences(mirror, compiled):
                what = "size" if field == SELF else f"field {field}"
                problems.append(f"map {name} {role}, {type_name(compiled)} (mirror abi.{mirror.__name__}), "
                                f"{what}: {why}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise AbiMismatch(f"the compiled BPF programs and ctl/dataplane/abi.py disagree: {problems[0]}{more}; "
                          "refusing to start (a struct and its mirror change together)")
