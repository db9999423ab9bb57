"""Smoke test of bench/e2e.py: every path forwards and is measured, in a tiny run.

One round, 1-second windows, only small-UDP packets per second and new TCP connections
per second, no diagnostics: the point is that each of the four paths (xdp-gateway XDP,
xdp-gateway tc, nftables DNAT, Envoy) is set up alone, carries traffic to the backends,
and is torn down without leaving anything behind. The figures themselves mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.requirements import missing

pytestmark = [pytest.mark.net, pytest.mark.timeout(240)]

TOOLS = ("trafgen", "wrk", "nft", "ethtool", "ss", "curl", "cc", "sockperf", "iperf3")
MISSING = missing(why_root="network namespaces, veth, BPF, nftables", tools=TOOLS, envoy=True,
                  modules=("matplotlib",))


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_every_path_forwards_udp_and_new_connections(tmp_path):
    from bench import e2e

    result = e2e.run(quick=True, rounds=1, seconds=1, metrics=("udp-pps", "tcp-cps"),
                     diagnostics=False)

    figures = {(r["metric_key"], r["path"]): r["median"] for r in result["rows"]}
    for metric in ("udp-pps", "tcp-cps"):
        for path in e2e.PATHS:
            assert figures.get((metric, path), 0) > 0, (metric, path, result.get("failures"))
    # Each path was verified alone before it was measured, and everything was removed.
    assert result["leftovers_after_cleanup"] == []
    assert not Path(result["pin_dir"]).exists()
    # The report renders and charts are written.
    assert "| xdp-gateway, native XDP |" in e2e.markdown(result)
    charts = e2e.charts(result, tmp_path)
    assert {c.name for c in charts} == {"e2e_udp_pps.png", "e2e_tcp_cps.png"}
    assert all(c.stat().st_size > 0 for c in charts)
