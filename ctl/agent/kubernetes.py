"""The agent's Kubernetes mode: the cluster's snapshots into the same reconciler as the
file source, and what it programmed back to the cluster (node report, status, Events)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from kubernetes import client
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ctl.agent.cluster import ClusterStatus
from ctl.sources.kubernetes import KubernetesSource, api_client

from .heap import Collector as HeapCollector
from .metrics import PREFIX
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

    def run(self, stop: threading.Event, observe: Callable[[ReconcileOutcome], None] = lambda _: None,
            heap: HeapCollector | None = None,
            idle: Callable[[Callable[[], bool]], None] = lambda edit_waiting: None) -> None:
        """Reconciles each settled snapshot; ``idle(edit_waiting)`` is called now and then
        while the cluster is quiet (in this thread, so never during a reconcile)."""
        self.source.start()
        self.cluster.start()
        log.info("watching the cluster", extra={"event": "kubernetes", "node": self.node,
                                                "namespace": self.cluster.namespace})
        heap = heap or HeapCollector()  # no collector passes over the whole state inside a reconcile
        try:
            for loaded in self.source.snapshots(stop=stop.is_set, idle=idle):
                # An invalid object keeps its last valid version in the snapshot; its
                # problem is reported (log, Event) without blocking everyone else's config.
                with heap.paused():
                    outcome = self.reconciler.reconcile(replace(loaded, problems=()))
                observe(outcome)
                self.cluster.reconciled(loaded.snapshot, outcome.applied, outcome.problems)
        finally:
            self.cluster.stop()
            self.source.stop()


class KubernetesCollector(Collector):
    """The agent's conversation with the API server, read at scrape time."""

    def __init__(self, agent: KubernetesAgent):
        self.agent = agent

    def collect(self) -> Iterator:
        source, cluster = self.agent.source, self.agent.cluster
        for name, help_text, value in (
            ("kubernetes_relists", "Full lists of a kind (the first, and after 410 Gone)", source.relists),
            ("kubernetes_watch_errors", "Failed list/watch requests (each followed by a backoff)", source.watch_errors),
            ("status_writes", "Status subresource writes (only when the content changed)", cluster.status_writes),
            ("status_conflicts", "Status writes answered 409 Conflict (re-read and retried)", cluster.conflicts),
            ("events", "Warning Events recorded", cluster.events.sent),
        ):
            counter = CounterMetricFamily(f"{PREFIX}_{name}", help_text)
            counter.add_metric([], value)
            yield counter
        leader = GaugeMetricFamily(f"{PREFIX}_status_writer", "1 while this agent holds the status writer Lease")
        leader.add_metric([], 1.0 if cluster.leader else 0.0)
        yield leader
        synced = GaugeMetricFamily(f"{PREFIX}_kubernetes_synced", "1 once every watched kind has been listed")
        synced.add_metric([], 1.0 if source.synced else 0.0)
        yield synced


def run_kubernetes(options: AgentOptions, reconciler: Reconciler, observe: Callable[[ReconcileOutcome], None],
                   stop: threading.Event, registry: CollectorRegistry | None = None,
                   heap: HeapCollector | None = None,
                   idle: Callable[[Callable[[], bool]], None] = lambda edit_waiting: None) -> None:
    api = api_client(str(options.kubeconfig) if options.kubeconfig else None)
    agent = KubernetesAgent(api, reconciler, options.node_name, options.namespace, options.lease_duration)
    if registry is not None:
        registry.register(KubernetesCollector(agent))
    agent.run(stop, observe, heap, idle)
