"""gwctl through typer's CliRunner: every command, its output formats and its errors.

`get` and `describe` talk to a real AgentServer on a free port, serving a real
translation of examples/standalone; nothing in the HTTP client is patched. Nothing here
touches the kernel: `run` is only exercised with input it must refuse before loading."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version as package_version
from ipaddress import ip_address
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner, Result

from ctl.agent.reconciler import AgentState
from ctl.agent.server import AgentServer
from ctl import cli
from ctl.cli import app
from ctl.sources import load_directory
from ctl.translate import TranslateConfig, objects_document, translate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "standalone"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
NOW_TEXT = "2025-01-01T00:00:00Z"
ROUTE_KINDS = {"TCPRoute", "UDPRoute", "TLSRoute", "HTTPRoute", "GRPCRoute"}

# This typer's CliRunner always keeps stdout and stderr apart (result.stdout and
# result.stderr; there is no mix_stderr switch any more).
runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def gwctl(*args: str, **kwargs) -> Result:
    return runner.invoke(app, list(args), prog_name="gwctl", **kwargs)


def plain(text: str) -> str:
    """Colour codes removed and whitespace runs collapsed, so assertions do not depend
    on the console's width or colour support."""
    return " ".join(_ANSI.sub("", text).split())


def parse_json(text: str):
    return json.loads(_ANSI.sub("", text))  # FORCE_COLOR in the environment colours JSON


def line_with(text: str, *needles: str) -> str:
    """The one output line holding every needle, whitespace collapsed (needles are
    matched against the collapsed line)."""
    found = [line for line in map(plain, text.splitlines()) if all(n in line for n in needles)]
    assert len(found) == 1, (needles, text)
    return found[0]


# -- fixtures ---------------------------------------------------------------------------


def set_console_width(monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    # Rich fixes a console's width at creation when COLUMNS is exported, so the
    # environment alone cannot set it for gwctl's module-level consoles.
    for console in (cli.out, cli.err):
        monkeypatch.setattr(console, "_width", columns)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide enough that rich never wraps a table row or a message."""
    set_console_width(monkeypatch, 250)



@pytest.fixture(scope="module")
def state() -> AgentState:
    loaded = load_directory(EXAMPLES)
    assert not loaded.problems, [str(p) for p in loaded.problems]
    translation = translate(loaded.snapshot, TranslateConfig(now=NOW, snat_addresses=(ip_address("10.99.10.1"),)))
    return AgentState(translation=translation, ready=True, reconciles=1)


@pytest.fixture(scope="module")
def agent(state: AgentState) -> Iterator[str]:
    server = AgentServer("127.0.0.1", 0, CollectorRegistry(), lambda: state)
    server.start()
    try:
        yield server.address
    finally:
        server.stop()


@pytest.fixture
def silent_agent() -> Iterator[str]:
    """An address where nothing listens: the port stays bound (so nobody else takes it)
    but never listens, so a connection is refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture
def keep_root_logger() -> Iterator[None]:
    """`run` configures logging on the root logger before it validates its options."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


# -- version ------------------------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    result = gwctl("version")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == package_version("xdp-gateway")


def test_no_arguments_shows_help_listing_every_command() -> None:
    result = gwctl()
    text = plain(result.stdout + result.stderr)
    for command in ("version", "run", "status", "get", "describe", "validate"):
        assert command in text


# -- validate -----------------------------------------------------------------------------

EXPECTED_PROGRAM = {
    "10.99.100.1:80/TCP": {"10.99.10.2:8080": 70, "10.99.11.2:8080": 30, "10.99.12.2:8080": 0},
    "10.99.100.1:53/UDP": {"10.99.10.2:5353": 50, "10.99.11.2:5353": 50, "10.99.12.2:5353": 0},
}


def test_validate_examples_table_shows_both_frontends_and_their_weights() -> None:
    result = gwctl("validate", str(EXAMPLES), "--snat-address", "10.99.10.1")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    tcp = line_with(result.stdout, "10.99.100.1:80/TCP")
    assert "TCPRoute default/db" in tcp and "snat" in tcp
    assert "10.99.10.2:8080 (70), 10.99.11.2:8080 (30), 10.99.12.2:8080 (0)" in tcp
    udp = line_with(result.stdout, "10.99.100.1:53/UDP")
    assert "UDPRoute default/dns" in udp
    assert "10.99.10.2:5353 (50), 10.99.11.2:5353 (50), 10.99.12.2:5353 (0)" in udp
    # then every object, described
    text = plain(result.stdout)
    assert "Name: edge" in text and "Listener db: attachedRoutes=1" in text


def test_validate_prints_ipv6_addresses_as_written(tmp_path: Path) -> None:
    """rich reads ":100:" as an emoji code; an address like fd99:100::1 must stay text."""
    config = tmp_path / "config"
    shutil.copytree(EXAMPLES, config)
    (config / "10-gateway.yaml").write_text((config / "10-gateway.yaml").read_text().replace("10.99.100.1", "fd99:100::1"))
    result = gwctl("validate", str(config), "--snat-address", "fd99:10::1")
    assert result.exit_code == 0, result.stderr
    assert "fd99:100::1" in plain(result.stdout), result.stdout
    assert "\N{HUNDRED POINTS SYMBOL}" not in result.stdout


def test_validate_json_lists_what_would_be_programmed_and_every_object() -> None:
    result = gwctl("validate", str(EXAMPLES), "--snat-address", "10.99.10.1", "-o", "json")
    assert result.exit_code == 0, result.stderr
    document = parse_json(result.stdout)
    assert set(document) == {"programmed", "objects"}
    programmed = {svc["frontend"]: {b["endpoint"]: b["weight"] for b in svc["backends"]}
                  for svc in document["programmed"]}
    assert programmed == EXPECTED_PROGRAM
    assert {svc["snatAddress"] for svc in document["programmed"]} == {"10.99.10.1"}
    assert [(o["kind"], o["metadata"]["name"]) for o in document["objects"]] == [
        ("GatewayClass", "xdp-gateway"), ("Gateway", "edge"), ("TCPRoute", "db"), ("UDPRoute", "dns")]


def test_validate_yaml_parses_to_the_same_programmed_services_as_json() -> None:
    as_yaml = gwctl("validate", str(EXAMPLES), "--snat-address", "10.99.10.1", "-o", "yaml")
    as_json = gwctl("validate", str(EXAMPLES), "--snat-address", "10.99.10.1", "-o", "json")
    assert as_yaml.exit_code == 0, as_yaml.stderr
    document = yaml.safe_load(as_yaml.stdout)
    assert set(document) == {"programmed", "objects"}
    assert document["programmed"] == parse_json(as_json.stdout)["programmed"]
    assert [o["kind"] for o in document["objects"]] == ["GatewayClass", "Gateway", "TCPRoute", "UDPRoute"]


def test_validate_yaml_stays_valid_yaml_on_a_narrow_console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: rich used to re-wrap YAML lines longer than the console (80 columns
    # when piped), which broke the document.
    for source in EXAMPLES.glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    long_name = "a-route-with-a-rather-long-name-that-goes-on-and-on-for-quite-a-while"
    (tmp_path / "40-long.yaml").write_text(f"""\
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: {long_name}, namespace: default}}
spec:
  parentRefs: [{{name: edge, sectionName: db}}]
  rules:
  - backendRefs: [{{name: a-service-that-does-not-exist-anywhere-in-this-namespace, port: 8080}}]
""")
    set_console_width(monkeypatch, 80)
    result = gwctl("validate", str(tmp_path), "--snat-address", "10.99.10.1", "-o", "yaml")
    assert result.exit_code == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert any(o["metadata"]["name"] == long_name for o in document["objects"])


BAD_WEIGHT = """\
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: heavy, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs:
    - {name: be-a, port: 8080, weight: 2000000}
"""
BAD_PORT = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wide, namespace: default}
spec:
  gatewayClassName: xdp-gateway
  listeners:
  - {name: db, protocol: TCP, port: 70000}
"""
BAD_SYNTAX = """\
apiVersion: v1
kind: Service
metadata: {name: broken
  labels: [
"""


@pytest.mark.parametrize(("content", "expected"), [
    pytest.param(BAD_WEIGHT, ["TCPRoute default/heavy", "spec.rules[0].backendRefs[0].weight", "1000000"], id="weight"),
    pytest.param(BAD_PORT, ["Gateway default/wide", "spec.listeners[0].port", "65535"], id="port"),
    pytest.param(BAD_SYNTAX, ["bad.yaml:4", "YAML syntax error"], id="yaml-syntax"),
])
def test_validate_invalid_file_exits_1_naming_file_object_and_field(tmp_path: Path, content: str,
                                                                    expected: list[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    result = gwctl("validate", str(bad))
    assert result.exit_code == 1
    assert result.stdout == ""
    message = plain(result.stderr)
    assert message.startswith("invalid:")
    assert str(bad) in message
    for fragment in expected:
        assert fragment in message


def test_validate_one_bad_file_rejects_the_whole_directory(tmp_path: Path) -> None:
    for source in EXAMPLES.glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    (tmp_path / "90-bad.yaml").write_text(BAD_WEIGHT)
    result = gwctl("validate", str(tmp_path), "--snat-address", "10.99.10.1", "-o", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "90-bad.yaml" in plain(result.stderr)


def test_validate_problem_text_is_not_read_as_rich_markup(tmp_path: Path) -> None:
    # Regression: a value quoted in a problem ("[/x]") was parsed as a rich closing tag
    # and crashed gwctl with a MarkupError instead of reporting the problem.
    bad = tmp_path / "markup.yaml"
    bad.write_text(BAD_PORT.replace("name: db", 'name: "[/x]"').replace("70000", "80"))
    result = gwctl("validate", str(bad))
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = plain(result.stderr)
    assert "spec.listeners[0].name" in message and "'[/x]'" in message


def test_validate_nonexistent_path_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = gwctl("validate", str(missing))
    assert result.exit_code == 2
    assert plain(result.stderr) == f"error: {missing}: no such file or directory"


def test_validate_bad_address_exits_2() -> None:
    result = gwctl("validate", str(EXAMPLES), "--address", "10.99.300.1")
    assert result.exit_code == 2
    assert "'10.99.300.1' does not appear to be an IPv4 or IPv6 address" in plain(result.stderr)


def test_validate_without_paths_is_a_usage_error() -> None:
    result = gwctl("validate")
    assert result.exit_code == 2
    assert "Missing argument" in plain(result.stderr)


# -- status ---------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["table", "json"])
def test_status_without_pinned_maps_says_the_maps_cannot_be_read(tmp_path: Path, output: str) -> None:
    result = gwctl("status", "--pin-dir", str(tmp_path / "nonexistent"), "-o", output)
    assert result.exit_code == 1
    assert result.stdout == ""
    message = plain(result.stderr)
    assert message.startswith("error: cannot read the data path's maps:")
    assert "no pinned map" in message and str(tmp_path / "nonexistent") in message


# -- get / describe with the agent down ------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("get", "routes"), ("get", "gateways", "-A"), ("describe", "gateway", "edge"), ("describe", "route", "db"),
])
def test_get_and_describe_say_the_agent_is_not_answering(silent_agent: str, args: tuple[str, ...]) -> None:
    result = gwctl(*args, "--agent", silent_agent)
    assert result.exit_code == 1
    assert result.stdout == ""
    message = plain(result.stderr)
    assert f"the agent at {silent_agent} is not answering" in message
    assert "Connection refused" in message
    assert "gwctl status" in message  # points at what still works


def test_agent_url_without_a_scheme_is_reported_not_raised() -> None:
    result = gwctl("get", "routes", "--agent", "127.0.0.1:9480")
    assert result.exit_code == 1
    assert "is not answering" in plain(result.stderr)


# -- get / describe against a running agent --------------------------------------------------


def test_get_gateways_shows_edge_accepted_and_programmed(agent: str) -> None:
    result = gwctl("get", "gateways", "--agent", agent)
    assert result.exit_code == 0, result.stderr
    header = line_with(result.stdout, "NAMESPACE")
    assert header == "NAMESPACE NAME ADDRESSES ACCEPTED PROGRAMMED LISTENERS"
    assert line_with(result.stdout, "edge") == "default edge 10.99.100.1 True (Accepted) True (Programmed) 2"


def test_get_reads_the_agent_address_from_the_environment(agent: str) -> None:
    result = gwctl("get", "gw", env={"GWCTL_AGENT": agent})
    assert result.exit_code == 0, result.stderr
    assert "edge" in result.stdout


def test_get_routes_all_namespaces_lists_both_routes(agent: str) -> None:
    result = gwctl("get", "routes", "-A", "--agent", agent)
    assert result.exit_code == 0, result.stderr
    assert line_with(result.stdout, "NAMESPACE") == "NAMESPACE KIND NAME ACCEPTED RESOLVEDREFS PROGRAMMED"
    assert line_with(result.stdout, "TCPRoute") == "default TCPRoute db True (Accepted) True (ResolvedRefs) True"
    assert line_with(result.stdout, "UDPRoute") == "default UDPRoute dns True (Accepted) True (ResolvedRefs) True"


def test_get_routes_in_an_empty_namespace_says_none_found(agent: str) -> None:
    result = gwctl("get", "routes", "-n", "elsewhere", "--agent", agent)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert plain(result.stderr) == "No routes found in namespace elsewhere."


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_get_routes_json_and_yaml_round_trip_the_agents_objects(agent: str, state: AgentState,
                                                                output: str) -> None:
    result = gwctl("get", "routes", "-A", "-o", output, "--agent", agent)
    assert result.exit_code == 0, result.stderr
    parsed = parse_json(result.stdout) if output == "json" else yaml.safe_load(result.stdout)
    assert parsed == [o for o in objects_document(state.translation.statuses) if o["kind"] in ROUTE_KINDS]
    assert [o["metadata"]["name"] for o in parsed] == ["db", "dns"]


@pytest.mark.parametrize("kind", ["gatewayclasses", "gatewayclass", "gc"])
def test_get_gatewayclasses_shows_the_class_accepted(agent: str, kind: str) -> None:
    result = gwctl("get", kind, "--agent", agent)
    assert result.exit_code == 0, result.stderr
    assert line_with(result.stdout, "NAME") == "NAME ACCEPTED"
    assert line_with(result.stdout, "xdp-gateway") == "xdp-gateway True (Accepted)"


def test_describe_gateway_shows_listeners_and_condition_tables(agent: str) -> None:
    result = gwctl("describe", "gateway", "edge", "--agent", agent)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert line_with(out, "Name:") == "Name: edge"
    assert line_with(out, "Namespace:") == "Namespace: default"
    assert line_with(out, "Kind:") == "Kind: Gateway (gateway.networking.k8s.io/v1)"
    assert line_with(out, "Addresses:") == "Addresses: 10.99.100.1"
    assert line_with(out, "Listener db:") == "Listener db: attachedRoutes=1 supportedKinds=[TCPRoute]"
    assert line_with(out, "Listener dns:") == "Listener dns: attachedRoutes=1 supportedKinds=[UDPRoute]"
    assert plain(out).count("TYPE STATUS REASON LAST TRANSITION MESSAGE") == 3  # gateway + 2 listeners
    assert line_with(out, "Gateway is programmed") == (
        f"Programmed True Programmed {NOW_TEXT} Gateway is programmed in the data path")
    assert plain(out).count(f"Conflicted False NoConflicts {NOW_TEXT} No conflicts") == 2


def test_describe_route_shows_its_parent_and_conditions(agent: str) -> None:
    result = gwctl("describe", "route", "db", "--agent", agent)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert line_with(out, "Kind:") == "Kind: TCPRoute (gateway.networking.k8s.io/v1alpha2)"
    assert line_with(out, "Parent") == (
        "Parent Gateway edge sectionName=db (controller xdp-gateway.io/gateway-controller)")
    assert line_with(out, "ResolvedRefs").startswith(f"ResolvedRefs True ResolvedRefs {NOW_TEXT}")
    assert line_with(out, f"Accepted {NOW_TEXT}").startswith("Accepted True Accepted")


def test_describe_gatewayclass_ignores_the_namespace(agent: str) -> None:
    result = gwctl("describe", "gc", "xdp-gateway", "-n", "anything", "--agent", agent)
    assert result.exit_code == 0, result.stderr
    assert line_with(result.stdout, "Name:") == "Name: xdp-gateway"
    assert "Namespace:" not in result.stdout


@pytest.mark.parametrize("args", [("get", "widgets"), ("describe", "widget", "edge")])
def test_unknown_kind_exits_2(agent: str, args: tuple[str, ...]) -> None:
    result = gwctl(*args, "--agent", agent)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert plain(result.stderr).startswith("error: unknown kind 'widget")
    assert "use gateways, gatewayclasses or routes" in plain(result.stderr)


@pytest.mark.parametrize(("args", "what"), [
    (("describe", "gateway", "nope"), "gateways default/nope"),
    (("describe", "route", "db", "-n", "other"), "routes other/db"),
])
def test_describe_missing_object_exits_1_not_found(agent: str, args: tuple[str, ...], what: str) -> None:
    result = gwctl(*args, "--agent", agent)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert plain(result.stderr) == f"error: {what} not found"


# -- run: only the refusals (anything else would load programs into the kernel) --------------


def test_run_with_a_missing_config_directory_exits_2_before_touching_the_kernel(
        tmp_path: Path, keep_root_logger: None) -> None:
    pins = tmp_path / "pins"
    result = gwctl("run", "--config", str(tmp_path / "nonexistent"), "-i", "lo", "--pin-dir", str(pins))
    assert result.exit_code == 2
    assert plain(result.stderr) == f"error: --config {tmp_path / 'nonexistent'}: not a directory"
    assert not pins.exists()


@pytest.mark.parametrize("option", ["--address", "--snat-address"])
@pytest.mark.parametrize("value", ["not-an-ip", "[/x]"])  # the second once crashed rich's markup
def test_run_with_a_bad_address_exits_2_before_touching_the_kernel(
        tmp_path: Path, keep_root_logger: None, option: str, value: str) -> None:
    pins = tmp_path / "pins"
    result = gwctl("run", "--config", str(EXAMPLES), "-i", "lo", option, value, "--pin-dir", str(pins))
    assert result.exit_code == 2
    assert plain(result.stderr) == f"error: '{value}' does not appear to be an IPv4 or IPv6 address"
    assert not pins.exists()


@pytest.mark.parametrize("option, value", [("--read-back-share", "0"), ("--read-back-share", "1.5"),
                                           ("--read-back-interval", "-1")])
def test_run_with_a_bad_read_back_rhythm_exits_2_before_touching_the_kernel(
        tmp_path: Path, keep_root_logger: None, option: str, value: str) -> None:
    pins = tmp_path / "pins"
    result = gwctl("run", "--config", str(EXAMPLES), "-i", "lo", option, value, "--pin-dir", str(pins))
    assert result.exit_code == 2
    assert plain(result.stderr) == ("error: the read-back interval must be >= 0 seconds and its share of the "
                                    "time in (0, 1]")
    assert not pins.exists()


@pytest.mark.parametrize("args, message", [
    ((), "give exactly one of --config DIR and --kubernetes"),
    (("--config", str(EXAMPLES), "--kubernetes"), "give exactly one of --config DIR and --kubernetes"),
])
def test_run_needs_exactly_one_source(tmp_path: Path, keep_root_logger: None, args: tuple, message: str) -> None:
    pins = tmp_path / "pins"
    result = gwctl("run", *args, "-i", "lo", "--pin-dir", str(pins))
    assert result.exit_code == 2
    assert plain(result.stderr) == f"error: {message}"
    assert not pins.exists()


def test_run_with_a_missing_kubeconfig_exits_2_before_touching_the_kernel(tmp_path: Path, keep_root_logger: None) -> None:
    pins = tmp_path / "pins"
    missing = tmp_path / "kubeconfig"
    result = gwctl("run", "--kubeconfig", str(missing), "-i", "lo", "--pin-dir", str(pins))
    assert result.exit_code == 2
    assert plain(result.stderr) == f"error: --kubeconfig {missing}: no such file"
    assert not pins.exists()


def test_run_without_an_interface_is_a_usage_error(tmp_path: Path) -> None:
    result = gwctl("run", "--config", str(EXAMPLES), "--pin-dir", str(tmp_path / "pins"))
    assert result.exit_code == 2
    assert "Missing option '--interface'" in plain(result.stderr)


# -- shell completion ---------------------------------------------------------------------------
# This typer detects the shell with shellingham unless told not to; with detection off,
# --show-completion takes the shell as its value, which keeps the tests independent of
# the shell running them.


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o default -F _gwctl_completion gwctl"),
    ("zsh", "compdef _gwctl_completion gwctl"),
    ("fish", "complete --command gwctl"),
])
def test_show_completion_prints_a_script(monkeypatch: pytest.MonkeyPatch, shell: str, marker: str) -> None:
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    result = gwctl("--show-completion", shell)
    assert result.exit_code == 0, result.stderr
    assert marker in result.stdout
    assert "_GWCTL_COMPLETE=complete_" in result.stdout


def test_show_completion_refuses_an_unsupported_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    result = gwctl("--show-completion", "tcsh")
    assert result.exit_code == 2
    assert "tcsh" in plain(result.stderr)


@pytest.mark.parametrize(("words", "cword", "expected"), [
    ("gwctl de", "1", ["describe"]),
    ("gwctl get --", "2", ["--namespace", "--all-namespaces", "--output", "--agent", "--help"]),
])
def test_the_completion_script_protocol_completes_commands_and_options(words: str, cword: str,
                                                                       expected: list[str]) -> None:
    result = gwctl(env={"_GWCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == expected


# -- failures nobody planned for: one line, never a traceback ------------------------------


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit), result.exception  # nothing escaped
    lines = [line for line in _ANSI.sub("", result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def serve() -> Iterator:
    """Starts an HTTP server answering every GET with the given body; yields its URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(body: bytes) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_get_from_an_agent_answering_garbage_is_one_line(serve) -> None:
    result = gwctl("get", "routes", "--agent", serve(b"<html>not the agent</html>"))
    assert_one_line_error(result, "unexpected JSONDecodeError")


def test_describe_from_an_agent_answering_the_wrong_shape_is_one_line(serve) -> None:
    result = gwctl("describe", "gateway", "edge", "--agent", serve(b'[{"kind": "Gateway"}]'))
    assert_one_line_error(result, "unexpected KeyError", "metadata")


def test_validate_without_schemas_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDPGW_GATEWAY_API_CRDS", str(tmp_path / "crds"))
    result = gwctl("validate", str(EXAMPLES))
    assert_one_line_error(result, "Gateway API CRDs not found", str(tmp_path / "crds" / "standard"),
                          "XDPGW_GATEWAY_API_CRDS")


def test_a_long_error_stays_on_one_line_on_a_narrow_console(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_console_width(monkeypatch, 40)
    monkeypatch.setenv("XDPGW_GATEWAY_API_CRDS", str(tmp_path / "a-rather-long-directory-name" / "crds"))
    assert_one_line_error(gwctl("validate", str(EXAMPLES)), "Gateway API CRDs not found")


@pytest.mark.parametrize(("error", "line"), [
    (PermissionError(13, "Operation not permitted", "/sys/fs/bpf/x"),
     "permission denied (/sys/fs/bpf/x): gwctl needs root (CAP_BPF, CAP_NET_ADMIN) for this"),
    (FileNotFoundError(2, "No such file or directory", "/lib/modules/x"), "/lib/modules/x: No such file or directory"),
    (RuntimeError("Failed to compile BPF module <text>\nsecond line"),
     "unexpected RuntimeError: Failed to compile BPF module <text> second line"),
    (KeyError("metadata"), "unexpected KeyError: 'metadata'"),
])
def test_failure_message_is_one_line_naming_the_exception(error: Exception, line: str) -> None:
    assert cli.failure_message(error) == line


def test_our_own_errors_are_printed_as_written() -> None:
    from ctl.dataplane.abicheck import AbiMismatch
    from ctl.dataplane.loader import PinnedMapMismatch

    assert cli.failure_message(PinnedMapMismatch("/p/ct_fwd_v1: pinned map has\nanother shape")) == \
        "/p/ct_fwd_v1: pinned map has another shape"
    assert cli.failure_message(AbiMismatch("map ct_fwd value, struct ct_entry")) == "map ct_fwd value, struct ct_entry"


def test_validate_table_shows_ipv6_frontends_and_backends(tmp_path: Path) -> None:
    # Regression: "[fd99:100::1]:80/TCP" was read as a rich style tag and printed as ":80/TCP".
    for source in EXAMPLES.glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text().replace("10.99.100.1", "fd99:100::1")
                                            .replace("addressType: IPv4", "addressType: IPv6")
                                            .replace("[10.99.1", "['fd99:1").replace(".2]", "::2']"))
    result = gwctl("validate", str(tmp_path), "--snat-address", "fd99:10::1")
    assert result.exit_code == 0, result.stderr
    assert line_with(result.stdout, "[fd99:100::1]:80/TCP", "TCPRoute default/db", "[fd99:10::2]:8080 (70)")
    assert line_with(result.stdout, "[fd99:100::1]:53/UDP")


def test_status_table_shows_ipv6_frontends_and_backends() -> None:
    from rich.console import Console

    from ctl.status import BackendRow, FrontendRow, Status, render

    backend = BackendRow(1, "[fd99:10::2]:8080", 1.0, 16381, 1.0, 3, 4, 400, 4, 400)
    frontend = FrontendRow(0, "[fd99:100::1]:80/TCP", "TCPRoute default/db", "snat", "fd99:10::1", 3, 0, 0.0,
                           (backend,))
    console = Console(record=True, width=250, emoji=False)
    render(Status((frontend,), 0, 0, {}, {}, {}, {}), console)
    assert line_with(console.export_text(), "[fd99:100::1]:80/TCP", "TCPRoute default/db", "[fd99:10::2]:8080")


def test_describe_prints_condition_messages_and_listener_kinds_as_text(capsys) -> None:
    obj = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"name": "gw", "namespace": "default"},
           "status": {"addresses": [{"value": "fd99:100::1"}],
                      "conditions": [{"type": "Programmed", "status": "False", "reason": "Invalid",
                                      "lastTransitionTime": "2025-01-01T00:00:00Z",
                                      "message": "backend [fd99:10::2]:8080 [bold]unreachable"}],
                      "listeners": [{"name": "tcp", "attachedRoutes": 1, "supportedKinds": [{"kind": "TCPRoute"}],
                                     "conditions": []}]}}
    cli.describe_object(obj)
    text = plain(capsys.readouterr().out)
    assert "backend [fd99:10::2]:8080 [bold]unreachable" in text
    assert "Addresses: fd99:100::1" in text and "supportedKinds=[TCPRoute]" in text
