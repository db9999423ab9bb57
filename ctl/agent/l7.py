"""The agent's L7 side: each applied translation rendered and served to Envoy over ADS,
Envoy's ACKs and NACKs folded back into the statuses, and the kernel handoff (the
addresses of L7 listeners made local so that the stack delivers their traffic to Envoy).

The composition root for l7sidecar: the xDS server and the supervisor know nothing of
the reconciler; the reconciler knows nothing of Envoy beyond a hook."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone

from ctl.translate import ObjectStatus, Translation, apply_l7_feedback
from l7sidecar import render as l7render
from l7sidecar.envoy import EnvoySupervisor, RunPaths, running_envoy
from l7sidecar.xds import AdsServer, Feedback, ResourceState, Snapshot

from .handoff import LocalAddresses
from .reconciler import Reconciler

log = logging.getLogger(__name__)


class L7Runtime:
    """Renders each applied translation, publishes it, overlays Envoy's answers.

    Envoy is started (or a running one adopted) once the configuration first has an L7
    listener; an Envoy left running by a previous agent is adopted at once."""

    def __init__(self, reconciler: Reconciler, paths: RunPaths, manage_envoy: bool = True,
                 handoff: LocalAddresses | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.reconciler = reconciler
        self.paths = paths
        self.clock = clock
        self.handoff = handoff
        self.manage_envoy = manage_envoy
        self._raw: Translation | None = None  # as translated, before Envoy's answers
        self._rendered: l7render.RenderedL7 | None = None
        paths.create()
        self.ads = AdsServer(paths.ads_socket, on_feedback=self._on_feedback)
        self.supervisor: EnvoySupervisor | None = None
        reconciler.publish_l7 = self.publish

    def start(self) -> None:
        self.ads.start()
        if self.manage_envoy and running_envoy(self.paths) is not None:
            self._supervise()

    def stop(self) -> None:
        """Stops serving xDS and supervising; Envoy keeps running on its last config."""
        if self.supervisor is not None:
            self.supervisor.stop()
        self.ads.stop()
        try:
            self.paths.run_dir.rmdir()  # only when empty: an agent that never ran Envoy leaves nothing
        except OSError:
            pass

    def _supervise(self) -> None:
        if self.supervisor is None:
            self.supervisor = EnvoySupervisor(self.paths)
            self.supervisor.start()

    # -- the reconciler's hook (called under reconciler.lock) -------------------------------
    def publish(self, translation: Translation) -> Translation:
        rendered = l7render.render(translation.l7)
        if self.handoff is not None:
            try:
                self.handoff.ensure(listener.address for listener in translation.l7.listeners)
            except OSError as error:  # Envoy still gets its configuration; addresses retried next time
                log.error("cannot make the L7 addresses local", extra={"event": "l7_address_failed",
                                                                        "error": str(error)})
        if self.manage_envoy and translation.l7.listeners:
            self._supervise()
        self._raw, self._rendered = translation, rendered
        self.ads.publish(Snapshot(rendered.resources))
        return self._overlaid(self.ads.feedback())

    # -- Envoy's answers -----------------------------------------------------------------
    def _on_feedback(self, feedback: Feedback) -> None:
        with self.reconciler.lock:
            if self._raw is None or self.reconciler.state.translation is None:
                return
            if self.reconciler.state.translation.l7 is not self._raw.l7:
                return  # the state holds another translation (publish is running)
            self.reconciler.state = replace(self.reconciler.state, translation=self._overlaid(feedback))

    def _overlaid(self, feedback: Feedback) -> Translation:
        raw, rendered = self._raw, self._rendered
        assert raw is not None and rendered is not None
        acked = {name for (_, name), entry in feedback.resources.items() if entry.state is ResourceState.ACKED}
        rejected = {name: entry.message for (_, name), entry in feedback.resources.items()
                    if entry.state is ResourceState.REJECTED}
        programmed, refused = l7render.feedback(rendered, acked, rejected)
        statuses: tuple[ObjectStatus, ...] = apply_l7_feedback(raw.statuses, programmed, refused, self.clock())
        return replace(raw, statuses=statuses)
