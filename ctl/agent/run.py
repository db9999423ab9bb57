"""Standalone mode: a directory of manifests in, the kernel programmed, state served.

Effects live here (loading programs, attaching, sysctls, the HTTP server); the logic
is in the reconciler, translation and the planner."""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import cache
from ipaddress import ip_address
from pathlib import Path

from prometheus_client import CollectorRegistry
from pyroute2 import IPRoute

from ctl.capacity import DEFAULT as DEFAULT_CAPACITY
from ctl.dataplane import loader
from ctl.dataplane.dataplane import READ_BACK_SHARE, Dataplane, ReadBackAbandoned
from ctl.dataplane.loader import DataplaneSpec, XdpMode
from ctl.model import IPAddress, NatMode
from ctl.dataplane.plan import DataplaneConfig
from ctl.sources import ParseCache, load_directory
from ctl.sources.generations import GenerationBook
from ctl.translate import TranslateConfig

from l7sidecar.envoy import RunPaths

from . import datapath_watch, down, early_load
from .early_load import EarlyLoad
from .heap import Collector
from .handoff import LocalAddresses
from .l7_on_demand import OnDemandL7
from .metrics import AgentMetrics, DataplaneCollector
from .reconciler import ReconcileOutcome, Reconciler
from .server import AgentServer
from .watch import POLL_INTERVAL, SETTLE_WINDOW, watch_directory

log = logging.getLogger(__name__)

REPAIR_INTERVAL = 10.0  # seconds between read-backs of the maps while idle


@dataclass(frozen=True)
class AgentOptions:
    config_dir: Path | None  # None with kubernetes
    interfaces: tuple[str, ...]
    addresses: tuple[IPAddress, ...] = ()
    snat_addresses: tuple[IPAddress, ...] = ()
    nat: NatMode = NatMode.SNAT
    attach: str = "xdp"  # xdp (native, else generic), xdp-native, xdp-generic, tc
    pin_dir: Path = Path("/sys/fs/bpf/xdp-gateway")
    # Compiled programs kept for starts that find none pinned (ctl/dataplane/progcache.py).
    program_cache: Path | None = Path("/var/cache/xdp-gateway/programs")
    listen: str = "127.0.0.1:9480"
    hash_seed: int = 0
    maglev_size: int = DEFAULT_CAPACITY.maglev_size
    max_services: int = DEFAULT_CAPACITY.max_services
    max_backends: int = DEFAULT_CAPACITY.max_backends
    ct_size: int = DEFAULT_CAPACITY.ct_size
    poll_interval: float = POLL_INTERVAL
    settle_window: float = SETTLE_WINDOW  # quiet time before a burst of edits is programmed
    kubernetes: bool = False  # watch the cluster (in-cluster config unless kubeconfig)
    kubeconfig: Path | None = None
    node_name: str = ""
    namespace: str = "xdp-gateway"
    lease_duration: int = 15
    # The agent's private run directory (ADS socket, Envoy's pid file, admin socket and
    # log); default /run/<name of the pin directory>, e.g. /run/xdp-gateway.
    run_dir: Path | None = None
    # Start and supervise Envoy (standalone); in a cluster it is a container of its own.
    envoy: bool = True
    # How often an idle agent reads the maps back to repair drift: at most every interval,
    # and at most this share of its time (benchmarks set them to see edits meet a read-back).
    read_back_interval: float = REPAIR_INTERVAL
    read_back_share: float = READ_BACK_SHARE

    def __post_init__(self) -> None:
        early_load.check_read_back(self.read_back_interval, self.read_back_share)

    @property
    def run_paths(self) -> RunPaths:
        return down.run_paths(self.pin_dir, self.run_dir)

    @property
    def dataplane_spec(self) -> DataplaneSpec:
        return DataplaneSpec(pin_dir=self.pin_dir, maglev_size=self.maglev_size, max_services=self.max_services,
                             max_backends=self.max_backends, ct_size=self.ct_size, program_cache=self.program_cache)


class AgentError(RuntimeError):
    """Cannot start: a missing interface, an unusable option."""


def interface_addresses(interfaces: tuple[str, ...]) -> dict[str, tuple[int, list[IPAddress]]]:
    """ifname -> (ifindex, global addresses), in this network namespace."""
    out = {}
    with IPRoute() as ipr:
        for name in interfaces:
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise AgentError(f"interface {name!r} does not exist in this network namespace")
            addrs = [ip_address(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr(index=found[0])
                     if a["scope"] == 0]
            out[name] = (found[0], addrs)
    return out


def default_snat_addresses(links: dict[str, tuple[int, list[IPAddress]]]) -> tuple[IPAddress, ...]:
    """The first address of each family on the interfaces, in the order given."""
    chosen: dict[int, IPAddress] = {}
    for _, addrs in links.values():
        for a in addrs:
            chosen.setdefault(a.version, a)
    return tuple(chosen[v] for v in sorted(chosen))


def _sysctl(path: str, value: str) -> None:
    # Written only when it differs: in a container /proc/sys is read-only, and the
    # chart's privileged node-setup init container has set these already.
    file = Path("/proc/sys", path)
    if file.read_text().strip() != value:
        file.write_text(value)


def prepare_kernel(interfaces: tuple[str, ...], nat: NatMode) -> None:
    for key in ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"):
        if Path("/proc/sys", key).read_text().strip() != "1":
            log.warning("forwarding is off; the FIB lookup in XDP needs it: enabling",
                        extra={"event": "sysctl", "key": key})
            _sysctl(key, "1")
    if nat is NatMode.SNAT:
        # A flow's first packets reach the kernel translated while the backend's
        # neighbour entry resolves; their source is our own address, which the kernel
        # forwards only with accept_local.
        for name in ("all", *interfaces):
            _sysctl(f"net/ipv4/conf/{name}/accept_local", "1")


def attach(dataplane: Dataplane, ifindex: int, how: str) -> str:
    match how:
        case "tc":
            dataplane.attach_tc(ifindex)
            return "tc"
        case "xdp-native":
            return dataplane.attach_xdp(ifindex, XdpMode.NATIVE).value
        case "xdp-generic":
            return dataplane.attach_xdp(ifindex, XdpMode.GENERIC).value
        case _:
            return dataplane.attach_xdp(ifindex, XdpMode.AUTO).value


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None)


def release_free_memory() -> None:
    """Gives the heap that the last reconcile freed back to the kernel. A plan holds
    every table it writes at once (64 KiB each at the default Maglev size), and glibc
    keeps such freed chunks mapped: after a cold start with 10,000 routes the agent
    would idle at about 1.1 GiB instead of 0.45. Cheap (milliseconds), and a no-op
    where the C library has no malloc_trim."""
    try:
        _libc().malloc_trim(0)
    except (AttributeError, OSError):
        pass


def run_agent(options: AgentOptions, stop: threading.Event, early: EarlyLoad | None = None) -> None:
    """early: the programs' load, started before this module was imported (`gwctl run`),
    of options.dataplane_spec."""
    if (pid := down.running_agent(options.run_paths)) is not None:
        raise AgentError(f"another agent (pid {pid}) runs with {options.pin_dir}; stop it first")
    down.record_agent(options.run_paths)  # for `gwctl down`, which must not pull the floor from under us
    try:
        _run_agent(options, stop, early)
    finally:
        down.forget_agent(options.run_paths)


def load_and_attach(spec: DataplaneSpec, options: AgentOptions,
                    links: dict[str, tuple[int, list[IPAddress]]], early: EarlyLoad | None = None) -> Dataplane:
    """The programs in the kernel and on the interfaces, the maps empty or as they were."""
    if early is not None:
        if early.spec != spec:
            raise AgentError(f"the programs were loaded for {early.spec}, not {spec}")
        dataplane = Dataplane(spec, early.programs.result())
    else:
        dataplane = Dataplane.load(spec)
    # Edits are planned against what the agent wrote (it is its pin directory's only
    # writer); the source's idle calls read the maps back now and then to repair drift.
    dataplane.remember_writes = True
    prepare_kernel(options.interfaces, options.nat)
    for name, (ifindex, _) in links.items():
        mode = attach(dataplane, ifindex, options.attach)
        if options.attach == "tc":
            loader.detach_xdp(ifindex)
        log.info("attached", extra={"event": "attached", "interface": name, "mode": mode})
    # Our programs now read this build's maps: an older build's maps and programs only cost kernel memory.
    if removed := loader.remove_superseded_pins(options.pin_dir, dataplane.programs.build):
        log.info("removed maps and programs an older build left", extra={"event": "superseded_pins", "pins": removed})
    return dataplane


def _run_agent(options: AgentOptions, stop: threading.Event, early: EarlyLoad | None) -> None:
    links = interface_addresses(options.interfaces)
    snat = options.snat_addresses or default_snat_addresses(links)
    spec = options.dataplane_spec
    dp_config = DataplaneConfig(hash_seed=options.hash_seed)
    reconciler = Reconciler(
        program=lambda desired: dataplane.program(desired, dp_config),  # dataplane: loaded below, before any reconcile
        config=TranslateConfig(now=datetime.now(timezone.utc), addresses=options.addresses, snat_addresses=snat, nat=options.nat),
    )
    parsed = ParseCache()  # an edit re-parses only the files it changed
    generations = GenerationBook()  # a spec edit bumps metadata.generation, as the API server does
    # No collector passes over the whole state inside a reconcile, nor between edits
    # that follow each other: the full pass waits for an idle moment.
    collector = Collector(full_when_idle=True)
    # Loading programs is mostly the verifier's time in the kernel (the GIL is free
    # meanwhile): the YAML is read, validated and translated beside it, and the first
    # reconcile finds that done. Nothing is written to the maps before both are done.
    with ThreadPoolExecutor(1, thread_name_prefix="load-programs") as pool:
        loading = pool.submit(load_and_attach, spec, options, links, early)
        if options.config_dir is not None:
            with collector.paused():
                loaded = load_directory(options.config_dir, parsed)
                snapshot, generations = generations.assign(loaded.snapshot)
                reconciler.translate_ahead(replace(loaded, snapshot=snapshot))
        dataplane = loading.result()  # its error, as raised (the same message and exit as before)

    # Cached next hops follow routing changes; SNAT exhaustion is logged, not silent.
    datapath_watch.start(datapath_watch.watch_routes, options.pin_dir, stop)
    datapath_watch.start(datapath_watch.watch_snat_exhaustion, options.pin_dir, stop)
    l7 = OnDemandL7(reconciler, options.run_paths, manage_envoy=options.envoy and not options.kubernetes,
                    handoff=LocalAddresses())
    l7.start()
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    registry.register(DataplaneCollector(options.pin_dir, lambda: {
        s.frontend: s.owner for s in (reconciler.state.translation.desired.services
                                      if reconciler.state.translation else ())}))
    host, _, port = options.listen.rpartition(":")
    server = AgentServer(host or "127.0.0.1", int(port), registry, lambda: reconciler.state)
    server.start()
    log.info("serving", extra={"event": "serving", "address": server.address,
                                "config": "kubernetes" if options.kubernetes else str(options.config_dir)})

    def repair(edit_waiting: Callable[[], bool]) -> None:
        # Edits are planned against what the agent wrote; while idle, the maps are read
        # back now and then so that drift is corrected too, giving way to any edit.
        collector.idle()
        translation = reconciler.state.translation
        if translation is None or not dataplane.repair_due(options.read_back_interval, options.read_back_share):
            return
        log.info("reading the maps back", extra={"event": "read_back", "last_seconds": dataplane.read_back_seconds})
        with collector.paused():
            try:
                repaired = dataplane.repair(translation.desired, dp_config, lambda: stop.is_set() or edit_waiting())
            except ReadBackAbandoned as abandoned:
                log.info("the read-back of the maps gave way (an edit waits, or the agent stops); "
                         "it goes on at the next idle moment", extra={"event": "read_back_abandoned", "map": str(abandoned)})
                return
            except (OSError, ValueError) as error:
                log.error("reading the maps back failed", extra={"event": "repair_failed", "error": str(error)})
                return
        if repaired:
            log.warning("the maps differed from what the agent wrote: repaired",
                        extra={"event": "repaired", "writes": len(repaired.ops)})

    try:
        if options.kubernetes:
            from .kubernetes import run_kubernetes  # the kubernetes client only when asked for

            def observe(outcome: ReconcileOutcome) -> None:
                metrics.observe(outcome)
                dataplane.settle()
                release_free_memory()

            run_kubernetes(options, reconciler, observe, stop, registry, collector, repair)
        else:
            assert options.config_dir is not None
            for _ in watch_directory(options.config_dir, options.poll_interval, sleep=stop.wait, stop=stop.is_set,
                                     settle=options.settle_window, idle=repair):
                if stop.is_set():
                    break
                with collector.paused():
                    loaded = load_directory(options.config_dir, parsed)
                    snapshot, generations = generations.assign(loaded.snapshot)
                    outcome = reconciler.reconcile(replace(loaded, snapshot=snapshot))
                metrics.observe(outcome)
                dataplane.settle()
                release_free_memory()
    finally:
        server.stop()
        l7.stop()  # Envoy keeps serving its last config; the next agent adopts it
        # Programs stay attached and maps pinned: traffic keeps flowing without us.
        log.info("stopped; the data path keeps forwarding", extra={"event": "stopped"})
