"""Fields only the experimental channel declares (HTTPRoute ``retry``) load from files,
as they would on an API server with the experimental CRDs installed; a field neither
channel declares is still refused, naming the field."""

from __future__ import annotations

import ipaddress
import json
import textwrap
from datetime import UTC, datetime

from google.protobuf import json_format

from ctl.sources import parse_documents
from ctl.sources.documents import assemble
from ctl.translate import TranslateConfig, translate
from l7sidecar.render import ROUTE_TYPE, render

GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: xdp-gateway.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: c
  listeners: [{name: http, protocol: HTTP, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: v3, namespace: default}
spec:
  ports: [{port: 8080}]
"""


def route(rule: str) -> str:
    return textwrap.dedent("""\
        ---
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: retry, namespace: default}
        spec:
          parentRefs: [{name: web}]
          rules:
          - backendRefs: [{name: v3, port: 8080}]
        """) + textwrap.indent(textwrap.dedent(rule), "    ")


RETRY = """\
retry:
  codes: [500, 502]
  attempts: 3
  backoff: 100ms
"""


def test_a_route_with_retry_loads_translates_and_renders_envoys_retry_policy() -> None:
    parsed = parse_documents(GATEWAY + route(RETRY), "routes.yaml")
    assert parsed.problems == () and parsed.ignored == ()
    (http_route,) = [o for o in parsed.objects if o.KIND == "HTTPRoute"]
    retry = http_route.spec.rules[0].retry
    assert (retry.codes, retry.attempts, retry.backoff) == ((500, 502), 3, "100ms")

    translation = translate(
        assemble([parsed]).snapshot,
        TranslateConfig(now=datetime(2025, 1, 1, tzinfo=UTC), addresses=(ipaddress.ip_address("192.0.2.10"),),
                        snat_addresses=(ipaddress.ip_address("192.0.2.1"),)),
    )
    table = render(translation.l7).of_type(ROUTE_TYPE)["http/192.0.2.10:80"]
    action = json.loads(json_format.MessageToJson(table))["virtualHosts"][0]["routes"][0]["route"]
    assert action["retryPolicy"] == {
        "retryOn": "connect-failure,refused-stream,reset,retriable-status-codes",
        "numRetries": 3,
        "retriableStatusCodes": [500, 502],
        "retryBackOff": {"baseInterval": "0.100s"},
    }


def test_the_experimental_schema_validates_what_it_declares() -> None:
    """Chosen for its fields, the experimental schema applies in full: its constraints
    (codes are 400..599) are checked, not skipped."""
    parsed = parse_documents(GATEWAY + route("retry: {codes: [200], attempts: 1}\n"), "routes.yaml")
    (problem,) = parsed.problems
    assert "HTTPRoute default/retry" in str(problem) and "spec.rules[0].retry.codes[0]" in str(problem)


def test_a_field_no_channel_declares_is_still_refused() -> None:
    parsed = parse_documents(GATEWAY + route("retyr: {attempts: 3}\n"), "routes.yaml")
    (problem,) = parsed.problems
    assert str(problem) == "routes.yaml: HTTPRoute default/retry: spec.rules[0].retyr: unknown field"


def test_retry_beside_a_bogus_field_names_the_bogus_field_only() -> None:
    parsed = parse_documents(GATEWAY + route(RETRY + "bogus: 1\n"), "routes.yaml")
    (problem,) = parsed.problems
    assert str(problem) == "routes.yaml: HTTPRoute default/retry: spec.rules[0].bogus: unknown field"
    assert not any(o.KIND == "HTTPRoute" for o in parsed.objects)
