"""Traffic generator for the net tests; prints one JSON report on stdout.

    python -m lab.client <mode> --addr A --port P [options]

Modes:
  tcp-spread        N sequential new connections; which backend greeted each one.
  udp-spread        N datagrams, each from a new socket (new source port).
  tcp-session       one connection echoing a message every --interval-ms until
                    --duration passes, SIGTERM arrives or stdin (if a pipe) closes.
                    First prints "connected <backend>" as soon as it was greeted.
  tcp-connect-once  one connection: ok, refused or timeout, and how fast.
  dns-query         one DNS query (optionally EDNS0, padded); the answer and its size.
  udp-fragments     one datagram sent as hand-built IP fragments, in a chosen order.

Addresses may be IPv4 or IPv6. Failures are reported, not raised: the exit code is 0
whenever a report was printed.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import math
import os
import select
import signal
import socket
import stat
import sys
import time
from collections import Counter, defaultdict
from typing import Any

from lab.servers import UDP_PAYLOAD_SEPARATOR, Greeting


class PeerClosed(ConnectionError):
    """The peer closed the connection (FIN) before sending what was expected."""


class BadGreeting(ConnectionError):
    """The first line was not "<name> <peer_ip> <peer_port>"."""


def _family(addr: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def _outcome(error: OSError) -> str:
    """How a failed attempt is counted: "refused" (TCP RST, ICMP port unreachable),
    "timeout", "closed" (FIN too early), else the errno name (e.g. EHOSTUNREACH)."""
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, TimeoutError):  # socket.timeout is TimeoutError since 3.10
        return "timeout"
    if isinstance(error, PeerClosed):
        return "closed"
    if isinstance(error, BadGreeting):
        return "bad_greeting"
    return errno.errorcode.get(error.errno or 0, type(error).__name__)


def _connect(addr: str, port: int, timeout: float) -> socket.socket:
    sock = socket.socket(_family(addr), socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((addr, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _read_greeting(sock: socket.socket) -> Greeting:
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)  # byte by byte: what follows the line is not ours to take
        if not chunk:
            raise PeerClosed("closed before the greeting ended")
        line += chunk
    try:
        return Greeting.decode(bytes(line))
    except ValueError as e:  # UnicodeDecodeError is a ValueError too
        raise BadGreeting(f"{bytes(line)!r}: {e}") from e


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise PeerClosed(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


class _SpreadReport:
    """Per-backend counts plus the distinct peer addresses each backend saw."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.peers: defaultdict[str, set[str]] = defaultdict(set)

    def answered(self, greeting: Greeting) -> None:
        self.counts[greeting.backend] += 1
        self.peers[greeting.backend].add(greeting.peer_ip)

    def failed(self, outcome: str) -> None:
        self.failures[outcome] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(sorted(self.counts.items())),
            "refused": self.failures.pop("refused", 0),
            "timeout": self.failures.pop("timeout", 0),
            "errors": dict(self.failures),  # anything else, by errno name
            "seen_peers": {name: sorted(ips) for name, ips in sorted(self.peers.items())},
        }


def share_mismatches(report: dict[str, Any], shares: dict[str, float], count: int, tolerance: float,
                     backends: tuple[str, ...] = ("be0", "be1", "be2")) -> list[str]:
    """How a spread report strays from the expected shares: a backend off by more than
    `tolerance`, or any traffic at all to one that should get none. Empty when it fits.

    Each flow lands on a backend like a weighted coin toss, so a correct split of `count`
    flows still strays by sqrt(p(1-p)/count): 2.2 points at 500 flows and 50/50, which
    makes a 5-point bound fail one run in 40. The bound is never tighter than 4 such
    deviations (a false alarm once in 16,000 checks)."""
    found = []
    for name in backends:
        got = report["counts"].get(name, 0)
        want = shares.get(name, 0.0)
        allowed = max(tolerance, 4 * math.sqrt(want * (1 - want) / count))
        if abs(got - want * count) > allowed * count + 1e-9:
            found.append(f"{name}: {got / count:.3f}, want {want:.3f} (within {allowed:.3f})")
        elif want == 0 and got:
            found.append(f"{name} must get no traffic, got {got}")
    return found


def tcp_spread(args: argparse.Namespace) -> dict[str, Any]:
    report = _SpreadReport()
    for _ in range(args.count):
        try:
            with _connect(args.addr, args.port, args.timeout) as sock:
                report.answered(_read_greeting(sock))
        except OSError as e:
            report.failed(_outcome(e))
    return report.as_dict()


def udp_spread(args: argparse.Namespace) -> dict[str, Any]:
    report = _SpreadReport()
    for seq in range(args.count):
        payload = f"probe {seq}".encode()
        # A new socket each time: a new source port, so a new flow for the balancer.
        with socket.socket(_family(args.addr), socket.SOCK_DGRAM) as sock:
            sock.settimeout(args.timeout)
            try:
                sock.connect((args.addr, args.port))  # so ICMP unreachable -> refused
                sock.send(payload)
                answer = sock.recv(65535)
            except OSError as e:
                report.failed(_outcome(e))
                continue
        greeting, separator, echoed = answer.partition(UDP_PAYLOAD_SEPARATOR)
        try:
            if not separator or echoed != payload:
                raise ValueError("payload not echoed")
            report.answered(Greeting.decode(greeting))
        except ValueError:
            report.failed("bad_answer")
    return report.as_dict()


def tcp_connect_once(args: argparse.Namespace) -> dict[str, Any]:
    """elapsed_ms times the connect alone: a RST shows up as a fast "refused"."""
    report: dict[str, Any] = {"result": "ok", "elapsed_ms": None, "backend": None, "peer": None}
    started = time.monotonic()
    try:
        sock = _connect(args.addr, args.port, args.timeout)
    except OSError as e:
        report["result"] = _outcome(e)
        return report | {"elapsed_ms": round((time.monotonic() - started) * 1000, 3)}
    report["elapsed_ms"] = round((time.monotonic() - started) * 1000, 3)
    with sock:
        try:
            greeting = _read_greeting(sock)
        except OSError as e:
            report["result"] = _outcome(e)
            return report
    return report | {"backend": greeting.backend, "peer": greeting.peer_ip}


class _StopRequest:
    """Becomes set on SIGTERM/SIGINT, or when stdin, if it is a pipe, reaches EOF."""

    def __init__(self) -> None:
        self.requested = False
        self._wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        # Only a pipe means "a controller holds the other end"; a terminal or /dev/null
        # does not, and /dev/null would read as EOF at once.
        stdin_is_pipe = stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode)
        self._watched = [self._wakeup_r] + ([sys.stdin.fileno()] if stdin_is_pipe else [])

    def _on_signal(self, signum: int, frame: object) -> None:
        self.requested = True

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return early, True, once a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            readable, _, _ = select.select(self._watched, [], [], remaining)
            for fd in readable:
                data = os.read(fd, 512)
                if fd != self._wakeup_r and not data:
                    self.requested = True
        return self.requested


def tcp_session(args: argparse.Namespace) -> dict[str, Any]:
    stop = _StopRequest()
    report: dict[str, Any] = {"backend": None, "peer": None, "exchanges": 0, "errors": []}
    try:
        sock = _connect(args.addr, args.port, args.timeout)
        greeting = _read_greeting(sock)
    except OSError as e:
        report["errors"].append(f"connect: {_outcome(e)}: {e}")
        return report
    report["backend"], report["peer"] = greeting.backend, greeting.peer_ip
    print(f"connected {greeting.backend}", flush=True)

    ends_at = time.monotonic() + args.duration if args.duration is not None else None
    with sock:
        seq = 0
        while not stop.requested and (ends_at is None or time.monotonic() < ends_at):
            message = f"exchange {seq}\n".encode()
            try:
                sock.sendall(message)
                echoed = _recv_exactly(sock, len(message))
            except OSError as e:
                # The connection is unusable after this; report instead of retrying.
                report["errors"].append(f"exchange {seq}: {_outcome(e)}: {e}")
                break
            if echoed != message:
                report["errors"].append(f"exchange {seq}: sent {message!r}, got {echoed!r}")
                break
            report["exchanges"] += 1
            seq += 1
            pause = args.interval_ms / 1000
            if ends_at is not None:
                pause = min(pause, max(ends_at - time.monotonic(), 0))
            stop.wait(pause)
    return report


def http_get(args: argparse.Namespace) -> dict[str, Any]:
    """GET http://addr:port/path; the body is parsed as JSON when it is JSON."""
    import urllib.error
    import urllib.request

    host = f"[{args.addr}]" if ":" in str(args.addr) else args.addr
    try:
        with urllib.request.urlopen(f"http://{host}:{args.port}{args.path}", timeout=args.timeout) as r:
            status, body = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode()
    except OSError as e:
        return {"status": None, "error": str(e)}
    try:
        return {"status": status, "json": json.loads(body)}
    except ValueError:
        return {"status": status, "text": body}


def dns_query(args: argparse.Namespace) -> dict[str, Any]:
    """One DNS query over UDP (--type A or TXT; with --bufsize an EDNS0 OPT record
    advertising that size, with --pad padded by EDNS0 padding to that many bytes): the
    answer's addresses or TXT strings and its size on the wire, or the error."""
    import dns.message
    import dns.query
    import dns.rdatatype

    edns = {"use_edns": 0, "payload": args.bufsize} if args.bufsize else {}
    if args.pad:
        edns.update(use_edns=0, pad=args.pad)
    query = dns.message.make_query(args.name, args.type, **edns)
    report: dict[str, Any] = {"answers": [], "texts": [], "query_size": len(query.to_wire())}
    try:
        answer, wire = _dns_udp_with_wire(query, str(args.addr), args.port, args.timeout)
    except Exception as e:  # noqa: BLE001 - reported, the test decides
        return {**report, "error": f"{type(e).__name__}: {e}"}
    for rrset in answer.answer:
        for item in rrset:
            if rrset.rdtype == dns.rdatatype.TXT:
                report["texts"].append(b"".join(item.strings).decode())
            elif rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                report["answers"].append(item.address)
    report["answers"].sort()
    return {**report, "rcode": answer.rcode(), "size": len(wire), "truncated": bool(answer.flags & 0x0200)}


def _dns_udp_with_wire(query, addr: str, port: int, timeout: float):
    """dns.query.udp, keeping the answer's wire form (its size is what is tested)."""
    import dns.message

    with socket.socket(_family(addr), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((addr, port))
        sock.send(query.to_wire())
        while True:
            wire = sock.recv(65535)
            answer = dns.message.from_wire(wire, keyring=None, request_mac=b"")
            if query.is_response(answer):
                return answer, wire


def udp_fragments(args: argparse.Namespace) -> dict[str, Any]:
    """One UDP datagram of --size payload bytes, sent as IP fragments built by hand (IPv4,
    or IPv6 Fragment headers) in the order --order gives (fragment indexes, e.g. "2,0,1";
    missing indexes are not sent), straight onto --ifname to --gw-mac. The source port
    is a bound socket's, which then waits for the echo server's answer."""
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
    from scapy.layers.l2 import Ether
    from scapy.sendrecv import sendp

    payload = bytes(i % 251 for i in range(args.size))
    family = _family(args.addr)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(args.timeout)
        sock.connect((args.addr, args.port))  # picks the source address and port
        src, sport = sock.getsockname()[:2]
        udp = UDP(sport=sport, dport=args.port) / payload
        ident = int.from_bytes(os.urandom(2), "big")
        if family == socket.AF_INET6:
            pieces = fragment6(IPv6(src=src, dst=args.addr) / IPv6ExtHdrFragment(id=ident) / udp, 1400)
        else:
            pieces = fragment(IP(src=src, dst=args.addr, id=ident) / udp, fragsize=1400)
        order = [int(i) for i in args.order.split(",")] if args.order else list(range(len(pieces)))
        for index in order:
            sendp(Ether(dst=args.gw_mac) / pieces[index], iface=args.ifname, verbose=False)
        report: dict[str, Any] = {"fragments": len(pieces), "sent": order, "answered": False}
        try:
            answer = sock.recv(65535)
        except OSError as e:
            return {**report, "error": _outcome(e)}
    greeting, separator, echoed = answer.partition(UDP_PAYLOAD_SEPARATOR)
    return {**report, "answered": True, "echoed": bool(separator) and echoed == payload,
            "answer_size": len(answer), "backend": Greeting.decode(greeting).backend if separator else None}


# An 8-byte options header as IPV6_HOPOPTS / IPV6_DSTOPTS take it (the kernel fills in
# the next header): no options, one PadN of 4 bytes to fill it.
_PADDED_OPTIONS = bytes([0, 0, 1, 4, 0, 0, 0, 0])


def udp_options(args: argparse.Namespace) -> dict[str, Any]:
    """One UDP datagram of --size payload bytes over IPv6, sent by the kernel from a
    socket with a Hop-by-Hop and a Destination Options header set (IPV6_HOPOPTS needs
    CAP_NET_RAW). Past the MTU the kernel fragments it as RFC 8200 orders: Hop-by-Hop
    in every fragment before the Fragment header, Destination Options after it in the
    first. Waits for the echo server's answer."""
    payload = bytes(i % 251 for i in range(args.size))
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(args.timeout)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, _PADDED_OPTIONS)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, _PADDED_OPTIONS)
        sock.connect((args.addr, args.port))
        sock.send(payload)
        report: dict[str, Any] = {"answered": False}
        try:
            answer = sock.recv(65535)
        except OSError as e:
            return {**report, "error": _outcome(e)}
    greeting, separator, echoed = answer.partition(UDP_PAYLOAD_SEPARATOR)
    return {**report, "answered": True, "echoed": bool(separator) and echoed == payload,
            "answer_size": len(answer), "backend": Greeting.decode(greeting).backend if separator else None}


MODES = {
    "http-get": http_get,
    "dns-query": dns_query,
    "udp-fragments": udp_fragments,
    "udp-options": udp_options,
    "tcp-spread": tcp_spread,
    "udp-spread": udp_spread,
    "tcp-session": tcp_session,
    "tcp-connect-once": tcp_connect_once,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    for name in MODES:
        mode = modes.add_parser(name)
        mode.add_argument("--addr", required=True, help="IPv4 or IPv6 address")
        mode.add_argument("--port", type=int, required=True)
        mode.add_argument("--timeout", type=float, default=2.0,
                          help="seconds per connect / answer (default 2)")
        if name in ("tcp-spread", "udp-spread"):
            mode.add_argument("--count", type=int, default=100)
        if name == "http-get":
            mode.add_argument("--path", default="/")
        if name == "dns-query":
            mode.add_argument("--name", required=True)
            mode.add_argument("--type", default="A", choices=["A", "AAAA", "TXT"])
            mode.add_argument("--bufsize", type=int, default=0,
                              help="EDNS0 UDP payload size to advertise (default: no EDNS)")
            mode.add_argument("--pad", type=int, default=0,
                              help="pad the query with EDNS0 padding to this many bytes")
        if name in ("udp-fragments", "udp-options"):
            mode.add_argument("--size", type=int, required=True, help="UDP payload bytes")
        if name == "udp-fragments":
            mode.add_argument("--order", default="", help="fragment indexes to send, in order")
            mode.add_argument("--ifname", required=True, help="link to send the fragments on")
            mode.add_argument("--gw-mac", required=True, help="next hop's MAC address")
        if name == "tcp-session":
            mode.add_argument("--interval-ms", type=float, default=50)
            mode.add_argument("--duration", type=float, default=None,
                              help="seconds; default: until SIGTERM or stdin EOF")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    report = MODES[args.mode](args)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
