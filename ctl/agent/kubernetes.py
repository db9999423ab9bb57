"""The agent's Kubernetes mode: the cluster's snapshots into the same reconciler as the
file source, and what it programmed back to the cluster (node report, status, Events)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from kubernetes import client

from ctl.agent.cluster import ClusterStatus
from ctl.sources.kubernetes import KubernetesSource, api_client

from .reconciler import ReconcileOutcome, Reconciler

if TYPE_CHECKING:
    from .run import AgentOptions

log = logging.getLogger(__name__)


class KubernetesAgent:
    """Source, reconciler and cluster status of one node, wired together."""

    def __init__(self, api: client.ApiClient, reconciler: Reconciler, node: str, namespace: str,
                 lease_duration: int = 15):
        api.user_agent = f"xdp-gateway/{node}"  # tells the nodes apart in audit logs
        self.node = node
        self.reconciler = reconciler
        self.source = KubernetesSource(api)
        self.cluster = ClusterStatus(api, self.source, node, namespace, reconciler.config.controller_name,
                                     lambda: reconciler.statuses, lease_duration=lease_duration)

    def run(self, stop: threading.Event, observe: Callable[[ReconcileOutcome], None] = lambda _: None) -> None:
        self.source.start()
        self.cluster.start()
        log.info("watching the cluster", extra={"event": "kubernetes", "node": self.node,
                                                "namespace": self.cluster.namespace})
        try:
            for loaded in self.source.snapshots(stop=stop.is_set):
                # An invalid object keeps its last valid version in the snapshot; its
                # problem is reported (log, Event) without blocking everyone else's config.
                outcome = self.reconciler.reconcile(replace(loaded, problems=()))
                observe(outcome)
                self.cluster.reconciled(loaded.snapshot, outcome.applied, outcome.problems)
        finally:
            self.cluster.stop()
            self.source.stop()


def run_kubernetes(options: AgentOptions, reconciler: Reconciler, observe: Callable[[ReconcileOutcome], None],
                   stop: threading.Event) -> None:
    api = api_client(str(options.kubeconfig) if options.kubeconfig else None)
    KubernetesAgent(api, reconciler, options.node_name, options.namespace, options.lease_duration).run(stop, observe)
