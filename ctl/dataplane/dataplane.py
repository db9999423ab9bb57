"""The data path as one object: load programs, attach them, program the maps."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from . import loader, reader, writer
from ctl.model import DesiredState
from .pinned import PinnedMaps
from .plan import DataplaneConfig, Limits, Plan, Written, plan, plan_edit

log = logging.getLogger(__name__)

READ_BACK_SHARE = 0.01  # at most this share of an idle agent's time goes to reading the maps back


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
                read = True
                if (self.written is not None and actual == self.written.actual
                        and desired.by_frontend() == self.written.desired and actual.config == config):
                    # A repair found the maps as written: nothing to plan.
                    return Plan((), {k: r.service_id for k, r in actual.frontends.items()},
                                dict(self.written.backend_index))
                result = plan(desired, actual, config, self.limits)
                written = Written.after(desired, actual, result) if self.remember_writes else None
            self.written = None  # until the writes are all done: a failure reads back next time
            writer.apply(maps, result.ops)
            self.written = written
            if read:
                self.read_back_at = time.monotonic()  # the maps are as planned from what was read
        if result:
            log.info("programmed data path: %d map writes", len(result.ops))
        return result

    def repair_due(self, interval: float, share: float = READ_BACK_SHARE) -> bool:
        """Whether the maps were last read back more than ``interval`` seconds ago, and
        more than ``share`` of the time is left between two read-backs: an edit
        that arrives during one waits for it (about a second at 10,000 routes), so at
        scale they come less often than every ``interval``."""
        since = time.monotonic() - self.read_back_at
        return since >= interval and since >= self.read_back_seconds / share
