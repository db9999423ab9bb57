"""The README's first TCPRoute, with the GatewayClass of the plain manifests: the offline
dry run (gwctl validate) accepts every object and would program the frontend."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ctl.cli import app

from .conftest import ROOT

EXAMPLE = ROOT / "examples" / "kubernetes" / "first-tcproute.yaml"
MANIFESTS = ROOT / "deploy" / "manifests" / "xdp-gateway.yaml"


def _condition(obj: dict, kind: str) -> str:
    conditions = obj["status"].get("conditions") or obj["status"]["parents"][0]["conditions"]
    return next(c["status"] for c in conditions if c["type"] == kind)


def test_first_tcproute_is_accepted_with_the_charts_gateway_class():
    result = CliRunner().invoke(app, ["validate", "--snat-address", "10.0.0.1", "-o", "json",
                                      str(EXAMPLE), str(MANIFESTS)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    objects = {(o["kind"], o["metadata"]["name"]): o for o in doc["objects"]}
    assert _condition(objects[("GatewayClass", "xdp-gateway")], "Accepted") == "True"
    gateway = objects[("Gateway", "first")]
    assert _condition(gateway, "Accepted") == "True" and _condition(gateway, "Programmed") == "True"
    assert _condition(objects[("TCPRoute", "echo")], "Accepted") == "True"
    assert [(s["frontend"], s["owner"]) for s in doc["programmed"]] == [("192.0.2.10:9000/TCP", "TCPRoute default/echo")]
