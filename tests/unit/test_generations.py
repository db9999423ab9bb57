"""Pure tier: metadata.generation for objects read from files, as an API server keeps it."""

from __future__ import annotations

import dataclasses

from ctl.sources import ParseCache, parse_documents
from ctl.sources.documents import assemble
from ctl.sources.generations import GenerationBook
from ctl.translate import objects_document

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: default{generation}}}
spec:
  gatewayClassName: xdp-gateway
  listeners: [{{name: http, protocol: HTTP, port: 80, hostname: {hostname}}}]
"""


def load(hostname: str = "bar.com", generation: str = "", labels: str = "", cache: ParseCache | None = None):
    text = GATEWAY.format(hostname=hostname, generation=generation + labels)
    parsed = cache.parse(text, "gw.yaml") if cache else parse_documents(text, "gw.yaml")
    assert not parsed.problems, parsed.problems
    return assemble([parsed]).snapshot


def generation(snapshot) -> int:
    return snapshot.gateways[0].generation


def test_generation_starts_at_one_and_follows_spec_edits_only() -> None:
    book = GenerationBook()
    snapshot, book = book.assign(load())
    assert generation(snapshot) == 1
    snapshot, book = book.assign(load())  # re-read, unchanged
    assert generation(snapshot) == 1
    snapshot, book = book.assign(load(labels=", labels: {team: a}"))  # metadata only
    assert generation(snapshot) == 1
    snapshot, book = book.assign(load("foo.com"))
    assert generation(snapshot) == 2
    snapshot, book = book.assign(load("foo.com"))
    assert generation(snapshot) == 2
    snapshot, book = book.assign(load("bar.com"))  # back to the first spec: still a change
    assert generation(snapshot) == 3


def test_a_files_own_generation_is_a_floor() -> None:
    snapshot, book = GenerationBook().assign(load(generation=", generation: 7"))
    assert generation(snapshot) == 7
    snapshot, book = book.assign(load("foo.com", generation=", generation: 7"))
    assert generation(snapshot) == 8


def test_objects_gone_from_the_files_start_again() -> None:
    _, book = GenerationBook().assign(load())
    _, book = book.assign(load("foo.com"))
    empty, book = book.assign(assemble([]).snapshot)
    assert not empty.gateways
    snapshot, _ = book.assign(load("baz.com"))
    assert generation(snapshot) == 1


def test_an_unchanged_file_costs_no_fingerprint_and_keeps_the_snapshot() -> None:
    cache = ParseCache()
    first = load(cache=cache)
    _, book = GenerationBook().assign(first)
    again = load(cache=cache)
    assert again.gateways[0] is first.gateways[0]  # the parse cache hands back the same object
    snapshot, _ = book.assign(again)
    assert snapshot is again


def test_the_objects_document_shows_the_generation() -> None:
    from datetime import UTC, datetime

    from ctl.translate import TranslateConfig, translate

    text = GATEWAY.format(hostname="bar.com", generation=", generation: 3") + """
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp-gateway}
spec: {controllerName: xdp-gateway.io/gateway-controller}
"""
    snapshot = assemble([parse_documents(text, "x.yaml")]).snapshot
    translation = translate(snapshot, TranslateConfig(now=datetime(2025, 1, 1, tzinfo=UTC)))
    gateway = next(o for o in objects_document(translation.statuses) if o["kind"] == "Gateway")
    assert gateway["metadata"] == {"namespace": "default", "name": "web", "generation": 3}
    assert {c["observedGeneration"] for c in gateway["status"]["conditions"]} == {3}


def test_replaced_positions_finds_objects_replaced_in_place_by_identity() -> None:
    from ctl.api import Namespace
    from ctl.sources.snapshot import replaced_positions

    a, b, c = (Namespace.model_validate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}})
               for n in "abc")
    b2 = b.model_copy(update={"metadata": dataclasses.replace(b.metadata, labels={"x": "y"})})
    assert replaced_positions((a, b, c), (a, b, c)) == []
    assert replaced_positions((a, b, c), (a, b2, c)) == [1]
    assert replaced_positions((a, b, c), (a, c, b)) is None  # renamed in place: not an in-place edit
    assert replaced_positions((a, b, c), (a, b)) is None
