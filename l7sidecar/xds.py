"""A State-of-the-World ADS server (envoy.service.discovery.v3.AggregatedDiscoveryService)
on a Unix socket, written with grpcio and the generated protos of xds-protos.

The agent publishes whole snapshots (type URL -> resource name -> message); each Envoy
stream is served from the newest one, in the order Envoy's ADS documentation prescribes
so that nothing points at a resource Envoy does not hold yet:

    CDS -> EDS -> SDS -> LDS -> RDS, then removals

One response per type is in flight at a time, and no type overtakes a change of an
earlier one that is still to be sent. Clusters, endpoints and secrets that the new
snapshot drops stay served (the union of old and new) until Envoy has ACKed the listeners
and routes of the new snapshot, then a last CDS/EDS/SDS round removes them (after a
NACK they stay: Envoy's last good routes may still use them).

Envoy answers every response with an ACK (the version it now holds) or a NACK (it keeps
the last good config and says why). Both are tracked per type URL and per resource: a
NACK is pinned on the resources its message names, or on every resource that changed in
that response when it names none. `feedback()` reports, per resource of the current
snapshot, whether Envoy holds exactly it, rejected it or has not answered yet; the
`on_feedback` callback fires after each answer so the agent can turn it into status.

Secrets exist only in memory here and on the wire (SDS): never on disk.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

log = logging.getLogger(__name__)

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"

# Warming order for ADS (Envoy's "xDS REST and gRPC protocol", eventual consistency).
ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, SECRET, LISTENER, ROUTE)
# Kept while the listeners and routes of a new snapshot are not settled yet.
_REMOVED_LAST = frozenset({CLUSTER, ENDPOINT, SECRET})
# Envoy subscribes to every resource of these (wildcard) and to named ones of the others.
_WILDCARD = frozenset({CLUSTER, LISTENER})


def short_type(type_url: str) -> str:
    return type_url.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Snapshot:
    """Everything Envoy should hold: type URL -> resource name -> message."""

    resources: Mapping[str, Mapping[str, Message]]

    def of(self, type_url: str) -> Mapping[str, Message]:
        return self.resources.get(type_url, {})


EMPTY = Snapshot({})


class ResourceState(Enum):
    ACKED = "acked"  # Envoy holds exactly this resource
    REJECTED = "rejected"  # Envoy refused it (NACK) and keeps the last good one
    PENDING = "pending"  # not sent yet, or no answer yet, or not requested by Envoy


@dataclass(frozen=True)
class ResourceFeedback:
    state: ResourceState
    message: str = ""  # Envoy's error for REJECTED


@dataclass(frozen=True)
class Feedback:
    """Per resource of the published snapshot: what Envoy made of it."""

    resources: Mapping[tuple[str, str], ResourceFeedback]  # (type URL, name) -> feedback
    connected: bool  # an Envoy stream is open now

    def state(self, type_url: str, name: str) -> ResourceState:
        entry = self.resources.get((type_url, name))
        return entry.state if entry else ResourceState.PENDING

    def rejected(self) -> dict[tuple[str, str], str]:
        return {k: v.message for k, v in self.resources.items() if v.state is ResourceState.REJECTED}

    def acked(self, type_url: str) -> frozenset[str]:
        return frozenset(n for (t, n), v in self.resources.items()
                         if t == type_url and v.state is ResourceState.ACKED)


def _encode(resources: Mapping[str, Message]) -> dict[str, bytes]:
    return {name: msg.SerializeToString(deterministic=True) for name, msg in resources.items()}


def content_version(encoded: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(encoded):
        digest.update(name.encode() + b"\0" + hashlib.sha256(encoded[name]).digest())
    return digest.hexdigest()[:16]


def attribute_nack(message: str, changed: set[str]) -> set[str]:
    """The resources a NACK is about: those its message names, else all that changed."""
    named = {name for name in changed if name and name in message}
    return named or set(changed)


@dataclass
class _Sent:
    version: str
    nonce: str
    encoded: dict[str, bytes]  # name -> serialized resource, as sent
    messages: dict[str, Message]


@dataclass
class _Answers:
    """What one Envoy told us, per type URL: the contents it ACKed and what it refused."""

    acked: dict[str, dict[str, bytes]] = field(default_factory=dict)  # type -> name -> bytes
    rejected: dict[str, dict[str, tuple[bytes, str]]] = field(default_factory=dict)


class _Stream:
    """One ADS stream: its subscriptions, what was sent, what is awaited."""

    def __init__(self, server: AdsServer, peer: str) -> None:
        self.server = server
        self.peer = peer
        self.requests: queue.SimpleQueue[discovery_pb2.DiscoveryRequest | None] = queue.SimpleQueue()
        self.subscribed: dict[str, frozenset[str] | None] = {}  # None: wildcard
        self.sent: dict[str, _Sent] = {}
        self.awaiting: set[str] = set()
        self.nacked: set[str] = set()  # types whose last response Envoy refused
        self.nonces = itertools.count(1)
        self.closed = False
        self.node_id = ""

    # -- requests ------------------------------------------------------------------
    def handle(self, request: discovery_pb2.DiscoveryRequest) -> bool:
        """Takes one request in; True when it answered a response (ACK or NACK)."""
        type_url = request.type_url
        log.debug("xds request", extra={"event": "xds_request", "type": short_type(type_url),
                                        "version": request.version_info, "nonce": request.response_nonce,
                                        "names": list(request.resource_names),
                                        "error": request.error_detail.message})
        if request.node.id:
            self.node_id = request.node.id
        if type_url not in ORDER:
            log.warning("envoy asked for a type we do not serve",
                        extra={"event": "xds_unknown_type", "type_url": type_url})
            return False
        names = None if type_url in _WILDCARD and not request.resource_names else frozenset(request.resource_names)
        sent = self.sent.get(type_url)
        if not request.response_nonce or sent is None:
            # A new subscription (or Envoy reconnected): serve it whatever it says it has.
            self.subscribed[type_url] = names
            self.sent.pop(type_url, None)
            self.awaiting.discard(type_url)
            return False
        if request.response_nonce != sent.nonce:
            return False  # an answer to a response that a newer one superseded
        self.subscribed[type_url] = names
        if type_url not in self.awaiting:
            return False  # only the subscription changed
        self.awaiting.discard(type_url)
        if request.HasField("error_detail"):
            self.nacked.add(type_url)
            self.server._record_nack(type_url, sent, request.error_detail.message)
        else:
            self.nacked.discard(type_url)
            self.server._record_ack(type_url, sent)
        return True

    # -- responses -----------------------------------------------------------------
    def next_response(self, snapshot: Snapshot) -> discovery_pb2.DiscoveryResponse | None:
        """The next response due on this stream, or None while waiting for an answer."""
        settled = self._settled(snapshot)
        for type_url in ORDER:
            if type_url not in self.subscribed:
                continue
            messages = self._serving(type_url, snapshot, settled)
            encoded = _encode(messages)
            sent = self.sent.get(type_url)
            if sent is not None and sent.encoded == encoded:
                continue
            if type_url in self.awaiting:
                # One response per type in flight; and nothing later in the order may
                # overtake a change still to be sent. (Envoy ACKs CDS only once the
                # clusters are warm, i.e. after EDS: so EDS must not wait for that ACK.)
                return None
            return self._respond(type_url, messages, encoded)
        return None

    def _settled(self, snapshot: Snapshot) -> bool:
        """The listeners and routes of `snapshot` are ACKed: removals may follow. After a
        NACK Envoy still runs the older listeners and routes, which may use what the new
        snapshot drops: nothing is removed until a snapshot is accepted."""
        for type_url in (LISTENER, ROUTE):
            if type_url in self.awaiting or type_url in self.nacked:
                return False
            if type_url not in self.subscribed:
                continue
            sent = self.sent.get(type_url)
            if sent is None or sent.encoded != _encode(self._requested(type_url, snapshot.of(type_url))):
                return False
        return True

    def _requested(self, type_url: str, resources: Mapping[str, Message]) -> dict[str, Message]:
        names = self.subscribed.get(type_url)
        return dict(resources) if names is None else {n: m for n, m in resources.items() if n in names}

    def _serving(self, type_url: str, snapshot: Snapshot, settled: bool) -> dict[str, Message]:
        wanted = dict(snapshot.of(type_url))
        sent = self.sent.get(type_url)
        if type_url in _REMOVED_LAST and not settled and sent is not None:
            wanted = {**sent.messages, **wanted}
        return self._requested(type_url, wanted)

    def _respond(self, type_url: str, messages: dict[str, Message],
                 encoded: dict[str, bytes]) -> discovery_pb2.DiscoveryResponse:
        version = content_version(encoded)
        nonce = f"{next(self.nonces)}"
        response = discovery_pb2.DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce)
        for name in sorted(messages):
            packed = any_pb2.Any()
            packed.Pack(messages[name])
            response.resources.append(packed)
        self.sent[type_url] = _Sent(version, nonce, encoded, messages)
        self.awaiting.add(type_url)
        self.server.history.append((version, type_url, tuple(sorted(messages))))
        log.info("xds response", extra={"event": "xds_push", "type": short_type(type_url),
                                        "version": version, "resources": len(messages)})
        return response


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, server: AdsServer) -> None:
        self.server = server

    def StreamAggregatedResources(self, request_iterator, context) -> Iterator[discovery_pb2.DiscoveryResponse]:  # noqa: N802
        stream = _Stream(self.server, context.peer())

        def read() -> None:
            try:
                for request in request_iterator:
                    stream.requests.put(request)
            except grpc.RpcError:
                pass
            finally:
                stream.requests.put(None)

        context.add_callback(lambda: stream.requests.put(None))
        self.server._open(stream)
        reader = threading.Thread(target=read, name="xds-read", daemon=True)
        reader.start()
        try:
            while True:
                item = stream.requests.get()
                batch = [item]
                while True:  # Envoy often sends several requests at once: answer them together
                    try:
                        batch.append(stream.requests.get_nowait())
                    except queue.Empty:
                        break
                if any(r is None for r in batch):
                    return
                with self.server._lock:
                    answered = False
                    for request in batch:
                        if request is not _WAKE:
                            answered = stream.handle(request) or answered
                    # Nothing before the agent's first snapshot: a restarted agent must not
                    # answer Envoy's reconnect with an empty config (Envoy would drop every
                    # listener and cluster); Envoy keeps its last config until then.
                    snapshot = self.server._snapshot
                    response = None if snapshot is None else stream.next_response(snapshot)
                if answered:
                    self.server._notify()
                if response is not None:
                    yield response
        finally:
            self.server._close(stream)


_WAKE = discovery_pb2.DiscoveryRequest()  # placed on every stream's queue when the snapshot changes


class AdsServer:
    """The ADS server; `publish` a snapshot, read `feedback()`, get called back on answers."""

    def __init__(self, socket_path: Path, on_feedback: Callable[[Feedback], None] | None = None,
                 workers: int = 8) -> None:
        self.socket_path = Path(socket_path)
        self.on_feedback = on_feedback
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None  # None until the agent publishes
        self._answers = _Answers()
        self._streams: list[_Stream] = []
        # The last responses sent (version, type URL, resource names), for gwctl and tests.
        self.history: collections.deque[tuple[str, str, tuple[str, ...]]] = collections.deque(maxlen=256)
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xds"))
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), self._grpc)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.socket_path.parent, 0o700)
        self.socket_path.unlink(missing_ok=True)
        self._grpc.add_insecure_port(f"unix:{self.socket_path}")
        self._grpc.start()
        os.chmod(self.socket_path, 0o600)
        log.info("xds serving", extra={"event": "xds_serving", "socket": str(self.socket_path)})

    def stop(self, grace: float = 1.0) -> None:
        self._grpc.stop(grace).wait()
        self.socket_path.unlink(missing_ok=True)

    # -- the agent's side ------------------------------------------------------------------
    def publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot
            streams = list(self._streams)
        for stream in streams:
            stream.requests.put(_WAKE)
        self._notify()

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot or EMPTY

    def feedback(self) -> Feedback:
        with self._lock:
            return self._feedback_locked()

    # -- streams ---------------------------------------------------------------------
    def _open(self, stream: _Stream) -> None:
        with self._lock:
            self._streams.append(stream)
        log.info("envoy connected", extra={"event": "xds_connected", "peer": stream.peer})

    def _close(self, stream: _Stream) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)
        log.info("envoy disconnected; it keeps its last config",
                 extra={"event": "xds_disconnected", "peer": stream.peer})
        self._notify()

    def _record_ack(self, type_url: str, sent: _Sent) -> None:
        self._answers.acked[type_url] = dict(sent.encoded)
        rejected = self._answers.rejected.get(type_url, {})
        for name, content in sent.encoded.items():
            if name in rejected and rejected[name][0] == content:
                del rejected[name]
        log.info("envoy ack", extra={"event": "xds_ack", "type": short_type(type_url), "version": sent.version})

    def _record_nack(self, type_url: str, sent: _Sent, message: str) -> None:
        held = self._answers.acked.get(type_url, {})
        changed = {n for n, content in sent.encoded.items() if held.get(n) != content}
        blamed = attribute_nack(message, changed)
        rejected = self._answers.rejected.setdefault(type_url, {})
        for name in blamed:
            rejected[name] = (sent.encoded[name], message)
        log.warning("envoy rejected a config; it keeps the last good one",
                    extra={"event": "xds_nack", "type": short_type(type_url), "version": sent.version,
                           "resources": sorted(blamed), "error": message})

    def _feedback_locked(self) -> Feedback:
        out: dict[tuple[str, str], ResourceFeedback] = {}
        for type_url, resources in (self._snapshot or EMPTY).resources.items():
            acked = self._answers.acked.get(type_url, {})
            rejected = self._answers.rejected.get(type_url, {})
            for name, content in _encode(resources).items():
                if acked.get(name) == content:
                    out[(type_url, name)] = ResourceFeedback(ResourceState.ACKED)
                elif name in rejected and rejected[name][0] == content:
                    out[(type_url, name)] = ResourceFeedback(ResourceState.REJECTED, rejected[name][1])
                else:
                    out[(type_url, name)] = ResourceFeedback(ResourceState.PENDING)
        return Feedback(out, connected=bool(self._streams))

    def _notify(self) -> None:
        if self.on_feedback is None:
            return
        try:
            self.on_feedback(self.feedback())
        except Exception:  # a status writer's bug must not break the xDS stream
            log.exception("feedback callback failed", extra={"event": "xds_feedback_error"})
