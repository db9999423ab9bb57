"""Typed access to the pinned maps: the only place that touches them from Python."""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import abi, bpfsys

DIGEST_MAP_FILE = abi.CONTROL_MAPS["digests"][0]


def _never() -> None:
    pass


class PinnedMaps:
    """File descriptors of every pinned map under one pin directory."""

    def __init__(self, pin_dir: Path, fds: dict[str, int]):
        self.pin_dir = pin_dir
        self._fds = fds
        self._ncpus = bpfsys.possible_cpus()

    @classmethod
    @contextmanager
    def open(cls, pin_dir: Path, create_control_maps: bool = False) -> Iterator["PinnedMaps"]:
        fds: dict[str, int] = {}
        try:
            for name, (file, _, _) in abi.PINNED_MAPS.items():
                path = pin_dir / file
                if not path.exists():
                    raise FileNotFoundError(
                        f"{path}: no pinned map; is the agent's data path loaded with this pin directory?"
                    )
                fds[name] = bpfsys.obj_get(path)
            for name in abi.CONTROL_MAPS:
                fds[name] = _open_or_create_control_map(pin_dir, name, create_control_maps)
            yield cls(pin_dir, fds)
        finally:
            for fd in fds.values():
                if fd >= 0:
                    os.close(fd)

    def fd(self, name: str) -> int:
        return self._fds[name]

    # -- generic typed access ----------------------------------------------------------
    def _types(self, name: str) -> tuple[type, type]:
        _, key_t, value_t = abi.PINNED_MAPS.get(name) or abi.CONTROL_MAPS[name]
        return key_t, value_t

    def has(self, name: str) -> bool:
        """Control-plane maps are absent until an agent first programs this pin dir."""
        return self._fds[name] >= 0

    def keys(self, name: str, checkpoint: Callable[[], None] = _never) -> list:
        """``checkpoint`` as for ``items``."""
        return [key for key, _ in self.items(name, checkpoint)]

    def get(self, name: str, key):
        key_t, value_t = self._types(name)
        value = value_t()
        found = bpfsys.map_lookup(self._fds[name], _c(key_t, key), value)
        return _plain(value) if found else None

    def put(self, name: str, key, value, flags: int = bpfsys.BPF_ANY) -> None:
        key_t, value_t = self._types(name)
        bpfsys.map_update(self._fds[name], _c(key_t, key), _c(value_t, value), flags)

    def put_many(self, name: str, entries: Sequence[tuple[object, object]]) -> None:
        """put for many (key, value) pairs: one batch syscall per chunk, not one each.
        A cold start at 10,000 routes writes some 100,000 entries besides the tables."""
        key_t, value_t = self._types(name)
        for start in range(0, len(entries), _PUT_CHUNK):
            chunk = entries[start:start + _PUT_CHUNK]
            keys = (key_t * len(chunk))(*(key for key, _ in chunk))
            values = (value_t * len(chunk))(*(value for _, value in chunk))
            bpfsys.map_update_batch(self._fds[name], keys, values, len(chunk))

    def put_many_packed(self, name: str, keys: bytes, values: bytes) -> None:
        """put_many for entries already laid out as the map's key and value types, back
        to back: built in bulk, where one ctypes value per entry costs microseconds (a
        cold start at 10,000 routes writes 80,000 backends and 80,000 members)."""
        key_t, value_t = self._types(name)
        key_size, value_size = ctypes.sizeof(key_t), ctypes.sizeof(value_t)
        count = len(keys) // key_size
        if len(keys) != count * key_size or len(values) != count * value_size:
            raise ValueError(f"{name}: {len(keys)} bytes of keys and {len(values)} bytes of values "
                             f"are not whole entries of {key_size} and {value_size} bytes, as many of each")
        for start in range(0, count, _PUT_CHUNK):
            size = min(_PUT_CHUNK, count - start)
            chunk_keys = (key_t * size).from_buffer_copy(keys, start * key_size)
            chunk_values = (value_t * size).from_buffer_copy(values, start * value_size)
            bpfsys.map_update_batch(self._fds[name], chunk_keys, chunk_values, size)

    def delete(self, name: str, key) -> bool:
        if not self.has(name):
            return False
        key_t, _ = self._types(name)
        return bpfsys.map_delete(self._fds[name], _c(key_t, key))

    def items(self, name: str, checkpoint: Callable[[], None] = _never) -> Iterator[tuple]:
        """Every (key, value); ``checkpoint`` is called between the kernel's batches and
        every few hundred rows the caller takes (it may raise: a read-back giving way)."""
        if not self.has(name):
            return
        key_t, value_t = self._types(name)
        rows = bpfsys.map_items(self._fds[name], key_t, value_t, between=checkpoint)
        if rows is not None:
            for i, (key, value) in enumerate(rows):
                if i % _CHECK_EVERY == _CHECK_EVERY - 1:
                    checkpoint()
                yield _plain(key), _plain(value)
            return
        for i, key in enumerate([_plain(k) for k in bpfsys.map_keys(self._fds[name], key_t)]):
            if i % _CHECK_EVERY == _CHECK_EVERY - 1:
                checkpoint()
            value = self.get(name, key)
            if value is not None:  # deleted while we iterated
                yield key, value

    def batch(self, name: str, start: bytes | None, chunk: int) -> tuple[list[tuple], bytes | None] | None:
        """Up to ``chunk`` (key, value) rows from ``start`` and where the next batch
        begins (None: these were the last), as bpfsys.map_batch; None when the map
        cannot be read in batches. An absent control map has no rows."""
        if not self.has(name):
            return [], None
        key_t, value_t = self._types(name)
        found = bpfsys.map_batch(self._fds[name], key_t, value_t, start, chunk)
        if found is None:
            return None
        rows, after = found
        return [(_plain(key), _plain(value)) for key, value in rows], after

    # -- per-CPU counters ---------------------------------------------------------------
    def percpu(self, name: str, index: int) -> list:
        """One value per possible CPU (the kernel pads each to 8 bytes)."""
        _, value_t = self._types(name)
        values = (value_t * self._ncpus)()
        bpfsys.map_lookup(self._fds[name], ctypes.c_uint32(index), values)
        return list(values)

    def percpu_sum(self, name: str, index: int):
        rows = self.percpu(name, index)
        if not rows:
            return None
        if isinstance(rows[0], int):
            return sum(rows)
        total = type(rows[0])()
        for row in rows:
            for field, _ in row._fields_:
                setattr(total, field, getattr(total, field) + getattr(row, field))
        return total

    def percpu_reset(self, name: str, index: int) -> None:
        _, value_t = self._types(name)
        zeros = (value_t * self._ncpus)()
        bpfsys.map_update(self._fds[name], ctypes.c_uint32(index), zeros)

    def percpu_reset_many(self, name: str, indexes: Sequence[int]) -> None:
        """percpu_reset for many indexes, one batch syscall per chunk."""
        _, value_t = self._types(name)
        for start in range(0, len(indexes), _PUT_CHUNK):
            chunk = indexes[start:start + _PUT_CHUNK]
            zeros = (value_t * (self._ncpus * len(chunk)))()
            bpfsys.map_update_batch(self._fds[name], (ctypes.c_uint32 * len(chunk))(*chunk), zeros, len(chunk))

    # -- Maglev tables (map-in-map) --------------------------------------------------
    # An inner map is a u32 array: element 0 the table's size, then its slots. It is
    # mmapable, so a table goes in (and comes out) with one copy, not one syscall per slot.
    def table_size(self, service_id: int) -> int | None:
        slots = self.read_table(service_id)
        return None if slots is None else len(slots)

    def read_table(self, service_id: int) -> list[int] | None:
        inner_id = self.get("maglev_outer", service_id)
        if inner_id is None:
            return None
        fd = bpfsys.map_fd_by_id(inner_id)
        try:
            entries = bpfsys.map_info(fd).max_entries
            with mmap.mmap(fd, entries * _ELEMENT_BYTES, mmap.MAP_SHARED, mmap.PROT_READ) as view:
                words = np.frombuffer(view.read(entries * _ELEMENT_BYTES), dtype=np.uint32)
        finally:
            os.close(fd)
        table = words[::_ELEMENT_BYTES // 4]
        size = int(table[0])
        return table[1:1 + size].tolist() if 0 < size < entries else None

    def swap_table(self, service_id: int, slots, digest: int) -> None:
        """Builds a whole new inner map, then points the service at it in one update:
        a packet sees the old table or the new one, never a mix."""
        self.swap_tables([(service_id, slots, digest)])

    def swap_tables(self, tables: Sequence[tuple[int, object, int]]) -> None:
        """swap_table for many (service id, slots, digest) at once: the inner maps of a
        chunk are built first, then the services point at them in one batch update of
        the outer map. The kernel waits for running programs (an RCU grace period, ms)
        after every update of a map of maps; batched, once per chunk, not per table."""
        template = self._maglev_template()
        for start in range(0, len(tables), _SWAP_CHUNK):
            chunk = tables[start:start + _SWAP_CHUNK]
            count = len(chunk)
            ids = (ctypes.c_uint32 * count)(*(service_id for service_id, _, _ in chunk))
            fds = (ctypes.c_int * count)()
            made = 0
            try:
                with bpfsys.map_maker(template) as make_inner:
                    for service_id, slots, _ in chunk:
                        entries = len(slots) + 1
                        if entries > template.max_entries:
                            raise ValueError(f"service {service_id}: a Maglev table of {len(slots)} slots, "
                                             f"the pinned template allows at most {template.max_entries - 1}")
                        fds[made] = make_inner(f"xg_maglev_{service_id}", entries)
                        made += 1
                        with mmap.mmap(fds[made - 1], entries * _ELEMENT_BYTES) as view:
                            view.write(_table_memory(slots))
                bpfsys.map_update_batch(self._fds["maglev_outer"], ids, fds, count)
            finally:
                for fd in fds[:made]:
                    os.close(fd)  # the outer map holds its own references
            digests = (ctypes.c_uint64 * count)(*(digest for _, _, digest in chunk))
            bpfsys.map_update_batch(self._fds["digests"], ids, digests, count)

    def _maglev_template(self) -> bpfsys.MapShape:
        """The shape the outer map demands of an inner map: that of the program's pinned
        template (the outer map copied it when it was created)."""
        fd = bpfsys.obj_get(self.pin_dir / abi.MAGLEV_TEMPLATE_FILE)
        try:
            return bpfsys.map_shape(fd)
        finally:
            os.close(fd)

    def delete_table(self, service_id: int) -> None:
        bpfsys.map_delete(self._fds["maglev_outer"], ctypes.c_uint32(service_id))
        if self._fds["digests"] >= 0:
            bpfsys.map_delete(self._fds["digests"], ctypes.c_uint32(service_id))

    def table_digests(self, checkpoint: Callable[[], None] = _never) -> dict[int, int]:
        return dict(self.items("digests", checkpoint))


# Inner maps open at once while swapping tables (file descriptors, until the batch).
_SWAP_CHUNK = 256
# Entries per batch update of an ordinary map: bounds the ctypes arrays of one syscall.
_PUT_CHUNK = 4096
# Rows taken from a read between two checkpoints (a few milliseconds of typing them).
_CHECK_EVERY = 256


# The kernel lays an array's elements out 8 bytes apart (value sizes round up to 8), and
# that is what mmap shows: a u32 element is 4 bytes of value and 4 of padding.
_ELEMENT_BYTES = 8


def _table_memory(slots) -> bytes:
    """An inner map's memory: the table's size, then its slots, one element each."""
    slots = np.asarray(slots, dtype=np.uint32)
    words = np.zeros((slots.size + 1, _ELEMENT_BYTES // 4), dtype=np.uint32)
    words[0, 0] = slots.size
    words[1:, 0] = slots
    return words.tobytes()


def _open_or_create_control_map(pin_dir: Path, name: str, create: bool) -> int:
    file, key_t, value_t = abi.CONTROL_MAPS[name]
    path = pin_dir / file
    if path.exists():
        return bpfsys.obj_get(path)
    if not create:
        return -1
    outer_fd = bpfsys.obj_get(pin_dir / abi.PINNED_MAPS["maglev_outer"][0])
    try:
        services = bpfsys.map_info(outer_fd).max_entries
    finally:
        os.close(outer_fd)
    capacity = services * 64 if name == "members" else services
    fd = bpfsys.map_create(bpfsys.MAP_TYPE_HASH, f"xg_{name}", ctypes.sizeof(key_t),
                           ctypes.sizeof(value_t), capacity)
    bpfsys._check(bpfsys._lib().bpf_obj_pin(fd, os.fsencode(path)), f"pinning {path}")
    return fd


def _c(ctype: type, value):
    if isinstance(value, ctype):
        return value
    return ctype(value)


def _plain(value):
    """Simple ctypes scalars become ints; structures stay as they are."""
    return value.value if isinstance(value, ctypes._SimpleCData) else value
