"""Smoke test of the packet benchmark part (bench/packet.py) in a tiny mode: every case
runs through the real programs, yields a positive cost and a ratio to the floor, and
the part follows the benchmark contract."""

from __future__ import annotations

import pytest

from lab.harness import missing_requirements

pytestmark = pytest.mark.packet


@pytest.fixture(scope="module")
def result():
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    from bench import packet

    return packet.run(quick=True, runs=2, repeat=2000, new_batch=50)


def test_every_case_has_a_positive_median_and_a_ratio(result):
    from bench import packet

    cases = [r for r in result["rows"] if r["kind"] == "case"]
    assert {(r["hook"], r["case"]) for r in cases} == {
        (hook, c.key) for hook in packet.HOOKS for c in packet.CASES}
    for r in cases:
        assert r["median"] > 0, r["name"]
        assert r["ratio"] > 0, r["name"]
    floors = [r for r in result["rows"] if r["case"] == "floor"]
    assert len(floors) == len(packet.HOOKS) and all(r["median"] > 0 for r in floors)


def test_follows_the_part_contract(result, tmp_path):
    from bench import packet

    assert result["part"] == "packet" and result["title"] and result["notes"]
    assert {r["name"] for r in result["rows"]} == set(packet.row_names())
    for r in result["rows"]:
        assert {"name", "metric", "unit", "median", "p25", "p75", "runs", "command"} <= set(r)
        assert len(r["runs"]) == 2
    text = packet.markdown(result)
    assert all(r["command"] in text for r in result["rows"])
    (chart,) = packet.charts(result, tmp_path)
    assert chart.stat().st_size > 0


def test_a_plain_repeat_would_time_the_translated_frame(result):
    """The reason for the replay wrapper, checked on every run of the part."""
    assert "XDP_PASS" in " ".join(result["notes"])
