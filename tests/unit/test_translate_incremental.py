"""An edit translated incrementally (``ctl.translate.incremental``) gives exactly what a
translation from scratch gives: after every one of many random edits (routes re-pointed,
weights changed, Services and EndpointSlices changed, added or removed), with the clock
moving so that condition times are carried, not merely equal."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from ctl.sources import ParseCache, load_directory
from ctl.translate import translate
from ctl.translate.incremental import Translator

from tests.unit.test_translate_memo import GATEWAY, CONFIG, SERVICES, _edit, _random_world, _route, _service, _slice, _write

HTTP_GATEWAY = """\
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: apps}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: http, protocol: HTTP, port: 8000}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: h, namespace: apps}
spec:
  parentRefs: [{name: web}]
  rules:
  - backendRefs: [{name: s0, port: 80}]
"""


def _crowded_route(i: int, rng: random.Random) -> str:
    """A TCPRoute on one of a few listeners (so several share one, and an edit may move
    it or make it the oldest there), sometimes on two."""
    sections = rng.sample(["l0", "l1", "l2", "l4"], rng.choice([1, 1, 2]))
    parents = ", ".join(f"{{name: gw, sectionName: {section}}}" for section in sections)
    created = f"2024-01-0{rng.randrange(1, 4)}T00:00:00Z"
    refs = ", ".join(f"{{name: s{rng.randrange(SERVICES)}, port: {80 + rng.randrange(2)}, weight: {rng.choice([0, 1, 2])}}}"
                     for _ in range(rng.randrange(1, 3)))
    return (f"apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\n"
            f"metadata: {{name: c{i}, namespace: apps, creationTimestamp: '{created}'}}\n"
            f"spec:\n  parentRefs: [{parents}]\n  rules:\n  - backendRefs: [{refs}]\n")


def _crowded_world(rng: random.Random) -> dict[str, str]:
    files = {"00-gateway.yaml": GATEWAY}
    for i in range(8):
        files[f"crowded-{i}.yaml"] = _crowded_route(i, rng)
    for s in range(SERVICES):
        files[f"service-{s}.yaml"] = _service(s, "TCP")
        files[f"slice-{s}-v4.yaml"] = _slice(s, 4, [(e, "{ready: true}") for e in range(1, rng.randrange(2, 5))],
                                             "p").replace("PROTO", "TCP")
    return files


def _crowded_edit(files: dict[str, str], rng: random.Random) -> dict[str, str]:
    fresh = _crowded_world(rng)
    edited = dict(files)
    for name in rng.sample(sorted(fresh), rng.randrange(1, 3)):
        edited[name] = fresh[name]
    return edited


def _check(tmp_path: Path, seed: int, extra: dict[str, str], world=_random_world, edit=_edit) -> Translator:
    rng = random.Random(seed)
    cache = ParseCache()
    translator = Translator()
    files = {**world(rng), **extra}
    previous: tuple = ()
    for step in range(80):
        _write(tmp_path, files)
        loaded = load_directory(tmp_path, cache)
        assert not loaded.problems, loaded.problems
        config = replace(CONFIG, now=CONFIG.now + timedelta(seconds=step))
        edited = translator.translate(loaded.snapshot, config, previous)
        full = translate(load_directory(tmp_path).snapshot, config, previous)
        assert edited == full, f"step {step}"
        previous = edited.statuses
        files = {**edit(files, rng), **extra}
    return translator


def test_incremental_translation_gives_what_a_full_one_gives(tmp_path: Path) -> None:
    translator = _check(tmp_path, 1130, {})
    assert translator.incremental > 20 and translator.full > 1  # both paths were taken


def test_incremental_translation_beside_an_l7_gateway(tmp_path: Path) -> None:
    translator = _check(tmp_path, 7, {"50-web.yaml": HTTP_GATEWAY})
    assert translator.incremental > 10


def test_incremental_translation_of_routes_sharing_listeners(tmp_path: Path) -> None:
    """Routes moving between listeners, becoming the oldest on one: counts, winners and
    the statuses of the other routes there follow."""
    translator = _check(tmp_path, 3, {}, _crowded_world, _crowded_edit)
    assert translator.incremental > 40


def test_a_translation_that_was_not_applied_is_forgotten() -> None:
    translator = Translator()
    translator.last = object()  # type: ignore[assignment]
    translator.forget()
    assert translator.last is None


def test_edits_that_only_change_weights_keep_the_pool_memo_bounded(tmp_path: Path, monkeypatch) -> None:
    """Incremental translations start no memo generation; without a bound, every edit's
    new pool (and the objects it was made of) would stay until a full translation."""
    from ctl.translate import backends

    monkeypatch.setattr(backends, "_POOLS", backends._IdentityMemo())
    monkeypatch.setattr(backends, "_MIN_LIMIT", 16, raising=False)
    files = {"00-gateway.yaml": GATEWAY, "service-0.yaml": _service(0, "TCP"),
             "slice-0-v4.yaml": _slice(0, 4, [(1, "{ready: true}"), (2, "{ready: true}")], "p").replace("PROTO", "TCP")}
    cache, translator, sizes = ParseCache(), Translator(), []
    for weight in range(1, 301):
        # Route 0 splits between s0 (weight `weight`) and s1, which does not exist: each
        # weight is a pool of its own.
        _write(tmp_path, {**files, "route-0.yaml": _route(0, [(0, weight), (1, 1)])})
        loaded = load_directory(tmp_path, cache)
        assert not loaded.problems, loaded.problems
        translator.translate(loaded.snapshot, CONFIG)
        sizes.append(len(backends._POOLS))
    assert translator.full == 1 and translator.incremental == 299
    assert max(sizes) <= 2 * 16 + 2, sizes[-5:]
