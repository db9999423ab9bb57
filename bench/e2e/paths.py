"""The four ways of serving the VIP (xdp, tc, nftables, Envoy) and the diagnostics
(xdp-dnat; route, the bound: nothing on gw but its routes): entering and leaving each
one, and proving it is alone on gw."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from .topology import Topology, _processes_in_netns, _xdp_attached
from .settings import CPS_BE_PORT, CPS_VIP_PORT, ENVOY_CONCURRENCY, NFT_TABLE


class PeerPaths(Topology):
    # -- switching paths --------------------------------------------------------------

    def enter(self, path: str) -> None:
        from ctl.dataplane.loader import XdpMode

        assert self.current is None, self.current
        self.current = path
        if path == "xdp-dnat":
            self.program(cps_dnat=True)
        if path in ("xdp", "xdp-dnat"):
            for _, ifindex in self.gw_ifaces:
                mode = self.dataplane.attach_xdp(ifindex, XdpMode.NATIVE, netns=self.gw.ns)
                assert mode is XdpMode.NATIVE
            self.lab.attach_xdp_pass(self.pass_fd)
        elif path == "tc":
            for _, ifindex in self.gw_ifaces:
                self.dataplane.attach_tc(ifindex, netns=self.gw.ns)
        elif path == "nft":
            self.lab.run(self.gw.ns, ["nft", "-f", self.nft_file])
        elif path == "envoy":
            self.lab.run(self.gw.ns, ["ip", "addr", "add", f"{self.vip}/32", "dev", "lo"])
            self.envoy = self.lab.popen(
                self.gw.ns, [Path(sys.executable).parent / "envoy", "-c", self.envoy_config,
                             "--concurrency", ENVOY_CONCURRENCY, "--disable-hot-restart",
                             "-l", "warning", "--log-path", self.tmp / "envoy.log"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.wait_envoy_ready()
        elif path != "route":  # route: nothing to set up, gw only forwards
            raise ValueError(path)
        self.verify_alone(path)
        self.warm_up()

    def leave(self) -> None:
        from ctl.dataplane import loader

        path, self.current = self.current, None
        if path in ("xdp", "xdp-dnat"):
            for _, ifindex in self.gw_ifaces:
                loader.detach(ifindex, netns=self.gw.ns)
            self.lab.detach_xdp_pass()
            self.flush_dataplane_flows()
            if path == "xdp-dnat":
                self.program(cps_dnat=False)
        elif path == "tc":
            for _, ifindex in self.gw_ifaces:
                loader.detach(ifindex, netns=self.gw.ns)
                with contextlib.suppress(Exception):
                    self.ipr[self.gw.ns].tc("del", "clsact", ifindex)
            self.flush_dataplane_flows()
        elif path == "nft":
            self.lab.run(self.gw.ns, ["nft", "delete", "table", "ip", NFT_TABLE], check=False)
        elif path == "envoy":
            if self.envoy is not None:
                self.envoy.terminate()
                try:
                    self.envoy.wait(10)
                except subprocess.TimeoutExpired:
                    self.envoy.kill()
                    self.envoy.wait()
                self.envoy = None
            self.lab.run(self.gw.ns, ["ip", "addr", "del", f"{self.vip}/32", "dev", "lo"], check=False)
        self.forget_connections()

    def forget_connections(self) -> None:
        """Remove what the connections of the last path left in the endpoints' kernels.

        Sockets in TIME_WAIT on the backends (the HTTP server closes first) would otherwise
        meet the next path's SYNs: with another gateway behind the same SNAT address, a
        SYN for a tuple still in TIME_WAIT is refused by PAWS (TcpExtPAWSTimewait) and the
        client retries a second later, so a path would pay for its predecessor."""
        for ns in self.lab.namespaces:
            self.lab.run(ns, ["ss", "-K", "-Htan", "state", "time-wait"], check=False)
        self.flush_conntrack()

    def flush_dataplane_flows(self) -> int:
        """Empty xdp-gateway's conntrack (both paths share the pinned maps), so that the
        next path starts without flows, or SNAT ports, held by this one."""
        from ctl.dataplane.pinned import PinnedMaps

        flushed = 0
        with PinnedMaps.open(self.pin_dir) as maps:
            for name in ("ct_fwd", "ct_rev"):
                for key in maps.keys(name):
                    flushed += maps.delete(name, key)
        return flushed

    def conntrack_count(self) -> int | None:
        done = self.lab.run(self.gw.ns, ["cat", "/proc/sys/net/netfilter/nf_conntrack_count"], check=False)
        return int(done.stdout) if done.returncode == 0 and done.stdout.strip().isdigit() else None

    def flush_conntrack(self) -> None:
        self.lab.run(self.gw.ns, [sys.executable, "-c",
                                  "from pyroute2 import Conntrack\nwith Conntrack() as c: c.flush()"],
                     check=False)

    def wait_envoy_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.envoy.poll() is not None:
                log = (self.tmp / "envoy.log").read_text() if (self.tmp / "envoy.log").exists() else ""
                raise RuntimeError(f"envoy exited with {self.envoy.returncode}: {log[-2000:]}")
            with contextlib.suppress(OSError):
                if self.envoy_get("/ready").strip() == "LIVE":
                    return
            time.sleep(0.1)
        raise TimeoutError("envoy did not get ready")

    def envoy_get(self, path: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.envoy_admin))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if b"transfer-encoding: chunked" in head.lower():
            chunks = b""
            while body:
                size, _, rest = body.partition(b"\r\n")
                n = int(size.split(b";")[0] or b"0", 16)
                if n == 0:
                    break
                chunks, body = chunks + rest[:n], rest[n + 2:]
            body = chunks
        return body.decode()

    def envoy_stats(self, pattern: str) -> dict[str, int]:
        if self.envoy is None:
            return {}
        out = {}
        for line in self.envoy_get(f"/stats?filter={pattern}").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name] = int(value)
        return out

    def state(self) -> dict:
        """What is attached or running that any path could have left behind."""
        gw_xdp, gw_clsact = {}, {}
        for name, ifindex in self.gw_ifaces:
            gw_xdp[name] = _xdp_attached(self.ipr[self.gw.ns], ifindex)
            qdiscs = json.loads(self.lab.run(self.gw.ns, ["tc", "-j", "qdisc", "show", "dev", name]).stdout or "[]")
            gw_clsact[name] = any(q.get("kind") == "clsact" for q in qdiscs)
        far_xdp = {f"{ns}/{ifname}": _xdp_attached(self.ipr[ns], ifindex)
                   for ns, ifname, ifindex in self.far_ends}
        ruleset = self.lab.run(self.gw.ns, ["nft", "list", "ruleset"]).stdout.strip()
        vip_on_gw = any(a.get_attr("IFA_ADDRESS") == str(self.vip)
                        for a in self.ipr[self.gw.ns].get_addr(family=socket.AF_INET))
        return {"gw_xdp": gw_xdp, "gw_clsact": gw_clsact, "far_xdp": far_xdp,
                "nft_rules": bool(ruleset), "vip_on_gw": vip_on_gw,
                "envoy_pids": _processes_in_netns(self.gw.ns, "envoy")}

    def verify_alone(self, path: str | None) -> None:
        """Raises unless exactly `path` (None: nothing) is set up on the lab."""
        s = self.state()
        problems = []
        want_xdp = "xdp" if path in ("xdp", "xdp-dnat") else None
        if any(v != want_xdp for v in s["gw_xdp"].values()):
            problems.append(f"gw XDP {s['gw_xdp']}")
        if any(v != want_xdp for v in s["far_xdp"].values()):
            problems.append(f"far-end XDP {s['far_xdp']}")
        if any(v != (path == "tc") for v in s["gw_clsact"].values()):
            problems.append(f"gw clsact {s['gw_clsact']}")
        if s["nft_rules"] != (path == "nft"):
            problems.append(f"nft rules present: {s['nft_rules']}")
        if s["vip_on_gw"] != (path == "envoy"):
            problems.append(f"VIP on gw: {s['vip_on_gw']}")
        if bool(s["envoy_pids"]) != (path == "envoy") or (path == "envoy" and len(s["envoy_pids"]) != 1):
            problems.append(f"envoy processes in gw: {s['envoy_pids']}")
        if problems:
            raise RuntimeError(f"path {path} is not alone on gw: " + "; ".join(problems))

    def warm_up(self) -> None:
        """Resolve gw's neighbours and check the path answers before measuring."""
        for b in self.cps_backends:  # from gw itself: resolves its neighbour entries
            self.lab.run(self.gw.ns, ["curl", "-s", "-m", "5", f"http://{b.v4}:{CPS_BE_PORT}/"])
        for url in self.cps_urls():
            for _ in range(3):
                out = self.lab.run(self.lab.client.ns, ["curl", "-s", "-m", "5", url], check=False).stdout
                if out == "ok":
                    break
                time.sleep(0.5)
            else:
                raise RuntimeError(f"path {self.current}: no HTTP answer from {url}")

    def cps_urls(self) -> list[str]:
        """Where tcp-cps connects: the VIP, or on the route path each backend itself."""
        if self.current == "route":
            return [f"http://{b.v4}:{CPS_BE_PORT}/" for b in self.cps_backends]
        return [f"http://{self.vip}:{CPS_VIP_PORT}/"]
