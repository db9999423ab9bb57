"""The bpf(2) operations we need, through libbpf's low-level API (libbpf.so.1).

bcc compiles and loads programs, but it cannot open a pinned map in another process,
create a map-in-map inner map, batch-read an array or run BPF_PROG_TEST_RUN. libbpf's
thin syscall wrappers do all of that; this module gives them Python signatures and
turns negative return codes into OSError.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

MAP_TYPE_HASH = 1
MAP_TYPE_ARRAY = 2
MAP_TYPE_PERCPU_ARRAY = 6
MAP_TYPE_LRU_HASH = 9
MAP_TYPE_HASH_OF_MAPS = 13

BPF_F_MMAPABLE = 1 << 10
BPF_F_INNER_MAP = 1 << 12


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class _MapCreateOpts(ctypes.Structure):  # libbpf's struct bpf_map_create_opts
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("numa_node", ctypes.c_uint32),
        ("map_ifindex", ctypes.c_uint32),
    ]


class _BatchOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


@cache
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise OSError(f"libbpf not found ({name}): install Debian's libbpf1") from exc
    vp, u32, u64, cint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int
    signatures = {
        "bpf_map_create": ([cint, ctypes.c_char_p, u32, u32, u32, vp], cint),
        "bpf_map_update_elem": ([cint, vp, vp, u64], cint),
        "bpf_map_lookup_elem": ([cint, vp, vp], cint),
        "bpf_map_delete_elem": ([cint, vp], cint),
        "bpf_map_get_next_key": ([cint, vp, vp], cint),
        "bpf_map_lookup_batch": ([cint, vp, vp, vp, vp, ctypes.POINTER(u32), vp], cint),
        "bpf_map_update_batch": ([cint, vp, vp, ctypes.POINTER(u32), vp], cint),
        "bpf_obj_get": ([ctypes.c_char_p], cint),
        "bpf_obj_pin": ([cint, ctypes.c_char_p], cint),
        "bpf_map_get_fd_by_id": ([u32], cint),
        "bpf_prog_get_fd_by_id": ([u32], cint),
        "bpf_btf_get_fd_by_id": ([u32], cint),
        "bpf_obj_get_info_by_fd": ([cint, vp, ctypes.POINTER(u32)], cint),
        "bpf_prog_test_run_opts": ([cint, vp], cint),
        "bpf_prog_load": ([cint, ctypes.c_char_p, ctypes.c_char_p, vp, ctypes.c_size_t, vp], cint),
        "libbpf_num_possible_cpus": ([], cint),
    }
    for fn, (argtypes, restype) in signatures.items():
        getattr(lib, fn).argtypes = argtypes
        getattr(lib, fn).restype = restype
    return lib


def _check(rc: int, what: str) -> int:
    if rc < 0:
        code = -rc if rc != -1 else ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return rc


def possible_cpus() -> int:
    return _check(_lib().libbpf_num_possible_cpus(), "counting possible CPUs")


@dataclass(frozen=True)
class MapInfo:
    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    name: str


def _raw_map_info(fd: int) -> _MapInfo:
    info = _MapInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), "map info")
    return info


def map_info(fd: int) -> MapInfo:
    info = _raw_map_info(fd)
    return MapInfo(info.type, info.id, info.key_size, info.value_size, info.max_entries,
                   info.name.decode())


@dataclass(frozen=True)
class MapShape:
    """Everything a map-in-map compares when it takes an inner map."""

    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    btf_id: int  # 0: created without type information
    btf_key_type_id: int
    btf_value_type_id: int


def map_shape(fd: int) -> MapShape:
    info = _raw_map_info(fd)
    return MapShape(info.type, info.key_size, info.value_size, info.max_entries, info.map_flags,
                    info.btf_id, info.btf_key_type_id, info.btf_value_type_id)


@contextmanager
def map_maker(template: MapShape) -> Iterator[Callable[..., int]]:
    """A function that creates maps exactly like `template`, type information included.
    Some kernels (Debian's 6.1) refuse an inner map that lacks the template's BTF even
    when every size matches: their check also compares fields BTF sets (timer_off)."""
    btf_fd = (_check(_lib().bpf_btf_get_fd_by_id(template.btf_id), f"opening BTF id {template.btf_id}")
              if template.btf_id else -1)
    opts = _MapCreateOpts(sz=ctypes.sizeof(_MapCreateOpts), map_flags=template.flags)
    if btf_fd >= 0:
        opts.btf_fd = btf_fd
        opts.btf_key_type_id = template.btf_key_type_id
        opts.btf_value_type_id = template.btf_value_type_id

    def make(name: str, max_entries: int | None = None) -> int:
        """max_entries may differ from the template's where its flags say so
        (BPF_F_INNER_MAP)."""
        entries = template.max_entries if max_entries is None else max_entries
        return _check(_lib().bpf_map_create(template.type, name.encode()[:15], template.key_size,
                                            template.value_size, entries, ctypes.byref(opts)),
                      f"creating map {name}")
    try:
        yield make
    finally:
        if btf_fd >= 0:
            os.close(btf_fd)


def obj_get(path: str | os.PathLike) -> int:
    return _check(_lib().bpf_obj_get(os.fsencode(path)), f"opening pinned {path}")


def obj_pin(fd: int, path: str | os.PathLike) -> None:
    _check(_lib().bpf_obj_pin(fd, os.fsencode(path)), f"pinning {path}")


def map_fd_by_id(map_id: int) -> int:
    return _check(_lib().bpf_map_get_fd_by_id(map_id), f"opening map id {map_id}")


def prog_fd_by_id(prog_id: int) -> int:
    return _check(_lib().bpf_prog_get_fd_by_id(prog_id), f"opening program id {prog_id}")


def map_create(map_type: int, name: str, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, inner_map_fd: int = 0) -> int:
    """inner_map_fd: the template of a map of maps' values."""
    opts = _MapCreateOpts(sz=ctypes.sizeof(_MapCreateOpts), map_flags=flags, inner_map_fd=inner_map_fd)
    return _check(
        _lib().bpf_map_create(map_type, name.encode()[:15], key_size, value_size, max_entries,
                              ctypes.byref(opts)),
        f"creating map {name}",
    )


def map_update(fd: int, key: ctypes.Structure | ctypes._SimpleCData, value, flags: int = BPF_ANY) -> None:
    _check(_lib().bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value), flags), "map update")


def map_lookup(fd: int, key, value) -> bool:
    """Fills `value`; False when the key is absent."""
    rc = _lib().bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value))
    if rc < 0 and (-rc == errno.ENOENT or ctypes.get_errno() == errno.ENOENT):
        return False
    _check(rc, "map lookup")
    return True


def map_delete(fd: int, key) -> bool:
    """False when the key was already absent."""
    rc = _lib().bpf_map_delete_elem(fd, ctypes.byref(key))
    if rc < 0 and (-rc == errno.ENOENT or ctypes.get_errno() == errno.ENOENT):
        return False
    _check(rc, "map delete")
    return True


def map_keys(fd: int, key_type: type) -> list:
    """Every key of a hash map (a snapshot; entries may change meanwhile)."""
    keys = []
    prev, nxt = None, key_type()
    while True:
        rc = _lib().bpf_map_get_next_key(fd, None if prev is None else ctypes.byref(prev), ctypes.byref(nxt))
        if rc < 0:
            if -rc == errno.ENOENT or ctypes.get_errno() == errno.ENOENT:
                return keys
            _check(rc, "map iteration")
        keys.append(nxt)
        prev, nxt = nxt, key_type()


_UNSUPPORTED = (errno.EINVAL, errno.EOPNOTSUPP, 524)  # 524: the kernel's ENOTSUPP


def map_batch(fd: int, key_type: type, value_type: type, start: bytes | None = None,
              chunk: int = 4096) -> tuple[list[tuple], bytes | None] | None:
    """One BPF_MAP_LOOKUP_BATCH of a hash map: up to ``chunk`` (key, value) rows from
    ``start`` (where an earlier batch said the next one begins; None: the map's start),
    and where the next batch begins (None: these were the last). The position is a
    bucket, which writes in between do not move. None when this kernel or map type
    cannot batch (the caller iterates instead)."""
    token_in = None if start is None else ctypes.create_string_buffer(start, len(start))
    token_out = ctypes.create_string_buffer(8)
    while True:
        keys, values = (key_type * chunk)(), (value_type * chunk)()
        n = ctypes.c_uint32(chunk)
        opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
        rc = _lib().bpf_map_lookup_batch(fd, token_in, token_out, keys, values, ctypes.byref(n),
                                         ctypes.byref(opts))
        code = 0 if rc >= 0 else (-rc if rc != -1 else ctypes.get_errno())
        if code == errno.ENOSPC:  # one bucket holds more entries than a batch: retry bigger
            chunk *= 4
            continue
        if code in _UNSUPPORTED and start is None:
            return None
        if code not in (0, errno.ENOENT):
            _check(-code, "batch lookup")
        rows = list(zip(keys[:n.value], values[:n.value]))
        return rows, (None if code == errno.ENOENT else token_out.raw)


def map_items(fd: int, key_type: type, value_type: type, chunk: int = 4096,
              between: Callable[[], None] | None = None) -> list[tuple] | None:
    """Every (key, value) of a hash map, thousands per syscall (BPF_MAP_LOOKUP_BATCH)
    instead of two syscalls per entry; a snapshot, as entries may change meanwhile.
    None when this kernel or map type cannot batch (the caller iterates instead).
    ``between`` is called before each batch after the first (it may raise to stop)."""
    first = map_batch(fd, key_type, value_type, None, chunk)
    if first is None:
        return None
    rows, start = first
    while start is not None:
        if between is not None:
            between()
        more, start = map_batch(fd, key_type, value_type, start, chunk)  # type: ignore[misc]
        rows.extend(more)
    return rows


def array_read_all(fd: int, value_type: type, count: int) -> ctypes.Array:
    """All `count` values of an array map in one batch syscall."""
    keys = (ctypes.c_uint32 * count)()
    values = (value_type * count)()
    out_batch = ctypes.c_uint32()
    n = ctypes.c_uint32(count)
    opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
    rc = _lib().bpf_map_lookup_batch(fd, None, ctypes.byref(out_batch), keys, values,
                                     ctypes.byref(n), ctypes.byref(opts))
    if rc < 0 and not (-rc == errno.ENOENT or ctypes.get_errno() == errno.ENOENT):
        _check(rc, "batch lookup")
    if n.value != count:
        raise OSError(errno.EIO, f"batch lookup returned {n.value} of {count} entries")
    return values


def array_write_all(fd: int, values: ctypes.Array) -> None:
    """Writes values[i] at index i for every i, in one batch syscall."""
    count = len(values)
    map_update_batch(fd, _indexes(count), values, count)


@cache
def _indexes(count: int) -> ctypes.Array:
    """The keys 0..count-1 of an array map (the kernel only reads them): built once
    per size, as filling it element by element costs more than the syscall."""
    return (ctypes.c_uint32 * count)(*range(count))


def map_update_batch(fd: int, keys: ctypes.Array, values: ctypes.Array, count: int,
                     flags: int = BPF_ANY) -> None:
    """keys[i] -> values[i] for i < count, in one syscall. For a map of maps the kernel
    waits for running programs once per syscall rather than once per element."""
    n = ctypes.c_uint32(count)
    opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts), elem_flags=flags)
    rc = _lib().bpf_map_update_batch(fd, keys, values, ctypes.byref(n), ctypes.byref(opts))
    _check(rc, f"batch update ({n.value} of {count} written)")


@dataclass(frozen=True)
class TestRun:
    retval: int
    data: bytes
    duration_ns: int  # mean per repetition, as the kernel measured it


def prog_test_run(prog_fd: int, data: bytes, repeat: int = 1, ctx: bytes | None = None) -> TestRun:
    """Runs a program on one packet with BPF_PROG_TEST_RUN, in the caller's netns."""
    buf_in = ctypes.create_string_buffer(data, len(data))
    out_size = len(data) + 4096
    buf_out = ctypes.create_string_buffer(out_size)
    opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), data_in=ctypes.addressof(buf_in),
                        data_out=ctypes.addressof(buf_out), data_size_in=len(data),
                        data_size_out=out_size, repeat=repeat)
    if ctx is not None:
        ctx_buf = ctypes.create_string_buffer(ctx, len(ctx))
        opts.ctx_in = ctypes.addressof(ctx_buf)
        opts.ctx_size_in = len(ctx)
    _check(_lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "BPF_PROG_TEST_RUN")
    return TestRun(opts.retval, buf_out.raw[: opts.data_size_out], opts.duration)


class _ProgInfo(ctypes.Structure):  # the head of the kernel's struct bpf_prog_info
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
    ]


@dataclass(frozen=True)
class ProgInfo:
    type: int
    id: int
    tag: str  # hex, as bpftool shows it
    name: str
    map_ids: tuple[int, ...]  # every map the program holds


def prog_info(fd: int) -> ProgInfo:
    """What the kernel says about a loaded program, including the maps it was loaded with
    (asked twice: once for their number, once for their ids)."""
    info = _ProgInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), "program info")
    ids = (ctypes.c_uint32 * info.nr_map_ids)()
    wanted = info.nr_map_ids
    info = _ProgInfo(nr_map_ids=wanted, map_ids=ctypes.addressof(ids))
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), "program info")
    count = min(wanted, info.nr_map_ids)
    return ProgInfo(info.type, info.id, bytes(info.tag).hex(), info.name.decode(), tuple(ids[:count]))


class _ProgLoadOpts(ctypes.Structure):  # libbpf's struct bpf_prog_load_opts (1.1)
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("attempts", ctypes.c_int),
        ("expected_attach_type", ctypes.c_uint32),
        ("prog_btf_fd", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_ifindex", ctypes.c_uint32),
        ("kern_version", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("attach_prog_fd", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32),
        ("fd_array", ctypes.c_void_p),
        ("func_info", ctypes.c_void_p),
        ("func_info_cnt", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("line_info", ctypes.c_void_p),
        ("line_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_void_p),
    ]


class VerifierRejected(OSError):
    """The kernel refused a program; `log` ends with the verifier's reason."""

    def __init__(self, code: int, message: str, log: str):
        super().__init__(code, message)
        self.log = log


_VERIFIER_LOG_SIZE = 1 << 22  # the verifier's log of a large program runs to megabytes


def prog_load(prog_type: int, name: str, license: str, insns: bytes, expected_attach_type: int = 0,
              kern_version: int = 0) -> int:
    """Loads instructions whose map references are fds of this process (BPF_PROG_LOAD);
    the new program's fd. Without type information (BTF): XDP and tc programs need none.
    On a refusal the verifier is asked again with its log on, so the error can say why."""
    code = ctypes.create_string_buffer(insns, len(insns))

    def attempt(log_level: int, log: ctypes.Array | None) -> int:
        opts = _ProgLoadOpts(sz=ctypes.sizeof(_ProgLoadOpts), expected_attach_type=expected_attach_type,
                             kern_version=kern_version, log_level=log_level)
        if log is not None:
            opts.log_size, opts.log_buf = len(log), ctypes.addressof(log)
        rc = _lib().bpf_prog_load(prog_type, name.encode()[:15], license.encode(), code,
                                  len(insns) // 8, ctypes.byref(opts))
        return rc if rc >= 0 else -(-rc if rc != -1 else ctypes.get_errno())

    fd = attempt(0, None)
    if fd >= 0:
        return fd
    log = ctypes.create_string_buffer(_VERIFIER_LOG_SIZE)
    again = attempt(1, log)
    if again >= 0:  # refused once, accepted when asked again: keep the program
        return again
    text = log.value.decode(errors="replace").strip()
    raise VerifierRejected(-fd, f"loading program {name}: {os.strerror(-fd)}", text)
