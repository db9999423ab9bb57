"""One-host demo: the gateway's main job on this machine, no cluster needed.

Builds a client, a gateway and three backends in network namespaces, runs the agent
(`gwctl run`) on the gateway with examples/standalone as its config directory, sends
real TCP and UDP traffic through the kernel data path, shows the split it measured
against the weights, edits a route live, sends HTTP through Envoy (an HTTPRoute with a
weighted split and a header match), and shows `gwctl` views. Removes everything
at the end. Run with `make demo` (as root)."""

from __future__ import annotations

import json
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
from l7sidecar.envoy import RunPaths, stop_envoy
from lab import netlab
from lab.echo import drain

ROOT = Path(__file__).resolve().parents[1]

EXAMPLES = ROOT / "examples" / "standalone"
L7_EXAMPLES = ROOT / "examples" / "l7"
L7_REQUESTS = 400
CONNECTIONS = 500
API_PORT = 9480


def main() -> int:
    console = Console(width=max(Console().width, 120))
    console.rule("[bold]xdp-gateway demo: Gateway API L4 routes served by XDP in the kernel")
    with netlab.lab(backends=3) as net, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config"
        shutil.copytree(EXAMPLES, config)
        for manifest in L7_EXAMPLES.glob("*.yaml"):
            shutil.copy(manifest, config)
        pin_dir = Path(f"/sys/fs/bpf/{net.prefix}")
        api = f"http://{net.gw.front_v4}:{API_PORT}"
        console.print(f"1. Namespaces: client {net.client.v4}, a gateway, backends "
                      + ", ".join(f"{b.name} {b.v4}" for b in net.backends)
                      + " (each answers with its name and the source address it saw).")
        net.start_servers(tcp_ports=(8080,), udp_ports=(5353,))
        for backend, service in zip(net.backends[:2], ("web-a", "web-b")):
            echo = net.popen(backend.ns, net.python_argv("lab.echo", "--pod", f"{service}-0:default:{backend.v4}",
                                                         "--http", 3000),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            echo.stdout.readline()  # "ready"
            drain(echo.stdout)

        console.print(f"2. Agent: gwctl run --config {EXAMPLES.relative_to(ROOT)} (+ {L7_EXAMPLES.relative_to(ROOT)}) on the gateway's "
                      f"interfaces (front, be0-be2), gateway address {net.vip4}.")
        log = open(Path(tmp) / "agent.log", "w")
        agent = net.popen(net.gw.ns, [sys.executable, "-m", "ctl.cli", "run", "--config", config,
                                      "-i", "front", *[a for b in net.backends for a in ("-i", b.gw_ifname)],
                                      "--address", net.vip4, "--pin-dir", pin_dir,
                                      "--listen", f"{net.gw.front_v4}:{API_PORT}"],
                          host_mounts=True, stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_ready(net, agent, Path(tmp) / "agent.log")
            _wait_programmed(net, api)
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

            console.print(f"5. L7: the Gateway web's HTTP listener {net.vip4}:8000 is served by Envoy, which "
                          "the agent started and configures over xDS (it is Programmed once Envoy ACKed it). "
                          f"{L7_REQUESTS} HTTP requests on one keep-alive connection, then 50 with x-canary: yes:")
            plain = _http(net, f"http://{net.vip4}:8000/", L7_REQUESTS)
            canary = _http(net, f"http://{net.vip4}:8000/", 50, "--header", "x-canary:yes")
            table = Table(title="   HTTPRoute default/shop through Envoy", title_justify="left")
            for col in ("REQUESTS", "BACKEND POD", "WEIGHT SHARE", "MEASURED", "COUNT"):
                table.add_column(col)
            for label, report, total, weights in (("plain", plain, L7_REQUESTS, {"web-a-0": 0.8, "web-b-0": 0.2}),
                                                   ("x-canary: yes", canary, 50, {"web-a-0": 0.0, "web-b-0": 1.0})):
                for pod, weight in weights.items():
                    got = report["pods"].get(pod, 0)
                    table.add_row(label, pod, f"{weight:.0%}", f"{got / total:.1%}", str(got))
                table.add_section()
            console.print(table)
            seen = plain["first"]["body"]["headers"].get("X-Forwarded-For", ["?"])[0]
            console.print(f"   status codes {plain['codes']} {canary['codes']}; the backends saw X-Forwarded-For: "
                          f"{seen} (the client's own address)")
            _gwctl(console, net, "get", "routes", "-A", "--agent", api)

            console.print("6. What the kernel is doing (gwctl status reads the pinned BPF maps "
                          "directly; it works with the agent down):")
            status = subprocess.run([sys.executable, "-m", "ctl.cli", "status", "--pin-dir", pin_dir],
                                    cwd=ROOT, capture_output=True, text=True,
                                    env={"COLUMNS": "180", "PATH": "/usr/bin:/bin"})
            sys.stdout.write(status.stdout or status.stderr)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=20)
            stop_envoy(RunPaths(Path("/run") / pin_dir.name))  # Envoy outlives agents by design
            shutil.rmtree(Path("/run") / pin_dir.name, ignore_errors=True)
            shutil.rmtree(pin_dir, ignore_errors=True)
    console.rule("done: agent stopped, namespaces, links and pinned maps removed")
    return 0


def _wait_ready(net, agent, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"the agent exited:\n{log.read_text()}")
        probe = net.run_client("http-get", "--addr", net.gw.front_v4, "--port", API_PORT, "--path", "/readyz")
        if probe.get("status") == 200:
            return
        time.sleep(0.3)
    raise SystemExit(f"the agent did not become ready:\n{log.read_text()}")


def _wait_programmed(net, api: str, timeout: float = 60) -> None:
    """Until Envoy has ACKed the HTTP listener (the Gateway web's listener is Programmed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = net.run(net.client.ns, [sys.executable, "-m", "ctl.cli", "get", "gateways", "-o", "json",
                                        "--agent", api], check=False)
        if done.returncode == 0:
            web = [g for g in json.loads(done.stdout) if g["metadata"]["name"] == "web"]
            listeners = web[0]["status"].get("listeners", []) if web else []
            if listeners and all(c["status"] == "True" for entry in listeners for c in entry["conditions"]
                                 if c["type"] == "Programmed"):
                return
        time.sleep(0.5)
    raise SystemExit("Envoy did not program the HTTP listener in time")


def _http(net, url: str, count: int, *args: str) -> dict:
    done = net.run(net.client.ns, net.python_argv("lab.httpclient", "spread", "--url", url, "--count", count, *args),
                   timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


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
