"""The data path as one object: load programs, attach them, program the maps."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from . import loader, reader, writer
from ctl.model import DesiredState
from .pinned import PinnedMaps
from .plan import DataplaneConfig, Limits, Plan, plan

log = logging.getLogger(__name__)


@dataclass
class Dataplane:
    spec: loader.DataplaneSpec
    programs: loader.Programs

    @classmethod
    def load(cls, spec: loader.DataplaneSpec) -> "Dataplane":
        return cls(spec, loader.compile_programs(spec))

    @property
    def limits(self) -> Limits:
        return Limits(self.spec.maglev_size, self.spec.max_services, self.spec.max_backends)

    def attach_xdp(self, ifindex: int, mode: loader.XdpMode = loader.XdpMode.AUTO,
                   netns: str | None = None) -> loader.XdpMode:
        return loader.attach_xdp(ifindex, self.programs.xdp_fd, mode, netns)

    def attach_tc(self, ifindex: int, ingress: bool = True, egress: bool = True,
                  netns: str | None = None) -> None:
        loader.attach_tc(ifindex, self.programs, ingress, egress, netns)

    def program(self, desired: DesiredState, config: DataplaneConfig = DataplaneConfig()) -> Plan:
        """Brings the maps to `desired`; returns the plan that was executed."""
        with PinnedMaps.open(self.spec.pin_dir, create_control_maps=True) as maps:
            result = plan(desired, reader.read_actual(maps), config, self.limits)
            writer.apply(maps, result.ops)
        if result:
            log.info("programmed data path: %d map writes", len(result.ops))
        return result
