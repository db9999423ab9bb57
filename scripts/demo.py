"""One-host demo of the kernel data path: builds a client, a gateway and three backends
in network namespaces, loads the XDP load balancer on the gateway, sends real TCP and UDP
traffic through it, shows the split it measured against the weights and what the
kernel's maps say, then removes everything.

Run with `make demo` (as root)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ctl import status  # noqa: E402
from ctl.dataplane import loader  # noqa: E402
from ctl.dataplane.dataplane import Dataplane  # noqa: E402
from ctl.dataplane.loader import DataplaneSpec, XdpMode  # noqa: E402
from ctl.dataplane.model import (DesiredState, Endpoint, FrontendKey, NatMode, Protocol,  # noqa: E402
                                 Service, WeightedEndpoint)
from tests.net import netlab  # noqa: E402

CONNECTIONS = 500
TCP_WEIGHTS = (70, 30, 0)
UDP_WEIGHTS = (50, 50, 0)


def main() -> int:
    console = Console(width=max(Console().width, 132))
    console.rule("[bold]xdp-gateway demo: L4 load balancing in the kernel")
    with netlab.lab(backends=3) as net:
        console.print(f"Built namespaces: client ({net.client.v4}), gateway, backends "
                      + ", ".join(f"{b.name} ({b.v4})" for b in net.backends))
        net.start_servers(tcp_ports=(8080,), udp_ports=(5353,))
        pin_dir = Path(f"/sys/fs/bpf/{net.prefix}")
        try:
            dataplane = Dataplane.load(DataplaneSpec(pin_dir=pin_dir))
            netlab._sysctl(net.gw.ns, {"net.ipv4.conf.all.accept_local": 1})
            for ifindex in [net.gw.front_ifindex] + [b.gw_ifindex for b in net.backends]:
                dataplane.attach_xdp(ifindex, XdpMode.NATIVE, netns=net.gw.ns)
            _pass_module, pass_fd = loader.compile_xdp_pass()
            net.attach_xdp_pass(pass_fd)
            console.print(f"Loaded the XDP program on the gateway's {1 + len(net.backends)} "
                          f"interfaces; maps pinned at {pin_dir}")

            def service(port, proto, weights, backend_port):
                return Service(FrontendKey(net.vip4, port, proto),
                               tuple(WeightedEndpoint(Endpoint(b.v4, backend_port), w)
                                     for b, w in zip(net.backends, weights)),
                               nat=NatMode.SNAT, snat_address=net.backends[0].gw_v4,
                               owner=f"demo {proto.name}")

            dataplane.program(DesiredState((service(80, Protocol.TCP, TCP_WEIGHTS, 8080),
                                            service(53, Protocol.UDP, UDP_WEIGHTS, 5353))))
            console.print(f"Programmed frontends {net.vip4}:80/TCP -> weights {TCP_WEIGHTS} and "
                          f"{net.vip4}:53/UDP -> weights {UDP_WEIGHTS} (the VIP exists on no "
                          "interface: only the XDP program answers for it)")
            console.print(f"Sending {CONNECTIONS} new TCP connections and {CONNECTIONS} UDP "
                          "datagrams (each from a new source port) from the client...")
            tcp = net.run_client("tcp-spread", "--addr", net.vip4, "--port", 80, "--count", CONNECTIONS, timeout=300)
            udp = net.run_client("udp-spread", "--addr", net.vip4, "--port", 53, "--count", CONNECTIONS, timeout=300)

            split = Table(title="Measured split vs. configured weights", title_justify="left")
            for col in ("PROTOCOL", "BACKEND", "WEIGHT SHARE", "MEASURED", "COUNT"):
                split.add_column(col)
            for name, report, weights in (("TCP", tcp, TCP_WEIGHTS), ("UDP", udp, UDP_WEIGHTS)):
                for i, b in enumerate(net.backends):
                    got = report["counts"].get(b.name, 0)
                    split.add_row(name, f"{b.name} {b.v4}", f"{weights[i] / sum(weights):.0%}",
                                  f"{got / CONNECTIONS:.1%}", str(got))
                split.add_section()
            console.print(split)
            console.print(f"TCP refused={tcp['refused']} timeouts={tcp['timeout']}; "
                          f"UDP timeouts={udp['timeout']}. Backends saw the source address "
                          f"{sorted({p for ps in tcp['seen_peers'].values() for p in ps})} (SNAT).")
            status.render(status.collect(pin_dir), console)
            console.print("Every number above comes from BPF maps the kernel updated per packet "
                          "(per-CPU counters, the Maglev tables, conntrack).")
        finally:
            shutil.rmtree(pin_dir, ignore_errors=True)
    console.rule("cleaned up: namespaces, links and pinned maps removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
