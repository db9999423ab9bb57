"""Prometheus metrics. Data-path counters are read from the pinned maps at scrape time
(the kernel is the source of truth); reconcile metrics are the agent's own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ctl.dataplane import bpfsys, reader
from ctl.dataplane.abi import WEIGHT_SCALE
from ctl.model import FrontendKey
from ctl.dataplane.pinned import PinnedMaps

PREFIX = "xdpgw"


class DataplaneCollector(Collector):
    def __init__(self, pin_dir: Path, owners: Callable[[], dict[FrontendKey, str]]):
        self.pin_dir = pin_dir
        self.owners = owners  # frontend -> the route that asked for it

    def collect(self) -> Iterator:
        try:
            with PinnedMaps.open(self.pin_dir) as maps:
                yield from self._collect(maps)
        except FileNotFoundError:
            return  # not loaded yet: no data-path metrics rather than an error

    def _collect(self, maps: PinnedMaps) -> Iterator:
        owners = self.owners()
        fe_labels = ["frontend", "route"]
        fe_packets = CounterMetricFamily(f"{PREFIX}_frontend_packets", "Packets through a frontend", labels=fe_labels + ["direction"])
        fe_bytes = CounterMetricFamily(f"{PREFIX}_frontend_bytes", "Bytes through a frontend", labels=fe_labels + ["direction"])
        fe_new = CounterMetricFamily(f"{PREFIX}_frontend_new_connections", "New flows (TCP connections, UDP flows)", labels=fe_labels)
        fe_rej = CounterMetricFamily(f"{PREFIX}_frontend_rejected", "Flows refused for invalid backends", labels=fe_labels)
        frontends = reader.read_frontends(maps)
        for key, record in frontends.items():
            c = reader.read_counters(maps, "svc_stats", record.service_id)
            labels = [str(key), owners.get(key, "")]
            fe_packets.add_metric(labels + ["in"], c.packets_in)
            fe_packets.add_metric(labels + ["out"], c.packets_out)
            fe_bytes.add_metric(labels + ["in"], c.bytes_in)
            fe_bytes.add_metric(labels + ["out"], c.bytes_out)
            fe_new.add_metric(labels, c.new_flows)
            fe_rej.add_metric(labels, c.rejected)
        yield from (fe_packets, fe_bytes, fe_new, fe_rej)

        be_packets = CounterMetricFamily(f"{PREFIX}_backend_packets", "Packets to and from a backend", labels=["backend", "direction"])
        be_bytes = CounterMetricFamily(f"{PREFIX}_backend_bytes", "Bytes to and from a backend", labels=["backend", "direction"])
        be_new = CounterMetricFamily(f"{PREFIX}_backend_new_connections", "New flows sent to a backend", labels=["backend"])
        backends = reader.read_backends(maps)
        for backend_id, endpoint in backends.items():
            c = reader.read_counters(maps, "be_stats", backend_id)
            be_packets.add_metric([str(endpoint), "in"], c.packets_in)
            be_packets.add_metric([str(endpoint), "out"], c.packets_out)
            be_bytes.add_metric([str(endpoint), "in"], c.bytes_in)
            be_bytes.add_metric([str(endpoint), "out"], c.bytes_out)
            be_new.add_metric([str(endpoint)], c.new_flows)
        yield from (be_packets, be_bytes, be_new)
        yield self._weights(maps, frontends, backends, owners)

        drops = CounterMetricFamily(f"{PREFIX}_drops", "Packets dropped, by reason", labels=["reason"])
        passes = CounterMetricFamily(f"{PREFIX}_kernel_passes", "Packets handed to the kernel, by reason", labels=["reason"])
        for reason, n in reader.read_reasons(maps).items():
            (drops if reason.is_drop else passes).add_metric([reason.name.split("_", 1)[1].lower()], n)
        yield from (drops, passes)
        verdicts = CounterMetricFamily(f"{PREFIX}_verdicts", "Program verdicts", labels=["hook", "verdict"])
        for (hook, verdict), n in reader.read_verdicts(maps).items():
            verdicts.add_metric([hook.name.lower(), verdict.name.lower()], n)
        yield verdicts

        entries = GaugeMetricFamily(f"{PREFIX}_map_entries", "Entries in a BPF map", labels=["map"])
        capacity = GaugeMetricFamily(f"{PREFIX}_map_capacity", "Capacity of a BPF map", labels=["map"])
        for name in ("frontends", "backends", "ct_fwd", "ct_rev"):
            entries.add_metric([name], len(maps.keys(name)))
            capacity.add_metric([name], bpfsys.map_info(maps.fd(name)).max_entries)
        yield from (entries, capacity)

    @staticmethod
    def _weights(maps: PinnedMaps, frontends, backends, owners) -> GaugeMetricFamily:
        """The configured weights as the kernel holds them, so that a dashboard can set
        each backend's share of new flows against its share of the weight."""
        weights = GaugeMetricFamily(f"{PREFIX}_backend_weight", "Configured weight of a backend behind a frontend",
                                    labels=["frontend", "route", "backend"])
        frontend_of = {record.service_id: key for key, record in frontends.items()}
        for (service_id, backend_id), weight in reader.read_members(maps).items():
            key, endpoint = frontend_of.get(service_id), backends.get(backend_id)
            if key is not None and endpoint is not None:
                weights.add_metric([str(key), owners.get(key, ""), str(endpoint)], weight / WEIGHT_SCALE)
        return weights


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.reconciles = Counter(f"{PREFIX}_reconciles", "Reconciles run", registry=registry)
        self.reconcile_errors = Counter(f"{PREFIX}_reconcile_errors", "Reconciles whose input was rejected", registry=registry)
        self.reconcile_seconds = Histogram(f"{PREFIX}_reconcile_duration_seconds", "Time to reconcile",
                                           registry=registry, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))

    def observe(self, outcome) -> None:
        self.reconciles.inc()
        if not outcome.applied:
            self.reconcile_errors.inc()
        self.reconcile_seconds.observe(outcome.seconds)
