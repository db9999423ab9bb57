"""Backend servers for the net tests: tell who answered and whom they saw, then echo.

    python -m lab.servers --name be0 --tcp 8080 --udp 5353 [--tcp ... --udp ...]

TCP: on accept, send the greeting line "<name> <peer_ip> <peer_port>\\n", then echo all
received bytes until the peer closes. UDP: answer each datagram with
"<name> <peer_ip> <peer_port>|<payload>". The greeting tells a client which backend it
reached and which source address that backend saw (the gateway's with SNAT, the
client's own with DNAT).

Listens on [::] dual-stack; IPv4 peers are reported as plain IPv4 addresses. Prints
"ready" once every socket listens; exits cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import selectors
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

# Per-connection bytes waiting to be echoed before the server stops reading more.
MAX_PENDING_ECHO = 1 << 20


@dataclass(frozen=True)
class Greeting:
    backend: str
    peer_ip: str
    peer_port: int

    def encode(self) -> bytes:
        return f"{self.backend} {self.peer_ip} {self.peer_port}".encode()

    @classmethod
    def decode(cls, data: bytes | str) -> Greeting:
        text = data.decode() if isinstance(data, bytes) else data
        backend, peer_ip, peer_port = text.strip().split(" ")
        return cls(backend, peer_ip, int(peer_port))


UDP_PAYLOAD_SEPARATOR = b"|"


def plain_ip(host: str) -> str:
    """'::ffff:10.0.0.1' -> '10.0.0.1' (how a dual-stack socket shows IPv4 peers)."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()  # greeting and echo not yet sent
        self.peer_closed = False


# What the selector calls for a ready file object, with the ready events.
Handler = Callable[[int], None]


class Servers:
    """All listeners of one backend, served by one selector loop."""

    def __init__(self, name: str, tcp_ports: list[int], udp_ports: list[int]) -> None:
        self.name = name
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        # Signals wake the loop through this pipe, so stopping never waits for traffic.
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_w, False)
        signal.set_wakeup_fd(self._wakeup_w)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)
        self._watch(self._wakeup_r, selectors.EVENT_READ, self._drain_wakeup)
        for port in tcp_ports:
            listener = _dual_stack_socket(socket.SOCK_STREAM, port)
            listener.listen(1024)
            self._watch(listener, selectors.EVENT_READ, partial(self._accept, listener))
        for port in udp_ports:
            udp = _dual_stack_socket(socket.SOCK_DGRAM, port)
            self._watch(udp, selectors.EVENT_READ, partial(self._answer_datagrams, udp))

    def serve_until_stopped(self) -> None:
        print("ready", flush=True)
        while not self.stopping:
            for key, events in self.selector.select():
                handler: Handler = key.data
                handler(events)
        self.close()

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            self.selector.unregister(key.fileobj)
            if isinstance(key.fileobj, socket.socket):
                key.fileobj.close()
        self.selector.close()
        signal.set_wakeup_fd(-1)
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)

    def _watch(self, fileobj, events: int, handler: Handler) -> None:
        self.selector.register(fileobj, events, handler)

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _drain_wakeup(self, events: int) -> None:
        os.read(self._wakeup_r, 512)

    # -- TCP ------------------------------------------------------------------------

    def _accept(self, listener: socket.socket, events: int) -> None:
        while True:
            try:
                sock, peer = listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            conn = _Connection(sock)
            conn.pending += Greeting(self.name, plain_ip(peer[0]), peer[1]).encode() + b"\n"
            self._watch(sock, selectors.EVENT_READ, partial(self._serve_connection, conn))
            self._flush(conn)

    def _serve_connection(self, conn: _Connection, events: int) -> None:
        if events & selectors.EVENT_READ:
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                data = None
            except ConnectionError:
                self._close(conn)
                return
            if data == b"":
                conn.peer_closed = True
            elif data:
                conn.pending += data
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        """Send what is pending, then wait for whatever the connection can do next."""
        try:
            while conn.pending:
                sent = conn.sock.send(conn.pending)
                del conn.pending[:sent]
        except BlockingIOError:
            pass
        except ConnectionError:
            self._close(conn)
            return
        if conn.peer_closed and not conn.pending:
            self._close(conn)
            return
        events = selectors.EVENT_WRITE if conn.pending else 0
        # Stop reading while the peer does not read its echo: bounded memory.
        if not conn.peer_closed and len(conn.pending) < MAX_PENDING_ECHO:
            events |= selectors.EVENT_READ
        key = self.selector.get_key(conn.sock)
        if key.events != events:
            self.selector.modify(conn.sock, events, key.data)

    def _close(self, conn: _Connection) -> None:
        self.selector.unregister(conn.sock)
        conn.sock.close()

    # -- UDP ------------------------------------------------------------------------

    def _answer_datagrams(self, sock: socket.socket, events: int) -> None:
        while True:
            try:
                payload, peer = sock.recvfrom(65535)
            except BlockingIOError:
                return
            greeting = Greeting(self.name, plain_ip(peer[0]), peer[1])
            try:
                sock.sendto(greeting.encode() + UDP_PAYLOAD_SEPARATOR + payload, peer)
            except OSError as e:  # e.g. no route back: the client notices the timeout
                print(f"{self.name}: reply to {peer} failed: {e}", file=sys.stderr)


def _dual_stack_socket(kind: int, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="name to greet with, e.g. be0")
    parser.add_argument("--tcp", type=int, action="append", default=[], metavar="PORT")
    parser.add_argument("--udp", type=int, action="append", default=[], metavar="PORT")
    args = parser.parse_args(argv)
    if not args.tcp and not args.udp:
        parser.error("give at least one --tcp or --udp port")
    Servers(args.name, args.tcp, args.udp).serve_until_stopped()
    return 0


if __name__ == "__main__":
    sys.exit(main())
