"""Smoke test of the Maglev benchmark part (bench/maglev.py): it runs in quick mode,
follows the part contract, and its figures say what Maglev is for."""

from __future__ import annotations

import pytest

from bench import maglev


@pytest.fixture(scope="module")
def result():
    # Smaller than --quick still: this is a structure check, not a measurement.
    return maglev.run(quick=True, runs=2, flows=50_000, target_s=0.005)


def test_follows_the_part_contract(result, tmp_path):
    assert result["part"] == "maglev" and result["title"] and result["notes"]
    assert {r["name"] for r in result["rows"]} == set(maglev.row_names())
    for r in result["rows"]:
        assert {"name", "metric", "unit", "median", "p25", "p75", "runs", "command"} <= set(r)
        assert r["command"] == maglev.rerun("maglev", r["name"], quick=True)
    text = maglev.markdown(result)
    assert text.startswith("## ") and all(r["command"] in text for r in result["rows"])
    paths = maglev.charts(result, tmp_path)
    assert paths and all(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)


def test_build_times_are_positive(result):
    builds = [r for r in result["rows"] if r["kind"] == "build"]
    assert len(builds) == len(maglev.BUILD_NS) * len(maglev.SIZES)
    assert all(r["median"] > 0 and r["loops"] >= 1 for r in builds)


def test_maglev_remaps_far_less_than_mod_n(result):
    remaps = {r["n"]: r for r in result["rows"] if r["kind"] == "remap"}
    assert set(remaps) == set(maglev.REMAP_NS)
    for n, r in remaps.items():
        # The departed backend's flows always move; nothing can do better than 1/N.
        assert r["maglev"] >= r["minimum"] - 1e-9
        assert r["mod_n"] == pytest.approx(1 - 1 / n, abs=0.02)
        if n >= 10:
            assert r["maglev"] < r["mod_n"] / 5
            assert r["maglev"] < 3 / n + 0.01


def test_balance_is_within_rounding_of_the_weights(result):
    for r in (r for r in result["rows"] if r["kind"] == "balance"):
        assert r["worst_slots"] <= 1.0  # every backend gets its share to within one slot
        assert r["median"] >= 100 * r["rounding_relative"] - 1e-9


def test_only_runs_one_row():
    one = maglev.run(quick=True, only="remap N=10", flows=20_000)
    assert [r["name"] for r in one["rows"]] == ["remap N=10"]
