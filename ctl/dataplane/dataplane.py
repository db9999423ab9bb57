"""The data path as one object: load programs, attach them, program the maps."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import loader, reader, writer
from ctl.model import DesiredState
from .pinned import PinnedMaps
from .plan import DataplaneConfig, Limits, Plan, Written, forget_tables, plan, plan_edit

log = logging.getLogger(__name__)

READ_BACK_SHARE = 0.01  # at most this share of an idle agent's time goes to reading the maps back
# Rows a read-back reads, types and compares between two looks at whether an edit
# waits: what an edit may wait for. 1,024 members took up to 0.14 s on a busy machine
# (each row's expected weight is worked out from the services: WrittenMembers).
READ_BACK_BATCH = 256
# A batch is read and compared READ_BACK_PIECE rows at a time, and ends early once it
# has taken READ_BACK_SLICE seconds: a member row costs a look-up among its service's
# backends (6 us quiet, far more on a busy machine), and an edit waits for the batch.
READ_BACK_PIECE = 32
READ_BACK_SLICE = 0.005


class ReadBackAbandoned(Exception):
    """A read-back stopped because an edit waits; nothing was written."""


def _nothing_waits() -> bool:
    return False


def _read_batch(read: reader.PartRead, maps: PinnedMaps, expected) -> None:
    """One batch of a read-back: READ_BACK_BATCH rows, or fewer once READ_BACK_SLICE
    has passed, read and compared READ_BACK_PIECE at a time."""
    ends = time.monotonic() + READ_BACK_SLICE
    rows = 0
    while True:
        rows += read.step(maps, min(READ_BACK_PIECE, READ_BACK_BATCH - rows), expected)
        if read.done or read.differs or rows >= READ_BACK_BATCH or time.monotonic() >= ends:
            return


def _same_desired(desired: DesiredState, written: Written) -> bool:
    """Whether ``desired`` is what ``written`` was planned for. The services in the same
    order, the same objects (what the agent passes): a look at each, not a dict of
    10,000 services made and compared at the end of a read-back."""
    if written.services is not None and desired.services == written.services:
        return True
    return desired.by_frontend() == written.desired


@dataclass
class Dataplane:
    spec: loader.DataplaneSpec
    programs: loader.Programs
    # Plan against what this object last wrote instead of reading every map back: for
    # the agent, the only writer of its pin directory (an edit then costs what it
    # changes). ``repair`` still reads the maps back now and then, so drift (an entry
    # someone deleted) is corrected.
    remember_writes: bool = False
    written: Written | None = field(default=None, repr=False)
    read_back_at: float = field(default=float("-inf"), repr=False)  # time.monotonic()
    read_back_seconds: float = field(default=0.0, repr=False)  # what reading the maps took last time
    # A read-back under way (``repair``): the maps found as written so far, the time it
    # has taken (abandoned attempts included), and the map it stopped in, half read.
    read_back_checked: set[str] = field(default_factory=set, repr=False)
    read_back_spent: float = field(default=0.0, repr=False)
    read_back_partial: reader.PartRead | None = field(default=None, repr=False)
    settle_due: bool = field(default=False, repr=False)  # a full plan ran since the last settle

    @classmethod
    def load(cls, spec: loader.DataplaneSpec) -> "Dataplane":
        """Pinned programs of this build, else compiled in a child process."""
        return cls(spec, loader.load_programs(spec))

    @property
    def limits(self) -> Limits:
        return Limits(self.spec.maglev_size, self.spec.max_services, self.spec.max_backends)

    def attach_xdp(self, ifindex: int, mode: loader.XdpMode = loader.XdpMode.AUTO,
                   netns: str | None = None) -> loader.XdpMode:
        return loader.attach_xdp(ifindex, self.programs.xdp_fd, mode, netns)

    def attach_tc(self, ifindex: int, ingress: bool = True, egress: bool = True,
                  netns: str | None = None) -> None:
        loader.attach_tc(ifindex, self.programs, ingress, egress, netns)
        self.mark_peer_device(ifindex, loader.has_peer_elsewhere(ifindex, netns))

    def mark_peer_device(self, ifindex: int, peer_elsewhere: bool) -> None:
        """Lets tc ingress redirect packets for `ifindex` to its peer (peer_devs map).
        Decided when the programs attach; a veth whose peer later moves into this
        namespace needs the programs attached again."""
        with PinnedMaps.open(self.spec.pin_dir) as maps:
            if peer_elsewhere:
                maps.put("peer_devs", ifindex, 1)
            else:
                maps.delete("peer_devs", ifindex)

    def program(self, desired: DesiredState, config: DataplaneConfig = DataplaneConfig(),
                read_back: bool = False) -> Plan:
        """Brings the maps to `desired`; returns the plan that was executed. Reads the
        maps back first unless it remembers what it wrote (and read_back is false)."""
        with PinnedMaps.open(self.spec.pin_dir, create_control_maps=True) as maps:
            if self.remember_writes and self.written is not None and not read_back:
                result, written = plan_edit(desired, self.written, config, self.limits)
                read = False
            else:
                self.read_back_at = reading = time.monotonic()
                actual = reader.read_actual(maps)
                self.read_back_seconds = time.monotonic() - reading
                self._forget_read_back()  # this read covered every map
                read = True
                if (self.written is not None and actual == self.written.actual
                        and desired.by_frontend() == self.written.desired and actual.config == config):
                    # A repair found the maps as written: nothing to plan.
                    return Plan((), {k: r.service_id for k, r in actual.frontends.items()},
                                dict(self.written.backend_index))
                result = plan(desired, actual, config, self.limits)
                written = Written.after(desired, actual, result) if self.remember_writes else None
                self.settle_due = True
            self.written = None  # until the writes are all done: a failure reads back next time
            writer.apply(maps, result.ops)
            self.written = written
            if not read and self.read_back_partial is not None:
                self.read_back_partial.written(result.ops)  # its rows as they are now
            if read:
                self.read_back_at = time.monotonic()  # the maps are as planned from what was read
        if result:
            log.info("programmed data path: %d map writes", len(result.ops))
        return result

    def settle(self) -> None:
        """Once a full plan's operations are freed (the reconcile that asked for it is
        over): what it left to remember is made again and its memos emptied, so that
        the memory its temporaries took can go back to the system (release_free_memory).
        At 10,000 routes, 9 MiB of the agent's resident memory; tens of milliseconds."""
        if not self.settle_due:
            return
        self.settle_due = False
        if self.written is not None:
            self.written = self.written.compacted()
        forget_tables()

    def repair(self, desired: DesiredState, config: DataplaneConfig = DataplaneConfig(),
               edit_waiting: Callable[[], bool] = _nothing_waits) -> Plan:
        """Reads the maps back to correct drift (an entry someone else changed or
        deleted), giving way to edits: an idle agent's read-back takes about a second
        at 10,000 routes, and an edit must not wait for it.

        The maps are compared one by one with what this object wrote, each read
        READ_BACK_BATCH rows at a time (fewer once a batch took READ_BACK_SLICE). As
        soon as ``edit_waiting()`` is true (asked between batches, and after a map's
        last batch, before its rows are counted) it raises ReadBackAbandoned, having
        written nothing, and the
        next call goes on where this one stopped: with the map it was reading, from
        the batch it had reached. That is sound because the agent is its maps' only
        writer, and an edit changes them only by writes that ``written`` records: a
        map compared before an edit holds what the edit left (the edit wrote what it
        changed), and the rows of a half-read map are brought up to date with the
        edit's writes (``PartRead.written``), the rest being read as they are then.
        Each call reads at least one batch (or counts one map read through) before it
        gives way, so a read-back completes under any trickle of edits (at worst after
        one call per batch and map), and an edit never waits for more than one batch
        or one count. (Starting a map again from its
        start at each call, as before, needed a whole uninterruptible read of a map
        abandoned too often: 0.3-0.8 s for the backends at 10,000 routes.)

        Returns an empty plan when every map is as written. When one differs, or
        nothing is remembered, every map is read at once and planned against as
        ``program(read_back=True)`` does (a repair: rare, and it does not yield)."""
        if not self.remember_writes or self.written is None:
            return self.program(desired, config, read_back=True)
        started = time.monotonic()
        try:
            with PinnedMaps.open(self.spec.pin_dir, create_control_maps=True) as maps:
                as_written = self._compare_maps(maps, edit_waiting)
        finally:
            self.read_back_spent += time.monotonic() - started
        written = self.written
        if as_written and _same_desired(desired, written) and written.actual.config == config:
            self.read_back_seconds = self.read_back_spent
            self.read_back_at = time.monotonic()
            log.debug("read-back complete", extra={"event": "read_back_complete", "seconds": self.read_back_spent})
            self._forget_read_back()
            # The ids as the Written keeps them, not copied (as plan_edit's plans): the
            # maps hold what it says.
            return Plan((), written.service_index, written.backend_index)
        return self.program(desired, config, read_back=True)

    def _compare_maps(self, maps: PinnedMaps, edit_waiting: Callable[[], bool]) -> bool:
        """Whether the maps not yet compared in this read-back hold what was written."""
        assert self.written is not None
        progressed = False
        for part in reader.PARTS:
            if part in self.read_back_checked:
                continue
            if self.read_back_partial is None or self.read_back_partial.part != part:
                self.read_back_partial = reader.PartRead.begin(part)
            read = self.read_back_partial
            while not read.done:
                if progressed and edit_waiting():
                    raise ReadBackAbandoned(part)
                _read_batch(read, maps, getattr(self.written.actual, part))
                progressed = True
                if read.differs:
                    return False  # drift: the whole maps are read and planned against
            # Counting what the members map should hold walks every service (milliseconds
            # at 10,000 routes): an edit that came during the last batch goes first. The
            # rows read stay, brought up to date by its writes.
            if progressed and edit_waiting():
                raise ReadBackAbandoned(part)
            if not read.matches(getattr(self.written.actual, part)):
                return False
            self.read_back_checked.add(part)
            self.read_back_partial = None
        return True

    def _forget_read_back(self) -> None:
        self.read_back_checked.clear()
        self.read_back_partial = None
        self.read_back_spent = 0.0

    def repair_due(self, interval: float, share: float = READ_BACK_SHARE) -> bool:
        """Whether the maps were last read back more than ``interval`` seconds ago, and
        more than ``share`` of the time is left between two read-backs: one costs about
        a second of CPU at 10,000 routes, so at scale they come less often than every
        ``interval``. A read-back under way (``repair`` gave way to an edit) stays due."""
        since = time.monotonic() - self.read_back_at
        return since >= interval and since >= self.read_back_seconds / share
