"""One-host demo: the gateway's main job on this machine, no cluster needed.

Builds a client, a gateway and three backends in network namespaces, runs the agent
(`gwctl run`) on the gateway with examples/standalone as its config directory, sends
real TCP and UDP traffic through the kernel data path, shows the split it measured
against the weights, edits a route live, and shows `gwctl` views. Removes everything
at the end. Run with `make demo` (as root)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from ctl.dataplane import loader
from lab import netlab

ROOT = Path(__file__).resolve().parents[1]

EXAMPLES = ROOT / "examples" / "standalone"
CONNECTIONS = 500
API_PORT = 9480


def main() -> int:
    console = Console(width=max(Console().width, 120))
    console.rule("[bold]xdp-gateway demo: Gateway API L4 routes served by XDP in the kernel")
    with netlab.lab(backends=3) as net, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config"
        shutil.copytree(EXAMPLES, config)
        pin_dir = Path(f"/sys/fs/bpf/{net.prefix}")
        api = f"http://{net.gw.front_v4}:{API_PORT}"
        console.print(f"1. Namespaces: client {net.client.v4}, a gateway, backends "
                      + ", ".join(f"{b.name} {b.v4}" for b in net.backends)
                      + " (each answers with its name and the source address it saw).")
        net.start_servers(tcp_ports=(8080,), udp_ports=(5353,))

        console.print(f"2. Agent: gwctl run --config {EXAMPLES.relative_to(ROOT)} on the gateway's "
                      f"interfaces (front, be0-be2), gateway address {net.vip4}.")
        log = open(Path(tmp) / "agent.log", "w")
        agent = net.popen(net.gw.ns, [sys.executable, "-m", "ctl.cli", "run", "--config", config,
                                      "-i", "front", *[a for b in net.backends for a in ("-i", b.gw_ifname)],
                                      "--address", net.vip4, "--pin-dir", pin_dir,
                                      "--listen", f"{net.gw.front_v4}:{API_PORT}"],
                          host_mounts=True, stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_ready(net, agent, Path(tmp) / "agent.log")
            pass_module, pass_fd = loader.compile_xdp_pass()
            net.attach_xdp_pass(pass_fd)
            console.print("   The agent validated the manifests, translated them and programmed the "
                          "BPF maps. What it reports (gwctl get, from the agent's API):")
            _gwctl(console, net, "get", "gateways", "--agent", api)
            _gwctl(console, net, "get", "routes", "-A", "--agent", api)

            console.print(f"3. Traffic: {CONNECTIONS} new TCP connections to {net.vip4}:80 and "
                          f"{CONNECTIONS} UDP datagrams to {net.vip4}:53, each from a new source port. "
                          "The address exists on no interface: only the XDP program answers for it.")
            tcp = net.run_client("tcp-spread", "--addr", net.vip4, "--port", 80, "--count", CONNECTIONS, timeout=300)
            udp = net.run_client("udp-spread", "--addr", net.vip4, "--port", 53, "--count", CONNECTIONS, timeout=300)
            _split(console, [("TCPRoute default/db", tcp, (70, 30, 0)), ("UDPRoute default/dns", udp, (50, 50, 0))], net)
            peers = sorted({p for ps in tcp["seen_peers"].values() for p in ps})
            console.print(f"   refused={tcp['refused']} timeouts={tcp['timeout'] + udp['timeout']}; the backends "
                          f"saw the source {peers}: the gateway's address (SNAT).")

            console.print("4. Live edit: the TCPRoute's weights become 0/0/100 (be-c takes all new "
                          "connections); one second later:")
            _set_tcp_weights(config / "30-routes.yaml", (0, 0, 100))
            time.sleep(1.0)
            after = net.run_client("tcp-spread", "--addr", net.vip4, "--port", 80, "--count", 100, timeout=120)
            _split(console, [("TCPRoute default/db (edited)", after, (0, 0, 100))], net, count=100)

            console.print("5. What the kernel is doing (gwctl status reads the pinned BPF maps "
                          "directly; it works with the agent down):")
            status = subprocess.run([sys.executable, "-m", "ctl.cli", "status", "--pin-dir", pin_dir],
                                    cwd=ROOT, capture_output=True, text=True,
                                    env={"COLUMNS": "180", "PATH": "/usr/bin:/bin"})
            sys.stdout.write(status.stdout or status.stderr)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=20)
            shutil.rmtree(pin_dir, ignore_errors=True)
    console.rule("done: agent stopped, namespaces, links and pinned maps removed")
    return 0


def _wait_ready(net, agent, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"the agent exited:\n{log.read_text()}")
        probe = net.run_client("http-get", "--addr", net.gw.front_v4, "--port", API_PORT, "--path", "/readyz")
        if probe.get("status") == 200:
            return
        time.sleep(0.3)
    raise SystemExit(f"the agent did not become ready:\n{log.read_text()}")


def _gwctl(console: Console, net, *args: str) -> None:
    done = net.run(net.client.ns, [sys.executable, "-m", "ctl.cli", *args], check=False,
                   env={"COLUMNS": str(console.width), "PATH": "/usr/bin:/bin"})
    console.print("   $ gwctl " + " ".join(a for a in args if not a.startswith("http")).replace(" --agent", ""), style="dim")
    console.print(done.stdout or done.stderr, highlight=False, markup=False)


def _split(console: Console, rows, net, count: int = CONNECTIONS) -> None:
    table = Table(title="   Measured split vs. configured weights", title_justify="left")
    for col in ("ROUTE", "BACKEND", "WEIGHT SHARE", "MEASURED", "COUNT"):
        table.add_column(col)
    for route, report, weights in rows:
        for i, b in enumerate(net.backends):
            got = report["counts"].get(b.name, 0)
            table.add_row(route, f"{b.name} {b.v4}", f"{weights[i] / sum(weights):.0%}", f"{got / count:.1%}", str(got))
        table.add_section()
    console.print(table)


def _set_tcp_weights(path: Path, weights) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    route = next(d for d in docs if d["kind"] == "TCPRoute")
    for ref, weight in zip(route["spec"]["rules"][0]["backendRefs"], weights):
        ref["weight"] = weight
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


if __name__ == "__main__":
    sys.exit(main())
