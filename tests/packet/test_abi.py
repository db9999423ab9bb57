"""The Python mirrors in ctl/dataplane/abi.py against the layout the compiler gave the
loaded programs (bcc derives ctypes types from the compiled object's type info): every
size and every field offset, recursively, so C and Python cannot drift apart."""

from __future__ import annotations

import ctypes
import re
import secrets
import shutil
from pathlib import Path

import pytest

from ctl.dataplane import abi, abicheck
from ctl.dataplane.abicheck import AbiMismatch
from ctl.dataplane.loader import DataplaneSpec, compile_programs
from ctl.dataplane.source import BPF_DIR
from lab.harness import TEST_SPEC_SIZES

pytestmark = pytest.mark.packet


def layout(ctype: type, prefix: str = "") -> dict[str, tuple[int, int]]:
    """field path -> (offset, size), flattened through nested structs, unions, arrays."""
    out = {prefix or "<self>": (0, ctypes.sizeof(ctype))}
    for name, field_type, *_ in getattr(ctype, "_fields_", ()):
        if name.startswith("__pad"):  # bcc's own padding members
            continue
        desc = getattr(ctype, name)
        for path, (off, size) in layout(field_type, f"{prefix}.{name}" if prefix else name).items():
            out[path] = (desc.offset + off, size)
    return out


@pytest.mark.parametrize("map_name", [m for m in abi.PINNED_MAPS if m != "maglev_outer"])
def test_map_key_and_value_match_the_compiled_layout(packet_lab, map_name):
    _, key_t, value_t = abi.PINNED_MAPS[map_name]
    table = packet_lab.dataplane.programs._modules[0].get_table(map_name.encode())
    assert layout(key_t) == layout(table.Key), f"{map_name} key"
    leaf = getattr(table, "sLeaf", table.Leaf)  # per-CPU maps: bcc's Leaf is one per CPU
    assert layout(value_t) == layout(leaf), f"{map_name} value"


def _c_enum(name: str) -> list[str]:
    text = (BPF_DIR / "lib" / "consts.h").read_text()
    body = re.search(r"enum %s \{(.*?)\};" % name, text, re.S).group(1)
    return [m.group(1) for m in re.finditer(r"^\s*([A-Z_0-9]+)\s*[,=]", body, re.M)]


def test_enums_match_consts_h():
    assert [f"{r.name}" for r in abi.Reason] == [n.removeprefix("REASON_") if n == "REASON_NONE" else n
                                                 for n in _c_enum("reason")][:-1]
    assert [f"HOOK_{h.name}" for h in abi.Hook] == _c_enum("hook")[:-1]
    assert [f"V_{v.name}" for v in abi.Verdict] == _c_enum("verdict")[:-1]
    assert [f"NAT_{n.name}" for n in abi.NatModeC] == _c_enum("nat_mode")


class _SwappedCtEntry(ctypes.Structure):
    """abi.CtEntry with backend_id and service_id swapped: same size, wrong places."""

    _fields_ = [
        ("last_seen", abi.u64), ("service_id", abi.u32), ("backend_id", abi.u32), ("nat_addr", abi.Addr),
        ("nat_port", abi.u16), ("state", abi.u8), ("pad", abi.u8), ("backend_check", abi.u32),
        ("backend", abi.Backend), ("backend_gen", abi.u32), ("hop", abi.NextHop),
    ]


def test_loader_refuses_a_mirror_that_disagrees_naming_struct_and_field(packet_lab, monkeypatch):
    # packet_lab: only for its requirement checks; this compiles its own programs
    pin_dir = Path(f"/sys/fs/bpf/xgabi{secrets.token_hex(3)}")
    monkeypatch.setitem(abi.PINNED_MAPS, "ct_fwd", (abi.PINNED_MAPS["ct_fwd"][0], abi.CtKey, _SwappedCtEntry))
    try:
        with pytest.raises(AbiMismatch) as refused:
            compile_programs(DataplaneSpec(pin_dir=pin_dir, **TEST_SPEC_SIZES))
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)
    message = str(refused.value)
    assert "map ct_fwd value, struct ct_entry (mirror abi._SwappedCtEntry), field backend_id: " \
           "offset 8 size 4 in the compiled program, offset 12 size 4 in the mirror" in message, message
    assert "(and 1 more)" in message  # service_id, the other half of the swap
    assert message.endswith("refusing to start (a struct and its mirror change together)")


def test_the_loaders_check_passes_on_the_real_mirrors(packet_lab):
    for module in packet_lab.dataplane.programs._modules:
        abicheck.check(lambda name, module=module: module.get_table(name.encode()))
