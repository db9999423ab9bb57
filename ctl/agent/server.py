"""The agent's HTTP endpoints: /metrics, /healthz, /readyz and the local API that gwctl
reads conditions from (/api/v1/objects, /api/v1/problems)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ctl.translate import objects_document

from .reconciler import AgentState


class AgentServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, state: Callable[[], AgentState]):
        self.registry = registry
        self.state = state
        handler = self._handler()
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                state = server.state()
                match self.path.split("?")[0]:
                    case "/metrics":
                        self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                    case "/healthz":
                        self._send(200, b"ok\n")
                    case "/readyz":
                        ok = state.ready
                        self._send(200 if ok else 503, b"ready\n" if ok else b"not programmed yet\n")
                    case "/api/v1/objects":
                        self._json(objects_document(state.translation.statuses if state.translation else ()))
                    case "/api/v1/problems":
                        self._json({"problems": list(state.problems), "reconciles": state.reconciles,
                                    "errors": state.errors, "ignored": list(state.ignored)})
                    case _:
                        self._send(404, b"not found\n")

            def _json(self, document) -> None:
                self._send(200, json.dumps(document).encode(), "application/json")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass  # scrapes every few seconds would drown the event log

        return Handler
