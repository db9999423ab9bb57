"""TLS clients from the client namespace; one JSON report on stdout.

    python -m lab.tlsclient --addr A --port P --sni NAME
    python -m lab.tlsclient batch [--repeat N] < requests.json

The first is a bare dial: TCP connect, then a handshake with the given SNI, certificates
not checked (does the gateway pass the handshake through, or close it?). Prints
{"tcp": "connected"|error, "tls": "handshake"|"closed"|"reset"|"timeout"|error}.

batch reads a JSON list of requests {"addr", "port", "sni", "trust" (PEM the server's
chain must lead to; the trusted certificate may be the server's own), "protocol":
"https" (HTTP/1.1 GET "path" with "host") | "h2" (the same over HTTP/2, ALPN h2) |
"tcp-echo" (echo-basic's TCP echo: greeting, PING, IS_TLS, TEST)} and sends each
--repeat times in a row, each on a new connection. Per
request it prints the list of answers: {"certificate": {"sha256", "dnsNames"}, and for
https "status", "body", "headers"; for tcp-echo "greeting", "ping", "isTLS", "test"},
or {"error": ..., "stage": "tcp"|"tls"|"request"} (tls errors named as for a dial). The
chain is verified by OpenSSL against "trust"; the hostname is left to the caller (the
suite's Go client accepts names such as ``*.org`` that OpenSSL refuses).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import socket
import ssl
import sys
from typing import Any

from lab.certs import dns_names


def _tls_outcome(error: BaseException) -> str:
    if isinstance(error, ConnectionResetError):
        return "reset"
    if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "closed"
    if isinstance(error, ssl.SSLError):
        return "closed" if "EOF" in str(error) else repr(error)
    if isinstance(error, socket.timeout):
        return "timeout"
    return repr(error)


def dial(addr: str, port: int, sni: str, timeout: float) -> dict[str, str]:
    try:
        sock = socket.create_connection((addr, port), timeout=timeout)
    except OSError as error:
        return {"tcp": repr(error), "tls": "not tried"}
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with context.wrap_socket(sock, server_hostname=sni):
            return {"tcp": "connected", "tls": "handshake"}
    except OSError as error:
        return {"tcp": "connected", "tls": _tls_outcome(error)}
    finally:
        sock.close()


def _context(trust: str, alpn: list[str] | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # the caller checks the names (Go's rules, see above)
    context.verify_mode = ssl.CERT_REQUIRED
    # A trusted self-signed leaf is a complete chain, as for Go's RootCAs.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=trust)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def _certificate(conn: ssl.SSLSocket) -> dict[str, Any]:
    der = conn.getpeercert(binary_form=True) or b""
    return {"sha256": hashlib.sha256(der).hexdigest(), "dnsNames": dns_names(der) if der else []}


def _https(conn: ssl.SSLSocket, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    client = http.client.HTTPConnection(request["addr"], request["port"], timeout=timeout)
    client.sock = conn  # already connected and through the handshake
    client.request("GET", request.get("path", "/"), headers={"Host": request.get("host") or request["sni"]})
    response = client.getresponse()
    body = response.read()
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = {"raw": body.decode(errors="replace")[:200]}
    return {"status": response.status, "body": document, "headers": {k.lower(): v for k, v in response.getheaders()}}


def _h2(conn: ssl.SSLSocket, request: dict[str, Any]) -> dict[str, Any]:
    import h2.config
    import h2.connection
    import h2.events

    if conn.selected_alpn_protocol() != "h2":
        raise ValueError(f"ALPN chose {conn.selected_alpn_protocol()!r}, not h2")
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    client.initiate_connection()
    stream = client.get_next_available_stream_id()
    client.send_headers(stream, [(":method", "GET"), (":scheme", "https"),
                                 (":authority", request.get("host") or request["sni"]),
                                 (":path", request.get("path", "/"))], end_stream=True)
    conn.sendall(client.data_to_send())
    status, headers, body = 0, {}, b""
    while True:
        data = conn.recv(65536)
        if not data:
            raise ConnectionError("closed before the response ended")
        for event in client.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                headers = dict(event.headers)
                status = int(headers.pop(":status"))
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                body += event.data
                client.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                raise ConnectionError(f"stream reset: {event.error_code!r}")
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                try:
                    document = json.loads(body) if body else {}
                except ValueError:
                    document = {"raw": body.decode(errors="replace")[:200]}
                return {"status": status, "body": document, "headers": headers, "alpn": "h2"}
        conn.sendall(client.data_to_send())


def _tcp_echo(conn: ssl.SSLSocket) -> dict[str, Any]:
    lines = conn.makefile("rwb")
    greeting = lines.readline().decode().rstrip("\n")
    answers = {}
    for command in ("PING", "IS_TLS", "TEST"):
        lines.write(command.encode() + b"\n")
        lines.flush()
        answers[command] = lines.readline().decode().rstrip("\n")
    test = json.loads(answers["TEST"]) if answers["TEST"] else None
    return {"greeting": greeting, "ping": answers["PING"], "isTLS": answers["IS_TLS"], "test": test}


def exchange(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        sock = socket.create_connection((request["addr"], request["port"]), timeout=timeout)
    except OSError as error:
        return {"stage": "tcp", "error": repr(error)}
    protocol = request.get("protocol", "https")
    try:
        context = _context(request["trust"], {"https": ["http/1.1"], "h2": ["h2"]}.get(protocol))
        try:
            conn = context.wrap_socket(sock, server_hostname=request["sni"])
        except OSError as error:
            return {"stage": "tls", "error": _tls_outcome(error)}
        with conn:
            answer = {"certificate": _certificate(conn)}
            try:
                exchanges = {"https": lambda: _https(conn, request, timeout), "h2": lambda: _h2(conn, request),
                             "tcp-echo": lambda: _tcp_echo(conn)}
                answer |= exchanges[protocol]()
            except (OSError, http.client.HTTPException, ValueError) as error:
                answer |= {"stage": "request", "error": repr(error)}
            return answer
    finally:
        sock.close()


def batch(repeat: int, timeout: float) -> list[list[dict[str, Any]]]:
    requests = json.load(sys.stdin)
    out: list[list[dict[str, Any]]] = [[] for _ in requests]
    for _ in range(repeat):
        for i, request in enumerate(requests):
            out[i].append(exchange(request, timeout))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=5.0)
    if argv[:1] == ["batch"]:
        parser.add_argument("--repeat", type=int, default=3)
        args = parser.parse_args(argv[1:])
        print(json.dumps(batch(args.repeat, args.timeout)), flush=True)
        return 0
    parser.add_argument("--addr", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sni", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(dial(args.addr, args.port, args.sni, args.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
