"""The loader's layout comparison on ctypes types (the packet tier runs it against the
types bcc derives from the real compiled programs)."""

from __future__ import annotations

import ctypes
import ipaddress
from types import SimpleNamespace

import pytest

from ctl.dataplane import abi
from ctl.dataplane.abicheck import AbiMismatch, check, differences, layout


class addr(ctypes.Union):  # noqa: N801 - named as bcc names C types
    _fields_ = [("w", ctypes.c_uint32 * 4), ("b", ctypes.c_uint8 * 16)]


class backend(ctypes.Structure):  # noqa: N801
    _fields_ = [("addr", addr), ("port", ctypes.c_uint16), ("family", ctypes.c_uint8), ("pad", ctypes.c_uint8)]


def test_layout_flattens_nested_unions_and_arrays() -> None:
    assert layout(abi.Backend) == {
        "<self>": (0, 20), "addr": (0, 16), "addr.w": (0, 16), "addr.b": (0, 16),
        "port": (16, 2), "family": (18, 1), "pad": (19, 1),
    }


def test_the_real_mirror_matches_a_same_shaped_struct() -> None:
    assert differences(abi.Backend, backend) == []


def test_bccs_own_padding_members_are_ignored() -> None:
    class Mirror(ctypes.Structure):
        _fields_ = [("x", ctypes.c_uint32), ("y", ctypes.c_uint64)]

    class compiled(ctypes.Structure):  # noqa: N801
        _fields_ = [("x", ctypes.c_uint32), ("__pad_0", ctypes.c_uint8 * 4), ("y", ctypes.c_uint64)]

    assert differences(Mirror, compiled) == []


def test_a_field_that_moved_is_named_with_both_places() -> None:
    class Moved(ctypes.Structure):
        _fields_ = [("addr", abi.Addr), ("family", ctypes.c_uint8), ("pad", ctypes.c_uint8), ("port", ctypes.c_uint16)]

    assert differences(Moved, backend) == [
        ("port", "offset 16 size 2 in the compiled program, offset 18 size 2 in the mirror"),
        ("family", "offset 18 size 1 in the compiled program, offset 16 size 1 in the mirror"),
        ("pad", "offset 19 size 1 in the compiled program, offset 17 size 1 in the mirror"),
    ]


def test_missing_fields_and_sizes_are_named_both_ways() -> None:
    class Shorter(ctypes.Structure):
        _fields_ = [("addr", abi.Addr), ("port", ctypes.c_uint16), ("flags", ctypes.c_uint16)]

    assert differences(Shorter, backend) == [
        ("family", "in the compiled program, missing from the mirror"),
        ("pad", "in the compiled program, missing from the mirror"),
        ("flags", "in the mirror, missing from the compiled program"),
    ]

    class Wider(ctypes.Structure):
        _fields_ = [("addr", abi.Addr), ("port", ctypes.c_uint32)]

    assert differences(Wider, backend) == [
        ("port", "offset 16 size 2 in the compiled program, offset 16 size 4 in the mirror"),
        ("family", "in the compiled program, missing from the mirror"),
        ("pad", "in the compiled program, missing from the mirror"),
    ]


def _tables(**by_name: tuple[type, type]):
    return lambda name: SimpleNamespace(Key=by_name[name][0], Leaf=by_name[name][1])


def test_check_names_the_map_struct_and_field() -> None:
    maps = {"backends": ("backends_v1", ctypes.c_uint32, abi.Backend)}
    check(_tables(backends=(ctypes.c_uint, backend)), maps)  # agrees: no error

    class port_wide(ctypes.Structure):  # noqa: N801
        _fields_ = [("addr", addr), ("port", ctypes.c_uint32)]

    with pytest.raises(AbiMismatch, match=r"map backends value, struct port_wide \(mirror abi\.Backend\), "
                                          r"field port: offset 16 size 4 in the compiled program, "
                                          r"offset 16 size 2 in the mirror \(and 2 more\); refusing to start"):
        check(_tables(backends=(ctypes.c_uint, port_wide)), maps)

    with pytest.raises(AbiMismatch, match=r"map backends key, c_ulong \(mirror abi\.c_uint\), size: "
                                          r"offset 0 size 8 in the compiled program, offset 0 size 4"):
        check(_tables(backends=(ctypes.c_uint64, backend)), maps)


def test_per_cpu_values_are_compared_one_cpu_at_a_time() -> None:
    maps = {"svc_stats": ("svc_stats_v1", ctypes.c_uint32, abi.FlowStats)}
    per_cpu = SimpleNamespace(Key=ctypes.c_uint32, Leaf=abi.FlowStats * 2, sLeaf=abi.FlowStats)
    check(lambda name: per_cpu, maps)


def test_addresses_fill_the_union_from_its_first_byte_the_rest_zero():
    v4, v6 = ipaddress.IPv4Address("100.64.1.2"), ipaddress.IPv6Address("fd00::a:1")
    assert bytes(abi.to_addr(v4)) == v4.packed + bytes(12)
    assert bytes(abi.to_addr(v6)) == v6.packed
    assert abi.from_addr(abi.to_addr(v4), abi.FAMILY_V4) == v4
    assert abi.from_addr(abi.to_addr(v6), abi.FAMILY_V6) == v6


def test_backends_written_in_bulk_have_the_structs_layout():
    from types import SimpleNamespace

    from ctl.dataplane.writer import backend_bytes, backend_struct

    for address, port in (("100.64.1.2", 8080), ("fd00::a:1", 443), ("10.0.0.1", 65535)):
        endpoint = SimpleNamespace(address=ipaddress.ip_address(address), port=port)
        assert backend_bytes(endpoint) == bytes(backend_struct(endpoint))
