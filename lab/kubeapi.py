"""A Kubernetes API server emulator over real HTTP, faithful where xdp-gateway depends
on it; the official client talks to it unchanged.

Emulated: one global resourceVersion bumped on every write and carried by list and watch;
watch resuming from a resourceVersion with 410 Gone once that version has left the
bounded event history; ``metadata.generation`` bumped on spec changes only; ``uid`` and
``creationTimestamp``; a real ``/status`` subresource (status writes never change the
spec, spec writes never change the status); optimistic concurrency (409 on a stale
resourceVersion); JSON merge patch (strategic merge is treated as merge patch, which is
all the control plane sends); label and field selectors; discovery documents; Leases,
Events and the Gateway API kinds in every version the code reads.

Not emulated: admission, defaulting and schema validation (the control plane validates
what it reads itself), finalizers, authentication, protobuf.

Fault injection for tests: ``drop_watches()`` ends every open watch stream,
``expire_next_watch()`` answers the next watch with 410 Gone,
``conflict_next_status_write()`` answers a resource's next status write with 409,
``go_down()`` stops listening (and drops every connection) and ``come_back()`` listens
again on the same addresses. ``requests`` records every request (verb, group, resource,
subresource, name, user agent) so a test can derive the RBAC rules the code needs.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class Kind:
    group: str
    versions: tuple[str, ...]
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = False  # has a /status subresource

    @property
    def verbs(self) -> list[str]:
        return ["create", "delete", "get", "list", "patch", "update", "watch"]


KINDS: tuple[Kind, ...] = (
    Kind("", ("v1",), "namespaces", "Namespace", namespaced=False, status=True),
    Kind("", ("v1",), "services", "Service", status=True),
    Kind("", ("v1",), "secrets", "Secret"),
    Kind("", ("v1",), "events", "Event"),
    Kind("discovery.k8s.io", ("v1",), "endpointslices", "EndpointSlice"),
    Kind("coordination.k8s.io", ("v1",), "leases", "Lease"),
    Kind("events.k8s.io", ("v1",), "events", "Event"),
    Kind(GATEWAY_GROUP, ("v1", "v1beta1"), "gatewayclasses", "GatewayClass", namespaced=False, status=True),
    Kind(GATEWAY_GROUP, ("v1", "v1beta1"), "gateways", "Gateway", status=True),
    Kind(GATEWAY_GROUP, ("v1", "v1beta1"), "httproutes", "HTTPRoute", status=True),
    Kind(GATEWAY_GROUP, ("v1",), "grpcroutes", "GRPCRoute", status=True),
    Kind(GATEWAY_GROUP, ("v1", "v1alpha2"), "tcproutes", "TCPRoute", status=True),
    Kind(GATEWAY_GROUP, ("v1", "v1alpha2"), "udproutes", "UDPRoute", status=True),
    Kind(GATEWAY_GROUP, ("v1", "v1alpha2", "v1alpha3"), "tlsroutes", "TLSRoute", status=True),
    Kind(GATEWAY_GROUP, ("v1", "v1beta1"), "referencegrants", "ReferenceGrant"),
)
_BY_PATH = {(k.group, k.plural): k for k in KINDS}
# Fields that are the object's desired state: a change to any other top-level field
# (metadata, status) leaves metadata.generation alone.
_NOT_SPEC = ("apiVersion", "kind", "metadata", "status")


@dataclass(frozen=True)
class Request:
    verb: str  # get, list, watch, create, update, patch, delete
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    user_agent: str = ""


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_REQUIREMENT = re.compile(r"^\s*(!?)\s*([^\s!=<>,()]+)\s*(?:(==|=|!=|\s+in\s+|\s+notin\s+)\s*(.*?))?\s*$")


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label selector syntax: k=v, k==v, k!=v, k in (a,b), k notin (a,b), k, !k."""
    for requirement in _split_selector(selector):
        found = _REQUIREMENT.match(requirement)
        if found is None:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {requirement!r}")
        negated, key, op, value = found.groups()
        op = (op or "").strip()
        if not op:
            if (key in labels) == bool(negated):
                return False
            continue
        if op in ("=", "=="):
            ok = labels.get(key) == value
        elif op == "!=":
            ok = labels.get(key) != value
        else:
            values = {v.strip() for v in value.strip().strip("()").split(",")}
            ok = labels.get(key) in values if op == "in" else labels.get(key) not in values
        if not ok:
            return False
    return True


def field_selector_matches(selector: str, obj: dict[str, Any]) -> bool:
    for requirement in _split_selector(selector):
        key, op, value = re.match(r"^\s*([^!=]+?)\s*(==|=|!=)\s*(.*?)\s*$", requirement).groups()  # type: ignore[union-attr]
        current: Any = obj
        for part in key.split("."):
            current = current.get(part, "") if isinstance(current, dict) else ""
        if (str(current) == value) != (op != "!="):
            return False
    return True


@dataclass(frozen=True)
class _Event:
    rv: int
    kind: Kind
    type: str
    obj: dict[str, Any]


class ApiState:
    """Every object, the resourceVersion counter and the recent events; thread-safe."""

    def __init__(self, history: int = 1000):
        self.lock = threading.Condition()
        self.rv = 0
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.events: deque[_Event] = deque(maxlen=history)
        self.oldest_rv = 0  # a watch from before this is too old (410)
        self.requests: list[Request] = []
        self.watch_epoch = 0  # bumped by drop_watches: streams of an older epoch end
        self.expire_watches = 0  # the next N watches get 410 Gone
        self.conflicting: set[str] = set()  # resources whose next status write gets a 409

    # -- storage ---------------------------------------------------------------------
    def _record(self, kind: Kind, type_: str, obj: dict[str, Any]) -> None:
        if len(self.events) == self.events.maxlen:
            self.oldest_rv = self.events[0].rv
        self.events.append(_Event(self.rv, kind, type_, copy.deepcopy(obj)))
        self.lock.notify_all()

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does: older watches get 410."""
        with self.lock:
            self.events.clear()
            self.oldest_rv = self.rv

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((kind.group, kind.plural, namespace, name))
        if obj is None:
            resource = f"{kind.plural}.{kind.group}" if kind.group else kind.plural
            raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
        return obj

    def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            meta = body.setdefault("metadata", {})
            name = meta.get("name")
            if not name and meta.get("generateName"):
                name = meta["generateName"] + uuid.uuid4().hex[:5]
            if not name:
                raise ApiError(422, "Invalid", "metadata.name: Required value")
            key = (kind.group, kind.plural, namespace, name)
            if key in self.objects:
                resource = f"{kind.plural}.{kind.group}" if kind.group else kind.plural
                raise ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists')
            self.rv += 1
            obj = copy.deepcopy(body)
            obj["kind"] = kind.kind
            meta = obj["metadata"]
            meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=str(self.rv))
            if kind.namespaced:
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            if any(key_ not in _NOT_SPEC for key_ in obj):
                meta["generation"] = 1
            if kind.status:
                obj.pop("status", None)  # set through the subresource only
            self.objects[key] = obj
            self._record(kind, "ADDED", obj)
            return copy.deepcopy(obj)

    def update(self, kind: Kind, namespace: str, name: str, body: dict[str, Any], subresource: str) -> dict[str, Any]:
        with self.lock:
            current = self.get(kind, namespace, name)
            wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
            injected = subresource == "status" and kind.plural in self.conflicting
            self.conflicting.discard(kind.plural if injected else "")
            if injected or (wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]):
                resource = f"{kind.plural}.{kind.group}" if kind.group else kind.plural
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": '
                               "the object has been modified; please apply your changes to the latest version and try again")
            return self._store(kind, current, body, subresource)

    def patch(self, kind: Kind, namespace: str, name: str, patch: dict[str, Any], subresource: str) -> dict[str, Any]:
        with self.lock:
            current = self.get(kind, namespace, name)
            wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on "{name}": the object has been modified')
            return self._store(kind, current, merge_patch(current, patch), subresource)

    def _store(self, kind: Kind, current: dict[str, Any], body: dict[str, Any], subresource: str) -> dict[str, Any]:
        new = copy.deepcopy(current)
        if subresource == "status":
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
        else:
            for key in list(new):
                if key not in ("metadata", "status") and not (key in ("kind", "apiVersion")):
                    new.pop(key)
            for key, value in body.items():
                if key == "status" and kind.status:
                    continue  # the main resource ignores status
                if key != "metadata":
                    new[key] = copy.deepcopy(value)
            meta_in = body.get("metadata") or {}
            for field in ("labels", "annotations", "ownerReferences", "finalizers"):
                if field in meta_in:
                    new["metadata"][field] = copy.deepcopy(meta_in[field])
                else:
                    new["metadata"].pop(field, None)
        new["kind"] = kind.kind
        if new == current:
            return copy.deepcopy(current)  # a no-op write does not bump the resourceVersion
        spec_of = lambda o: {k: v for k, v in o.items() if k not in _NOT_SPEC}  # noqa: E731
        if spec_of(new) != spec_of(current):
            new["metadata"]["generation"] = current["metadata"].get("generation", 0) + 1
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        meta = new["metadata"]
        self.objects[(kind.group, kind.plural, meta.get("namespace", ""), meta["name"])] = new
        self._record(kind, "MODIFIED", new)
        return copy.deepcopy(new)

    def delete(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.get(kind, namespace, name)
            del self.objects[(kind.group, kind.plural, namespace, name)]
            self.rv += 1
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self._record(kind, "DELETED", gone)
            return gone

    def list(self, kind: Kind, namespace: str, labels: str, fields: str) -> tuple[list[dict[str, Any]], int]:
        with self.lock:
            items = [
                copy.deepcopy(obj) for (group, plural, ns, _), obj in sorted(self.objects.items())
                if (group, plural) == (kind.group, kind.plural) and (not namespace or ns == namespace)
                and _selected(obj, labels, fields)
            ]
            return items, self.rv


def _selected(obj: dict[str, Any], labels: str, fields: str) -> bool:
    if labels and not label_selector_matches(labels, obj["metadata"].get("labels") or {}):
        return False
    return not fields or field_selector_matches(fields, obj)


def _with_version(obj: dict[str, Any], kind: Kind, version: str) -> dict[str, Any]:
    obj["apiVersion"] = f"{kind.group}/{version}" if kind.group else version
    return obj


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError as error:
            raise ApiError(400, "BadRequest", f"invalid JSON body: {error}") from error

    def _serve(self, method: str) -> None:
        api = self.server.api
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if path in ("/api", "/apis", "/version") or path.count("/") <= 3 and not _is_resource(path):
                self._send_json(200, api.discovery(path))
                return
            kind, version, namespace, name, subresource = _route(path)
            state = api.state
            if method == "GET" and not name:
                verb = "watch" if query.get("watch") in ("1", "true") else "list"
            else:
                verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
            state.requests.append(Request(verb, kind.group, kind.plural, subresource, namespace, name,
                                          self.headers.get("User-Agent", "")))
            if verb == "watch":
                self._watch(kind, version, namespace, query)
                return
            if verb == "list":
                items, rv = state.list(kind, namespace, query.get("labelSelector", ""), query.get("fieldSelector", ""))
                self._send_json(200, {
                    "kind": f"{kind.kind}List", "apiVersion": f"{kind.group}/{version}" if kind.group else version,
                    "metadata": {"resourceVersion": str(rv)},
                    "items": [_with_version(item, kind, version) for item in items],
                })
                return
            if subresource not in ("", "status") or (subresource == "status" and not kind.status):
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({subresource})")
            if verb == "get":
                with state.lock:
                    obj = copy.deepcopy(state.get(kind, namespace, name))
                self._send_json(200, _with_version(obj, kind, version))
            elif verb == "create":
                self._send_json(201, _with_version(state.create(kind, namespace, self._body()), kind, version))
            elif verb == "update":
                self._send_json(200, _with_version(state.update(kind, namespace, name, self._body(), subresource), kind, version))
            elif verb == "patch":
                content_type = self.headers.get("Content-Type", "")
                if "json-patch" in content_type or "apply-patch" in content_type:
                    raise ApiError(415, "UnsupportedMediaType", f"the emulator does not support {content_type}")
                self._send_json(200, _with_version(state.patch(kind, namespace, name, self._body(), subresource), kind, version))
            else:
                self._send_json(200, _with_version(state.delete(kind, namespace, name), kind, version))
        except ApiError as error:
            self._send_json(error.code, error.status())
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as error:  # noqa: BLE001 - an emulator defect answers 500, as a server would
            self._send_json(500, ApiError(500, "InternalError", repr(error)).status())

    def _watch(self, kind: Kind, version: str, namespace: str, query: dict[str, str]) -> None:
        api, state = self.server.api, self.server.api.state
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")  # a watch connection is never reused
        self.end_headers()

        def send(event_type: str, obj: dict[str, Any]) -> None:
            line = json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()

        with state.lock:
            epoch = state.watch_epoch
            requested = query.get("resourceVersion", "")
            expired = state.expire_watches > 0
            if expired:
                state.expire_watches -= 1
            if requested in ("", "0"):
                start = state.rv
                initial = [copy.deepcopy(o) for (g, p, ns, _), o in sorted(state.objects.items())
                           if (g, p) == (kind.group, kind.plural) and (not namespace or ns == namespace)
                           and _selected(o, labels, fields)]
            else:
                start, initial = int(requested), []
                expired = expired or start < state.oldest_rv
        try:
            if expired:
                gone = ApiError(410, "Expired", f"too old resource version: {requested} ({state.oldest_rv})")
                send("ERROR", gone.status())
                self.wfile.write(b"0\r\n\r\n")
                self.close_connection = True
                return
            for obj in initial:
                send("ADDED", _with_version(obj, kind, version))
            last_bookmark = time.monotonic()
            while time.monotonic() < deadline:
                with state.lock:
                    pending = [e for e in state.events if e.rv > start]
                    if not pending and state.watch_epoch == epoch and api.listening:
                        state.lock.wait(min(0.5, max(0.0, deadline - time.monotonic())))
                        pending = [e for e in state.events if e.rv > start]
                    if state.watch_epoch != epoch or not api.listening:
                        break
                    current = state.rv
                for event in pending:
                    start = event.rv
                    if (event.kind.group, event.kind.plural) != (kind.group, kind.plural):
                        continue
                    obj = event.obj
                    if namespace and obj["metadata"].get("namespace") != namespace:
                        continue
                    if not _selected(obj, labels, fields):
                        continue
                    send(event.type, _with_version(copy.deepcopy(obj), kind, version))
                if bookmarks and time.monotonic() - last_bookmark > 5:
                    start = max(start, current)
                    send("BOOKMARK", {"kind": kind.kind, "apiVersion": f"{kind.group}/{version}" if kind.group else version,
                                      "metadata": {"resourceVersion": str(start)}})
                    last_bookmark = time.monotonic()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        self.close_connection = True


def _is_resource(path: str) -> bool:
    parts = path.strip("/").split("/")
    return (parts[0] == "api" and len(parts) >= 3) or (parts[0] == "apis" and len(parts) >= 4)


def _route(path: str) -> tuple[Kind, str, str, str, str]:
    """(kind, version, namespace, name, subresource) of a resource URL."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces" and not (group == "" and len(rest) == 3 and rest[2] == "status"):
        namespace, rest = rest[1], rest[2:]
    kind = _BY_PATH.get((group, rest[0])) if rest else None
    if kind is None or version not in kind.versions:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if kind.namespaced and name and not namespace:
        raise ApiError(404, "NotFound", f"{kind.kind} is namespaced ({path})")
    return kind, version, namespace, name, subresource


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: KubeApi

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Ends every open connection, kept-alive ones included, as a dead server does."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def _netns_socket(netns: str | None, host: str, port: int) -> socket.socket:
    """A listening TCP socket created inside the named network namespace (it stays
    there), from a short-lived thread that entered it: setns changes only the thread."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def make() -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
        return sock

    if netns is None:
        return make()
    result: list[socket.socket | BaseException] = []

    def enter_and_make() -> None:
        try:
            with open(f"/run/netns/{netns}", "rb") as handle:
                if ctypes.CDLL(None, use_errno=True).setns(handle.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
                    raise OSError(ctypes.get_errno(), f"setns into {netns}")
            result.append(make())
        except BaseException as error:  # noqa: BLE001 - handed back to the caller
            result.append(error)

    thread = threading.Thread(target=enter_and_make)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


@dataclass
class _Listener:
    netns: str | None
    host: str
    port: int
    server: _Server | None = None
    thread: threading.Thread | None = None


class KubeApi:
    """The emulator: one state served on any number of sockets (in any namespace)."""

    def __init__(self, history: int = 1000):
        self.state = ApiState(history)
        self.listeners: list[_Listener] = []
        self.listening = False
        for namespace in ("default", "kube-system"):
            self.state.create(_BY_PATH[("", "namespaces")], "", {"metadata": {"name": namespace}})

    # -- serving -------------------------------------------------------------------
    def listen(self, host: str = "127.0.0.1", port: int = 0, netns: str | None = None) -> str:
        """Serves on one more socket; returns its URL."""
        listener = _Listener(netns, host, port)
        self._start(listener)
        self.listeners.append(listener)
        self.listening = True
        assert listener.server is not None
        bound = listener.server.server_address[1]
        listener.port = bound
        return f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"

    def _start(self, listener: _Listener) -> None:
        sock = _netns_socket(listener.netns, listener.host, listener.port)
        server = _Server(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        server.server_address = sock.getsockname()[:2]
        server.api = self
        listener.server = server
        listener.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        listener.thread.start()

    def go_down(self) -> None:
        """Stops listening and ends every open watch, as an API server restart does."""
        with self.state.lock:
            self.listening = False
            self.state.watch_epoch += 1
            self.state.lock.notify_all()
        for listener in self.listeners:
            if listener.server is not None:
                listener.server.shutdown()
                listener.server.server_close()
                listener.server.cut_connections()
                listener.server = None

    def come_back(self) -> None:
        for listener in self.listeners:
            self._start(listener)
        self.listening = True

    def close(self) -> None:
        if self.listening:
            self.go_down()

    # -- faults ---------------------------------------------------------------------
    def drop_watches(self) -> None:
        with self.state.lock:
            self.state.watch_epoch += 1
            self.state.lock.notify_all()

    def conflict_next_status_write(self, *resources: str) -> None:
        """The next status write to each of these resources (plural names) gets a 409,
        as if another writer had changed the object since the client read it."""
        with self.state.lock:
            self.state.conflicting.update(resources)

    def expire_next_watch(self, count: int = 1) -> None:
        with self.state.lock:
            self.state.expire_watches += count

    # -- discovery ------------------------------------------------------------------
    def discovery(self, path: str) -> dict[str, Any]:
        if path == "/version":
            return {"major": "1", "minor": "34", "gitVersion": "v1.34.0-xdp-gateway-emulator", "gitCommit": "",
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "none",
                    "compiler": "none", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        groups: dict[str, list[str]] = {}
        for kind in KINDS:
            if kind.group:
                for version in kind.versions:
                    if version not in groups.setdefault(kind.group, []):
                        groups[kind.group].append(version)
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": group, "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                 "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}}
                for group, versions in groups.items()]}
        parts = path.strip("/").split("/")
        group, version = ("", parts[1]) if parts[0] == "api" and len(parts) == 2 else (parts[1], parts[2] if len(parts) > 2 else "")
        resources = []
        for kind in KINDS:
            if kind.group == group and version in kind.versions:
                resources.append({"name": kind.plural, "singularName": kind.kind.lower(), "namespaced": kind.namespaced,
                                  "kind": kind.kind, "verbs": kind.verbs})
                if kind.status:
                    resources.append({"name": f"{kind.plural}/status", "singularName": "", "namespaced": kind.namespaced,
                                      "kind": kind.kind, "verbs": ["get", "patch", "update"]})
        if not resources:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    # -- direct access for tests ----------------------------------------------------
    def kind_of(self, doc: dict[str, Any]) -> Kind:
        group = doc["apiVersion"].rpartition("/")[0]
        for kind in KINDS:
            if (kind.group, kind.kind) == (group, doc["kind"]) and kind.group != "events.k8s.io":
                return kind
        raise KeyError(f"the emulator does not serve {doc['apiVersion']} {doc['kind']}")

    def put(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Creates or replaces (unconditionally) an object, as `kubectl apply` would;
        a status in doc is written through the status subresource. Unlike over HTTP, a
        creationTimestamp in doc is kept (seeding a cluster as if restored from a
        backup), so test inputs that order routes by age stay ordered."""
        kind = self.kind_of(doc)
        namespace = (doc.get("metadata") or {}).get("namespace", "default") if kind.namespaced else ""
        name = doc["metadata"]["name"]
        body = copy.deepcopy(doc)
        body.get("metadata", {}).pop("resourceVersion", None)
        with self.state.lock:
            if (kind.group, kind.plural, namespace, name) in self.state.objects:
                stored = self.state.update(kind, namespace, name, body, "")
            else:
                stored = self.state.create(kind, namespace, body)
                created = (doc.get("metadata") or {}).get("creationTimestamp")
                if created:
                    self.state.objects[(kind.group, kind.plural, namespace, name)]["metadata"]["creationTimestamp"] = created
                    stored["metadata"]["creationTimestamp"] = created
            if "status" in doc and kind.status:
                stored = self.state.update(kind, namespace, name, {"status": doc["status"]}, "status")
        return stored

    def remove(self, doc: dict[str, Any]) -> None:
        kind = self.kind_of(doc)
        namespace = (doc.get("metadata") or {}).get("namespace", "default") if kind.namespaced else ""
        self.state.delete(kind, namespace, doc["metadata"]["name"])

    def read(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        with self.state.lock:
            return copy.deepcopy(self.state.get(self.kind(group, plural), namespace, name))

    def kind(self, group: str, plural: str) -> Kind:
        return _BY_PATH[(group, plural)]

    def objects(self, group: str, plural: str, namespace: str = "") -> list[dict[str, Any]]:
        return self.state.list(self.kind(group, plural), namespace, "", "")[0]

    def requests_since(self, start: int = 0) -> list[Request]:
        return list(self.state.requests[start:])

    def kubeconfig(self, url: str) -> dict[str, Any]:
        """A kubeconfig document for the given listener URL."""
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": url}}],
            "users": [{"name": "emulator", "user": {"token": "emulator"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
        }


@contextlib.contextmanager
def running(host: str = "127.0.0.1", port: int = 0, history: int = 1000) -> Iterator[tuple[KubeApi, str]]:
    """An emulator listening on host:port until the block ends."""
    api = KubeApi(history)
    url = api.listen(host, port)
    try:
        yield api, url
    finally:
        api.close()


__all__ = ["KINDS", "ApiError", "ApiState", "Kind", "KubeApi", "Request", "label_selector_matches", "merge_patch", "running"]
