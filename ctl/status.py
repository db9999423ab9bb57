"""What the kernel is doing, read from the pinned maps alone (works with the agent
down): frontends, backends with table shares and counters, conntrack, drops."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .dataplane import reader
from .dataplane.abi import BACKEND_REJECT, WEIGHT_SCALE
from .dataplane.pinned import PinnedMaps
from .dataplane.plan import DataplaneConfig


@dataclass(frozen=True)
class BackendRow:
    backend_id: int
    address: str
    weight: float | None  # as configured (None: not recorded by an agent)
    table_slots: int
    table_share: float  # what new flows actually get
    new_flows: int
    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int

    @property
    def draining(self) -> bool:
        return self.table_slots == 0


@dataclass(frozen=True)
class FrontendRow:
    service_id: int
    frontend: str
    route: str
    nat: str
    snat_address: str | None
    new_flows: int
    rejected: int
    reject_share: float  # share of new flows refused (invalid backendRefs)
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
        members = reader.read_members(maps)
        owners = reader.read_owners(maps)
        rows = []
        for key, record in sorted(reader.read_frontends(maps).items()):
            sid = record.service_id
            shares = reader.table_shares(maps, sid)
            size = sum(shares.values()) or 1
            ids = {b for (s, b) in members if s == sid} | {b for b in shares if b != BACKEND_REJECT}
            svc = reader.read_counters(maps, "svc_stats", sid)
            be_rows = []
            for backend_id in sorted(ids):
                c = reader.read_counters(maps, "be_stats", backend_id)
                weight = members.get((sid, backend_id))
                be_rows.append(BackendRow(
                    backend_id, str(backends.get(backend_id, "?")),
                    None if weight is None else weight / WEIGHT_SCALE,
                    shares.get(backend_id, 0), shares.get(backend_id, 0) / size, c.new_flows,
                    c.packets_in, c.bytes_in, c.packets_out, c.bytes_out))
            rows.append(FrontendRow(sid, str(key), owners.get(sid, ""), record.nat.value,
                                    str(record.snat_address) if record.snat_address else None,
                                    svc.new_flows, svc.rejected, shares.get(BACKEND_REJECT, 0) / size,
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


def _plain(*cells: str) -> list[Text]:
    """Cells as text, not markup: rich reads "[fd99:100::1]:80/TCP" as a style tag and
    drops the address."""
    return [Text(cell) for cell in cells]


def render(status: Status, console: Console) -> None:
    table = Table(title="Frontends (from the kernel's maps)", title_justify="left")
    for col in ("FRONTEND", "ROUTE", "NAT", "BACKEND", "WEIGHT", "TABLE SHARE", "NEW FLOWS",
                "PKTS IN/OUT", "BYTES IN/OUT"):
        table.add_column(col, justify="right" if col in ("WEIGHT", "TABLE SHARE", "NEW FLOWS") else "left")
    for fe in status.frontends:
        nat = fe.nat + (f" {fe.snat_address}" if fe.snat_address else "")
        lead = [fe.frontend, fe.route or "-", nat]
        for be in fe.backends:
            weight = "-" if be.weight is None else f"{be.weight:g}" + (" (draining)" if be.draining else "")
            table.add_row(*_plain(*lead, be.address, weight, f"{be.table_share:.1%}", str(be.new_flows),
                                  f"{be.packets_in}/{be.packets_out}", f"{be.bytes_in}/{be.bytes_out}"))
            lead = ["", "", ""]
        if fe.reject_share or not fe.backends:
            table.add_row(*_plain(*lead, "refused (invalid backends)", "", f"{fe.reject_share:.1%}",
                                  str(fe.rejected), "", ""))
        table.add_section()
    console.print(table)
    console.print(f"Conntrack: {status.flows_live} live flows "
                  f"({', '.join(f'{n} {p}' for p, n in sorted(status.flows_by_protocol.items())) or 'none'}), "
                  f"{status.flows_total} entries in the map")
    console.print("Drops by reason: " + (", ".join(f"{k}={v}" for k, v in status.drops.items()) or "none"))
    console.print("Handed to the kernel: " + (", ".join(f"{k}={v}" for k, v in status.kernel_passes.items()) or "none"))
    console.print("Verdicts: " + (", ".join(f"{k}={v}" for k, v in status.verdicts.items()) or "none"))
