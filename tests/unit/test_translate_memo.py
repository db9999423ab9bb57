"""Translation reuses the backend pools of Services and EndpointSlices that did not
change (the same parsed objects from load to load). Level-triggered correctness: after
every one of many random edits, a translation that may reuse them gives exactly what a
translation from scratch (fresh objects, empty memo) gives."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime
from pathlib import Path

from ctl.sources import ParseCache, load_directory
from ctl.translate import TranslateConfig, translate
from ctl.translate import backends

CONFIG = TranslateConfig(
    now=datetime(2025, 1, 1, tzinfo=UTC),
    addresses=(ipaddress.ip_address("192.0.2.10"),),
    snat_addresses=(ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8::1")),
)
SERVICES = 12
GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-gateway.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: apps}
spec:
  gatewayClassName: xdp
  addresses: [{type: IPAddress, value: 192.0.2.10}, {type: IPAddress, value: "2001:db8::10"}]
  listeners:
""" + "".join(f"  - {{name: l{i}, protocol: {'UDP' if i % 4 == 3 else 'TCP'}, port: {9000 + i}}}\n"
              for i in range(SERVICES))


def _route(i: int, refs: list[tuple[int, int]]) -> str:
    kind = "UDPRoute" if i % 4 == 3 else "TCPRoute"
    backend_refs = ", ".join(f"{{name: s{s}, port: {80 + s % 2}, weight: {w}}}" for s, w in refs)
    return (f"apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: {kind}\nmetadata: {{name: r{i}, namespace: apps}}\n"
            f"spec:\n  parentRefs: [{{name: gw, sectionName: l{i}}}]\n  rules:\n  - backendRefs: [{backend_refs}]\n")


def _service(s: int, protocol: str) -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: s{s}, namespace: apps}}\n"
            f"spec:\n  ports: [{{name: p, port: {80 + s % 2}, protocol: {protocol}}}]\n")


def _slice(s: int, family: int, endpoints: list[tuple[int, str]], port_name: str) -> str:
    address_type = "IPv4" if family == 4 else "IPv6"
    rows = "".join(
        f"- addresses: ['{f'10.{s}.0.{e}' if family == 4 else f'fd00:{s}::{e}'}']\n  conditions: {state}\n"
        for e, state in endpoints)
    return (f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            f"metadata: {{name: s{s}-v{family}, namespace: apps, labels: {{kubernetes.io/service-name: s{s}}}}}\n"
            f"addressType: {address_type}\nports: [{{name: {port_name}, port: 8080, protocol: PROTO}}]\n"
            + (f"endpoints:\n{rows}" if rows else "endpoints: []\n"))


STATES = ["{ready: true}", "{ready: false}", "{ready: false, serving: true, terminating: true}"]


def _random_world(rng: random.Random) -> dict[str, str]:
    files = {"00-gateway.yaml": GATEWAY}
    for i in range(SERVICES):
        refs = [(rng.randrange(SERVICES + 2), rng.choice([0, 1, 1, 3])) for _ in range(rng.randrange(1, 3))]
        files[f"route-{i}.yaml"] = _route(i, refs)
    for s in range(SERVICES):
        if rng.random() < 0.1:
            continue  # a Service that does not exist
        # Services and their slices in files of their own: either may change alone.
        protocol = "UDP" if s % 4 == 3 else rng.choice(["TCP", "TCP", "TCP", "UDP"])
        files[f"service-{s}.yaml"] = _service(s, protocol)
        for family in (4, 6):
            endpoints = [(e, rng.choice(STATES)) for e in range(1, rng.randrange(1, 5))]
            files[f"slice-{s}-v{family}.yaml"] = _slice(s, family, endpoints, rng.choice(["p", "p", "other"])).replace(
                "PROTO", protocol)
    return files


def _edit(files: dict[str, str], rng: random.Random) -> dict[str, str]:
    """A new world that keeps most files as they were (so their objects are reused)."""
    fresh = _random_world(rng)
    edited = dict(files)
    for name in rng.sample(sorted(fresh), rng.randrange(1, 5)):
        edited[name] = fresh[name]
    if rng.random() < 0.2:
        edited.pop(rng.choice(sorted(n for n in edited if n.startswith(("service-", "slice-")))), None)
    return edited


def _write(root: Path, files: dict[str, str]) -> None:
    for path in root.glob("*.yaml"):
        if path.name not in files:
            path.unlink()
    for name, text in files.items():
        path = root / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def test_reused_pools_give_what_a_translation_from_scratch_gives(tmp_path: Path, monkeypatch) -> None:
    rng = random.Random(1130)
    cache = ParseCache()
    files = _random_world(rng)
    reused = 0
    previous = ()
    for step in range(60):
        _write(tmp_path, files)
        loaded = load_directory(tmp_path, cache)
        assert not loaded.problems, loaded.problems
        memo = backends._POOLS
        hits_before = len(memo._previous)
        incremental = translate(loaded.snapshot, CONFIG, previous)
        reused += hits_before > 0 and any(key in memo._previous for key in memo._current)

        with monkeypatch.context() as scratch:
            scratch.setattr(backends, "_POOLS", backends._IdentityMemo())
            full = translate(load_directory(tmp_path).snapshot, CONFIG, previous)
        assert incremental == full, f"step {step}"
        assert incremental.desired.services, "every world programs something"
        previous = incremental.statuses
        files = _edit(files, rng)
    assert reused > 30  # the memo was really used, not bypassed
