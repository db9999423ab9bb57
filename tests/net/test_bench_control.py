"""Smoke test of bench/control.py in a tiny mode: a 20-route cold start of `gwctl run`
and 5 edit-to-packet flips, with its report and charts; nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import control

from lab import netlab

pytestmark = pytest.mark.net


@pytest.fixture(scope="module", autouse=True)
def _requirements():
    reason = control._missing()
    if reason:
        pytest.skip(reason)


def _no_leftovers(prefix: str) -> None:
    assert not netlab.leftovers(prefix)
    assert not [p for p in Path("/sys/fs/bpf").iterdir() if p.name.startswith(prefix)]


def test_generated_config_loads_without_problems(tmp_path):
    from ctl.sources import load_directory

    info = control.generate(tmp_path, 130)
    loaded = load_directory(tmp_path)
    assert not loaded.problems
    assert (info["gateways"], len(loaded.snapshot.gateways)) == (3, 3)
    assert len(loaded.snapshot.tcp_routes) == 130
    assert sum(len(s.endpoints) for s in loaded.snapshot.endpoint_slices) == 130 * 8


def test_cold_start_and_edit_to_packet_tiny(tmp_path):
    cold = control.cold_start(20, 1, tmp_path)
    (run,) = cold["per_run"]
    assert run["ready_s"] > 0 and run["reconcile_s"] > 0 and run["serving_s"] > 0
    assert run["ready_s"] >= run["reconcile_s"]
    assert run["rss_mib"] > 0 and run["hwm_mib"] >= run["rss_mib"]
    assert run["writes"] > 20 * 8  # a backend and a member per endpoint, and more
    assert run["edit_reconcile_s"] > 0 and run["edit_writes"] > 0 and run["edit_to_reconciled_s"] > 0
    # the first start compiled, the second (a fresh pin directory) loaded what it recorded
    assert run["compiled"] and run["from_cache"]
    assert run["cached_ready_s"] > 0 and run["cached_serving_s"] > 0 and run["cached_reconcile_s"] > 0
    _no_leftovers(cold["lab"])

    edit = control.edit_to_packet(5, tmp_path, gap=(0.05, 0.25))
    assert len(edit["samples"]) == 5
    assert all(sample["ms"] > 0 and sample["done_ms"] >= sample["ms"] for sample in edit["samples"])
    assert len(edit["reconcile_s"]) >= 5 and all(s > 0 for s in edit["reconcile_s"])
    assert edit["poll_interval_s"] > 0
    _no_leftovers(edit["lab"])

    # The same beside generated routes (the aim's figure is at 10,000).
    beside = control.edit_to_packet(3, tmp_path, gap=(0.05, 0.25), routes=20)
    assert len(beside["samples"]) == 3 and beside["routes"] == 20
    assert all(sample["ms"] > 0 for sample in beside["samples"])
    _no_leftovers(beside["lab"])

    # Edits timed into the agent's read-backs of its maps.
    during = control.edit_to_packet(3, tmp_path, routes=20, in_read_back=True)
    assert len(during["samples"]) == 3 and during["in_read_back"] and during["read_back_s"] > 0
    assert during["read_backs"] >= 5  # the first two (one measured), then one per edit at least
    assert all(sample["ms"] > 0 and sample["after_read_back_start_ms"] >= 0 for sample in during["samples"])
    _no_leftovers(during["lab"])

    result = {"part": control.PART, "title": control.TITLE, "notes": ["tiny"], "rows": [
        control._cold_row("cold-start-20", cold, "cmd"), control._edit_row("edit-to-packet", edit, "cmd"),
        control._edit_row("edit-to-packet-20", beside, "cmd"),
        control._edit_row("edit-to-packet-in-read-back-20", during, "cmd")]}
    text = control.markdown(result)
    assert "| 20 | 160 |" in text and "Edit to packet" in text
    assert "| 0 | 0.3-0.8 s apart | 5 |" in text and "| 20 | 0.3-0.8 s apart | 3 |" in text  # the edit rows
    assert "| 20 | in a read-back | 3 |" in text
    charts = control.charts(result, tmp_path / "charts")
    assert [p.name for p in charts] == ["control-cold-start.png", "control-edit-to-packet.png"]
    assert all(p.stat().st_size > 1000 for p in charts)
