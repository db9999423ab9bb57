"""Echo servers that answer the way the Gateway API conformance suite's echo-basic does,
several "pods" in one process (each on its own address inside a backend namespace).

    python -m lab.echo --pod infra-backend-v1-0:gateway-conformance-infra:10.99.10.100 [--pod ...]
                       [--http 3000] [--https 8443 --cert CRT --key KEY]
                       [--tcp 3000 [--tls 8443 --cert CRT --key KEY]] [--grpc 3000]

HTTP (HTTP/1.1 on --http, and over TLS on --https with the given certificate, as
echo-basic does when TLS_SERVER_CERT is set) answers every request with JSON: path (with
the query), host, method, proto, headers (canonical names, lists of values), namespace,
ingress, service, pod, httpPort, and over TLS what the handshake settled (tls: version,
serverName, negotiatedProtocol, cipherSuite). It copies the header
`X-Echo-Set-Header: name:value,name2:value2` into response headers (values of one name
joined by commas), logs `Echoing back request made to <uri> to client` (the mirror tests
read that line), then waits for `?delay=<duration>`. Under `/retry/` it simulates a
flaky backend as echo-basic does: the first `succeedAfter` requests of each `uuid` fail,
with status `responseCode` when given, else by resetting the connection. With --grpc
the pods serve instead the suite's gRPC echo service (lab.grpcecho) over h2c on that port. With --tcp they serve instead
echo-basic's TCP echo (TCP_ECHO_SERVER): plain on --tcp, TLS on --tls; on connect the
greeting line, then per line `PING` -> `PONG`, `IS_TLS` -> `true`/`false`, `TEST` -> a
JSON line (namespace, pod, tcpport, tlsport, isTLS, tls: version, serverName,
cipherSuite). Prints "ready" once every socket listens.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ctl.agent.signals import stop_on_signals


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
                  headers: list[tuple[str, str]], tls: dict | None = None) -> dict:
    grouped: dict[str, list[str]] = {}
    host = ""
    for name, value in headers:
        if name.lower() in ("host", ":authority"):
            host = value
            continue
        if name.startswith(":"):
            continue
        grouped.setdefault(canonical(name), []).append(value)
    document = {"path": uri, "host": host, "method": method, "proto": proto, "headers": grouped,
                "namespace": pod.namespace, "ingress": "", "service": "", "pod": pod.name,
                "httpPort": str(port)}
    if tls is not None:
        document["tls"] = tls
    return document


def set_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """X-Echo-Set-Header: name:value,name2:value2 -> headers to add to the response, in
    the given case; a name given twice is one header, its values joined by commas (as
    echo-basic writes them)."""
    out: dict[str, str] = {}
    for name, value in headers:
        if name.lower() != "x-echo-set-header":
            continue
        for item in value.split(","):
            key, _, val = item.strip().partition(":")
            if not key:
                continue
            out[key] = f"{out[key]},{val.strip()}" if key in out else val
    return list(out.items())


def delay_of(uri: str, key: str = "delay") -> float:
    values = parse_qs(urlsplit(uri).query).get(key)
    return parse_duration(values[0]) if values else 0.0


@dataclass(frozen=True)
class RetryFailure:
    """What a failing /retry/ attempt does: answer this status, or (None) reset the
    connection."""

    status: int | None
    delay: float = 0.0


class RetrySimulation:
    """echo-basic's retry simulator: per `uuid`, the first `succeedAfter` attempts fail
    (status `responseCode`, else a TCP reset), later ones are echoed. One per pod."""

    def __init__(self) -> None:
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def attempt(self, uri: str) -> RetryFailure | str | None:
        """A failure for this attempt, None to echo it, or why the request is invalid."""
        query = parse_qs(urlsplit(uri).query)
        request_id = query.get("uuid", [""])[0]
        if not request_id:
            return "uuid is required"
        try:
            succeed_after = int(query.get("succeedAfter", [""])[0])
        except ValueError:
            return "succeedAfter is required"
        try:
            status: int | None = int(query.get("responseCode", [""])[0])
        except ValueError:
            status = None
        with self._lock:
            if self._attempts.get(request_id, 0) >= succeed_after:
                return None
            self._attempts[request_id] = self._attempts.get(request_id, 0) + 1
        return RetryFailure(status, delay_of(uri, "delayRetry"))


_LOG_LOCK = threading.Lock()


def _log(pod: Pod, uri: str) -> None:
    line = json.dumps({"pod": pod.name, "namespace": pod.namespace,
                       "msg": f"Echoing back request made to {uri} to client"})
    # One write per line: print() from concurrent requests can interleave two lines.
    with _LOG_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context that remembers each connection's SNI (as conn.sni)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])

    def remember(conn, server_name, _context) -> None:
        conn.sni = server_name or ""

    context.sni_callback = remember
    return context


def tls_state(conn: ssl.SSLSocket) -> dict:
    cipher = conn.cipher()
    return {"version": conn.version() or "", "serverName": getattr(conn, "sni", ""),
            "negotiatedProtocol": conn.selected_alpn_protocol() or "", "cipherSuite": cipher[0] if cipher else ""}


class _TlsOnAccept:
    """Mixin for socketserver servers: the handshake runs in the connection's own
    thread, so a slow or failing client never holds up accept()."""

    tls: ssl.SSLContext | None = None

    def finish_request(self, request, client_address) -> None:
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # a client that gives up or fails the handshake is its own problem
        super().finish_request(request, client_address)


def _family(pod: Pod) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in pod.address else socket.AF_INET


def http_server(pod: Pod, port: int, tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    retries = RetrySimulation()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _echo(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            if urlsplit(self.path).path.startswith("/retry/") and self._failed_attempt():
                return None
            headers = list(self.headers.items())
            _log(pod, self.path)
            try:
                time.sleep(delay_of(self.path))
            except ValueError as error:
                return self._send(500, json.dumps({"message": str(error)}).encode(), [])
            state = tls_state(self.connection) if isinstance(self.connection, ssl.SSLSocket) else None
            body = json.dumps(echo_document(pod, port, self.command, self.path, self.request_version,
                                            headers, state)).encode()
            self._send(200, body, set_headers(headers))

        def _failed_attempt(self) -> bool:
            """A /retry/ attempt that must fail has failed (True), or is to be echoed."""
            try:
                outcome = retries.attempt(self.path)
            except ValueError as error:
                outcome = str(error)
            if outcome is None:
                return False
            if isinstance(outcome, str):
                self._send(400, outcome.encode(), [])
                return True
            time.sleep(outcome.delay)
            if outcome.status is not None:
                self._send(outcome.status, b"", [])
                return True
            # An abortive close: the proxy sees a reset, not an answer.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return True

        def _send(self, code: int, body: bytes, extra: list[tuple[str, str]]) -> None:
            self.send_response(code)
            for name, value in extra:
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _echo  # noqa: N815

        def log_message(self, *args) -> None:
            pass

    class Server(_TlsOnAccept, ThreadingHTTPServer):
        address_family = _family(pod)
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128  # a proxy opens many connections at once

        def handle_error(self, request, client_address) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)
            # else: the proxy gave up on a delayed answer (a timeout test): expected

    server = Server((pod.address, port), Handler)
    server.tls = tls
    return server


TCP_GREETING = "Gateway API Test TCP Server\n"


def tcp_server(pod: Pod, port: int, ports: dict[str, int], tls: ssl.SSLContext | None = None):
    """echo-basic's TCP echo for one pod on one port (TLS when tls is given)."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            is_tls = isinstance(self.connection, ssl.SSLSocket)
            report = {"namespace": pod.namespace, "ingress": "", "service": "", "pod": pod.name,
                      "tcpport": str(ports["tcp"]), "isTLS": is_tls}
            if ports.get("tls"):
                report["tlsport"] = str(ports["tls"])
            if is_tls:
                report["tls"] = tls_state(self.connection)
            answers = {"PING": "PONG", "IS_TLS": "true" if is_tls else "false", "TEST": json.dumps(report)}
            try:
                self.wfile.write(TCP_GREETING.encode())
                for line in self.rfile:
                    answer = answers.get(line.decode(errors="replace").strip())
                    if answer is not None:
                        self.wfile.write(answer.encode() + b"\n")
            except OSError:
                pass  # the client went away: nothing to answer

    class Server(_TlsOnAccept, socketserver.ThreadingTCPServer):
        address_family = _family(pod)
        daemon_threads = True
        allow_reuse_address = True

    server = Server((pod.address, port), Handler)
    server.tls = tls
    return server


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
    parser.add_argument("--https", type=int, help="also serve the HTTP echo over TLS on this port")
    parser.add_argument("--grpc", type=int, help="serve the gRPC echo service on this port instead")
    parser.add_argument("--tcp", type=int, help="serve the TCP echo on this port instead")
    parser.add_argument("--tls", type=int, help="with --tcp: the TCP echo over TLS on this port")
    parser.add_argument("--cert", help="PEM certificate chain for --https/--tls")
    parser.add_argument("--key", help="PEM private key for --https/--tls")
    args = parser.parse_args(argv)
    if (args.https or args.tls) and not (args.cert and args.key):
        parser.error("--https and --tls need --cert and --key")
    context = tls_context(args.cert, args.key) if args.cert and args.key else None
    if args.grpc:
        grpc_servers = [grpc_server(pod, args.grpc) for pod in args.pod]
        for server in grpc_servers:
            server.start()
        servers = []
    elif args.tcp:
        ports = {"tcp": args.tcp, "tls": args.tls or 0}
        servers = [tcp_server(pod, args.tcp, ports) for pod in args.pod]
        if args.tls:
            servers += [tcp_server(pod, args.tls, ports, context) for pod in args.pod]
    else:
        servers = [http_server(pod, args.http) for pod in args.pod]
        if args.https:
            servers += [http_server(pod, args.https, context) for pod in args.pod]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    stop_on_signals(stop)
    print("ready", flush=True)
    stop.wait()
    for server in servers:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
