"""Smoke test of bench/l7.py: every path serves every workload, in a tiny run.

One round, 1-second windows, few connections: the point is that each of the three paths
(xdp-gateway's Envoy handoff, plain Envoy, nginx) is set up alone, answers HTTP and HTTPS
with the backend's 200, carries wrk's requests for each workload, and is torn down
without leaving anything behind. The figures themselves mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.requirements import missing

pytestmark = [pytest.mark.net, pytest.mark.timeout(900)]

TOOLS = ("wrk", "nginx", "openssl", "curl", "ss")
MISSING = missing(why_root="network namespaces, veth, BPF", tools=TOOLS, envoy=True, modules=("matplotlib",))


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_every_path_serves_every_workload(tmp_path):
    from bench import l7

    result = l7.run(quick=True, rounds=1, seconds=1, threads=1, connections=4)

    assert result["failures"] == []
    for workload in l7.WORKLOADS:
        for path in l7.PATHS:
            rps = next((r for r in result["rows"]
                        if (r["workload"], r["path"], r["metric"]) == (workload, path, "rps")), None)
            assert rps is not None and rps["requests"] > 0 and rps["median"] > 0, (workload, path, result["failures"])
    # The CPU accounting found each path's processes (for xdp-gateway, the agent's Envoy).
    for path in l7.PATHS:
        assert any((r["path"], r["metric"]) == (path, "cpu") and r["median"] > 0 for r in result["rows"]), path
    # Everything was removed: namespaces, links, processes (nginx workers and Envoy too), pins.
    assert result["leftovers_after_cleanup"] == []
    assert not Path(result["pin_dir"]).exists()
    text = l7.markdown(result)
    assert "| xdp-gateway (Envoy via handoff) |" in text and "handoff cost against plain Envoy" in text
    charts = l7.charts(result, tmp_path)
    assert {c.name for c in charts} == {"l7_rps.png", "l7_p50.png", "l7_p99.png", "l7_cpu.png", "l7_sys.png"}
    assert all(c.stat().st_size > 0 for c in charts)
