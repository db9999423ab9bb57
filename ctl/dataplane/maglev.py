"""Weighted Maglev lookup tables for the L4 data path.

The BPF programs hash a flow's 5-tuple, take ``hash % size`` and read a backend id from the
table built here. Every node of the cluster builds its table on its own, so the table is a
pure function of the backends' stable keys, their weights, the size and a cluster-wide
seed: never of input order, local ids (they only label the output) or per-process state.

Algorithm (Eisenbud et al., NSDI 2016; weights pace the turns, in the spirit of Cilium's
pkg/maglev, but with exact quotas):

* Each backend walks its own permutation of the slots, ``(offset + j * skip) % size``,
  offset and skip taken from a seeded BLAKE2b of its key. A prime size makes every skip
  coprime with it, so each walk visits every slot exactly once.
* Each backend's quota is ``size * w / sum(w)``, rounded by largest remainder so that the
  quotas sum to exactly ``size``. Its k-th claim is due at virtual time k / quota: all
  backends start together and finish together, claiming at a pace proportional to their
  weight, as Maglev's round-robin turns do for equal weights. Keeping that pacing is
  what keeps Maglev's minimal disruption when weights differ.
* Claims are batched into (at most 64) rounds of virtual time and made by all backends
  at once in numpy: each backend that owes claims in the round proposes its next free
  preferred slots (one matrix row per backend over a window of its permutation,
  computed on the fly). A contested slot goes to the claim due earliest, then to the
  backend first in a seeded priority order; losers propose again from further down their
  permutation until the round's claims are met.

Measured (timeit, 2-vCPU dev VM, 1,000 backends): 6.6 ms at size 16381, 22 ms at 65521.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ctl.capacity import DEFAULT as DEFAULT_CAPACITY
from ctl.capacity import is_prime

DEFAULT_SIZE = DEFAULT_CAPACITY.maglev_size
REJECT_ID = 0  # id of the share that refuses new flows (unresolved backendRefs)

# Everything that shapes placement (this hash domain, the digest layout, the round limits,
# even the window sizing in _fill) is part of the contract between nodes: changing it
# reshuffles every table, and nodes on different versions would disagree during a rollout.
# tests/unit/test_maglev.py pins a table's digest to catch that. The planner identifies a
# table by its inputs and this version (plan.table_digest): bump it with any such change,
# or agents keep the tables an older version placed.
PLACEMENT_VERSION = 1

# Domain separation, so no other use of BLAKE2b on the same keys correlates with placement.
_HASH_PERSON = b"xdpgw-maglev-v1"

# Rounds of virtual time: one per claim of the largest quota (Maglev's turns), but at most
# _MAX_ROUNDS and _ROUNDS_PER_BACKEND per backend. Each round costs a few dozen numpy
# calls. A round holding several claims per backend still decides contested slots by each
# claim's own virtual time; only the losers' retries deviate, and they grow with the
# number of backends contending, hence the per-backend limit. Measured on removing or
# adding one of 2-300 equal backends, the limits cost about 0.1 percentage point of
# extra moved slots against one-claim rounds.
_MAX_ROUNDS = 64
_ROUNDS_PER_BACKEND = 4

# Upper bound on the elements of one (backends x window) candidate matrix, to keep peak
# memory at a few MB however skewed the weights are.
_WINDOW_BUDGET = 1 << 19

# Rows (backends, over all tables) filled together in one pass of build_tables. Measured
# on 1,000 tables of 8 backends at 1021 slots: 2048 rows peak at +73 MiB of temporaries,
# 1024 at +38 MiB for the same CPU, 512 at +22 MiB for 25% more.
_ROWS_PER_FILL = 1024

_U32_MAX = 2**32 - 1

# The sizes a service's table is built at: the largest prime below each power of two, so
# that a table and its size word fit the pages of the kernel's array (bpf/lib/maps.h),
# and a service's size (a new size moves nearly all of its slots) changes only when its
# backend count crosses a doubling.
TABLE_SIZES = (127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
               262139, 524287)
# Slots per backend that keep every share within 1% of its weight (one slot in a hundred)
# and leave room for Maglev's minimal disruption.
SLOTS_PER_BACKEND = 100


def table_size(backends: int, cap: int = DEFAULT_SIZE) -> int:
    """The size of a table over `backends` entries: the smallest of TABLE_SIZES with at
    least SLOTS_PER_BACKEND slots per entry, but never more than `cap` (--maglev-size,
    itself prime). Building and holding 16,381 slots for a service of 8 backends would
    cost 16x the work and memory for no better balance."""
    wanted = SLOTS_PER_BACKEND * max(1, backends)
    return min(next((size for size in TABLE_SIZES if size >= wanted), cap), cap)


@dataclass(frozen=True)
class MaglevBackend:
    """One entry to place in the table."""

    # Stable identity shared by all nodes (e.g. b"10.0.0.1:8080/TCP"); decides placement.
    key: bytes
    # u32 written into the table's slots. REJECT_ID (0) is reserved for the reject share,
    # which callers pass as an ordinary backend with a key of their choosing.
    id: int
    # Relative weight >= 0; 0 means no slot at all.
    weight: float


def build_table(
    backends: Sequence[MaglevBackend], size: int = DEFAULT_SIZE, seed: int = 0
) -> np.ndarray:
    """Return the uint32 lookup table (length ``size``) mapping slots to backend ids.

    Identical on every node given the same keys, weights, size and seed, whatever the
    order of ``backends``. Raises ValueError on bad input or when no backend has weight,
    because "nothing to choose" is the caller's decision (drop or reject), not ours.
    """
    return build_tables([(backends, size)], seed)[0]


def build_tables(
    requests: Sequence[tuple[Sequence[MaglevBackend], int]], seed: int = 0
) -> list[np.ndarray]:
    """build_table for many (backends, size) at once, each table the same as built alone.

    Tables of the same shape (size, backends placed, rounds) are filled together, one
    numpy call per step for all of them: a small table costs a few dozen numpy calls per
    round whatever its size, so a thousand services of 8 backends are built in about the
    calls one of them needs.
    """
    prepared = [_prepare(backends, size, seed) for backends, size in requests]
    tables: list[np.ndarray | None] = [None] * len(prepared)
    shapes: dict[tuple[int, int, int], list[int]] = {}
    for index, (ids, offsets, skips, quotas, size) in enumerate(prepared):
        if len(quotas) == 1:  # common for small services, and nothing to contend with
            tables[index] = np.full(size, ids[0], dtype=np.uint32)
        else:
            shapes.setdefault((size, len(quotas), _rounds(quotas)), []).append(index)
    for (size, rows, rounds), same_shape in shapes.items():
        # Chunks bound the candidate matrices (rows x window) of one pass.
        per_chunk = max(1, _ROWS_PER_FILL // rows)
        for start in range(0, len(same_shape), per_chunk):
            chunk = same_shape[start:start + per_chunk]
            owners = _fill(np.stack([prepared[i][1] for i in chunk]),
                           np.stack([prepared[i][2] for i in chunk]),
                           np.stack([prepared[i][3] for i in chunk]), size, rounds)
            for index, owner_rows in zip(chunk, owners):
                tables[index] = prepared[index][0][owner_rows]
    return tables


def _prepare(
    backends: Sequence[MaglevBackend], size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """A table's rows (backends that get slots) in priority order: their ids, permutation
    offsets and skips, and quotas."""
    _validate(backends, size, seed)
    # Sorted by key first, so nothing below can depend on the order the caller used.
    eligible = sorted((b for b in backends if b.weight > 0), key=lambda b: b.key)
    if not eligible:
        raise ValueError("no backend with a positive weight: nothing to place in the table")

    offsets, skips, priorities = _hash_backends([b.key for b in eligible], size, seed)
    # Rows in seeded priority order, which breaks ties between equal claims; the stable
    # sort leaves a (64-bit) priority collision in key order.
    order = np.argsort(priorities, kind="stable")
    weights = np.array([b.weight for b in eligible], dtype=np.float64)[order]
    ids = np.array([b.id for b in eligible], dtype=np.uint32)[order]

    quotas = _apportion(weights, size)
    # A positive but tiny weight can round to no slot; such a backend sits out.
    placed = np.flatnonzero(quotas)
    return ids[placed], offsets[order][placed], skips[order][placed], quotas[placed], size


def slot_shares(table: np.ndarray) -> dict[int, int]:
    """Map each id in ``table`` to the number of slots it owns (for gwctl and tests)."""
    ids, counts = np.unique(table, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts)}


def _validate(backends: Sequence[MaglevBackend], size: int, seed: int) -> None:
    """Reject inputs that would make nodes disagree or the table meaningless."""
    if not is_prime(size):
        raise ValueError(f"Maglev table size must be prime, got {size}")
    if size > _U32_MAX:  # slots are u32 in the data path; also bounds the slot arithmetic
        raise ValueError(f"Maglev table size must fit in a u32, got {size}")
    if not 0 <= seed <= _U32_MAX:
        raise ValueError(f"Maglev seed must be a 32-bit unsigned integer, got {seed}")
    keys: set[bytes] = set()
    ids: set[int] = set()
    for b in backends:
        if not isinstance(b.key, bytes) or not b.key:
            raise ValueError(f"backend key must be non-empty bytes, got {b.key!r}")
        if b.key in keys:
            raise ValueError(f"duplicate backend key {b.key!r}")
        keys.add(b.key)
        if not isinstance(b.id, int) or not 0 <= b.id <= _U32_MAX:
            raise ValueError(f"backend id must be a u32, got {b.id} for {b.key!r}")
        # Two keys under one id would silently merge their shares in the table.
        if b.id in ids:
            raise ValueError(f"duplicate backend id {b.id} (key {b.key!r})")
        ids.add(b.id)
        if not math.isfinite(b.weight) or b.weight < 0:
            raise ValueError(
                f"backend weight must be finite and >= 0, got {b.weight} for {b.key!r}"
            )


def _hash_backends(
    keys: Sequence[bytes], size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per key: its permutation's offset and skip, and its priority for ties.

    Keyed BLAKE2b rather than hash(): it is the same on every machine and process, and
    keying it with the seed gives unrelated placements for different seeds.
    """
    seed_key = seed.to_bytes(4, "big")
    keyed = hashlib.blake2b(digest_size=24, key=seed_key, person=_HASH_PERSON)
    digests = bytearray()
    for key in keys:
        hasher = keyed.copy()  # skips re-absorbing the key block for every backend
        hasher.update(key)
        digests += hasher.digest()
    # Three big-endian u64 per key: offset, skip, priority.
    words = np.frombuffer(bytes(digests), dtype=">u8").reshape(-1, 3).astype(np.uint64)
    offsets = (words[:, 0] % size).astype(np.int64)
    skips = (words[:, 1] % (size - 1) + 1).astype(np.int64)
    return offsets, skips, words[:, 2]


def _apportion(weights: np.ndarray, size: int) -> np.ndarray:
    """Integer slot quotas proportional to ``weights`` that sum exactly to ``size``.

    Largest-remainder (Hamilton) apportionment; equal remainders go to the earlier row.
    fsum is correctly rounded, so the total, and with it every quota, does not depend on
    the order of the weights; elementwise IEEE arithmetic is the same on every machine.
    """
    try:
        total = math.fsum(weights)
    except OverflowError:
        total = math.inf
    if not math.isfinite(total):
        raise ValueError("sum of backend weights overflows a float")
    exact = weights / total * size
    quotas = np.floor(exact).astype(np.int64)
    # The floors fall short of size by less than one per backend, so handing one extra
    # slot to each of the largest remainders lands exactly on size.
    leftover = size - int(quotas.sum())
    by_remainder = np.argsort(quotas - exact, kind="stable")
    quotas[by_remainder[:leftover]] += 1
    return quotas


def _rounds(quotas: np.ndarray) -> int:
    return int(min(quotas.max(), _MAX_ROUNDS, _ROUNDS_PER_BACKEND * len(quotas)))


def _fill(
    offsets: np.ndarray, skips: np.ndarray, quotas: np.ndarray, size: int, rounds: int
) -> np.ndarray:
    """Run the paced Maglev fill of several tables at once; return, per table and slot,
    the row (input index) that owns it.

    Arguments are (tables x rows), rows in priority order, the tie-break after virtual
    time. Requires every table's quotas to sum to ``size``, every quota > 0 and
    ``rounds == _rounds(quotas)`` for every table. Tables never interact: each keeps its
    own free slots and its own window sizes, exactly as if it were filled alone; they
    only share the numpy calls.
    """
    tables, rows = quotas.shape
    # Rows and slots of all tables side by side: row g is row g % rows of table g // rows,
    # slot s of table t is cell t * size + s.
    offsets, skips, quotas = offsets.ravel(), skips.ravel(), quotas.ravel()
    table_of_row = np.repeat(np.arange(tables, dtype=np.int64), rows)
    row_in_table = np.tile(np.arange(rows, dtype=np.int64), tables)
    cell_base = table_of_row * size
    owner = np.full(tables * size, -1, dtype=np.int64)
    is_free = np.ones(tables * size, dtype=bool)
    free_count = np.full(tables, size, dtype=np.int64)
    # Each row's position in its own permutation. Every slot before it is taken, and slots
    # are never freed during a build, so the walk never looks back. It also means a window
    # running past the permutation's end only wraps onto taken slots: no bounds mask needed.
    cursor = np.zeros(tables * rows, dtype=np.int64)
    # Slot arithmetic in the narrowest unsigned type where start + step * skip (< size**2)
    # cannot overflow; remainder via floor division, which numpy runs several times faster
    # than integer % (it divides by a constant with multiplications).
    word = np.uint32 if size * size <= 2**32 else np.uint64
    word_skips = skips.astype(word)
    cell_type = np.int32 if tables * size < 2**31 else np.int64
    claimed = np.zeros(tables * rows, dtype=np.int64)

    for r in range(rounds):
        # Claims due by the end of round r. The k-th claim of a row is due at virtual time
        # k / quota, so every row starts at once, as in Maglev's first turn, and rounds
        # cover [r / rounds, (r + 1) / rounds).
        due = ((r + 1) * quotas + rounds - 1) // rounds
        owed = due - claimed
        claimed = due
        active = np.flatnonzero(owed)
        while active.size:
            want = owed[active]
            table = table_of_row[active]
            # Per table (active is sorted, so each table's rows are one run): the most
            # claims one of its rows owes, and how many of its rows are active.
            run_starts = np.flatnonzero(np.concatenate(([True], table[1:] != table[:-1])))
            run_tables = table[run_starts]
            most = np.zeros(tables, dtype=np.int64)
            most[run_tables] = np.maximum.reduceat(want, run_starts)
            active_rows = np.zeros(tables, dtype=np.int64)
            active_rows[run_tables] = np.diff(run_starts, append=active.size)
            # Expected walk to find n free slots is n * size / free_count; look a bit
            # further so most rows finish in one pass, within the memory budget.
            width = (1.5 * most[run_tables] * size / free_count[run_tables]).astype(np.int64) + 4
            width = np.maximum(1, np.minimum(np.minimum(width, size),
                                             _WINDOW_BUDGET // active_rows[run_tables]))
            table_width = np.zeros(tables, dtype=np.int64)
            table_width[run_tables] = width
            row_width = table_width[table]
            widest = int(width.max())

            # The matrices below are the bulk of a cold start's planning (some 18 passes
            # over rows x window per step): each is made in place where it can be, and
            # every pass that gives the same answer in fewer is taken. The result is the
            # same, cell for cell (the placement is a contract, see PLACEMENT_VERSION).
            start = ((offsets[active] + cursor[active] * skips[active]) % size).astype(word)
            raw = np.multiply(np.arange(widest, dtype=word), word_skips[active, None])
            raw += start[:, None]
            wraps = raw // size
            wraps *= size
            raw -= wraps
            # Slot numbers are below size, so the same memory read as cell_type holds them.
            cells = raw.view(cell_type) if raw.itemsize == np.dtype(cell_type).itemsize else raw.astype(cell_type)
            cells += cell_base[active, None].astype(cell_type)
            candidate = np.take(is_free, cells)
            if int(row_width.min()) < widest:
                # A row sees only its own table's window; beyond it, as if out of sight.
                candidate &= np.arange(widest) < row_width[:, None]

            # Each row proposes its first `want` free slots, in its preference order. Every
            # proposal gets taken by someone, so afterwards the row's first free slot is
            # the first candidate it did not propose: its cursor can jump right there.
            # (Where a table's rows owe one claim each, the cursor moves just past the
            # proposal instead; both are valid, and each table keeps the rule it would
            # follow alone, as the windows, and so the placement, depend on it.)
            rank = np.cumsum(candidate, axis=1, dtype=cell_type)
            single = most[table] == 1
            any_single = bool(single.any())
            if any_single:
                found = candidate.any(axis=1)
                after_proposal = np.where(found, candidate.argmax(axis=1) + 1, row_width)
            proposing = rank <= want[:, None]  # not beyond the row's `want`-th candidate
            if any_single and bool(single.all()):
                step = after_proposal
            else:
                # The first column beyond: the first False of the row (a rank only grows).
                at_next_free = np.where(proposing[:, -1], row_width, proposing.argmin(axis=1))
                step = np.where(single, after_proposal, at_next_free) if any_single else at_next_free
            cursor[active] += step
            candidate &= proposing
            # Flat positions, row by row (as np.nonzero walks them, active being sorted).
            proposal = np.flatnonzero(candidate)
            proposal_cell = cells.ravel()[proposal]
            proposal_rank = rank.ravel()[proposal] - 1
            proposal_row = active[proposal // widest]
            # A contested slot goes to the proposal due earliest in virtual time (the claim
            # index over the quota), then to the higher-priority row. Deciding by time, not
            # just by priority, makes a round behave like the finer Maglev turns it batches.
            made = due - owed
            when = (made[proposal_row] + proposal_rank) / quotas[proposal_row]
            # Proposals come in row order (np.nonzero walks rows first, active is sorted)
            # and lexsort is stable: equal times stay in row order without a third key.
            order = np.lexsort((when, proposal_cell))
            ordered_cell = proposal_cell[order]
            first = np.ones(order.size, dtype=bool)
            first[1:] = ordered_cell[1:] != ordered_cell[:-1]
            won_cell = ordered_cell[first]
            won_row = proposal_row[order[first]]

            owner[won_cell] = row_in_table[won_row]
            is_free[won_cell] = False
            free_count -= np.bincount(table_of_row[won_row], minlength=tables)
            owed -= np.bincount(won_row, minlength=tables * rows)
            active = active[owed[active] > 0]

    assert not free_count.any(), "quotas must sum to the table size"
    return owner.reshape(tables, size)
