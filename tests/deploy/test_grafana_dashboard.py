"""The Grafana dashboard queries only metrics the agent exports. The exported names come
from the agent's own registry (AgentMetrics and the DataplaneCollector) scraped over real
pinned maps that a real data path programmed, not from a list kept by hand."""

from __future__ import annotations

import json
import re
import secrets
import shutil
from ipaddress import ip_address
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ctl.agent.metrics import PREFIX, AgentMetrics, DataplaneCollector
from ctl.model import DesiredState, Endpoint, FrontendKey, Protocol, Service, WeightedEndpoint

from .conftest import ROOT, bpf_missing

DASHBOARD = ROOT / "deploy" / "grafana" / "xdp-gateway.json"
SIZES = dict(maglev_size=1021, max_services=64, max_backends=256, ct_size=4096)
FRONTEND = FrontendKey(ip_address("192.0.2.80"), 80, Protocol.TCP)
OWNER = "TCPRoute default/web"

# The sample names each metric type exposes in the text format.
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
             "summary": ("", "_sum", "_count"), "info": ("_info",)}


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in doc["templating"]["list"] if "definition" in v]
    return exprs


def queried_metrics() -> set[str]:
    return {m for e in dashboard_exprs() for m in re.findall(rf"\b{PREFIX}_[a-z0-9_]+\b", e)}


@pytest.fixture(scope="module")
def scraped():
    """The agent's registry over a programmed data path: (sample names, text)."""
    reason = bpf_missing()
    if reason:
        pytest.skip(reason)
    from ctl.dataplane.dataplane import Dataplane
    from ctl.dataplane.loader import DataplaneSpec

    pin_dir = Path(f"/sys/fs/bpf/xgdash{secrets.token_hex(3)}")
    try:
        dataplane = Dataplane.load(DataplaneSpec(pin_dir=pin_dir, **SIZES))
        dataplane.program(DesiredState((Service(
            FRONTEND,
            (WeightedEndpoint(Endpoint(ip_address("10.0.0.2"), 8080), 1.0),
             WeightedEndpoint(Endpoint(ip_address("10.0.0.3"), 8080), 3.0)),
            snat_addresses=(ip_address("10.0.0.1"),), owner=OWNER),)))
        registry = CollectorRegistry()
        AgentMetrics(registry)
        registry.register(DataplaneCollector(pin_dir, lambda: {FRONTEND: OWNER}))
        text = generate_latest(registry).decode()
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)
    names = {f.name + suffix for f in text_string_to_metric_families(text) for suffix in _SUFFIXES[f.type]}
    return names, text


@pytest.mark.packet
def test_every_metric_the_dashboard_queries_is_exported(scraped):
    names, _ = scraped
    queried = queried_metrics()
    assert len(queried) >= 12
    assert queried <= names, f"the dashboard queries metrics the agent does not export: {sorted(queried - names)}"


@pytest.mark.packet
def test_weights_are_exported_as_the_kernel_holds_them(scraped):
    _, text = scraped
    weights = {(s.labels["frontend"], s.labels["route"], s.labels["backend"]): s.value
               for f in text_string_to_metric_families(text) if f.name == f"{PREFIX}_backend_weight"
               for s in f.samples}
    assert weights == {(str(FRONTEND), OWNER, "10.0.0.2:8080"): 1.0, (str(FRONTEND), OWNER, "10.0.0.3:8080"): 3.0}


def test_the_dashboard_covers_what_operators_ask():
    doc = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in doc["panels"]}
    assert {"Packets per route", "Backend share vs weight", "Drops by reason", "Reconcile latency", "Map fill"} <= titles
    queried = queried_metrics()
    for needed in ("xdpgw_frontend_packets_total", "xdpgw_backend_weight", "xdpgw_backend_new_connections_total",
                   "xdpgw_drops_total", "xdpgw_reconcile_duration_seconds_bucket", "xdpgw_map_entries",
                   "xdpgw_map_capacity"):
        assert needed in queried
    # Every panel's queries use the data source variable, so the dashboard imports anywhere.
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
