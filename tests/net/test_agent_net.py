"""Network tier with the agent in standalone mode (`gwctl run`): real traffic through
the Gateway API scenarios, live edits of the config directory, and gwctl against a
running agent.

One agent serves the whole module; each test swaps the files of its config directory,
which is also how a user changes it."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ctl.dataplane import loader
from l7sidecar.envoy import RunPaths, stop_envoy

from lab import netlab
from lab.client import share_mismatches
from lab.examples import example_files, with_tcp_weights
from .test_dataplane_net import _missing

pytestmark = pytest.mark.net
ROOT = netlab.PROJECT_ROOT
GOLDEN = ROOT / "tests" / "golden"
API_PORT = 9480
TOLERANCE = 0.05


class Agent:
    """`gwctl run` in the gateway namespace, watched through its HTTP API."""

    def __init__(self, net: netlab.Lab, config_dir: Path, log_path: Path):
        self.net = net
        self.config_dir = config_dir
        self.pin_dir = Path(f"/sys/fs/bpf/{net.prefix}")
        self.log_path = log_path
        self.api = str(net.gw.front_v4)
        self.start()
        self._pass_module, fd = loader.compile_xdp_pass()
        net.attach_xdp_pass(fd)

    def start(self, addresses: tuple = ()) -> None:
        """`gwctl run` with --address for each of addresses (default: the lab's IPv4 VIP)."""
        net, config_dir, log_path = self.net, self.config_dir, self.log_path
        argv = [sys.executable, "-m", "ctl.cli", "run", "--config", config_dir,
                "--interface", "front", *[a for b in net.backends for a in ("--interface", b.gw_ifname)],
                *[a for address in addresses or (net.vip4,) for a in ("--address", address)],
                "--pin-dir", self.pin_dir, "--listen", f"{self.api}:{API_PORT}"]
        self.proc = net.popen(net.gw.ns, argv, host_mounts=True, stdout=subprocess.DEVNULL,
                              stderr=log_path.open("w"))
        self.wait_ready()

    def events(self, name: str) -> list[dict]:
        """The agent's structured log lines of one event."""
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]
        return [entry for entry in lines if entry.get("event") == name]

    def get(self, path: str) -> dict:
        return self.net.run_client("http-get", "--addr", self.api, "--port", API_PORT, "--path", path, "--timeout", 2)

    def wait_ready(self, timeout: float = 180) -> None:
        # A bound, not a measurement: compiling the programs takes half a minute or more
        # on a busy 2-core machine.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            if self.get("/readyz").get("status") == 200:
                return
            time.sleep(0.3)
        raise TimeoutError(f"agent not ready:\n{self.log_path.read_text()}")

    def reconciles(self) -> int:
        return self.get("/api/v1/problems")["json"]["reconciles"]

    def ignored(self) -> list[str]:
        return self.get("/api/v1/problems")["json"]["ignored"]

    def problems(self) -> list[str]:
        return self.get("/api/v1/problems")["json"]["problems"]

    def objects(self) -> list[dict]:
        return self.get("/api/v1/objects")["json"]

    def replace_config(self, files: dict[str, str], expect_problems: bool = False, timeout: float = 10) -> None:
        """Swaps the directory's manifests and waits until the agent has reconciled them."""
        before = self.reconciles()
        for old in self.config_dir.glob("*.yaml"):
            if old.name not in files:
                old.unlink()
        for name, text in files.items():
            # Whole files at once, as config tools write them (a hidden file renamed into
            # place): written in place, a file is empty between the truncation and the
            # write, and on a busy machine the agent may settle and load it then; the
            # objects it held are gone for that reconcile and come back at generation 1.
            staged = self.config_dir / f".{name}.tmp"
            staged.write_text(text)
            staged.replace(self.config_dir / name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.reconciles() > before and bool(self.problems()) == expect_problems:
                return
            time.sleep(0.1)
        raise TimeoutError(f"agent did not reconcile; problems: {self.problems()}")

    def gwctl(self, *args) -> subprocess.CompletedProcess:
        """gwctl in the client namespace (where the agent's API is reachable)."""
        return self.net.run(self.net.client.ns, [sys.executable, "-m", "ctl.cli", *args,
                                                 "--agent", f"http://{self.api}:{API_PORT}"], check=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    if shutil.which("dnsmasq") is None:
        pytest.skip("needs dnsmasq (scripts/setup.sh installs dnsmasq-base)")
    work = tmp_path_factory.mktemp("agent")
    config = work / "config"
    config.mkdir()
    with netlab.lab(backends=3) as net:
        net.start_servers(tcp_ports=(3000, 8080), udp_ports=(8080, 5353))
        running = Agent(net, config, work / "agent.log")
        try:
            yield running
        finally:
            try:
                running.stop()
            finally:
                remove_agent_state(net)
    assert not netlab.leftovers(net.prefix)


def remove_agent_state(net: netlab.Lab) -> None:
    """What a stopped agent leaves in the lab: its programs on the gateway's interfaces,
    its pins, its Envoy and its private run directory."""
    run_paths = RunPaths(Path("/run") / net.prefix)
    stop_envoy(run_paths)
    shutil.rmtree(run_paths.run_dir, ignore_errors=True)
    for ifindex in [net.gw.front_ifindex] + [b.gw_ifindex for b in net.backends]:
        loader.detach(ifindex, netns=net.gw.ns)
    shutil.rmtree(Path(f"/sys/fs/bpf/{net.prefix}"), ignore_errors=True)


def spread(agent, proto: str, port: int, count: int = 500, timeout: float = 2.0, addr=None) -> dict:
    mode = "tcp-spread" if proto == "tcp" else "udp-spread"
    return agent.net.run_client(mode, "--addr", addr or agent.net.vip4, "--port", port, "--count", count,
                                "--timeout", timeout, timeout=300)


def assert_shares(report: dict, shares: dict[str, float], count: int) -> None:
    mismatches = share_mismatches(report, shares, count, TOLERANCE)
    assert not mismatches, f"{mismatches}; {report}"


# -- the example configuration, gwctl and metrics -------------------------------------
def test_example_config_splits_traffic_by_weight(agent):
    agent.replace_config(example_files())
    tcp = spread(agent, "tcp", 80)
    assert tcp["refused"] == 0 and tcp["timeout"] == 0
    assert_shares(tcp, {"be0": 0.7, "be1": 0.3}, 500)
    udp = spread(agent, "udp", 53)
    assert udp["timeout"] == 0
    assert_shares(udp, {"be0": 0.5, "be1": 0.5}, 500)


def test_gwctl_get_and_describe_from_the_running_agent(agent):
    agent.replace_config(example_files())
    routes = agent.gwctl("get", "routes", "-A")
    assert routes.returncode == 0, routes.stderr
    assert re.search(r"default\s+TCPRoute\s+db\s+True \(Accepted\)\s+True \(ResolvedRefs\)\s+True", routes.stdout), routes.stdout
    gateways = agent.gwctl("get", "gateways", "-o", "json")
    assert gateways.returncode == 0
    described = agent.gwctl("describe", "gateway", "edge")
    assert described.returncode == 0 and "Listener db: attachedRoutes=1" in described.stdout
    missing = agent.gwctl("describe", "route", "nope")
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_gwctl_status_reads_the_kernel_directly(agent):
    # Its own config and traffic, so that it passes alone as in file order.
    agent.replace_config(example_files())
    spread(agent, "tcp", 80, count=30)
    done = subprocess.run([sys.executable, "-m", "ctl.cli", "status", "--pin-dir", agent.pin_dir, "-o", "json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status = yaml.safe_load(done.stdout)
    frontends = {f["frontend"]: f for f in status["frontends"]}
    assert set(frontends) >= {"10.99.100.1:80/TCP", "10.99.100.1:53/UDP"}
    assert frontends["10.99.100.1:80/TCP"]["new_flows"] >= 30


def test_metrics_count_per_route_and_backend(agent):
    agent.replace_config(example_files())
    spread(agent, "tcp", 80, count=50)
    metrics = agent.get("/metrics")["text"]
    match = re.search(r'xdpgw_frontend_new_connections_total\{frontend="10.99.100.1:80/TCP",route="TCPRoute default/db"\} (\S+)', metrics)
    assert match and float(match.group(1)) >= 50, metrics[:2000]
    assert re.search(r'xdpgw_backend_new_connections_total\{backend="10.99.10.2:8080"\} [1-9]', metrics)
    assert "xdpgw_reconcile_duration_seconds_count" in metrics
    assert re.search(r'xdpgw_map_entries\{map="frontends"\} 2.0', metrics)


# -- live edits ---------------------------------------------------------------------------
def test_an_edit_is_live_within_a_second(agent):
    agent.replace_config(example_files())
    files = with_tcp_weights(0, 0, 1)
    written = time.monotonic()
    for name, text in files.items():
        (agent.config_dir / name).write_text(text)
    time.sleep(max(0.0, 1.0 - (time.monotonic() - written)))
    report = spread(agent, "tcp", 80, count=50)
    assert report["counts"] == {"be2": 50}, report


def test_an_invalid_edit_is_reported_and_traffic_is_untouched(agent):
    agent.replace_config(with_tcp_weights(0, 1, 0))
    bad = with_tcp_weights(0, 1, 0)
    bad["30-routes.yaml"] = bad["30-routes.yaml"].replace("weight: 1\n", "weight: 2000000\n", 1)
    assert "2000000" in bad["30-routes.yaml"]
    agent.replace_config(bad, expect_problems=True)
    (problem,) = agent.problems()
    assert "30-routes.yaml" in problem and "TCPRoute default/db" in problem and "weight" in problem, problem
    report = spread(agent, "tcp", 80, count=50)
    assert report["counts"] == {"be1": 50}, report
    errors = re.search(r"^xdpgw_reconcile_errors_total (\S+)$", agent.get("/metrics")["text"], re.M)
    assert errors and float(errors.group(1)) >= 1


def _bad_edit(name: str) -> tuple[dict[str, str], list[str]]:
    """A configuration the API server would refuse, and what its problem must name."""
    files = with_tcp_weights(0, 1, 0)
    routes = files["30-routes.yaml"]
    match name:
        case "unknown-field":
            files["30-routes.yaml"] = routes.replace("spec:\n", "spec:\n  bogus: true\n", 1)
            return files, ["30-routes.yaml", "TCPRoute default/db", "spec.bogus: unknown field"]
        case "misspelt-field":
            files["30-routes.yaml"] = routes.replace("weight: 1\n", "weigth: 1\n", 1)
            return files, ["30-routes.yaml", "TCPRoute default/db", "weigth: unknown field"]
        case "invalid-name":
            files["30-routes.yaml"] = routes.replace("name: db\n", "name: DB_route\n", 1)
            return files, ["30-routes.yaml", "TCPRoute default/DB_route", "metadata.name", "RFC 1123 subdomain"]
        case "duplicate-field":
            files["30-routes.yaml"] = routes.replace("weight: 1\n", "weight: 1\n      weight: 1\n", 1)
            return files, ["30-routes.yaml", "TCPRoute default/db", "weight: duplicate field"]
        case "binary-file":
            files["40-blob.yaml"] = "\x00\x01\x02 not a manifest"
            return files, ["40-blob.yaml", "not YAML text: a binary file"]
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["unknown-field", "misspelt-field", "invalid-name", "duplicate-field", "binary-file"])
def test_input_refused_by_strict_validation_is_reported_and_traffic_is_untouched(agent, name):
    agent.replace_config(with_tcp_weights(0, 1, 0))
    bad, expected = _bad_edit(name)
    assert bad != with_tcp_weights(0, 1, 0)
    agent.replace_config(bad, expect_problems=True)
    (problem,) = agent.problems()
    for fragment in expected:
        assert fragment in problem, problem
    report = spread(agent, "tcp", 80, count=50)
    assert report["counts"] == {"be1": 50}, report


def test_a_kind_the_agent_does_not_read_is_logged_and_does_not_block_an_edit(agent):
    agent.replace_config(with_tcp_weights(0, 1, 0))
    files = with_tcp_weights(0, 0, 1)
    files["50-widget.yaml"] = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: default}\n"
    agent.replace_config(files)
    assert agent.problems() == []
    (ignored,) = agent.ignored()
    assert "50-widget.yaml: Widget default/w: example.com/v1 Widget is not a kind xdp-gateway reads" in ignored
    assert any(e["object"] == ignored and e["level"] == "warning" for e in agent.events("ignored"))
    report = spread(agent, "tcp", 80, count=50)
    assert report["counts"] == {"be2": 50}, report


def test_an_agent_restart_writes_nothing_and_live_connections_survive(agent):
    agent.replace_config(example_files())
    session = agent.net.start_tcp_session(agent.net.vip4, 80, "--interval-ms", 20)
    try:
        time.sleep(0.5)
        agent.stop()
        time.sleep(0.5)  # no agent: the kernel keeps forwarding
        agent.start()
        (first,) = agent.events("reconciled")[:1]
        time.sleep(0.5)
    finally:
        report = session.stop()
    assert first["writes"] == 0, "a restarted agent on maps that are right writes nothing"
    assert agent.events("programs_reused") and not agent.events("programs_compiled"), \
        "a restart reuses the programs the first start pinned"
    assert report["errors"] == [] and report["exchanges"] >= 50, report



def test_a_map_entry_deleted_behind_the_agents_back_is_restored(agent):
    """Edits are planned against what the agent wrote; drift is still repaired by the
    read-back it does while idle."""
    from ipaddress import ip_address

    from ctl.agent.run import REPAIR_INTERVAL
    from ctl.dataplane import writer
    from ctl.dataplane.pinned import PinnedMaps
    from ctl.model import FrontendKey, Protocol

    agent.replace_config(example_files())
    key = writer.frontend_key_struct(FrontendKey(ip_address(agent.net.vip4), 80, Protocol.TCP))
    repaired_before = len(agent.events("repaired"))
    with PinnedMaps.open(agent.pin_dir) as maps:
        assert maps.delete("frontends", key)
        deadline = time.monotonic() + REPAIR_INTERVAL + 20
        while maps.get("frontends", key) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert maps.get("frontends", key) is not None, "the agent did not restore the deleted frontend"
    # The log line follows the write (after the collector's pass): wait for it too.
    deadline = time.monotonic() + 10
    while len(agent.events("repaired")) <= repaired_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(agent.events("repaired")) > repaired_before
    report = spread(agent, "tcp", 80, count=50)
    assert report["refused"] == 0 and report["timeout"] == 0 and sum(report["counts"].values()) == 50, report


def test_gwctl_down_takes_the_gateway_off_the_host_once_the_agent_stopped(agent):
    net = agent.net

    def down() -> tuple[int, str, str]:
        proc = net.popen(net.gw.ns, [sys.executable, "-m", "ctl.cli", "down", "--pin-dir", agent.pin_dir],
                         host_mounts=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout, stderr = proc.communicate(timeout=120)
        return proc.returncode, stdout, stderr

    agent.replace_config(example_files())
    code, _, stderr = down()
    assert code == 1 and "still runs" in stderr and "Traceback" not in stderr, stderr
    assert sum(spread(agent, "tcp", 80, count=20)["counts"].values()) == 20, "refused: nothing was touched"

    agent.stop()
    try:
        code, stdout, stderr = down()
        assert code == 0, stderr
        interfaces = ["front", *(b.gw_ifname for b in net.backends)]
        assert [line for line in stdout.splitlines() if line.startswith("detached")] == \
            [f"detached xdp from {name}" for name in interfaces], stdout
        assert "removed" in stdout and not agent.pin_dir.exists()
        links = net.run(net.gw.ns, ["ip", "-d", "link", "show"]).stdout
        assert "prog/xdp" not in links, links
        report = spread(agent, "tcp", 80, count=5, timeout=0.5)
        assert not report["counts"], f"the VIP is no longer served: {report}"
        again = down()
        assert again[0] == 0 and "nothing pinned" in again[1], again
    finally:
        agent.start()  # for the tests after this one: from the program cache, no compile
    assert sum(spread(agent, "tcp", 80, count=20)["counts"].values()) == 20


# -- the Gateway API conformance scenarios, with real traffic --------------------------
def conformance_files(case: str) -> dict[str, str]:
    """The golden input of a conformance case, with endpoints moved onto the lab's
    backends (Service n of the case -> backend namespace be<n>)."""
    text = (GOLDEN / f"conformance-{case}" / "input.yaml").read_text()
    return {"input.yaml": re.sub(r"10\.99\.(\d+)\.11\b", r"10.99.\1.2", text)}


ONE = {"be0": 1.0}
SCENARIOS = {
    "tcproute-weighted-routing": [("tcp", 9300, {"be0": 0.7, "be1": 0.3})],
    "udproute-weighted-routing": [("udp", 5300, {"be0": 0.7, "be1": 0.3})],
    "tcproute-multiple-routes-attachment": [("tcp", 9310, ONE)],
    "udproute-multiple-routes-attachment": [("udp", 5301, ONE)],
    "tcproute-parentref-port-and-section-name": [("tcp", 9300, ONE), ("tcp", 9301, {"be1": 1.0}), ("tcp", 9302, {"be2": 1.0})],
    "udproute-parentref-port-and-section-name": [("udp", 5300, ONE), ("udp", 5301, {"be1": 1.0}), ("udp", 5302, {"be2": 1.0})],
    "tcproute-parentref-attach-all": [("tcp", p, ONE) for p in (9310, 9311, 9312, 9313)],
    "udproute-parentref-attach-all-listeners": [("udp", p, ONE) for p in (5310, 5311, 5312)],
    "tcproute-reference-grant": [("tcp", 9320, ONE)],
    "udproute-reference-grant": [("udp", 5300, ONE)],
}


def assert_conformance_traffic(agent, case: str) -> None:
    """The conformance case applied, each of its SCENARIOS ports answers every client
    with the shares the case's weights give."""
    agent.replace_config(conformance_files(case))
    for proto, port, shares in SCENARIOS[case]:
        count = 500 if len(shares) > 1 else 40
        report = spread(agent, proto, port, count=count)
        assert report["timeout"] == 0 and report.get("refused", 0) == 0, (port, report)
        assert_shares(report, shares, count)


@pytest.mark.parametrize("case", list(SCENARIOS))
def test_conformance_traffic(agent, case):
    assert_conformance_traffic(agent, case)


def test_conformance_multiple_routes_statuses(agent):
    agent.replace_config(conformance_files("tcproute-multiple-routes-attachment"))
    objects = {(o["kind"], o["metadata"]["name"]): o for o in agent.objects()}
    for route in ("tcproute-attach-older", "tcproute-attach-newer"):
        (parent,) = objects[("TCPRoute", route)]["status"]["parents"]
        accepted = next(c for c in parent["conditions"] if c["type"] == "Accepted")
        assert accepted["status"] == "True", (route, accepted)
    gateway = objects[("Gateway", "tcp-multi-route-attach-gateway")]
    assert [listener["attachedRoutes"] for listener in gateway["status"]["listeners"]] == [2]


@pytest.mark.parametrize("case", ["tcproute-invalid-cross-namespace-backend-ref", "tcproute-invalid-backendref-nonexistent"])
def test_conformance_invalid_tcp_backends_are_refused_at_once(agent, case):
    agent.replace_config(conformance_files(case))
    port = 9321 if "cross" in case else 9300
    result = agent.net.run_client("tcp-connect-once", "--addr", agent.net.vip4, "--port", port, "--timeout", 5)
    assert result["result"] == "refused" and result["elapsed_ms"] < 500, result
    route = next(o for o in agent.objects() if o["kind"] == "TCPRoute")
    resolved = next(c for c in route["status"]["parents"][0]["conditions"] if c["type"] == "ResolvedRefs")
    assert resolved["status"] == "False"
    assert resolved["reason"] == ("RefNotPermitted" if "cross" in case else "BackendNotFound")


@pytest.mark.parametrize("case", ["udproute-invalid-cross-namespace-backend-ref", "udproute-invalid-backendref-nonexistent"])
def test_conformance_invalid_udp_backends_drop(agent, case):
    agent.replace_config(conformance_files(case))
    report = spread(agent, "udp", 5300, count=10, timeout=0.5)
    assert report["timeout"] == 10, report


def dns_answer_through_the_udp_listener(agent, timeout: float = 10) -> dict:
    """UDPRouteSimple: a real DNS server (dnsmasq, backend 0, answering conformance.example
    with 192.0.2.123) behind the gateway's UDP listener; queries through the gateway until
    one is answered or timeout passes, and returns the last answer."""
    net = agent.net
    dns = net.popen(net.backends[0].ns, ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts",
                                         "--port=53", "--bind-interfaces", f"--listen-address={net.backends[0].v4}",
                                         "--address=/conformance.example/192.0.2.123"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        agent.replace_config(conformance_files("udproute-simple"))
        deadline = time.monotonic() + timeout
        while True:
            answer = net.run_client("dns-query", "--addr", net.vip4, "--port", 5300,
                                    "--name", "conformance.example", "--timeout", 1)
            if answer["answers"] or time.monotonic() > deadline:
                return answer
    finally:
        dns.terminate()
        dns.wait(timeout=10)


def test_conformance_dns_query_through_the_udp_listener(agent):
    answer = dns_answer_through_the_udp_listener(agent)
    assert answer["answers"] == ["192.0.2.123"], answer


# -- IP fragments ---------------------------------------------------------------------------
BIG_TXT = [f"{i:02d}" + "frag" * 60 + "x" * 5 for i in range(16)]  # 16 strings of 247 bytes
FRAG_PAYLOAD = {4: 1480, 6: 1448}  # bytes a fragment carries at MTU 1500 (v6: 8-byte header)


def fragments_files(net) -> dict[str, str]:
    """A Gateway on both VIPs with two UDP listeners: DNS (dnsmasq on be0:53) and the
    lab's UDP echo (be0:5353), through a dual-stack Service of be0 alone."""
    backend = net.backends[0]
    docs = [
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: xdp-gateway}\n"
        "spec: {controllerName: xdp-gateway.io/gateway-controller}\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: frag, namespace: default}\n"
        f"spec:\n  gatewayClassName: xdp-gateway\n  addresses: [{{value: '{net.vip4}'}}, {{value: '{net.vip6}'}}]\n"
        "  listeners:\n  - {name: dns, protocol: UDP, port: 53}\n  - {name: echo, protocol: UDP, port: 7}\n",
    ]
    for listener, port in (("dns", 53), ("echo", 5353)):
        docs.append(f"apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: UDPRoute\nmetadata: {{name: {listener}, namespace: default}}\n"
                    f"spec:\n  parentRefs: [{{name: frag, sectionName: {listener}}}]\n"
                    f"  rules:\n  - backendRefs: [{{name: be0, port: {port}}}]\n")
    docs.append("apiVersion: v1\nkind: Service\nmetadata: {name: be0, namespace: default}\nspec:\n"
                "  ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: RequireDualStack\n"
                "  ports: [{name: dns, port: 53, protocol: UDP}, {name: echo, port: 5353, protocol: UDP}]\n")
    for family, address in (("IPv4", backend.v4), ("IPv6", backend.v6)):
        docs.append(
            f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: be0-{family.lower()}\n"
            "  namespace: default\n  labels: {kubernetes.io/service-name: be0}\n"
            f"addressType: {family}\n"
            "ports: [{name: dns, port: 53, protocol: UDP}, {name: echo, port: 5353, protocol: UDP}]\n"
            f"endpoints: [{{addresses: ['{address}'], conditions: {{ready: true}}}}]\n")
    return {"fragments.yaml": "---\n".join(docs)}


def kernel_status(agent) -> dict:
    done = subprocess.run([sys.executable, "-m", "ctl.cli", "status", "--pin-dir", agent.pin_dir, "-o", "json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def backend_counters(status: dict, frontend: str) -> dict:
    (row,) = next(f for f in status["frontends"] if f["frontend"] == frontend)["backends"]
    return row


def counted_since(before: dict, after: dict, frontend: str) -> dict:
    """How much the frontend's backend row grew: packets and bytes, both ways."""
    old, new = backend_counters(before, frontend), backend_counters(after, frontend)
    return {k: new[k] - old[k] for k in ("packets_in", "bytes_in", "packets_out", "bytes_out")}


def fragments_of(udp_payload: int, family: int) -> int:
    return -(-(udp_payload + 8) // FRAG_PAYLOAD[family])


@pytest.fixture
def dnsmasq_big_txt(agent):
    """dnsmasq on be0 (both families), with a 4 KB TXT record and EDNS0 up to 4096 bytes:
    without --edns-packet-max it truncates its answers to 512 bytes."""
    net, backend = agent.net, agent.net.backends[0]
    txt = ",".join(BIG_TXT)  # argv, no shell: quotes would be kept as part of the strings
    dns = net.popen(backend.ns, ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--port=53",
                                 "--bind-interfaces", f"--listen-address={backend.v4}",
                                 f"--listen-address={backend.v6}", "--edns-packet-max=4096",
                                 "--address=/small.frag.example/192.0.2.1", f"--txt-record=big.frag.example,{txt}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        agent.replace_config(fragments_files(net))
        yield dns
    finally:
        dns.terminate()
        dns.wait(timeout=10)


@pytest.mark.parametrize("family", [4, 6])
def test_a_4k_dns_answer_through_the_udp_route_in_fragments(agent, dnsmasq_big_txt, family):
    """The answer (about 4 KB) leaves dnsmasq in IP fragments; every fragment is
    translated back to the client, which reassembles it; the data path counts them.
    Then a query padded to 4 KB: fragments the other way."""
    net = agent.net
    addr = net.vip4 if family == 4 else net.vip6
    frontend = f"{addr}:53/UDP" if family == 4 else f"[{addr}]:53/UDP"
    deadline = time.monotonic() + 10
    while True:  # dnsmasq up, the route programmed
        small = net.run_client("dns-query", "--addr", addr, "--port", 53, "--name", "small.frag.example", "--timeout", 1)
        if small["answers"] or time.monotonic() > deadline:
            break
    assert small["answers"] == ["192.0.2.1"], small

    before = kernel_status(agent)
    big = net.run_client("dns-query", "--addr", addr, "--port", 53, "--name", "big.frag.example", "--type", "TXT",
                         "--bufsize", 4096, "--timeout", 5)
    after = kernel_status(agent)
    assert "error" not in big and not big["truncated"], big
    assert big["texts"] == ["".join(BIG_TXT)], big
    assert 4000 < big["size"] <= 4096, big["size"]
    counted = counted_since(before, after, frontend)
    assert counted["packets_in"] == 1 and counted["packets_out"] == fragments_of(big["size"], family) == 3, counted
    assert counted["bytes_out"] > big["size"], counted

    # A 4 KB query too (EDNS0 padding), so the client -> backend direction is fragmented.
    before = kernel_status(agent)
    padded = net.run_client("dns-query", "--addr", addr, "--port", 53, "--name", "big.frag.example", "--type", "TXT",
                            "--bufsize", 4096, "--pad", 4096, "--timeout", 5)
    after = kernel_status(agent)
    assert padded["query_size"] == 4096 and padded["texts"] == ["".join(BIG_TXT)], padded
    counted = counted_since(before, after, frontend)
    assert counted["packets_in"] == fragments_of(4096, family) == 3, counted
    assert counted["packets_out"] == fragments_of(padded["size"], family), counted


@pytest.mark.parametrize("family", [4, 6])
def test_a_4k_datagram_to_the_udp_route_in_fragments_in_and_out_of_order(agent, dnsmasq_big_txt, family):
    """Client -> backend in fragments (hand-built, so their order is ours): in order, and
    out of order after the first, they reach the echo server whole and its 4 KB answer
    comes back in fragments too; a later fragment that comes before its first is dropped
    and counted (DROP_FRAGMENT): fragments are not buffered, so that datagram is lost."""
    net = agent.net
    addr = net.vip4 if family == 4 else net.vip6
    frontend = f"{addr}:7/UDP" if family == 4 else f"[{addr}]:7/UDP"
    link = json.loads(net.run(net.gw.ns, ["ip", "-j", "link", "show", net.gw.front_ifname]).stdout)
    send = ("udp-fragments", "--addr", addr, "--port", 7, "--size", 4000, "--ifname", net.client.ifname,
            "--gw-mac", link[0]["address"], "--timeout", 2)

    before = kernel_status(agent)
    in_order = net.run_client(*send)
    after = kernel_status(agent)
    assert in_order["fragments"] == 3 and in_order["answered"] and in_order["echoed"], in_order
    assert in_order["backend"] == "be0", in_order
    counted = counted_since(before, after, frontend)
    answer_fragments = fragments_of(in_order["answer_size"], family)
    assert counted["packets_in"] == 3 and counted["packets_out"] == answer_fragments == 3, counted

    shuffled = net.run_client(*send, "--order", "0,2,1")
    assert shuffled["answered"] and shuffled["echoed"], shuffled

    before = kernel_status(agent)
    reversed_ = net.run_client(*send, "--order", "2,1,0")
    after = kernel_status(agent)
    assert not reversed_["answered"] and reversed_["error"] == "timeout", reversed_
    dropped = after["drops"].get("DROP_FRAGMENT", 0) - before["drops"].get("DROP_FRAGMENT", 0)
    assert dropped == 2, (before["drops"], after["drops"])
    assert counted_since(before, after, frontend)["packets_in"] == 1  # the first, forwarded alone


@pytest.mark.parametrize("size", [100, 4000])
def test_ipv6_datagrams_with_hop_by_hop_and_destination_options_reach_the_echo_server(agent, dnsmasq_big_txt, size):
    """A socket with IPV6_HOPOPTS and IPV6_DSTOPTS set: the kernel puts the options
    before the transport header, and when it fragments, Hop-by-Hop before the Fragment
    header in every fragment and Destination Options after it in the first. The data
    path walks them: balanced, translated (the echo server checks the UDP checksum),
    the fragments followed, nothing dropped."""
    net = agent.net
    frontend = f"[{net.vip6}]:7/UDP"
    before = kernel_status(agent)
    sent = net.run_client("udp-options", "--addr", net.vip6, "--port", 7, "--size", size, "--timeout", 2)
    after = kernel_status(agent)
    assert sent["answered"] and sent["echoed"] and sent["backend"] == "be0", sent
    counted = counted_since(before, after, frontend)
    assert counted["packets_in"] == (1 if size < 1000 else 3), counted
    assert after["drops"] == before["drops"], (before["drops"], after["drops"])


# -- dual stack ---------------------------------------------------------------------------
def dual_stack_files(net) -> dict[str, str]:
    """A Gateway without spec.addresses (so it takes both --address values), TCP and UDP
    listeners, weighted routes, and two Services each with an IPv4 and an IPv6
    EndpointSlice: the ordinary dual-stack setup."""
    docs = [
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: xdp-gateway}\n"
        "spec: {controllerName: xdp-gateway.io/gateway-controller}\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: dual, namespace: default}\n"
        "spec:\n  gatewayClassName: xdp-gateway\n  listeners:\n"
        "  - {name: tcp, protocol: TCP, port: 80}\n  - {name: udp, protocol: UDP, port: 53}\n",
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: web, namespace: default}\n"
        "spec:\n  parentRefs: [{name: dual, sectionName: tcp}]\n  rules:\n"
        "  - backendRefs: [{name: be-a, port: 8080, weight: 3}, {name: be-b, port: 8080, weight: 1}]\n",
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: UDPRoute\nmetadata: {name: dns, namespace: default}\n"
        "spec:\n  parentRefs: [{name: dual, sectionName: udp}]\n  rules:\n"
        "  - backendRefs: [{name: be-a, port: 5353, weight: 1}, {name: be-b, port: 5353, weight: 3}]\n",
    ]
    for service, backend in (("be-a", net.backends[0]), ("be-b", net.backends[1])):
        docs.append(f"apiVersion: v1\nkind: Service\nmetadata: {{name: {service}, namespace: default}}\nspec:\n"
                    "  ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: RequireDualStack\n"
                    "  ports: [{name: tcp, port: 8080, protocol: TCP}, {name: dns, port: 5353, protocol: UDP}]\n")
        for family, address in (("IPv4", backend.v4), ("IPv6", backend.v6)):
            docs.append(
                f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-{family.lower()}\n"
                f"  namespace: default\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: {family}\n"
                "ports: [{name: tcp, port: 8080, protocol: TCP}, {name: dns, port: 5353, protocol: UDP}]\n"
                f"endpoints: [{{addresses: ['{address}'], conditions: {{ready: true}}}}]\n")
    return {"dual-stack.yaml": "---\n".join(docs)}


def test_dual_stack_gateway_serves_tcp_and_udp_over_both_families(agent):
    """`gwctl run --address <IPv4> --address <IPv6>` with Services of both families:
    both crashed the agent at start (addresses of two families sorted together)."""
    net = agent.net
    agent.stop()
    agent.start(addresses=(net.vip4, net.vip6))
    try:
        agent.replace_config(dual_stack_files(net))
        assert agent.proc.poll() is None
        for addr in (net.vip4, net.vip6):
            tcp = spread(agent, "tcp", 80, addr=addr)
            assert tcp["refused"] == 0 and tcp["timeout"] == 0, (addr, tcp)
            assert_shares(tcp, {"be0": 0.75, "be1": 0.25}, 500)
            udp = spread(agent, "udp", 53, addr=addr)
            assert udp["timeout"] == 0, (addr, udp)
            assert_shares(udp, {"be0": 0.25, "be1": 0.75}, 500)
        done = subprocess.run([sys.executable, "-m", "ctl.cli", "status", "--pin-dir", agent.pin_dir, "-o", "json"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        frontends = {f["frontend"] for f in yaml.safe_load(done.stdout)["frontends"]}
        assert frontends == {f"{net.vip4}:80/TCP", f"{net.vip4}:53/UDP", f"[{net.vip6}]:80/TCP", f"[{net.vip6}]:53/UDP"}
    finally:
        agent.stop()
        agent.start()


# -- L7 only where asked for (last: it leaves an Envoy running for the module's agent) --
def test_an_l4_only_agent_loads_no_grpc_and_serves_its_first_http_listener(agent):
    """gRPC and the Envoy protos (about 27 MiB of an agent) are loaded, the xDS socket
    served and Envoy started only once the configuration has an L7 listener."""
    run_paths = RunPaths(Path("/run") / agent.net.prefix)
    agent.replace_config(example_files())

    def grpc_loaded() -> bool:
        return "cygrpc" in Path(f"/proc/{agent.proc.pid}/maps").read_text()

    assert not grpc_loaded() and not run_paths.ads_socket.exists()
    agent.replace_config({**example_files(), "40-web.yaml": (ROOT / "examples" / "l7" / "40-web.yaml").read_text()})

    def web_programmed() -> bool:
        web = next(o for o in agent.objects() if o["kind"] == "Gateway" and o["metadata"]["name"] == "web")
        conditions = web["status"]["listeners"][0]["conditions"]
        return any(c["type"] == "Programmed" and c["status"] == "True" for c in conditions)

    deadline = time.monotonic() + 60  # Envoy's start on a busy machine
    while not web_programmed() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert web_programmed() and grpc_loaded() and run_paths.ads_socket.exists()
    tcp = spread(agent, "tcp", 80)  # L4 beside it, untouched
    assert tcp["refused"] == 0 and tcp["timeout"] == 0
