"""L7 through a gateway namespace: xdp-gateway's Envoy handoff vs plain Envoy vs nginx.

    client --veth-- gw --veth-- be0 (nginx answering "ok" on :8080, keep-alive)

One topology (lab/netlab.py), one VIP and the same ports (80, 443) from the client's
point of view, three proxies in gw, each alone on gw while it is measured and all
measured in turn in the same run (interleaved rounds, the order rotating each round):

    xdpgw  `gwctl run` with a Gateway (HTTP :80, HTTPS :443) and an HTTPRoute: the kernel
           hands the VIP's ports to the Envoy the agent starts and configures over xDS
    envoy  Envoy configured by hand as Envoy Gateway would: static bootstrap, a listener
           per port with the HTTP connection manager, one route, one STATIC cluster;
           the VIP is assigned to gw's lo for this path
    nginx  Debian's nginx as a reverse proxy (keep-alive upstream pool), private config,
           pid and logs in a temp dir; the VIP on gw's lo as for envoy
    rendered  attribution: Envoy started as for envoy, but with the very listeners, routes,
           clusters and certificate xdp-gateway renders for the same Gateway and HTTPRoute,
           made static (no agent, no xDS, no kernel handoff). xdpgw against rendered is
           the cost of the handoff and the agent; rendered against envoy that of the config

Workloads, measured with wrk --latency from the client namespace (completed requests,
never what was sent):

    keepalive  HTTP/1.1, persistent connections
    close      HTTP/1.1 with `Connection: close`: a new connection per request
    https      HTTPS (TLS terminated by the proxy), persistent connections

Each reports requests/s, p50/p99 latency, and the CPU time the path's processes (the
agent and its Envoy; Envoy; nginx's master and workers) used per completed request,
read from /proc around each wrk run.

    sudo .venv/bin/python -m bench.l7 [--quick] [--only keepalive|nginx|'https envoy']
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import grouped_bars, main_for, rerun, row, summary

PART = "l7"
TITLE = "L7 through a gateway namespace: xdp-gateway's Envoy handoff vs plain Envoy vs nginx"

PATHS = ("xdpgw", "envoy", "nginx", "rendered")
PATH_LABELS = {
    "xdpgw": "xdp-gateway (Envoy via handoff)",
    "envoy": "plain Envoy (static, by hand)",
    "nginx": "nginx reverse proxy",
    "rendered": "plain Envoy given xdp-gateway's rendered config",
}
WORKLOADS = ("keepalive", "close", "https")
WORKLOAD_LABELS = {
    "keepalive": "HTTP/1.1 keep-alive",
    "close": "HTTP/1.1 new connection per request",
    "https": "HTTPS keep-alive",
}
# Row metric -> (title, unit, higher is better)
METRICS = {
    "rps": ("requests per second", "requests/s", True),
    "p50": ("latency p50", "ms", False),
    "p99": ("latency p99", "ms", False),
    # CPU time the proxy's processes used per completed request: less sensitive than
    # requests/s to what else the shared machine runs (softirq time is not included).
    "cpu": ("proxy CPU per request", "µs", False),
    # Its kernel part (system time: syscalls, and the network stack when it runs in the
    # proxy's context): tells work in the proxy's own code from work in the path below it.
    "sys": ("proxy kernel CPU per request", "µs", False),
}

ROUNDS, QUICK_ROUNDS = 3, 1
SECONDS, QUICK_SECONDS = 5, 2
# A proxy just started is slower for its first second or two (workers, first upstream
# connections, TLS session setup): each path is warmed up with keep-alive traffic that
# is not recorded before its workloads are measured.
WARMUP_SECONDS = 2
WRK_THREADS, WRK_CONNECTIONS = 2, 32
HTTP_PORT, HTTPS_PORT, BACKEND_PORT = 80, 443, 8080
AGENT_API_PORT = 9480
NAMESPACE = "bench"
# A bound, not a measurement: the agent compiles its BPF programs when it starts, which
# takes a minute or more on a busy 2-core machine.
AGENT_READY_SECONDS = 420

# The same as the end-to-end bench: a connect/close loop otherwise runs out of ports.
SYSCTLS = {
    "net.ipv4.ip_local_port_range": "1024 60999",
    "net.ipv4.tcp_tw_reuse": 1,
    "net.core.somaxconn": 4096,
    "net.ipv4.tcp_max_syn_backlog": 4096,
}


def nginx_config(tmp: Path, workers: str, connections: int, http: str) -> str:
    """An nginx.conf in the foreground with every file it writes under tmp; http is the
    rest of its http block."""
    return f"""\
daemon off;
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
{http}}}
"""


BACKEND_NGINX_HTTP = """\
    server {{
        listen {address}:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "ok\\n"; }}
    }}
"""

# As Ingress NGINX configures it where it matters: worker per core, a keep-alive
# upstream pool, HTTP/1.1 upstream.
PROXY_NGINX_HTTP = """\
    upstream backend {{
        server {backend}:{backend_port};
        keepalive 320;
        keepalive_requests 1000000;
    }}
    server {{
        listen {vip}:{http_port} backlog=4096;
        listen {vip}:{https_port} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
"""


# -- wrk ----------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(text: str) -> dict:
    """requests/s, p50/p99 (ms), request and error counts from `wrk --latency` output."""
    def number(pattern: str) -> float | None:
        match = re.search(pattern, text)
        return float(match[1]) if match else None

    def percentile(p: int) -> float | None:
        match = re.search(rf"^\s*{p}(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(match[1]) * _UNITS[match[2]] if match else None

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": number(r"Requests/sec:\s+([\d.]+)") or 0.0,
        "p50": percentile(50),
        "p99": percentile(99),
        "requests": int(number(r"(\d+) requests in") or 0),
        "non_2xx": int(number(r"Non-2xx or 3xx responses:\s+(\d+)") or 0),
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


# -- the lab ------------------------------------------------------------------------------


class Bench:
    """The lab, the backend, the certificate and the three proxies; one at a time on gw."""

    def __init__(self, lab, tmp: Path):
        self.lab = lab
        self.tmp = tmp
        self.vip = str(lab.vip4)
        self.gw = lab.gw
        self.be0 = lab.backends[0]
        self.pin_dir = Path(f"/sys/fs/bpf/{lab.prefix}-l7")
        self.run_dir = Path("/run") / f"{lab.prefix}-l7"
        self.current: str | None = None
        self.procs: dict[str, subprocess.Popen] = {}

    def setup(self) -> None:
        for ns in self.lab.namespaces:
            self.lab.run(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in SYSCTLS.items())])
        self.cert, self.key = self.tmp / "tls.crt", self.tmp / "tls.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=bench.example", "-addext",
                        "subjectAltName=DNS:bench.example", "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        backend_dir = self.tmp / "backend-nginx"
        self.procs["backend"] = self.start_nginx(self.be0.ns, backend_dir, nginx_config(
            backend_dir, "1", 8192, BACKEND_NGINX_HTTP.format(address=self.be0.v4, port=BACKEND_PORT)))
        self.wait_listening(self.be0.ns, BACKEND_PORT)
        self.write_agent_config()
        self.write_envoy_bootstrap()
        self.write_rendered_bootstrap()

    # -- paths: start, verify, stop --------------------------------------------------------

    def start(self, path: str) -> None:
        assert self.current is None, self.current
        self.current = path
        if path == "xdpgw":
            self.start_agent()
        else:
            self.lab.run(self.gw.ns, ["ip", "addr", "add", f"{self.vip}/32", "dev", "lo"])
            if path in ("envoy", "rendered"):
                from l7sidecar.envoy import envoy_binary

                bootstrap = self.envoy_bootstrap if path == "envoy" else self.rendered_bootstrap
                self.procs[path] = self.lab.popen(
                    self.gw.ns, [envoy_binary(), "-c", bootstrap, "--disable-hot-restart",
                                 "--log-level", "warn"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=(self.tmp / f"{path}.log").open("w"), start_new_session=True)
            else:
                proxy_dir = self.tmp / "proxy-nginx"
                self.procs[path] = self.start_nginx(self.gw.ns, proxy_dir, nginx_config(
                    proxy_dir, "auto", 16384, PROXY_NGINX_HTTP.format(
                        backend=self.be0.v4, backend_port=BACKEND_PORT, vip=self.vip, http_port=HTTP_PORT,
                        https_port=HTTPS_PORT, cert=self.cert, key=self.key)))
        self.verify(path)

    def verify(self, path: str, timeout: float = 60) -> None:
        """Both ports answer 200 from the backend before anything is measured."""
        deadline = time.monotonic() + (AGENT_READY_SECONDS if path == "xdpgw" else timeout)
        urls = (f"http://{self.vip}:{HTTP_PORT}/", f"https://{self.vip}:{HTTPS_PORT}/")
        last = ""
        while time.monotonic() < deadline:
            proc = self.procs.get(path)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{path} exited {proc.returncode}: {self.log_tail(path)}")
            codes = []
            for url in urls:
                done = self.lab.run(self.lab.client.ns, ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                                                         "--max-time", "2", url], check=False)
                codes.append(done.stdout.strip())
            if codes == ["200", "200"]:
                return
            last = f"{urls} answered {codes}"
            time.sleep(0.5)
        raise TimeoutError(f"{path} does not serve: {last}; {self.log_tail(path)}")

    def stop(self) -> None:
        path, self.current = self.current, None
        if path == "xdpgw":
            self.stop_agent()
        elif path is not None:
            proc = self.procs.pop(path, None)
            if proc is not None:
                _terminate(proc, signal.SIGQUIT if path == "nginx" else signal.SIGTERM)
            self.lab.run(self.gw.ns, ["ip", "addr", "del", f"{self.vip}/32", "dev", "lo"], check=False)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        backend = self.procs.pop("backend", None)
        if backend is not None:
            _terminate(backend, signal.SIGQUIT)

    # -- xdp-gateway -----------------------------------------------------------------------

    def write_agent_config(self) -> None:
        self.config_dir = self.tmp / "config"
        self.config_dir.mkdir()
        b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
        docs = [
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "xdp-gateway"},
             "spec": {"controllerName": "xdp-gateway.io/gateway-controller"}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": {"name": "bench-tls", "namespace": NAMESPACE},
             "data": {"tls.crt": b64(self.cert), "tls.key": b64(self.key)}},
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
             "metadata": {"name": "web", "namespace": NAMESPACE},
             "spec": {"gatewayClassName": "xdp-gateway", "listeners": [
                 {"name": "http", "protocol": "HTTP", "port": HTTP_PORT},
                 {"name": "https", "protocol": "HTTPS", "port": HTTPS_PORT,
                  "tls": {"mode": "Terminate", "certificateRefs": [{"name": "bench-tls"}]}}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend", "namespace": NAMESPACE},
             "spec": {"ports": [{"name": "http", "port": BACKEND_PORT, "targetPort": BACKEND_PORT, "protocol": "TCP"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "backend-1", "namespace": NAMESPACE,
                          "labels": {"kubernetes.io/service-name": "backend"}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": BACKEND_PORT, "protocol": "TCP"}],
             "endpoints": [{"addresses": [str(self.be0.v4)], "conditions": {"ready": True}}]},
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "backend", "namespace": NAMESPACE},
             "spec": {"parentRefs": [{"name": "web"}],
                      "rules": [{"backendRefs": [{"name": "backend", "port": BACKEND_PORT}]}]}},
        ]
        (self.config_dir / "bench.yaml").write_text("\n---\n".join(json.dumps(d) for d in docs))

    def start_agent(self) -> None:
        net = self.lab
        argv = [sys.executable, "-m", "ctl.cli", "run", "--config", self.config_dir,
                "--interface", self.gw.front_ifname,
                *[a for b in net.backends for a in ("--interface", b.gw_ifname)],
                "--address", self.vip, "--pin-dir", self.pin_dir, "--run-dir", self.run_dir,
                "--listen", f"127.0.0.1:{AGENT_API_PORT}"]
        self.procs["xdpgw"] = net.popen(self.gw.ns, argv, host_mounts=True, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=(self.tmp / "agent.log").open("w"))

    def stop_agent(self) -> None:
        from ctl.dataplane import loader
        from l7sidecar.envoy import RunPaths, stop_envoy

        proc = self.procs.pop("xdpgw", None)
        try:
            if proc is not None:
                _terminate(proc, signal.SIGTERM)
        finally:
            # The agent leaves the data path and Envoy running on purpose (restarts keep
            # serving); the next path must find gw as it was.
            stop_envoy(RunPaths(self.run_dir))
            shutil.rmtree(self.run_dir, ignore_errors=True)
            for ifindex in [self.gw.front_ifindex] + [b.gw_ifindex for b in self.lab.backends]:
                with contextlib.suppress(Exception):
                    loader.detach(ifindex, netns=self.gw.ns)
            shutil.rmtree(self.pin_dir, ignore_errors=True)
            self.lab.run(self.gw.ns, ["ip", "route", "flush", "table", "local", "proto", "88"], check=False)

    # -- plain Envoy -----------------------------------------------------------------------

    def write_envoy_bootstrap(self) -> None:
        """What Envoy Gateway would give Envoy for one HTTPRoute on an HTTP and an HTTPS
        listener: HCM with the router, one route, one cluster (here STATIC, not EDS)."""
        def hcm(stat_prefix: str) -> dict:
            return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": stat_prefix,
                "use_remote_address": True,
                "normalize_path": True,
                "merge_slashes": True,
                "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
                "route_config": {"name": stat_prefix, "virtual_hosts": [{
                    "name": "backend", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}

        def listener(name: str, port: int, tls: bool) -> dict:
            chain: dict = {"filters": [hcm(name)]}
            if tls:
                chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "common_tls_context": {"tls_certificates": [{
                        "certificate_chain": {"filename": str(self.cert)},
                        "private_key": {"filename": str(self.key)}}]}}}
            return {"name": name, "address": {"socket_address": {"address": self.vip, "port_value": port}},
                    "per_connection_buffer_limit_bytes": 32768, "filter_chains": [chain]}

        self.envoy_bootstrap = self.tmp / "envoy.json"
        self.envoy_bootstrap.write_text(json.dumps({
            "admin": {"address": {"pipe": {"path": str(self.tmp / "envoy-admin.sock")}}},
            "static_resources": {
                "listeners": [listener("http", HTTP_PORT, False), listener("https", HTTPS_PORT, True)],
                "clusters": [{
                    "name": "backend", "type": "STATIC", "connect_timeout": "10s", "lb_policy": "LEAST_REQUEST",
                    "per_connection_buffer_limit_bytes": 32768,
                    "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {
                        "address": {"socket_address": {"address": str(self.be0.v4), "port_value": BACKEND_PORT}}}}]}]},
                }],
            },
        }, indent=1))

    def write_rendered_bootstrap(self) -> None:
        """xdp-gateway's own rendering of the agent's config, as static resources: each
        RDS reference replaced by its route table, each EDS cluster by a STATIC one with
        the endpoints EDS would send, each SDS certificate by the certificate itself."""
        from datetime import UTC, datetime
        from ipaddress import ip_address

        from google.protobuf import json_format

        from ctl.sources import load_directory
        from ctl.translate import TranslateConfig, translate
        from l7sidecar import render as l7render

        loaded = load_directory(self.config_dir)
        translation = translate(loaded.snapshot, TranslateConfig(
            now=datetime.now(UTC), addresses=(ip_address(self.vip),), snat_addresses=(self.gw.front_v4,)))
        rendered = l7render.render(translation.l7)

        def of_type(type_url: str) -> dict[str, dict]:
            return {name: json_format.MessageToDict(message) for name, message in rendered.of_type(type_url).items()}

        routes, endpoints = of_type(l7render.ROUTE_TYPE), of_type(l7render.ENDPOINT_TYPE)
        secrets = of_type(l7render.SECRET_TYPE)
        clusters = []
        for name, cluster in of_type(l7render.CLUSTER_TYPE).items():
            cluster.pop("edsClusterConfig", None)
            clusters.append({**cluster, "type": "STATIC", "loadAssignment": endpoints[name]})
        listeners = list(of_type(l7render.LISTENER_TYPE).values())
        for listener in listeners:
            for chain in listener.get("filterChains", []):
                for network_filter in chain.get("filters", []):
                    config = network_filter["typedConfig"]
                    if "rds" in config:
                        config["routeConfig"] = routes[config.pop("rds")["routeConfigName"]]
                tls = chain.get("transportSocket", {}).get("typedConfig", {}).get("commonTlsContext")
                if tls and "tlsCertificateSdsSecretConfigs" in tls:
                    tls["tlsCertificates"] = [secrets[ref["name"]]["tlsCertificate"]
                                              for ref in tls.pop("tlsCertificateSdsSecretConfigs")]
        self.rendered_bootstrap = self.tmp / "rendered.json"
        self.rendered_bootstrap.write_text(json.dumps({
            "admin": {"address": {"pipe": {"path": str(self.tmp / "rendered-admin.sock")}}},
            "staticResources": {"listeners": listeners, "clusters": clusters},
        }, indent=1))

    # -- helpers ---------------------------------------------------------------------------

    def start_nginx(self, ns: str, directory: Path, config: str) -> subprocess.Popen:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "nginx.conf").write_text(config)
        return self.lab.popen(ns, ["nginx", "-p", directory, "-e", directory / "error.log",
                                   "-c", directory / "nginx.conf"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_listening(self, ns: str, port: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.lab.run(ns, ["ss", "-Hlnt", f"sport = :{port}"]).stdout.strip():
                return
            time.sleep(0.1)
        raise TimeoutError(f"nothing listens on tcp/{port} in {ns}")

    def log_tail(self, path: str) -> str:
        log = {"xdpgw": self.tmp / "agent.log", "envoy": self.tmp / "envoy.log",
               "rendered": self.tmp / "rendered.log", "nginx": self.tmp / "proxy-nginx" / "error.log"}[path]
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"

    def proxy_pids(self) -> list[int]:
        """The current path's processes: the agent and its Envoy, or the proxy."""
        from l7sidecar.envoy import RunPaths, running_envoy

        pids = [proc.pid for name, proc in self.procs.items() if name == self.current]
        if self.current == "xdpgw":
            pids += [pid for pid in (running_envoy(RunPaths(self.run_dir)),) if pid is not None]
        return pids

    def wrk(self, workload: str, seconds: float, threads: int, connections: int) -> dict:
        scheme, port = ("https", HTTPS_PORT) if workload == "https" else ("http", HTTP_PORT)
        argv = ["wrk", "-t", threads, "-c", connections, "-d", f"{seconds}s", "--latency"]
        if workload == "close":
            argv += ["-H", "Connection: close"]
        pids = self.proxy_pids()
        user_before, sys_before = _process_cpu_seconds(pids)
        done = self.lab.run(self.lab.client.ns, [*argv, f"{scheme}://{self.vip}:{port}/"], timeout=seconds + 60)
        user_after, sys_after = _process_cpu_seconds(pids)
        cpu, kernel = (user_after - user_before) + (sys_after - sys_before), sys_after - sys_before
        figures = parse_wrk(done.stdout)
        per_request = (lambda seconds: seconds * 1e6 / figures["requests"]
                       if figures["requests"] and cpu > 0 else None)
        return {**figures, "cpu": per_request(cpu), "sys": per_request(kernel), "cpu_seconds": cpu,
                "output": done.stdout}


def _process_cpu_seconds(roots: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of the processes roots and all their descendants."""
    import os

    parents: dict[int, int] = {}
    times: dict[int, tuple[float, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) / tick, int(fields[12]) / tick)
    wanted, frontier = set(), [r for r in roots if r in times]
    while frontier:
        pid = frontier.pop()
        if pid not in wanted:
            wanted.add(pid)
            frontier += [child for child, parent in parents.items() if parent == pid]
    return sum(times[pid][0] for pid in wanted), sum(times[pid][1] for pid in wanted)


def _terminate(proc: subprocess.Popen, sig: int, grace: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the run ------------------------------------------------------------------------------


def selected(only: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`--only` names a workload, a path, or 'workload path'."""
    workloads, paths = WORKLOADS, PATHS
    for word in (only or "").split():
        if word in WORKLOADS:
            workloads = (word,)
        elif word in PATHS:
            paths = (word,)
        else:
            raise SystemExit(f"--only: {word!r} is neither a workload {WORKLOADS} nor a path {PATHS}")
    return workloads, paths


def run(quick: bool = False, only: str | None = None, rounds: int | None = None, seconds: float | None = None,
        threads: int = WRK_THREADS, connections: int = WRK_CONNECTIONS) -> dict:
    from lab import netlab

    workloads, paths = selected(only)
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    seconds = seconds or (QUICK_SECONDS if quick else SECONDS)
    samples: dict[tuple[str, str], list[dict]] = {(w, p): [] for w in workloads for p in paths}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-l7-") as tmp, netlab.lab(backends=1) as lab:
        prefix = lab.prefix
        bench = Bench(lab, Path(tmp))
        try:
            bench.setup()
            for n in range(rounds):
                order = paths[n % len(paths):] + paths[:n % len(paths)]
                for path in order:
                    try:
                        bench.start(path)
                        bench.wrk("keepalive", min(WARMUP_SECONDS, seconds), threads, connections)
                        for workload in workloads:
                            sample = bench.wrk(workload, seconds, threads, connections)
                            if sample["requests"] == 0 or sample["non_2xx"]:
                                failures.append(f"round {n + 1} {workload} {path}: {sample['requests']} requests, "
                                                f"{sample['non_2xx']} not 2xx:\n{sample['output']}")
                            samples[(workload, path)].append(sample)
                    except (RuntimeError, TimeoutError, subprocess.SubprocessError) as error:
                        failures.append(f"round {n + 1} {path}: {error}")
                    finally:
                        bench.stop()
        finally:
            bench.close()
    leftovers = netlab.leftovers(prefix)
    rows = []
    for (workload, path), runs in samples.items():
        for metric, (title, unit, _) in METRICS.items():
            values = [s[metric] for s in runs if s[metric] is not None and s["requests"] > 0]
            if not values:
                continue
            rows.append(row(f"{workload} {path} {metric}", metric, unit, summary(values),
                            rerun(PART, f"{workload} {path}", quick), workload=workload, path=path,
                            socket_errors=sum(s["socket_errors"] for s in runs),
                            requests=sum(s["requests"] for s in runs)))
    return {"part": PART, "title": TITLE, "rows": rows, "rounds": rounds, "seconds": seconds,
            "threads": threads, "connections": connections, "failures": failures,
            "leftovers_after_cleanup": leftovers, "pin_dir": f"/sys/fs/bpf/{prefix}-l7",
            "notes": [f"wrk -t{threads} -c{connections} -d{seconds}s --latency from the client namespace; "
                      f"{rounds} interleaved round(s), medians over rounds"]}


# -- report -------------------------------------------------------------------------------


def _figure(result: dict, workload: str, path: str, metric: str) -> float | None:
    found = next((r for r in result["rows"] if (r["workload"], r["path"], r["metric"]) == (workload, path, metric)), None)
    return found["median"] if found else None


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if unit == "requests/s" else f"{value:.2f}"


# (path, peer, what the comparison measures)
COMPARISONS = (
    ("xdpgw", "envoy", "handoff cost against plain Envoy"),
    ("xdpgw", "nginx", "against nginx"),
    ("xdpgw", "rendered", "the handoff and the agent alone (same config, served statically)"),
    ("rendered", "envoy", "the rendered config alone (static, against the config by hand)"),
)


def ratio_sentences(result: dict) -> list[str]:
    """Each comparison stated from this run's medians, nothing else."""
    lines = []
    for workload in WORKLOADS:
        for path, peer, what in COMPARISONS:
            ours, theirs = _figure(result, workload, path, "rps"), _figure(result, workload, peer, "rps")
            if not ours or not theirs:
                continue
            change = (ours / theirs - 1) * 100
            p99_ours, p99_theirs = _figure(result, workload, path, "p99"), _figure(result, workload, peer, "p99")
            p99 = (f"; p99 {p99_ours:.2f} ms vs {p99_theirs:.2f} ms"
                   if p99_ours is not None and p99_theirs is not None else "")
            cpu_ours, cpu_theirs = _figure(result, workload, path, "cpu"), _figure(result, workload, peer, "cpu")
            if cpu_ours is not None and cpu_theirs is not None:
                p99 += f"; proxy CPU {cpu_ours:.0f} µs vs {cpu_theirs:.0f} µs per request ({cpu_ours / cpu_theirs:.2f}×)"
            sys_ours, sys_theirs = _figure(result, workload, path, "sys"), _figure(result, workload, peer, "sys")
            if sys_ours is not None and sys_theirs is not None:
                p99 += f", of which in the kernel {sys_ours:.0f} µs vs {sys_theirs:.0f} µs"
            lines.append(f"- {WORKLOAD_LABELS[workload]}, {what}: {PATH_LABELS[path]} {ours:,.0f} requests/s vs "
                         f"{theirs:,.0f} ({ours / theirs:.3f}×, {change:+.1f}%){p99}.")
    return lines


def aim_sentence(result: dict) -> str:
    """Issue 9's aims, from this run's medians: the handoff within 5% of plain Envoy, and
    at least as fast as nginx, per workload."""
    parts = []
    for peer, floor, what in (("envoy", 0.95, "the handoff within 5% of plain Envoy"),
                              ("nginx", 1.0, "at least as fast as nginx")):
        each = []
        for workload in WORKLOADS:
            ours, theirs = _figure(result, workload, "xdpgw", "rps"), _figure(result, workload, peer, "rps")
            if ours and theirs:
                ratio = ours / theirs
                each.append(f"{WORKLOAD_LABELS[workload]} {ratio:.3f}× ({'met' if ratio >= floor else 'not met'})")
        if each:
            parts.append(f"{what}: " + ", ".join(each))
    return ("Aims (issue 9), requests/s from this run: " + "; ".join(parts) + ".") if parts else ""


def markdown(result: dict) -> str:
    lines = [f"## {result['title']}", "",
             "`sudo .venv/bin/python -m bench.l7` — client, gw and a backend namespace (nginx answering "
             "`ok` with keep-alive); each proxy runs alone in gw while measured, paths interleaved "
             f"over {result['rounds']} round(s) of {result['seconds']} s per workload after an unrecorded "
             "warm-up "
             f"(wrk -t{result['threads']} -c{result['connections']} --latency). "
             "xdp-gateway: `gwctl run` with a Gateway (HTTP, HTTPS) and an HTTPRoute; plain Envoy: "
             "a static bootstrap as Envoy Gateway would render it; nginx: a reverse proxy with a "
             "keep-alive upstream pool.", ""]
    for workload in WORKLOADS:
        if not any(r["workload"] == workload for r in result["rows"]):
            continue
        lines += [f"### {WORKLOAD_LABELS[workload]}", "",
                  "| path | requests/s | p50 ms | p99 ms | proxy CPU µs/request | requests/s vs plain Envoy | vs nginx |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for path in PATHS:
            rps = _figure(result, workload, path, "rps")
            if rps is None:
                continue
            envoy, nginx = _figure(result, workload, "envoy", "rps"), _figure(result, workload, "nginx", "rps")
            lines.append(f"| {PATH_LABELS[path]} | {_fmt(rps, 'requests/s')} | "
                         f"{_fmt(_figure(result, workload, path, 'p50'), 'ms')} | "
                         f"{_fmt(_figure(result, workload, path, 'p99'), 'ms')} | "
                         f"{_fmt(_figure(result, workload, path, 'cpu'), 'requests/s')} | "
                         f"{f'{rps / envoy:.3f}×' if envoy else '—'} | {f'{rps / nginx:.3f}×' if nginx else '—'} |")
        lines.append("")
    sentences = ratio_sentences(result)
    if sentences:
        lines += ["Ratios (medians of this run):", "", *sentences, ""]
    aims = aim_sentence(result)
    if aims:
        lines += [aims, ""]
    if result.get("failures"):
        lines += [f"Failed measurements: {len(result['failures'])} (see results.json).", ""]
    return "\n".join(lines)


def charts(result: dict, outdir: Path) -> list[Path]:
    colors = {PATH_LABELS[p]: c for p, c in {"xdpgw": "#2b7bba", "envoy": "#8e44ad", "nginx": "#27ae60",
                                                    "rendered": "#c0392b"}.items()}
    written = []
    for metric, (title, unit, _) in METRICS.items():
        rows = [r for r in result["rows"] if r["metric"] == metric]
        if not rows:
            continue
        workloads = [w for w in WORKLOADS if any(r["workload"] == w for r in rows)]
        series: dict[str, dict[str, dict]] = {}
        for path in PATHS:
            for r in rows:
                if r["path"] == path:
                    series.setdefault(PATH_LABELS[path], {})[WORKLOAD_LABELS[r["workload"]]] = r
        written.append(grouped_bars(outdir / f"l7_{metric}.png", f"L7 {title} (median of rounds)", unit,
                                    [WORKLOAD_LABELS[w] for w in workloads], series, colors,
                                    lambda y, unit=unit: _fmt(y, unit)))
    return written


if __name__ == "__main__":
    main_for(PART, run)
