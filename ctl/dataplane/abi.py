"""Python mirrors of the structs and enums in bpf/lib/{consts,structs}.h.

Field names are the C names, so tests/packet/test_abi.py can check every size and
offset against the layout the compiler produced for the loaded program. Addresses and
ports are stored in network byte order, as in C; the helpers below convert.
"""

from __future__ import annotations

import ctypes
import enum
import ipaddress
import socket

from ctl.model import IPAddress

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64

FAMILY_V4 = 4
FAMILY_V6 = 6
BACKEND_REJECT = 0
SNAT_MAX_ADDRS = 4  # addresses a frontend can SNAT from (struct frontend.snat_addrs)


class Gen(enum.IntEnum):
    """Indexes of the generations map (GEN_* in consts.h)."""

    FIB = 0       # routes or neighbours changed: cached next hops are stale
    BACKENDS = 1  # a backend was deleted or changed


GEN_MAX = len(Gen)


class Reason(enum.IntEnum):
    """enum reason: why a packet was dropped or handed to the kernel."""

    NONE = 0
    DROP_MALFORMED = 1
    DROP_FRAGMENT = 2
    DROP_NO_TABLE = 3
    DROP_NO_BACKEND = 4
    DROP_REJECT = 5
    DROP_SNAT_EXHAUSTED = 6
    DROP_NO_ROUTE = 7
    DROP_FAMILY = 8
    DROP_WRITE = 9
    PASS_MALFORMED = 10
    PASS_FRAGMENT = 11
    PASS_NO_NEIGH = 12
    PASS_FIB = 13
    PASS_TTL = 14
    PASS_IPV6_EXT = 15

    @property
    def is_drop(self) -> bool:
        return self.name.startswith("DROP_")


REASON_MAX = len(Reason)


class Hook(enum.IntEnum):
    XDP = 0
    TC_INGRESS = 1
    TC_EGRESS = 2


class Verdict(enum.IntEnum):
    PASS = 0
    DROP = 1
    TX = 2
    REDIRECT = 3


class NatModeC(enum.IntEnum):
    SNAT = 0
    DNAT = 1


class CtState(enum.IntFlag):
    SEEN_REPLY = 0x01
    FIN_FWD = 0x02
    FIN_REV = 0x04
    RST = 0x08
    REV_CLOSED_FIRST = 0x10  # the backend's FIN came first: it holds TIME_WAIT


class Addr(ctypes.Union):
    _fields_ = [("w", u32 * 4), ("b", u8 * 16)]


class FrontendKey(ctypes.Structure):
    _fields_ = [("addr", Addr), ("port", u16), ("proto", u8), ("family", u8)]


class Frontend(ctypes.Structure):
    _fields_ = [("id", u32), ("nat_mode", u8), ("snat_count", u8), ("pad", u8 * 2),
                ("snat_addrs", Addr * SNAT_MAX_ADDRS)]


class Backend(ctypes.Structure):
    _fields_ = [("addr", Addr), ("port", u16), ("family", u8), ("pad", u8)]


class NextHop(ctypes.Structure):
    _fields_ = [("ifindex", u32), ("gen", u32), ("dmac", u8 * 6), ("smac", u8 * 6),
                ("mtu", u16), ("pad", u8 * 2)]


class CtKey(ctypes.Structure):
    _fields_ = [
        ("saddr", Addr), ("daddr", Addr), ("sport", u16), ("dport", u16),
        ("proto", u8), ("family", u8), ("pad", u8 * 2),
    ]


class CtEntry(ctypes.Structure):
    _fields_ = [
        ("last_seen", u64), ("backend_id", u32), ("service_id", u32), ("nat_addr", Addr),
        ("nat_port", u16), ("state", u8), ("pad", u8), ("backend_check", u32),
        ("backend", Backend), ("backend_gen", u32), ("hop", NextHop),
    ]


class NatEntry(ctypes.Structure):
    _fields_ = [
        ("last_seen", u64), ("client_addr", Addr), ("frontend_addr", Addr),
        ("client_port", u16), ("frontend_port", u16), ("service_id", u32),
        ("backend_id", u32), ("state", u8), ("pad", u8 * 3), ("hop", NextHop),
    ]


class Config(ctypes.Structure):
    _fields_ = [
        ("hash_seed", u32), ("snat_port_min", u16), ("snat_port_max", u16),
        ("tcp_syn_timeout", u32), ("tcp_est_timeout", u32), ("tcp_close_timeout", u32),
        ("udp_timeout", u32), ("tcp_time_wait_timeout", u32), ("snat_keep_port", u8),
        ("pad", u8 * 3),
    ]


class FlowStats(ctypes.Structure):
    _fields_ = [
        ("packets_in", u64), ("bytes_in", u64), ("packets_out", u64), ("bytes_out", u64),
        ("new_flows", u64), ("rejected", u64),
    ]


class FragKey(ctypes.Structure):
    _fields_ = [("saddr", Addr), ("daddr", Addr), ("id", u32), ("proto", u8), ("family", u8), ("pad", u8 * 2)]


class FragEntry(ctypes.Structure):
    _fields_ = [("saddr", Addr), ("daddr", Addr), ("service_id", u32), ("backend_id", u32),
                ("inbound", u8), ("pad", u8 * 3)]


FRAG_SIZE = 8192  # FRAG_SIZE in consts.h
PEER_DEVS_SIZE = 256  # PEER_DEVS_SIZE in consts.h


class VipKey(ctypes.Structure):
    _fields_ = [("addr", Addr), ("family", u8), ("pad", u8 * 3)]


_ADDR_ZEROS = bytes(16)


def to_addr(ip: IPAddress) -> Addr:
    """An IPv4 address fills the first 4 bytes; the rest stay zero. (One copy from bytes:
    a cold start at 10,000 routes makes some 100,000 of these.)"""
    packed = ip.packed
    return Addr.from_buffer_copy(packed + _ADDR_ZEROS[len(packed):])


def from_addr(a: Addr, family: int) -> IPAddress:
    raw = bytes(a.b)
    return ipaddress.IPv4Address(raw[:4]) if family == FAMILY_V4 else ipaddress.IPv6Address(raw)


def family_of(ip: IPAddress) -> int:
    return FAMILY_V4 if ip.version == 4 else FAMILY_V6


def to_port(port: int) -> int:
    """Host port number -> the u16 whose memory holds it in network order."""
    return socket.htons(port)


def from_port(raw: int) -> int:
    return socket.ntohs(raw)


class MemberKey(ctypes.Structure):
    _fields_ = [("service_id", u32), ("backend_id", u32)]


class OwnerName(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 120)]


# Maps that only the control plane reads and writes (the programs never see them),
# created and pinned from Python beside the programs' maps, so that gwctl status can
# show what it needs without the agent: table digests (to tell a right table from a
# stale one after a restart), the route that owns each frontend, and every backend's
# configured weight (a drained, weight-0 backend has no table slot to be seen by).
# name -> (file, key type, value type, BPF map type)
CONTROL_MAPS: dict[str, tuple[str, type, type]] = {
    "digests": ("maglev_digest_v1", u32, u64),
    "owners": ("owners_v1", u32, OwnerName),
    "members": ("members_v1", MemberKey, u64),  # weight x 1000
}
WEIGHT_SCALE = 1000

# The pinned template of the Maglev inner maps (u32 array of --maglev-size + 1 entries:
# a table's size, then its slots; each inner map has its own size, see bpf/lib/maps.h).
MAGLEV_TEMPLATE_FILE = "maglev_template_v2"

# Pinned maps: C name -> (file name under the pin directory, key type, value type).
# The file names carry the layout version; see bpf/lib/maps.h.
PINNED_MAPS: dict[str, tuple[str, type, type]] = {
    "frontends": ("frontends_v2", FrontendKey, Frontend),
    "vips": ("vips_v1", VipKey, u32),
    "backends": ("backends_v1", u32, Backend),
    "maglev_outer": ("maglev_v3", u32, u32),
    "ct_fwd": ("ct_fwd_v2", CtKey, CtEntry),
    "ct_rev": ("ct_rev_v2", CtKey, NatEntry),
    "config": ("config_v2", u32, Config),
    "generations": ("generations_v1", u32, u32),
    "frags": ("frags_v2", FragKey, FragEntry),
    "peer_devs": ("peer_devs_v1", u32, u32),
    "svc_stats": ("svc_stats_v1", u32, FlowStats),
    "be_stats": ("be_stats_v1", u32, FlowStats),
    "reasons": ("reasons_v1", u32, u64),
    "verdicts": ("verdicts_v1", u32, u64),
}
