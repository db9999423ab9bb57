"""The agent's L7 side, started when first needed. gRPC and the Envoy protos cost an
agent about 27 MiB and a tenth of a second to import: a node that serves only L4 never
loads them. Started at once when an Envoy may already be listening (an external one, or
one a previous agent left running, which is adopted); otherwise with the first
configuration that has an L7 listener. Once started it stays, as Envoy does."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ctl.translate import Translation
from l7sidecar.envoy import RunPaths, running_envoy

from .handoff import LocalAddresses
from .reconciler import Reconciler

if TYPE_CHECKING:
    from .l7 import L7Runtime

log = logging.getLogger(__name__)


class OnDemandL7:
    def __init__(self, reconciler: Reconciler, paths: RunPaths, manage_envoy: bool,
                 handoff: LocalAddresses) -> None:
        self.reconciler = reconciler
        self.paths = paths
        self.manage_envoy = manage_envoy
        self.handoff = handoff
        self.runtime: L7Runtime | None = None

    def start(self) -> None:
        if not self.manage_envoy or running_envoy(self.paths) is not None:
            self._start_runtime()
        else:
            self.reconciler.publish_l7 = self._publish

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()

    def _start_runtime(self) -> L7Runtime:
        from .l7 import L7Runtime

        self.runtime = L7Runtime(self.reconciler, self.paths, manage_envoy=self.manage_envoy,
                                 handoff=self.handoff)  # the reconciler's hook from now on
        self.runtime.start()
        return self.runtime

    def _publish(self, translation: Translation) -> Translation:
        """The reconciler's hook until the first L7 listener (called under its lock)."""
        if translation.l7.listeners:
            return self._start_runtime().publish(translation)
        try:
            self.handoff.ensure(())  # what an earlier agent made local for its L7 listeners
        except OSError as error:
            log.error("cannot release the L7 addresses", extra={"event": "l7_address_failed", "error": str(error)})
        return translation
