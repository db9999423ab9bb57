"""HTTP clients for the lab's L7 tests, run inside the client namespace; one JSON report
on stdout.

    python -m lab.httpclient spread --url http://10.99.100.1/ [--header k:v] [--count N]
    python -m lab.httpclient stream --url http://10.99.100.1/ [--duration S]
    python -m lab.httpclient batch [--repeat N] < requests.json

batch: reads a JSON list of {"url", "host", "headers", "method" (GET if absent)} and
sends each (a new connection each, redirects not followed) --repeat times in a row;
prints, per request, the list of its answers {"status", "body", "headers"} or {"error"}.
Response headers are keyed by lower-case name, the values of a repeated header joined
by commas (as Go's client reports them to upstream's suite).

spread: N requests on one keep-alive connection (or over --parallel ones at once, with
--jitter a random X-Jitter header each); counts answers per echo pod, status codes and
failures, and keeps the first answer. stream: requests without pause until
--duration passes or SIGTERM/SIGINT, alternating between one keep-alive connection and
a new connection per request; every failure (connection error, timeout, non-200) is
counted and the first few are described.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from ctl.agent.signals import stop_on_signals


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return conn, path


def _request(conn: http.client.HTTPConnection, path: str, headers: dict[str, str],
             method: str = "GET") -> tuple[int, dict, dict]:
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = {"raw": body.decode(errors="replace")[:200]}
    joined: dict[str, str] = {}
    for name, value in response.getheaders():
        key = name.lower()
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return response.status, document, joined


def _headers(items: list[str]) -> dict[str, str]:
    return dict(item.split(":", 1) for item in items)


def spread(args: argparse.Namespace) -> dict[str, Any]:
    """--count requests over --parallel keep-alive connections at once (each its own
    thread); with --jitter each carries a random X-Jitter header, as upstream's weight
    tests send."""
    headers = _headers(args.header)
    pods: Counter[str] = Counter()
    codes: Counter[int] = Counter()
    failures: list[str] = []
    first: list[dict[str, Any]] = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        conn, path = _connection(args.url, args.timeout)
        for _ in range(count):
            sent = dict(headers, **({"X-Jitter": uuid.uuid4().hex} if args.jitter else {}))
            try:
                code, document, response_headers = _request(conn, path, sent)
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    failures.append(repr(error))
                conn.close()
                conn, path = _connection(args.url, args.timeout)
                continue
            with lock:
                codes[code] += 1
                if code == 200:
                    pods[document.get("pod", "?")] += 1
                if not first:
                    first.append({"status": code, "body": document, "headers": response_headers})
        conn.close()

    shares = [args.count // args.parallel + (1 if i < args.count % args.parallel else 0) for i in range(args.parallel)]
    threads = [threading.Thread(target=worker, args=(n,)) for n in shares if n]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"pods": dict(pods), "codes": {str(k): v for k, v in codes.items()}, "failures": failures,
            "first": first[0] if first else None}


def stream(args: argparse.Namespace) -> dict[str, Any]:
    stop = threading.Event()
    stop_on_signals(stop)
    deadline = time.monotonic() + args.duration
    keepalive, path = _connection(args.url, args.timeout)
    sent = ok = 0
    failures: list[str] = []
    failed = 0
    kinds: Counter[str] = Counter()
    print("started", flush=True)
    while not stop.is_set() and time.monotonic() < deadline:
        fresh = sent % 2 == 1
        conn = _connection(args.url, args.timeout)[0] if fresh else keepalive
        sent += 1
        kind = "new-connection" if fresh else "keep-alive"
        try:
            code, document, _ = _request(conn, path, {})
            if code == 200:
                ok += 1
            else:
                raise RuntimeError(f"status {code}: {str(document)[:120]}")
        except (OSError, http.client.HTTPException, RuntimeError) as error:
            failed += 1
            kinds[kind] += 1
            if len(failures) < 20:
                failures.append(f"{time.strftime('%H:%M:%S')} {kind}: {error!r}")
            if not fresh:
                keepalive.close()
                keepalive = _connection(args.url, args.timeout)[0]
        finally:
            if fresh:
                conn.close()
        if args.interval_ms:
            time.sleep(args.interval_ms / 1000)
    keepalive.close()
    return {"sent": sent, "ok": ok, "failed": failed, "failed_by_kind": dict(kinds), "failures": failures}


def batch(args: argparse.Namespace) -> list[list[dict[str, Any]]]:
    requests = json.load(sys.stdin)
    out: list[list[dict[str, Any]]] = [[] for _ in requests]
    for _ in range(args.repeat):
        for i, request in enumerate(requests):
            conn, path = _connection(request["url"], args.timeout)
            headers = dict(request.get("headers", {}))
            if request.get("host"):
                headers["Host"] = request["host"]
            try:
                code, document, response_headers = _request(conn, path, headers, request.get("method") or "GET")
                out[i].append({"status": code, "body": document, "headers": response_headers})
            except (OSError, http.client.HTTPException) as error:
                out[i].append({"error": repr(error)})
            finally:
                conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    batch_mode = modes.add_parser("batch")
    batch_mode.add_argument("--repeat", type=int, default=3)
    batch_mode.add_argument("--timeout", type=float, default=5.0)
    for name in ("spread", "stream"):
        mode = modes.add_parser(name)
        mode.add_argument("--url", required=True)
        mode.add_argument("--timeout", type=float, default=5.0)
        if name == "spread":
            mode.add_argument("--count", type=int, default=100)
            mode.add_argument("--header", action="append", default=[], help="name:value (repeat)")
            mode.add_argument("--parallel", type=int, default=1, help="connections sending at once")
            mode.add_argument("--jitter", action="store_true", help="a random X-Jitter header on each request")
        else:
            mode.add_argument("--duration", type=float, default=3600)
            mode.add_argument("--interval-ms", type=float, default=0)
    args = parser.parse_args(argv)
    report = {"spread": spread, "stream": stream, "batch": batch}[args.mode](args)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
