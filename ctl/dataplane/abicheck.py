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
    return layout_differences(layout(mirror), layout(compiled))


def layout_differences(ours: Layout, theirs: Layout) -> list[tuple[str, str]]:
    """`differences` between a mirror's layout and a compiled one."""
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


# map -> role ("key", "value") -> (compiled type's name, its layout)
CompiledLayouts = dict[str, dict[str, tuple[str, Layout]]]


def compiled_layouts(get_table: Callable[[str], Any],
                     maps: Mapping[str, tuple[str, type, type]] = abi.PINNED_MAPS) -> CompiledLayouts:
    """The layouts the compiler gave every checked map's key and value (kept in the
    program cache, so that a start loading from it runs the same check)."""
    found: CompiledLayouts = {}
    for name in maps:
        if name in _UNCHECKED:
            continue
        table = get_table(name)
        # per-CPU maps: bcc's Leaf is the array of one value per CPU, sLeaf the value
        compiled_value = getattr(table, "sLeaf", table.Leaf)
        found[name] = {role: (type_name(compiled), layout(compiled))
                       for role, compiled in (("key", table.Key), ("value", compiled_value))}
    return found


def check(get_table: Callable[[str], Any],
          maps: Mapping[str, tuple[str, type, type]] = abi.PINNED_MAPS) -> None:
    """Raises AbiMismatch naming the map, struct and field of the first difference."""
    check_layouts(compiled_layouts(get_table, maps), maps)


def check_layouts(compiled: CompiledLayouts,
                  maps: Mapping[str, tuple[str, type, type]] = abi.PINNED_MAPS) -> None:
    """`check` on layouts recorded earlier; a checked map missing from them is a mismatch."""
    problems: list[str] = []
    for name, (_, key_t, value_t) in maps.items():
        if name in _UNCHECKED:
            continue
        if name not in compiled:
            problems.append(f"map {name}: no compiled layout")
            continue
        for role, mirror in (("key", key_t), ("value", value_t)):
            compiled_name, compiled_layout = compiled[name][role]
            for field, why in layout_differences(layout(mirror), compiled_layout):
                what = "size" if field == SELF else f"field {field}"
                problems.append(f"map {name} {role}, {compiled_name} (mirror abi.{mirror.__name__}), "
                                f"{what}: {why}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise AbiMismatch(f"the compiled BPF programs and ctl/dataplane/abi.py disagree: {problems[0]}{more}; "
                          "refusing to start (a struct and its mirror change together)")
