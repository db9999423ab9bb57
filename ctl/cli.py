"""gwctl: run the agent, and look at what it and the kernel are doing.

Commands stay thin: they parse options and hand off to plain functions. Errors go to
stderr with a non-zero exit code."""

from __future__ import annotations

import json
import socket
import sys
import threading
from datetime import datetime, timezone
from enum import Enum
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from ctl.capacity import DEFAULT as DEFAULT_CAPACITY


class OneLineErrors(TyperGroup):
    """Any failure of any command ends as one line on stderr and exit 1, never a traceback."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:  # noqa: BLE001 - the last line of defence
            # Exits, aborts and usage errors carry their own exit code and message (their
            # classes are click's or typer's own copy of click's, depending on typer).
            if isinstance(error, typer.Abort) or hasattr(error, "exit_code"):
                raise
            raise fail(failure_message(error)) from None


app = typer.Typer(help="xdp-gateway: Gateway API with a kernel L4 data path.", no_args_is_help=True,
                  cls=OneLineErrors, pretty_exceptions_enable=False)
# emoji=False: rich would render the ":100:" of an IPv6 address such as fd99:100::1 as an emoji.
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)

DEFAULT_PIN_DIR = Path("/sys/fs/bpf/xdp-gateway")
DEFAULT_AGENT = "http://127.0.0.1:9480"


class Output(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


class Nat(str, Enum):
    snat = "snat"
    dnat = "dnat"


class Attach(str, Enum):
    xdp = "xdp"
    xdp_native = "xdp-native"
    xdp_generic = "xdp-generic"
    tc = "tc"


def fail(message: str, code: int = 1) -> typer.Exit:
    # escape: messages quote user input, which rich would otherwise read as markup;
    # soft_wrap: one line however narrow the terminal
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def failure_message(error: BaseException) -> str:
    """One line for an exception no command handled, naming it unless its type says enough."""
    text = " ".join(str(error).split())
    if type(error).__module__.startswith("ctl."):
        return text  # our own errors are written for the user (AbiMismatch, missing schemas, ...)
    if isinstance(error, PermissionError):
        where = f" ({error.filename})" if error.filename else ""
        return f"permission denied{where}: gwctl needs root (CAP_BPF, CAP_NET_ADMIN) for this"
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    return f"unexpected {type(error).__name__}: {text or '(no message)'}"


def emit(document: Any, output: Output) -> None:
    if output is Output.json:
        out.print_json(json.dumps(document, default=str))
    else:
        # soft_wrap: rich would otherwise re-wrap long lines at the console width and
        # break the YAML; markup=False: values are data, not rich markup
        out.print(yaml.safe_dump(document, sort_keys=False, default_flow_style=False), end="",
                  highlight=False, markup=False, soft_wrap=True)


PinDir = Annotated[Path, typer.Option("--pin-dir", help="bpffs directory of the data path's maps")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table, json or yaml")]
AgentOpt = Annotated[str, typer.Option("--agent", help="the agent's local API", envvar="GWCTL_AGENT")]


@app.command()
def version() -> None:
    """Print gwctl's version."""
    from importlib.metadata import PackageNotFoundError, version as package_version

    try:
        out.print(package_version("xdp-gateway"), highlight=False)
    except PackageNotFoundError:
        out.print("unknown (not installed as a package)")


@app.command()
def run(
    interface: Annotated[list[str], typer.Option("--interface", "-i", help="gateway interface (repeat)")],
    config: Annotated[Optional[Path], typer.Option("--config", help="directory of YAML manifests, watched")] = None,
    kubernetes: Annotated[bool, typer.Option("--kubernetes", help="watch the cluster instead of a directory (in-cluster config unless --kubeconfig)")] = False,
    kubeconfig: Annotated[Optional[Path], typer.Option("--kubeconfig", help="kubeconfig file (implies --kubernetes)")] = None,
    run_dir: Annotated[Optional[Path], typer.Option("--run-dir", help="private run directory: ADS socket, Envoy pid file and admin socket (default /run/<pin dir name>)")] = None,
    envoy: Annotated[bool, typer.Option("--envoy/--no-envoy", help="start and supervise Envoy for L7 listeners (standalone)")] = True,
    node_name: Annotated[str, typer.Option("--node-name", envvar="NODE_NAME", help="this node's name (status reports)")] = "",
    namespace: Annotated[str, typer.Option("--namespace", envvar="POD_NAMESPACE", help="the agent's namespace (its Leases)")] = "xdp-gateway",
    lease_duration: Annotated[int, typer.Option("--lease-duration", help="seconds a node report or the writer Lease stays valid")] = 15,
    address: Annotated[Optional[list[str]], typer.Option("--address", help="gateway address for Gateways without spec.addresses (repeat)")] = None,
    snat_address: Annotated[Optional[list[str]], typer.Option("--snat-address", help="SNAT source address; repeat for several (up to 4 per family are used; default: first address of each family on the interfaces)")] = None,
    nat: Annotated[Nat, typer.Option("--nat", help="snat or dnat")] = Nat.snat,
    attach: Annotated[Attach, typer.Option("--attach", help="xdp (native, else generic), xdp-native, xdp-generic or tc")] = Attach.xdp,
    pin_dir: PinDir = DEFAULT_PIN_DIR,
    program_cache: Annotated[Path, typer.Option("--program-cache", help="directory where compiled programs are kept, so that a start without pinned programs (a fresh --pin-dir, a rebooted node) loads instead of compiling")] = Path("/var/cache/xdp-gateway/programs"),
    listen: Annotated[str, typer.Option("--listen", help="host:port for /metrics, /healthz, /readyz and the API")] = "127.0.0.1:9480",
    hash_seed: Annotated[int, typer.Option("--hash-seed", help="Maglev and flow hash seed; the same on every node")] = 0,
    maglev_size: Annotated[int, typer.Option("--maglev-size", help="prime number of slots per table")] = DEFAULT_CAPACITY.maglev_size,
    max_services: Annotated[int, typer.Option("--max-services", help="frontend capacity of the maps")] = DEFAULT_CAPACITY.max_services,
    max_backends: Annotated[int, typer.Option("--max-backends", help="backend capacity of the maps")] = DEFAULT_CAPACITY.max_backends,
    ct_size: Annotated[int, typer.Option("--ct-size", help="conntrack capacity (flows, LRU)")] = DEFAULT_CAPACITY.ct_size,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    read_back_interval: Annotated[Optional[float], typer.Option("--read-back-interval", hidden=True, help="seconds between read-backs of the maps while idle (default 10; benchmarks)")] = None,
    read_back_share: Annotated[Optional[float], typer.Option("--read-back-share", hidden=True, help="at most this share of an idle agent's time reads the maps back (default 0.01; benchmarks)")] = None,
) -> None:
    """Program the kernel from a directory of manifests (--config) or the cluster (--kubernetes)
    and keep it in step."""
    from ctl.agent import down, early_load, logs
    from ctl.agent.signals import stop_on_signals
    from ctl.dataplane.loader import DataplaneSpec

    logs.configure(log_level)
    if (config is None) == (not (kubernetes or kubeconfig is not None)):
        raise fail("give exactly one of --config DIR and --kubernetes", 2)
    if config is not None and not config.is_dir():
        raise fail(f"--config {config}: not a directory", 2)
    if kubeconfig is not None and not kubeconfig.is_file():
        raise fail(f"--kubeconfig {kubeconfig}: no such file", 2)
    try:  # what AgentOptions checks, before anything loads
        addresses = tuple(ip_address(a) for a in address or ())
        snat_addresses = tuple(ip_address(a) for a in snat_address or ())
        early_load.check_read_back(1.0 if read_back_interval is None else read_back_interval,
                                   1.0 if read_back_share is None else read_back_share)
    except ValueError as error:
        raise fail(str(error), 2)
    # The programs load (the verifier's time) while the rest of the agent is imported.
    early = None
    if down.running_agent(down.run_paths(pin_dir, run_dir)) is None:  # else run_agent says so
        try:
            early = early_load.start(DataplaneSpec(
                pin_dir=pin_dir, maglev_size=maglev_size, max_services=max_services, max_backends=max_backends,
                ct_size=ct_size, program_cache=program_cache), tuple(interface))
        except ValueError as error:
            raise fail(str(error))
    from ctl.agent.run import AgentError, AgentOptions, run_agent
    from ctl.model import NatMode

    try:
        options = AgentOptions(
            config_dir=config, interfaces=tuple(interface),
            addresses=addresses, snat_addresses=snat_addresses,
            nat=NatMode(nat.value), attach=attach.value, pin_dir=pin_dir, program_cache=program_cache, listen=listen,
            hash_seed=hash_seed, maglev_size=maglev_size, max_services=max_services,
            max_backends=max_backends, ct_size=ct_size,
            kubernetes=kubernetes or kubeconfig is not None, kubeconfig=kubeconfig,
            run_dir=run_dir, envoy=envoy,
            node_name=node_name or socket.gethostname(), namespace=namespace, lease_duration=lease_duration,
            **{name: value for name, value in (("read_back_interval", read_back_interval),
                                               ("read_back_share", read_back_share)) if value is not None},
        )
    except ValueError as error:
        raise fail(str(error), 2)
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        run_agent(options, stop, early)
    except (AgentError, ValueError, OSError) as error:
        raise fail(str(error))


@app.command()
def down(
    pin_dir: PinDir = DEFAULT_PIN_DIR,
    run_dir: Annotated[Optional[Path], typer.Option("--run-dir", help="the agent's run directory (default /run/<pin dir name>)")] = None,
) -> None:
    """Take the gateway off this host: its programs off the interfaces, the Envoy it started,
    its pinned maps and programs. Run it after stopping the agent; the program cache stays."""
    from ctl.agent.down import AgentRunning, take_down
    from l7sidecar.envoy import RunPaths

    try:
        report = take_down(pin_dir, RunPaths(run_dir or Path("/run") / pin_dir.name))
    except AgentRunning as error:
        raise fail(str(error))
    except OSError as error:
        raise fail(f"cannot take the gateway down: {error}")
    for attachment in report.detached:
        out.print(f"detached {attachment.hook} from {attachment.interface}")
    if report.envoy_stopped:
        out.print("stopped Envoy")
    out.print(f"removed {report.pins_removed} pins from {report.pin_dir}" if report.pins_removed
              else f"nothing pinned in {report.pin_dir}")


@app.command("envoy-bootstrap")
def envoy_bootstrap(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="the agent's private run directory (ADS socket, Envoy admin socket)")] = Path("/run/xdp-gateway"),
    node_id: Annotated[Optional[str], typer.Option("--node-id", help="Envoy node id (default: xdp-gateway~<hostname>)")] = None,
) -> None:
    """Print the bootstrap for an Envoy that the agent configures over ADS (e.g. a second container)."""
    from l7sidecar.envoy import RunPaths, bootstrap, default_node_id

    paths = RunPaths(run_dir)
    typer.echo(json.dumps(bootstrap(node_id or default_node_id(), paths.ads_socket, paths.admin_socket), indent=2))


@app.command()
def status(pin_dir: PinDir = DEFAULT_PIN_DIR, output: OutputOpt = Output.table) -> None:
    """What the kernel is doing, read from the pinned maps (works while the agent is down)."""
    from ctl import status as st

    try:
        collected = st.collect(pin_dir)
    except (FileNotFoundError, PermissionError, OSError) as error:
        raise fail(f"cannot read the data path's maps: {error}")
    if output is Output.table:
        st.render(collected, out)
    else:
        emit(collected.to_dict(), output)


def fetch_objects(agent: str) -> list[dict]:
    import urllib.error  # here: `gwctl run` starts without it (ctl.agent.early_load)
    import urllib.request

    try:
        with urllib.request.urlopen(f"{agent}/api/v1/objects", timeout=5) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError) as error:
        raise fail(f"the agent at {agent} is not answering ({getattr(error, 'reason', error)}); "
                   "is `gwctl run` running? (`gwctl status` reads the kernel without it)")


class Kind(str, Enum):
    gateways = "gateways"
    gatewayclasses = "gatewayclasses"
    routes = "routes"


_KINDS = {
    Kind.gateways: {"Gateway"},
    Kind.gatewayclasses: {"GatewayClass"},
    Kind.routes: {"TCPRoute", "UDPRoute", "TLSRoute", "HTTPRoute", "GRPCRoute"},
}
_ALIASES = {"gateway": Kind.gateways, "gw": Kind.gateways, "route": Kind.routes,
            "gatewayclass": Kind.gatewayclasses, "gc": Kind.gatewayclasses}


def _select(objects: list[dict], kind: Kind, namespace: str | None, name: str | None = None) -> list[dict]:
    return [o for o in objects
            if o["kind"] in _KINDS[kind]
            and (namespace is None or o["metadata"].get("namespace") in (namespace, None))
            and (name is None or o["metadata"]["name"] == name)]


def _condition(conditions: list[dict], kind: str) -> str:
    c = next((c for c in conditions if c["type"] == kind), None)
    return f"{c['status']} ({c['reason']})" if c else "-"


def route_programmed(route: dict, objects: list[dict]) -> str:
    """Routes have no Programmed condition of their own: a route is programmed when it is
    accepted by a parent and the listeners it attaches to there are Programmed (for L7
    listeners: Envoy ACKed them)."""
    namespace = route["metadata"].get("namespace", "default")
    gateways = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects if o["kind"] == "Gateway"}
    verdicts = []
    for parent in route["status"].get("parents", []):
        ref = parent.get("parentRef", {})
        accepted = any(c["type"] == "Accepted" and c["status"] == "True" for c in parent.get("conditions", []))
        gateway = gateways.get((ref.get("namespace", namespace), ref.get("name")))
        if not accepted or gateway is None:
            continue
        listeners = [entry for entry in gateway["status"].get("listeners", [])
                     if ref.get("sectionName") in (None, entry["name"])
                     and any(k.get("kind") == route["kind"] for k in entry.get("supportedKinds", []))]
        for entry in listeners:
            programmed = next((c for c in entry.get("conditions", []) if c["type"] == "Programmed"), None)
            verdicts.append((entry["name"], programmed))
    if not verdicts:
        return "-"
    pending = [(name, c) for name, c in verdicts if c is None or c["status"] != "True"]
    if not pending:
        return "True"
    name, c = pending[0]
    return f"False (listener {name}: {c['reason'] if c else 'no condition'})"


def _route_conditions(obj: dict) -> list[dict]:
    return [c for p in obj["status"].get("parents", []) for c in p.get("conditions", [])]


@app.command()
def get(
    kind: Annotated[str, typer.Argument(help="gateways, gatewayclasses or routes")],
    namespace: Annotated[Optional[str], typer.Option("--namespace", "-n")] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    output: OutputOpt = Output.table,
    agent: AgentOpt = DEFAULT_AGENT,
) -> None:
    """List objects with their conditions, from the running agent."""
    chosen = _kind(kind)
    ns = None if all_namespaces else (namespace or "default")
    everything = fetch_objects(agent)
    objects = _select(everything, chosen, None if chosen is Kind.gatewayclasses else ns)
    if output is not Output.table:
        emit(objects, output)
        return
    table = Table(box=None, pad_edge=False)
    if chosen is Kind.gateways:
        cols = ("NAMESPACE", "NAME", "ADDRESSES", "ACCEPTED", "PROGRAMMED", "LISTENERS")
        rows = [(o["metadata"]["namespace"], o["metadata"]["name"],
                 ",".join(a["value"] for a in o["status"].get("addresses", [])),
                 _condition(o["status"]["conditions"], "Accepted"),
                 _condition(o["status"]["conditions"], "Programmed"),
                 str(len(o["status"].get("listeners", [])))) for o in objects]
    elif chosen is Kind.routes:
        cols = ("NAMESPACE", "KIND", "NAME", "ACCEPTED", "RESOLVEDREFS", "PROGRAMMED")
        rows = [(o["metadata"]["namespace"], o["kind"], o["metadata"]["name"],
                 _condition(_route_conditions(o), "Accepted"),
                 _condition(_route_conditions(o), "ResolvedRefs"),
                 route_programmed(o, everything)) for o in objects]
    else:
        cols = ("NAME", "ACCEPTED")
        rows = [(o["metadata"]["name"], _condition(o["status"]["conditions"], "Accepted")) for o in objects]
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*map(Text, row))
    if not rows:
        err.print(f"No {chosen.value} found" + (f" in namespace {ns}" if ns else "") + ".", markup=False)
        return
    out.print(table)


def _kind(text: str) -> Kind:
    try:
        return _ALIASES.get(text) or Kind(text)
    except ValueError:
        raise fail(f"unknown kind {text!r}: use gateways, gatewayclasses or routes", 2)


@app.command()
def describe(
    kind: Annotated[str, typer.Argument(help="gateway, gatewayclass or route")],
    name: Annotated[str, typer.Argument()],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    agent: AgentOpt = DEFAULT_AGENT,
) -> None:
    """One object's status, conditions laid out the way kubectl describe shows them."""
    chosen = _kind(kind)
    found = _select(fetch_objects(agent), chosen, None if chosen is Kind.gatewayclasses else namespace, name)
    if not found:
        raise fail(f"{chosen.value} {namespace}/{name} not found")
    for obj in found:
        describe_object(obj)


def describe_object(obj: dict) -> None:
    meta = obj["metadata"]
    out.print(f"[bold]Name:[/bold]         {escape(meta['name'])}", highlight=False)
    if "namespace" in meta:
        out.print(f"[bold]Namespace:[/bold]    {escape(meta['namespace'])}", highlight=False)
    out.print(f"[bold]Kind:[/bold]         {obj['kind']} ({obj['apiVersion']})", highlight=False)
    st = obj["status"]
    if st.get("addresses"):
        out.print("[bold]Addresses:[/bold]    " + escape(", ".join(a["value"] for a in st["addresses"])),
                  highlight=False)
    if st.get("conditions"):
        _conditions_table("Conditions", st["conditions"])
    for listener in st.get("listeners", []):
        kinds = ", ".join(k["kind"] for k in listener.get("supportedKinds", []))
        out.print(f"[bold]Listener {escape(listener['name'])}:[/bold] attachedRoutes={listener['attachedRoutes']} "
                  f"supportedKinds={escape(f'[{kinds}]')}", highlight=False)
        _conditions_table("  Conditions", listener["conditions"])
    for parent in st.get("parents", []):
        ref = parent["parentRef"]
        target = "/".join(filter(None, [ref.get("namespace"), ref["name"]]))
        extra = "".join(f" {k}={ref[k]}" for k in ("sectionName", "port") if k in ref)
        out.print(f"[bold]Parent {ref.get('kind', 'Gateway')} {escape(target + extra)}[/bold] "
                  f"(controller {parent['controllerName']})", highlight=False)
        _conditions_table("  Conditions", parent["conditions"])


def _conditions_table(title: str, conditions: list[dict]) -> None:
    out.print(f"[bold]{title}:[/bold]")
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 4 if title.startswith(" ") else 2))
    for col in ("TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"):
        table.add_column(col)
    for c in conditions:
        # messages quote user input (names, addresses): text, not markup
        table.add_row(*map(Text, (c["type"], c["status"], c["reason"], c["lastTransitionTime"], c["message"])))
    out.print(table)


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="YAML files or directories")],
    address: Annotated[Optional[list[str]], typer.Option("--address", help="gateway address to assume")] = None,
    snat_address: Annotated[Optional[list[str]], typer.Option("--snat-address")] = None,
    nat: Annotated[Nat, typer.Option("--nat")] = Nat.snat,
    output: OutputOpt = Output.table,
) -> None:
    """Validate manifests offline and dry-run the translation: what would be programmed
    and every condition. Exits non-zero on invalid input."""
    from ctl.model import NatMode
    from ctl.validate import dry_run

    try:
        result = dry_run(paths, tuple(ip_address(a) for a in address or ()),
                         tuple(ip_address(a) for a in snat_address or ()), NatMode(nat.value),
                         datetime.now(timezone.utc))
    except ValueError as error:
        raise fail(str(error), 2)
    for warning in result.warnings:
        err.print(f"[yellow]WARNING:[/yellow] {escape(warning)}", highlight=False)
    if result.problems:
        for problem in result.problems:
            err.print(f"[red]invalid:[/red] {escape(str(problem))}", highlight=False)
        raise typer.Exit(1)
    if output is not Output.table:
        emit({"programmed": result.programmed, "objects": result.objects}, output)
        return
    table = Table(title="Would program", title_justify="left")
    for col in ("FRONTEND", "ROUTE", "NAT", "BACKENDS (weight)", "REFUSED SHARE"):
        table.add_column(col)
    for svc in result.programmed:
        # Text, not markup: rich reads "[fd99:100::1]:80/TCP" as a style tag.
        table.add_row(*map(Text, (svc["frontend"], svc["owner"], svc["nat"],
                                  ", ".join(f"{b['endpoint']} ({b['weight']})" for b in svc["backends"]) or "-",
                                  str(svc["rejectWeight"]))))
    out.print(table)
    for obj in result.objects:
        describe_object(obj)
        out.print()


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(app())
