"""The Kubernetes provider's edge: list+watch the cluster into the same immutable
``Snapshot`` the file source produces.

One thread per watched kind lists it, then watches from the list's resourceVersion,
resumes each watch from the last version it saw, relists on 410 Gone and backs off
(exponentially, with jitter) while the API server is unreachable; the last snapshot
keeps serving meanwhile. Every object goes through the same ``parse_object`` as a file
would. An object whose new version does not validate keeps its last valid version in
the snapshot (and the problem is reported), so one bad edit never takes down what
already works.

``snapshots()`` yields a ``LoadResult`` once every kind has been listed, then after
each burst of changes has settled: a rollout touching fifty EndpointSlices is one
reconcile, not fifty.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from ctl.api import GATEWAY_GROUP, Gateway, K8sObject, ValidationProblem, crds, parse_object
from ctl.sources.documents import LoadResult
from ctl.sources.snapshot import Snapshot

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SOURCE_NAME = "kubernetes"


@dataclass(frozen=True)
class WatchedKind:
    kind: str
    group: str
    plural: str
    versions: tuple[str, ...]  # in order of preference; the first the cluster serves is used
    label_selector: str = ""

    @property
    def label(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _gateway_kind(kind: str, plural: str, preference: tuple[str, ...]) -> WatchedKind:
    served = crds.served_versions(kind)
    return WatchedKind(kind, GATEWAY_GROUP, plural, tuple(v for v in preference if v in served))


def watched_kinds() -> tuple[WatchedKind, ...]:
    return (
        WatchedKind("Namespace", "", "namespaces", ("v1",)),
        WatchedKind("Service", "", "services", ("v1",)),
        # Only slices that belong to a Service: the label is how backends resolve.
        WatchedKind("EndpointSlice", "discovery.k8s.io", "endpointslices", ("v1",), label_selector=SERVICE_NAME_LABEL),
        _gateway_kind("GatewayClass", "gatewayclasses", ("v1", "v1beta1")),
        _gateway_kind("Gateway", "gateways", ("v1", "v1beta1")),
        _gateway_kind("TCPRoute", "tcproutes", ("v1", "v1alpha2")),
        _gateway_kind("UDPRoute", "udproutes", ("v1", "v1alpha2")),
        _gateway_kind("TLSRoute", "tlsroutes", ("v1", "v1alpha3", "v1alpha2")),
        _gateway_kind("HTTPRoute", "httproutes", ("v1", "v1beta1")),
        _gateway_kind("GRPCRoute", "grpcroutes", ("v1",)),
        _gateway_kind("ReferenceGrant", "referencegrants", ("v1", "v1beta1")),
    )


SECRETS = WatchedKind("Secret", "", "secrets", ("v1",))
SECRET_REFRESH = 30.0  # seconds between re-reads of referenced Secrets (certificate rotation)


def referenced_secrets(gateways: Iterable[Gateway]) -> set[tuple[str, str]]:
    """(namespace, name) of every Secret a Gateway listener's certificateRefs names.

    Whether a cross-namespace reference is allowed (a ReferenceGrant) is translation's
    call; the source only fetches, so a grant added later needs no refetch."""
    refs = set()
    for gateway in gateways:
        for listener in gateway.spec.listeners:
            for ref in listener.tls.certificate_refs if listener.tls else ():
                if ref.group in ("", "core") and ref.kind == "Secret":
                    refs.add((ref.namespace or gateway.namespace, ref.name))
    return refs


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """The official client from a kubeconfig file, else the in-cluster service account."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    # One long-lived connection per watch plus the status writer's requests.
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


@dataclass
class Backoff:
    """Exponential backoff with full jitter, reset by a success."""

    initial: float = 0.2
    ceiling: float = 10.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.ceiling, self.initial * (2 ** self.attempt))
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class _Entry:
    raw: dict[str, Any]
    parsed: K8sObject | None  # the last valid version (maybe older than raw)
    problem: ValidationProblem | None


@dataclass
class _KindState:
    entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    synced: bool = False
    version: str = ""
    served: bool = True


class KubernetesSource:
    """Watches the cluster; thread-safe; ``stop()`` ends every watch."""

    def __init__(self, api: client.ApiClient, kinds: tuple[WatchedKind, ...] | None = None,
                 settle: float = 0.1, max_delay: float = 0.5, watch_timeout: int = 290, secrets: bool = True):
        self.api = api
        self.kinds = kinds if kinds is not None else watched_kinds()
        self.settle = settle  # quiet time that ends a burst
        self.max_delay = max_delay  # a burst never delays a reconcile longer than this
        self.watch_timeout = watch_timeout
        self._states = {kind.kind: _KindState() for kind in self.kinds}
        # Secrets are read by name (never listed or watched): only those Gateways reference.
        self.secrets = secrets and "Gateway" in self._states
        if self.secrets:
            self._states[SECRETS.kind] = _KindState()
        self._changed = threading.Condition()
        self._revision = 0  # bumped on every change
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: dict[str, watch.Watch] = {}
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._discovery = client.DiscoveryV1Api(api)
        self.relists = 0  # observability for tests and metrics
        self.watch_errors = 0

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        for kind in self.kinds:
            thread = threading.Thread(target=self._run_kind, args=(kind,), name=f"watch-{kind.plural}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.secrets:
            thread = threading.Thread(target=self._run_secrets, name="read-secrets", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        for w in list(self._watches.values()):
            w.stop()
            response = getattr(w, "_resp", None)
            if response is not None and hasattr(response, "shutdown"):
                response.shutdown()  # unblocks the read (urllib3 >= 2.3)
        with self._changed:
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def synced(self) -> bool:
        return all(state.synced for state in self._states.values())

    # -- the snapshot ----------------------------------------------------------------
    def load(self) -> LoadResult:
        """The current snapshot, and the problems of objects whose last version was invalid.

        The problems are reported, not blocking: the snapshot holds each such object's
        last valid version (or omits it if it never had one)."""
        with self._changed:
            entries = [entry for state in self._states.values() for entry in state.entries.values()]
        objects = [entry.parsed for entry in entries if entry.parsed is not None]
        problems = tuple(sorted(entry.problem for entry in entries if entry.problem is not None))
        return LoadResult(Snapshot.of(objects), problems)

    def raw(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as last seen (with its status and resourceVersion), if any."""
        with self._changed:
            entry = self._states[kind].entries.get((namespace, name))
            return entry.raw if entry else None

    def watches(self, kind: str) -> bool:
        return kind in self._states

    def version_of(self, kind: str) -> str:
        return self._states[kind].version

    def snapshots(self, stop: Callable[[], bool] | None = None,
                  idle: Callable[[Callable[[], bool]], None] = lambda edit_waiting: None) -> Iterator[LoadResult]:
        """The first complete snapshot, then one per settled burst of changes; between
        them, idle(edit_waiting) every 0.2 s while nothing changes (outside the lock),
        edit_waiting() telling whether a change has arrived since."""
        stopped = stop or self._stopping.is_set
        seen = -1
        while not stopped() and not self._stopping.is_set():
            with self._changed:
                quiet = self.synced and self._revision == seen
                if quiet:
                    self._changed.wait(0.2)
                    quiet = self._revision == seen
            if quiet:
                if seen >= 0 and not stopped():
                    idle(lambda: self._revision != seen)
                continue
            with self._changed:
                while not self.synced and not stopped() and not self._stopping.is_set():
                    self._changed.wait(0.2)
                if stopped() or self._stopping.is_set():
                    return
                # Let the burst settle: wait until quiet for `settle`, at most `max_delay`.
                deadline = time.monotonic() + self.max_delay
                while True:
                    before = self._revision
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(min(self.settle, remaining))
                    if self._revision == before:
                        break
                seen = self._revision
            yield self.load()

    # -- one kind ----------------------------------------------------------------------
    def _list(self, kind: WatchedKind, version: str, **kwargs: Any) -> Any:
        if kind.group == GATEWAY_GROUP:
            return self._custom.list_cluster_custom_object(GATEWAY_GROUP, version, kind.plural, **kwargs)
        if kind.plural == "namespaces":
            return self._core.list_namespace(**kwargs)
        if kind.plural == "services":
            return self._core.list_service_for_all_namespaces(**kwargs)
        return self._discovery.list_endpoint_slice_for_all_namespaces(**kwargs)

    def _list_function(self, kind: WatchedKind, version: str) -> Callable[..., Any]:
        if kind.group == GATEWAY_GROUP:
            return lambda **kw: self._custom.list_cluster_custom_object(GATEWAY_GROUP, version, kind.plural, **kw)
        return {"namespaces": self._core.list_namespace, "services": self._core.list_service_for_all_namespaces,
                "endpointslices": self._discovery.list_endpoint_slice_for_all_namespaces}[kind.plural]

    def _choose_version(self, kind: WatchedKind) -> str | None:
        """The first preferred version the cluster serves (its CRD may be missing)."""
        for version in kind.versions:
            try:
                self._list(kind, version, limit=1, _preload_content=False, _request_timeout=(5, 30))
                return version
            except ApiException as error:
                if error.status == 404:
                    continue
                raise
        return None

    def _run_kind(self, kind: WatchedKind) -> None:
        state = self._states[kind.kind]
        backoff = Backoff()
        resource_version: str | None = None
        while not self._stopping.is_set():
            try:
                if not state.version:
                    version = self._choose_version(kind)
                    if version is None:
                        if state.served:
                            log.warning("kind not served by the cluster; retrying every minute",
                                        extra={"event": "kind-not-served", "kind": kind.label})
                        state.served = False
                        self._replace(kind, [], synced=True)
                        self._stopping.wait(60)
                        continue
                    state.version, state.served = version, True
                if resource_version is None:
                    resource_version = self._relist(kind, state.version)
                resource_version = self._watch(kind, state.version, resource_version)
                backoff.reset()
            except ApiException as error:
                if error.status == 410:
                    log.info("watch expired; relisting", extra={"event": "relist", "kind": kind.label})
                    resource_version = None
                    continue
                if error.status == 404:
                    state.version = ""  # the CRD went away (or changed versions): probe again
                    resource_version = None
                self._failed(kind, error, backoff)
            except Exception as error:  # noqa: BLE001 - network errors of every flavour: back off and retry
                self._failed(kind, error, backoff)

    def _run_secrets(self) -> None:
        backoff = Backoff()
        fetched: set[tuple[str, str]] | None = None
        fetched_at = 0.0
        while not self._stopping.is_set():
            with self._changed:
                gateway_state = self._states["Gateway"]
                gateways = [e.parsed for e in gateway_state.entries.values() if isinstance(e.parsed, Gateway)]
                ready = gateway_state.synced
            refs = referenced_secrets(gateways)
            if ready and (refs != fetched or time.monotonic() - fetched_at > SECRET_REFRESH):
                try:
                    self._replace(SECRETS, [self._complete(raw, SECRETS, "v1") for raw in self._read_secrets(refs)], synced=True)
                    fetched, fetched_at = refs, time.monotonic()
                    backoff.reset()
                except Exception as error:  # noqa: BLE001 - as for watches: back off and retry
                    self._failed(SECRETS, error, backoff)
                    continue
            self._stopping.wait(0.2)

    def _read_secrets(self, refs: set[tuple[str, str]]) -> list[dict[str, Any]]:
        found = []
        for namespace, name in sorted(refs):
            try:
                response = self._core.read_namespaced_secret(name, namespace, _preload_content=False,
                                                             _request_timeout=(5, 30))
            except ApiException as error:
                if error.status == 404:
                    continue  # translation reports the missing reference
                raise
            found.append(json.loads(response.data))
        return found

    def _failed(self, kind: WatchedKind, error: Exception, backoff: Backoff) -> None:
        if self._stopping.is_set():
            return  # stop() cut the connection
        self.watch_errors += 1
        delay = backoff.next_delay()
        reason = f"{error.status} {error.reason}" if isinstance(error, ApiException) else f"{type(error).__name__}: {error}"
        log.warning("API server request failed (%s); retrying", reason,
                    extra={"event": "watch-error", "kind": kind.label, "error": reason, "retry_in": round(delay, 2)})
        self._stopping.wait(delay)

    def _relist(self, kind: WatchedKind, version: str) -> str:
        kwargs: dict[str, Any] = {"_preload_content": False, "_request_timeout": (5, 60)}
        if kind.label_selector:
            kwargs["label_selector"] = kind.label_selector
        response = self._list(kind, version, **kwargs)
        listed = json.loads(response.data)
        items = [self._complete(item, kind, version) for item in listed.get("items") or []]
        self._replace(kind, items, synced=True)
        self.relists += 1
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, kind: WatchedKind, version: str, resource_version: str) -> str:
        """Watches until the stream ends; returns the last resourceVersion seen."""
        stream = watch.Watch(return_type="object")
        self._watches[kind.kind] = stream
        kwargs: dict[str, Any] = {
            "resource_version": resource_version,
            "timeout_seconds": self.watch_timeout,
            "allow_watch_bookmarks": True,
            # A half-open connection (the API server's host died) must not hang us forever.
            "_request_timeout": (5, self.watch_timeout + 30),
        }
        if kind.label_selector:
            kwargs["label_selector"] = kind.label_selector
        try:
            for event in stream.stream(self._list_function(kind, version), **kwargs):
                if self._stopping.is_set():
                    break
                raw = event["raw_object"]
                resource_version = str(raw.get("metadata", {}).get("resourceVersion") or resource_version)
                if event["type"] == "BOOKMARK":
                    continue
                self._apply(kind, event["type"], self._complete(raw, kind, version))
        finally:
            self._watches.pop(kind.kind, None)
        return resource_version

    @staticmethod
    def _complete(raw: dict[str, Any], kind: WatchedKind, version: str) -> dict[str, Any]:
        # List items of built-in kinds come without apiVersion and kind.
        raw["apiVersion"] = f"{kind.group}/{version}" if kind.group else version
        raw["kind"] = kind.kind
        return raw

    # -- the store ---------------------------------------------------------------------
    @staticmethod
    def _key(raw: dict[str, Any]) -> tuple[str, str]:
        meta = raw.get("metadata") or {}
        return meta.get("namespace") or "", meta.get("name") or ""

    def _entry(self, raw: dict[str, Any], previous: _Entry | None) -> _Entry:
        if previous is not None and _same_version(previous.raw, raw):
            return previous
        namespace, name = self._key(raw)
        # The API server validated it against the CRDs installed there, which may be newer
        # than ours: a field we do not know is pruned, not refused.
        parsed = parse_object(raw, filename=SOURCE_NAME, index=1, unknown_fields=False)
        if isinstance(parsed, ValidationProblem):
            log.warning("invalid object; its last valid version (if any) keeps serving",
                        extra={"event": "invalid-object", "problem": str(parsed)})
            return _Entry(raw, previous.parsed if previous else None, parsed)
        return _Entry(raw, parsed if isinstance(parsed, K8sObject) else None, None)

    def _replace(self, kind: WatchedKind, items: list[dict[str, Any]], synced: bool) -> None:
        with self._changed:
            state = self._states[kind.kind]
            entries = {}
            for raw in items:
                key = self._key(raw)
                entries[key] = self._entry(raw, state.entries.get(key))
            changed = not state.synced or _contents(entries) != _contents(state.entries)
            state.entries, state.synced = entries, synced
            if changed:
                self._revision += 1
                self._changed.notify_all()

    def _apply(self, kind: WatchedKind, event_type: str, raw: dict[str, Any]) -> None:
        with self._changed:
            state = self._states[kind.kind]
            key = self._key(raw)
            if event_type == "DELETED":
                if state.entries.pop(key, None) is None:
                    return
            else:
                previous = state.entries.get(key)
                entry = self._entry(raw, previous)
                if entry is previous:
                    return
                state.entries[key] = entry
                if previous is not None and (entry.parsed, entry.problem) == (previous.parsed, previous.problem):
                    return  # only status or bookkeeping changed: nothing to reconcile
            self._revision += 1
            self._changed.notify_all()


def _same_version(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a.get("metadata") or {}).get("resourceVersion") == (b.get("metadata") or {}).get("resourceVersion")


def _contents(entries: dict[tuple[str, str], _Entry]) -> dict[tuple[str, str], tuple[object, object]]:
    return {key: (entry.parsed, entry.problem) for key, entry in entries.items()}
