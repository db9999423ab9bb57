"""What the kernel is doing, read from the pinned maps alone (works with the agent
down): frontends, backends with table shares and counters, conntrack, drops."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .dataplane import reader
from .dataplane.abi import Hook, Reason, Verdict
from .dataplane.pinned import PinnedMaps
from .dataplane.plan import DataplaneConfig


@dataclass(frozen=True)
class BackendRow:
    backend_id: int
    address: str
    table_slots: int
    table_share: float
    new_flows: int
    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int


@dataclass(frozen=True)
class FrontendRow:
    service_id: int
    frontend: str
    nat: str
    snat_address: str | None
    new_flows: int
    rejected: int
    reject_share: float
    backends: tuple[BackendRow, ...]


@dataclass(frozen=True)
class Status:
    frontends: tuple[FrontendRow, ...]
    flows_live: int
    flows_total: int
    flows_by_protocol: dict[str, int]
    drops: dict[str, int]
    kernel_passes: dict[str, int]
    verdicts: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def collect(pin_dir: Path) -> Status:
    with PinnedMaps.open(pin_dir) as maps:
        backends = reader.read_backends(maps)
        config = reader.read_config(maps) or DataplaneConfig()
        rows = []
        for key, record in sorted(reader.read_frontends(maps).items()):
            shares = reader.table_shares(maps, record.service_id)
            size = sum(shares.values()) or 1
            svc = reader.read_counters(maps, "svc_stats", record.service_id)
            be_rows = []
            for backend_id, slots in sorted(shares.items()):
                if backend_id == 0:
                    continue
                c = reader.read_counters(maps, "be_stats", backend_id)
                be_rows.append(BackendRow(backend_id, str(backends.get(backend_id, "?")), slots,
                                          slots / size, c.new_flows, c.packets_in, c.bytes_in,
                                          c.packets_out, c.bytes_out))
            rows.append(FrontendRow(record.service_id, str(key), record.nat.value,
                                    str(record.snat_address) if record.snat_address else None,
                                    svc.new_flows, svc.rejected, shares.get(0, 0) / size,
                                    tuple(be_rows)))
        flows = reader.read_flows(maps)
        live = [f for f in flows if reader.flow_is_live(f, config)]
        reasons = reader.read_reasons(maps)
        verdicts = reader.read_verdicts(maps)
    return Status(
        frontends=tuple(rows),
        flows_live=len(live),
        flows_total=len(flows),
        flows_by_protocol=dict(Counter(f.protocol.name for f in live)),
        drops={r.name: n for r, n in reasons.items() if r.is_drop and n},
        kernel_passes={r.name: n for r, n in reasons.items() if not r.is_drop and n},
        verdicts={f"{h.name}/{v.name}": n for (h, v), n in verdicts.items() if n},
    )


def render(status: Status, console: Console) -> None:
    table = Table(title="Frontends (from the kernel's maps)", title_justify="left")
    for col in ("FRONTEND", "NAT", "BACKEND", "ID", "TABLE SHARE", "NEW FLOWS", "PKTS IN",
                "BYTES IN", "PKTS OUT", "BYTES OUT"):
        table.add_column(col, justify="right" if col not in ("FRONTEND", "NAT", "BACKEND") else "left")
    for fe in status.frontends:
        nat = fe.nat + (f" via {fe.snat_address}" if fe.snat_address else "")
        first = True
        for be in fe.backends:
            table.add_row(fe.frontend if first else "", nat if first else "", be.address,
                          str(be.backend_id), f"{be.table_share:6.1%}", str(be.new_flows),
                          str(be.packets_in), str(be.bytes_in), str(be.packets_out), str(be.bytes_out))
            first = False
        if fe.reject_share or not fe.backends:
            table.add_row(fe.frontend if first else "", nat if first else "", "(refused: invalid backends)",
                          "0", f"{fe.reject_share:6.1%}", str(fe.rejected), "", "", "", "")
        table.add_section()
    console.print(table)
    console.print(f"Conntrack: {status.flows_live} live flows "
                  f"({', '.join(f'{n} {p}' for p, n in sorted(status.flows_by_protocol.items())) or 'none'}), "
                  f"{status.flows_total} entries in the map")
    console.print("Drops by reason: " + (", ".join(f"{k}={v}" for k, v in status.drops.items()) or "none"))
    console.print("Handed to the kernel: " + (", ".join(f"{k}={v}" for k, v in status.kernel_passes.items()) or "none"))
    console.print("Verdicts: " + (", ".join(f"{k}={v}" for k, v in status.verdicts.items()) or "none"))
