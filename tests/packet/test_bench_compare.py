"""Smoke tests of the report's per-packet evidence parts in a tiny mode: the before/after
comparison against the baseline build (bench/packet_compare.py) and the perf profile
(bench/packet_profile.py), through the real programs."""

from __future__ import annotations

import shutil

import pytest

from lab.harness import missing_requirements

pytestmark = pytest.mark.packet


@pytest.fixture(autouse=True)
def requirements():
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)


def test_compare_measures_both_builds_and_renders_the_aims():
    from bench import baselines, packet_compare

    result = packet_compare.compare(baselines.PACKET.commit, runs=2, repeat=2000, new_batch=50, hooks=("xdp",))
    assert result["baseline"].startswith(baselines.PACKET.commit)
    assert [r["case"] for r in result["rows"]] == list(packet_compare.CASES)
    for r in result["rows"]:
        assert r["before"]["median"] > 0 and r["after"]["median"] > 0 and r["after_over_before"] > 0, r["case"]
        assert r["before_x_floor"] > 0 and r["after_x_floor"] > 0
    text = packet_compare.markdown({**result, "title": packet_compare.TITLE, "hooks": ["xdp"]})
    assert text.startswith(f"## {packet_compare.TITLE}") and text.count("| xdp |") == len(packet_compare.CASES)
    assert text.count("<= 0.50:") == 3 and text.count("<= 0.70:") == 1


def test_profile_attributes_samples_to_the_program_and_groups_them():
    if shutil.which("perf") is None:
        pytest.skip("needs perf (Debian's linux-perf)")
    from bench import packet_profile

    found = packet_profile.profile("xdp", "established", seconds=1.5, repeat=20_000)
    assert found["samples"] > 0 and found["runs"] > 0
    shares = packet_profile.shares(found)
    assert abs(sum(shares.values()) - 1) < 1e-9
    assert shares["the program's own code"] > 0
    result = {"part": "packet_profile", "title": packet_profile.TITLE, "seconds_each": 1.5, "profiles": [found]}
    assert "| the program's own code |" in packet_profile.markdown(result)
