"""The agent's writes to the cluster: its node report, the status-writer election, the
Gateway API status and Events. Effects only; the decisions are in ``progress``.

Leader election: the DaemonSet's agents elect one of themselves through a
coordination.k8s.io Lease (``xdp-gateway-status`` in the agent's namespace).
Every agent already translates the whole cluster, so any of them can write status;
one image and one workload means no extra Deployment to size, upgrade or schedule.
Expiry is judged as client-go does: by how long this agent has seen the Lease
unchanged on its own monotonic clock, never by comparing other nodes' wall clocks.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from ctl.agent.progress import (
    NODE_LEASE_PREFIX,
    PROGRAMMED_ANNOTATION,
    STATUS_LEASE_NAME,
    NodeReport,
    after_reconcile,
    status_stanza,
    wanted_generations,
    with_node_progress,
    without_our_parents,
)
from ctl.api import GATEWAY_GROUP
from ctl.sources import Snapshot
from ctl.sources.kubernetes import KubernetesSource
from ctl.translate import ObjectStatus

log = logging.getLogger(__name__)

_PLURALS = {"GatewayClass": "gatewayclasses", "Gateway": "gateways", "TCPRoute": "tcproutes", "UDPRoute": "udproutes",
            "TLSRoute": "tlsroutes", "HTTPRoute": "httproutes", "GRPCRoute": "grpcroutes"}
_ROUTE_KINDS = ("TCPRoute", "UDPRoute", "TLSRoute", "HTTPRoute", "GRPCRoute")
CONFLICT_RETRIES = 5


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Observed:
    record: tuple[Any, ...]
    since: float  # monotonic time this agent first saw the record as it is


@dataclass
class LeaseObserver:
    """When each Lease last changed, on this agent's clock."""

    clock: Callable[[], float] = time.monotonic
    seen: dict[str, _Observed] = field(default_factory=dict)

    def alive(self, name: str, lease: client.V1Lease) -> bool:
        spec = lease.spec
        record = (spec.holder_identity, spec.renew_time, spec.lease_transitions, lease.metadata.resource_version)
        observed = self.seen.get(name)
        now = self.clock()
        if observed is None or observed.record != record:
            observed = self.seen[name] = _Observed(record, now)
        return bool(spec.holder_identity) and now - observed.since < (spec.lease_duration_seconds or 15)


class ClusterStatus:
    """One per agent: renews its node Lease, competes for the writer Lease and, while
    holding it, writes status. ``tick()`` does one round; ``start()`` runs rounds on a
    thread every lease_duration/3 and on ``poke()``."""

    def __init__(self, api: client.ApiClient, source: KubernetesSource, node: str, namespace: str,
                 controller: str, statuses: Callable[[], tuple[ObjectStatus, ...]],
                 lease_duration: int = 15, event_interval: float = 600.0):
        self.api, self.source, self.node, self.namespace = api, source, node, namespace
        self.controller = controller
        self.statuses = statuses  # the reconciler's latest translation statuses
        self.lease_duration = lease_duration
        self.leases = client.CoordinationV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.events = EventRecorder(api, namespace, controller, node, event_interval)
        self.observer = LeaseObserver()
        self.report = NodeReport(node, {}, "")
        self.leader = False
        self.status_writes = 0
        self.conflicts = 0
        self._reported: tuple[str, float] | None = None  # (annotation, monotonic time written)
        self._written: dict[tuple[str, str, str], dict[str, Any]] = {}  # our last write per object
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._translated: Snapshot | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cluster-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def poke(self) -> None:
        self._wake.set()

    def reconciled(self, snapshot: Snapshot, applied: bool, problems: tuple[str, ...]) -> None:
        """Called after every reconcile of a cluster snapshot."""
        with self._lock:
            self.report = after_reconcile(self.report, snapshot, applied, problems)
            if applied:
                self._translated = snapshot  # what the reconciler's statuses were computed from
        if not applied:
            for problem in problems:
                self.events.warn(self._node_lease_ref(), "ProgrammingFailed", f"node {self.node}: {problem}")
        self.poke()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as error:  # noqa: BLE001 - the API server may be away: try next round
                log.warning("cluster status round failed", extra={"event": "status-error", "error": repr(error)})
            self._wake.wait(max(1.0, self.lease_duration / 3))
            self._wake.clear()

    def tick(self) -> None:
        self.renew_node_lease()
        self.leader = self.elect()
        if self.leader:
            self.write_statuses()

    # -- the node's report ------------------------------------------------------------
    def _node_lease_name(self) -> str:
        return f"{NODE_LEASE_PREFIX}{self.node}"

    def _node_lease_ref(self) -> dict[str, str]:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "namespace": self.namespace,
                "name": self._node_lease_name()}

    def renew_node_lease(self) -> None:
        with self._lock:
            annotation = self.report.to_annotation()
        if self._reported and self._reported[0] == annotation and time.monotonic() - self._reported[1] < self.lease_duration / 3:
            return
        body = {
            "metadata": {"name": self._node_lease_name(), "namespace": self.namespace,
                         "labels": {"app.kubernetes.io/name": "xdp-gateway", "xdp-gateway.io/node-report": "true"},
                         "annotations": {PROGRAMMED_ANNOTATION: annotation}},
            "spec": {"holderIdentity": self.node, "leaseDurationSeconds": self.lease_duration,
                     "renewTime": _micro_time(datetime.now(UTC))},
        }
        try:
            self.leases.patch_namespaced_lease(self._node_lease_name(), self.namespace, body)
        except ApiException as error:
            if error.status != 404:
                raise
            self.leases.create_namespaced_lease(self.namespace, body)
        self._reported = (annotation, time.monotonic())

    def node_reports(self) -> list[NodeReport]:
        """The reports of every live node (its Lease renewed within its duration)."""
        leases = self.leases.list_namespaced_lease(self.namespace, label_selector="xdp-gateway.io/node-report=true")
        reports = []
        for lease in leases.items:
            name = lease.metadata.name
            if not self.observer.alive(name, lease):
                continue
            node = lease.spec.holder_identity or name.removeprefix(NODE_LEASE_PREFIX)
            reports.append(NodeReport.from_annotation(node, (lease.metadata.annotations or {}).get(PROGRAMMED_ANNOTATION)))
        return reports

    # -- the writer election ------------------------------------------------------------
    def elect(self) -> bool:
        """One round of leader election; True while this agent holds the writer Lease."""
        now = _micro_time(datetime.now(UTC))
        try:
            lease = self.leases.read_namespaced_lease(STATUS_LEASE_NAME, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = {"metadata": {"name": STATUS_LEASE_NAME, "namespace": self.namespace},
                    "spec": {"holderIdentity": self.node, "leaseDurationSeconds": self.lease_duration,
                             "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}
            try:
                self.leases.create_namespaced_lease(self.namespace, body)
            except ApiException as race:
                if race.status == 409:
                    return False  # another agent created it first
                raise
            self._became_leader(True)
            return True
        holder = lease.spec.holder_identity
        alive = self.observer.alive(STATUS_LEASE_NAME, lease)
        if holder and holder != self.node and alive:
            self._became_leader(False)
            return False
        spec = lease.spec
        taking_over = holder != self.node
        body = {
            "metadata": {"name": STATUS_LEASE_NAME, "namespace": self.namespace,
                         "resourceVersion": lease.metadata.resource_version},
            "spec": {"holderIdentity": self.node, "leaseDurationSeconds": self.lease_duration,
                     "acquireTime": now if taking_over or not spec.acquire_time else _micro_time(spec.acquire_time),
                     "renewTime": now,
                     "leaseTransitions": (spec.lease_transitions or 0) + (1 if taking_over else 0)},
        }
        try:
            self.leases.replace_namespaced_lease(STATUS_LEASE_NAME, self.namespace, body)
        except ApiException as error:
            if error.status == 409:
                self._became_leader(False)
                return False  # someone renewed or took it between our read and write
            raise
        self._became_leader(True)
        return True

    def _became_leader(self, leading: bool) -> None:
        if leading != self.leader:
            log.info("status writer" if leading else "not the status writer",
                     extra={"event": "leader" if leading else "follower", "node": self.node})
            if leading:
                self._written.clear()  # trust nothing from an earlier term

    # -- status -------------------------------------------------------------------------
    def write_statuses(self) -> None:
        with self._lock:
            snapshot = self._translated
        if snapshot is None:
            return  # nothing translated yet: writing now would erase what an earlier writer wrote
        statuses = self.statuses()
        wanted = wanted_generations(snapshot)
        statuses = with_node_progress(statuses, wanted, self.node_reports(), datetime.now(UTC))
        ours = {(s.kind, s.namespace, s.name) for s in statuses}
        for status in statuses:
            if status.kind not in _PLURALS:
                continue
            self._write(status.kind, status.namespace, status.name,
                        lambda current, s=status: status_stanza(s, current, self.controller))
        # Routes that no longer attach to any of our Gateways lose our parent entries.
        for route in snapshot.routes:
            if (route.KIND, route.namespace, route.name) not in ours:
                self._write(route.KIND, route.namespace, route.name,
                            lambda current: without_our_parents(current, self.controller))
        for problem in self.source.load().problems:
            self.events.warn_about(problem.subject, "InvalidObject", str(problem), self.source)

    def _current(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The freshest copy we know: the watch's, or our own last write if newer."""
        seen = self.source.raw(kind, namespace, name)
        written = self._written.get((kind, namespace, name))
        if seen is None:
            return None
        if written and int(written["metadata"]["resourceVersion"]) > int(seen["metadata"]["resourceVersion"]):
            return written
        return seen

    def _write(self, kind: str, namespace: str, name: str, desired: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> None:
        current = self._current(kind, namespace, name)
        for _ in range(CONFLICT_RETRIES):
            if current is None:
                return  # deleted meanwhile
            stanza = desired(current.get("status"))
            if stanza is None or stanza == current.get("status"):
                return
            body = copy.deepcopy(current)
            body["status"] = stanza
            group, version = GATEWAY_GROUP, current["apiVersion"].rpartition("/")[2]
            try:
                if namespace:
                    written = self.custom.replace_namespaced_custom_object_status(
                        group, version, namespace, _PLURALS[kind], name, body)
                else:
                    written = self.custom.replace_cluster_custom_object_status(group, version, _PLURALS[kind], name, body)
            except ApiException as error:
                if error.status == 404:
                    return
                if error.status != 409:
                    raise
                self.conflicts += 1
                log.info("status conflict; re-reading", extra={"event": "status-conflict", "object": f"{kind} {namespace}/{name}"})
                current = self._read(kind, version, namespace, name)
                continue
            self.status_writes += 1
            self._written[(kind, namespace, name)] = written
            return
        log.warning("status write kept conflicting; next round retries",
                    extra={"event": "status-conflict", "object": f"{kind} {namespace}/{name}"})

    def _read(self, kind: str, version: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            if namespace:
                return self.custom.get_namespaced_custom_object(GATEWAY_GROUP, version, namespace, _PLURALS[kind], name)
            return self.custom.get_cluster_custom_object(GATEWAY_GROUP, version, _PLURALS[kind], name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise


class EventRecorder:
    """Warning Events (events.k8s.io/v1), each distinct one at most once per interval,
    and at most ``burst`` a minute overall: a flapping object must not flood etcd."""

    def __init__(self, api: client.ApiClient, namespace: str, controller: str, node: str,
                 interval: float = 600.0, burst: int = 20):
        self.events = client.EventsV1Api(api)
        self.namespace, self.controller, self.node = namespace, controller, node
        self.interval, self.burst = interval, burst
        self._last: dict[tuple[str, str, str], float] = {}
        self._recent: list[float] = []
        self.sent = 0

    def warn(self, regarding: dict[str, str], reason: str, note: str) -> None:
        key = (f"{regarding.get('kind')}/{regarding.get('namespace')}/{regarding.get('name')}", reason, note)
        now = time.monotonic()
        if now - self._last.get(key, -1e18) < self.interval:
            return
        self._recent = [t for t in self._recent if now - t < 60]
        if len(self._recent) >= self.burst:
            return
        namespace = regarding.get("namespace") or self.namespace
        body = {
            "metadata": {"generateName": "xdp-gateway.", "namespace": namespace},
            "eventTime": _micro_time(datetime.now(UTC)),
            "reportingController": self.controller,
            "reportingInstance": f"{self.controller}/{self.node}",
            "action": "Reconcile",
            "reason": reason,
            "note": note[:1024],
            "type": "Warning",
            "regarding": regarding,
        }
        try:
            self.events.create_namespaced_event(namespace, body)
        except ApiException as error:
            log.warning("could not record an event", extra={"event": "event-error", "error": f"{error.status} {error.reason}"})
            return
        self._last[key] = now
        self._recent.append(now)
        self.sent += 1

    def warn_about(self, subject: str, reason: str, note: str, source: KubernetesSource) -> None:
        """An Event about the object a problem names ("Kind namespace/name")."""
        kind, _, rest = subject.partition(" ")
        namespace, _, name = rest.rpartition("/")
        raw = source.raw(kind, namespace, name) if source.watches(kind) else None
        if raw is None:
            return
        meta = raw["metadata"]
        self.warn({"apiVersion": raw.get("apiVersion", ""), "kind": kind, "namespace": namespace, "name": name,
                   "uid": meta.get("uid", "")}, reason, note)
