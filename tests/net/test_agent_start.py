"""Network tier: how `gwctl run` starts when something is wrong. The agent loads its
programs beside reading the configuration; either side failing must look as it did
when they ran one after the other: one line naming the cause, no traceback, nothing
half-programmed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyroute2 import NetNS

from ctl.dataplane import abi, bpfsys, loader, reader
from ctl.dataplane.pinned import PinnedMaps
from l7sidecar.envoy import RunPaths, stop_envoy

from lab import netlab
from lab.examples import with_tcp_weights
from .test_dataplane_net import _missing

pytestmark = pytest.mark.net
API_PORT = 9480


@pytest.fixture(scope="module")
def net():
    reason = _missing()
    if reason:
        pytest.skip(reason)
    with netlab.lab(backends=1) as lab:
        yield lab
    assert not netlab.leftovers(lab.prefix)


class Start:
    """`gwctl run` in the gateway namespace on a pin and run directory of its own."""

    def __init__(self, net: netlab.Lab, work: Path) -> None:
        self.net = net
        self.pin_dir = Path(f"/sys/fs/bpf/{net.prefix}-{os.urandom(3).hex()}")
        self.run_dir = work / "run"
        self.config = work / "config"
        self.config.mkdir()
        self.stderr = work / "agent.log"
        self.proc: subprocess.Popen | None = None

    def run(self, files: dict[str, str]) -> subprocess.Popen:
        for name, text in files.items():
            (self.config / name).write_text(text)
        net = self.net
        argv = [sys.executable, "-m", "ctl.cli", "run", "--config", self.config, "--interface", "front",
                "--address", net.vip4, "--pin-dir", self.pin_dir, "--run-dir", self.run_dir,
                "--listen", f"{net.gw.front_v4}:{API_PORT}"]
        with self.stderr.open("w") as log:
            self.proc = net.popen(net.gw.ns, argv, host_mounts=True, stdout=subprocess.DEVNULL, stderr=log)
        return self.proc

    def events(self, name: str) -> list[dict]:
        lines = [json.loads(line) for line in self.stderr.read_text().splitlines() if line.startswith("{")]
        return [entry for entry in lines if entry.get("event") == name]

    def readyz(self) -> int:
        return self.net.run_client("http-get", "--addr", self.net.gw.front_v4, "--port", API_PORT,
                                   "--path", "/readyz", "--timeout", 2).get("status")

    def wait(self, condition, what: str, timeout: float = 180) -> None:
        # A bound, not a measurement: the first start on a node compiles the programs.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode} before {what}:\n{self.stderr.read_text()}")
            time.sleep(0.2)
        raise TimeoutError(f"no {what} in {timeout} s:\n{self.stderr.read_text()}")

    def close(self) -> None:
        """Stops the agent and removes what it leaves: programs, pins, Envoy, run directory."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=30)
        finally:
            stop_envoy(RunPaths(self.run_dir))
            loader.detach(self.net.gw.front_ifindex, netns=self.net.gw.ns)
            shutil.rmtree(self.pin_dir, ignore_errors=True)
            shutil.rmtree(self.run_dir, ignore_errors=True)


@pytest.fixture
def start(net, tmp_path):
    started = Start(net, tmp_path)
    try:
        yield started
    finally:
        started.close()


def test_a_program_load_that_fails_ends_the_start_with_one_line_and_nothing_attached(net, start):
    # A pinned map of another shape: the program load refuses it while the (valid)
    # configuration is read beside it.
    start.pin_dir.mkdir(parents=True)
    file, *_ = abi.PINNED_MAPS["ct_fwd"]
    fd = bpfsys.map_create(bpfsys.MAP_TYPE_HASH, "ct_fwd", 4, 4, 16)
    try:
        bpfsys.obj_pin(fd, start.pin_dir / file)
    finally:
        os.close(fd)

    proc = start.run(with_tcp_weights(1, 0, 0))
    assert proc.wait(timeout=120) == 1, start.stderr.read_text()
    text = start.stderr.read_text()
    assert "Traceback" not in text, text
    (line,) = [line for line in text.splitlines() if not line.startswith("{")]
    assert line.startswith("error: ") and f"{start.pin_dir / file}: pinned map has key/value size" in line, text
    # Nothing programmed: no program pinned or attached, no map but the foreign one.
    assert sorted(p.name for p in start.pin_dir.iterdir()) == [file]
    with NetNS(net.gw.ns) as ipr:
        (link,) = ipr.link("get", index=net.gw.front_ifindex)
    xdp = link.get_attr("IFLA_XDP")
    assert xdp is None or not xdp.get_attr("IFLA_XDP_PROG_ID"), xdp
    assert not start.events("attached") and not start.events("reconciled")


def test_a_refused_first_configuration_is_reported_and_nothing_reaches_the_maps(net, start):
    bad = with_tcp_weights(1, 0, 0)
    bad["30-routes.yaml"] = bad["30-routes.yaml"].replace("spec:\n", "spec:\n  bogus: true\n", 1)
    proc = start.run(bad)
    start.wait(lambda: start.events("rejected"), "a rejected event")
    (rejected,) = start.events("rejected")
    for fragment in ("30-routes.yaml", "TCPRoute default/db", "spec.bogus: unknown field"):
        assert fragment in rejected["problem"], rejected
    # The programs are in the kernel and on the interface, as before; the maps are empty.
    assert [a.hook for a in loader.our_attachments(start.pin_dir, net.gw.ns) if a.interface == "front"] == ["xdp"]
    with PinnedMaps.open(start.pin_dir) as maps:
        assert reader.read_actual(maps).frontends == {}
    assert start.readyz() == 503
    assert proc.poll() is None

    # The fixed file is programmed, and only then is the agent ready.
    (start.config / "30-routes.yaml").write_text(with_tcp_weights(1, 0, 0)["30-routes.yaml"])
    start.wait(lambda: start.events("reconciled"), "the reconcile of the fixed file")
    start.wait(lambda: start.readyz() == 200, "/readyz 200", timeout=30)
    with PinnedMaps.open(start.pin_dir) as maps:
        assert reader.read_actual(maps).frontends
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "Traceback" not in start.stderr.read_text()
