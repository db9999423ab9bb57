"""Echo servers that answer the way the Gateway API conformance suite's echo-basic does,
several "pods" in one process (each on its own address inside a backend namespace).

    python -m lab.echo --pod infra-backend-v1-0:gateway-conformance-infra:10.99.10.100 [--pod ...]
                       [--http 3000] [--h2c 3001]

HTTP (HTTP/1.1 on --http; HTTP/2 cleartext with prior knowledge on --h2c) answers every
request with JSON: path (with the query), host, method, proto, headers (canonical names,
lists of values), namespace, ingress, service, pod, httpPort. It copies the header
`X-Echo-Set-Header: name:value,name2:value2` into response headers, waits for
`?delay=<duration>` first, and logs `Echoing back request made to <uri> to client`
(the mirror tests read that line). With --grpc the pods serve instead the suite's gRPC
echo service (lab.grpcecho) over h2c on that port. Prints "ready" once every socket
listens.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    address: str

    @classmethod
    def parse(cls, text: str) -> Pod:
        name, namespace, address = text.split(":", 2)  # an IPv6 address keeps its colons
        return cls(name, namespace, address)


def canonical(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey: x-forwarded-for -> X-Forwarded-For."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)")


def parse_duration(text: str) -> float:
    """Go-style durations as the suite sends them: 1s, 500ms, 1m."""
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        value, unit = float(match.group(1)), match.group(2)
        total += value / 1000 if unit == "ms" else value * 60 if unit == "m" else value
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r}")
    return total


def echo_document(pod: Pod, port: int, method: str, uri: str, proto: str,
                  headers: list[tuple[str, str]]) -> dict:
    grouped: dict[str, list[str]] = {}
    host = ""
    for name, value in headers:
        if name.lower() in ("host", ":authority"):
            host = value
            continue
        if name.startswith(":"):
            continue
        grouped.setdefault(canonical(name), []).append(value)
    return {"path": uri, "host": host, "method": method, "proto": proto, "headers": grouped,
            "namespace": pod.namespace, "ingress": "", "service": "", "pod": pod.name,
            "httpPort": str(port)}


def set_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """X-Echo-Set-Header: name:value,name2:value2 -> headers to add to the response."""
    out = []
    for name, value in headers:
        if name.lower() != "x-echo-set-header":
            continue
        for item in value.split(","):
            if ":" in item:
                key, _, val = item.partition(":")
                out.append((key.strip(), val.strip()))
    return out


def delay_of(uri: str) -> float:
    values = parse_qs(urlsplit(uri).query).get("delay")
    return parse_duration(values[0]) if values else 0.0


def _log(pod: Pod, uri: str) -> None:
    print(json.dumps({"pod": pod.name, "msg": f"Echoing back request made to {uri} to client"}), flush=True)


def http_server(pod: Pod, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _echo(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            headers = list(self.headers.items())
            try:
                time.sleep(delay_of(self.path))
            except ValueError as error:
                return self._send(400, str(error).encode(), [])
            _log(pod, self.path)
            body = json.dumps(echo_document(pod, port, self.command, self.path, self.request_version,
                                            headers)).encode()
            self._send(200, body, set_headers(headers))

        def _send(self, code: int, body: bytes, extra: list[tuple[str, str]]) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _echo  # noqa: N815

        def log_message(self, *args) -> None:
            pass

    family = socket.AF_INET6 if ":" in pod.address else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True
        allow_reuse_address = True

    return Server((pod.address, port), Handler)


def grpc_server(pod: Pod, port: int):
    """The gRPC echo service for one pod: each method replies with its own full name."""
    from concurrent import futures

    import grpc

    from lab import grpcecho

    def answer(method: str):
        def handle(request, context):
            return grpcecho.EchoResponse(
                fully_qualified_method=grpcecho.method_path(method),
                context=grpcecho.Context(namespace=pod.namespace, pod=pod.name),
                headers=[grpcecho.Header(key=k, value=v) for k, v in context.invocation_metadata()])
        return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=grpcecho.EchoRequest.FromString,
                                                   response_serializer=grpcecho.EchoResponse.SerializeToString)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        grpcecho.SERVICE, {m: answer(m) for m in grpcecho.METHODS}),))
    host = f"[{pod.address}]" if ":" in pod.address else pod.address
    server.add_insecure_port(f"{host}:{port}")
    return server


def drain(stdout) -> list[str]:
    """Reads an echo process's log lines in the background (a pipe nobody reads fills up
    and then blocks every request in print); returns the list they collect in."""
    lines: list[str] = []

    def read() -> None:
        for line in stdout:
            lines.append(line.decode(errors="replace") if isinstance(line, bytes) else line)

    threading.Thread(target=read, name="echo-log", daemon=True).start()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pod", action="append", required=True, type=Pod.parse,
                        help="name:namespace:address (repeat)")
    parser.add_argument("--http", type=int, default=3000)
    parser.add_argument("--grpc", type=int, help="serve the gRPC echo service on this port instead")
    args = parser.parse_args(argv)
    if args.grpc:
        grpc_servers = [grpc_server(pod, args.grpc) for pod in args.pod]
        for server in grpc_servers:
            server.start()
        servers = []
    else:
        servers = [http_server(pod, args.http) for pod in args.pod]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    for server in servers:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
