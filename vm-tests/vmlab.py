"""The net tier's client and backends, joined to the gateway VM instead of a gateway
namespace:

    client ns --tap== [ front   gateway VM   be0 ] ==tap-- be0 ns
                      [ (virtio-net)         be1 ] ==tap-- be1 ns ...

Each NIC of the VM is a tap device that qemu opened on the host; it is moved into its
namespace and named like the veth end it replaces ("uplink"), with the same addresses
as lab.netlab uses, so lab.servers, lab.client and the net tier's expectations apply
unchanged. The gateway's side lives in the guest, where `guest_network_script`
configures it; here its namespace is "" and its ifindexes 0.
"""

from __future__ import annotations

from pyroute2 import IPRoute, netns

from lab import netlab
from lab.netlab import (CLIENT_NET4, CLIENT_NET6, UPLINK_IFNAME, Backend, Client, Gateway, Segment,
                        backend_name, backend_net4, backend_net6)
from qemu_vm import Nic

FRONT = "front"


def nics(prefix: str, backends: int) -> list[Nic]:
    """The VM's NICs: front, then be0, be1, ...; taps named after the lab's prefix."""
    names = [FRONT] + [backend_name(i) for i in range(backends)]
    return [Nic(name, f"{prefix}-{name}", f"52:54:00:99:00:{i + 1:02x}") for i, name in enumerate(names)]


def segments(prefix: str, backends: int) -> list[Segment]:
    """One segment per NIC: the gateway (near, in the guest) takes host 1, the far end 2."""
    front = Segment.on(CLIENT_NET4, CLIENT_NET6, FRONT, f"{prefix}-client", UPLINK_IFNAME)
    return [front] + [Segment.on(backend_net4(i), backend_net6(i), backend_name(i),
                                 f"{prefix}-{backend_name(i)}", UPLINK_IFNAME) for i in range(backends)]


def guest_network_script(nic_list: list[Nic], segment_list: list[Segment]) -> str:
    """Shell for the guest: name each NIC by its MAC, address it, bring it up."""
    lines = ["set -e"]
    for nic, seg in zip(nic_list, segment_list):
        lines += [
            f'dev=$(grep -il "^{nic.mac}$" /sys/class/net/*/address | cut -d/ -f5)',
            f'[ "$dev" = {nic.name} ] || {{ ip link set dev "$dev" down; ip link set dev "$dev" name {nic.name}; }}',
            f"ip addr replace {seg.near_v4} dev {nic.name}",
            f"ip addr replace {seg.near_v6} dev {nic.name} nodad",
            f"ip link set dev {nic.name} up",
        ]
    return "\n".join(lines)


class VmLab(netlab.Lab):
    """lab.netlab.Lab whose gateway is the VM: cleanup, processes, servers, client and
    leftovers work as in the net tier."""

    def __init__(self, backends: int, prefix: str, taps: list[Nic]) -> None:
        self._taps = taps
        super().__init__(backends=backends, prefix=prefix)

    def _build(self, backend_count: int) -> None:
        segs = segments(self.prefix, backend_count)
        for seg in segs:
            netns.create(seg.far_ns)
            self._namespaces.append(seg.far_ns)
            netlab._sysctl(seg.far_ns, {"net.ipv6.conf.all.accept_dad": 0, "net.ipv6.conf.default.accept_dad": 0})
            self._iproutes[seg.far_ns] = IPRoute(netns=seg.far_ns, flags=0)
            netlab._set_up(self._iproutes[seg.far_ns], "lo")
        ifindexes = [self._join(nic, seg) for nic, seg in zip(self._taps, segs)]

        front = segs[0]
        self.gw = Gateway(ns="", front_ifname=FRONT, front_ifindex=0,
                          front_v4=front.near_v4.ip, front_v6=front.near_v6.ip)
        self.client = Client(ns=front.far_ns, ifname=UPLINK_IFNAME, ifindex=ifindexes[0],
                             v4=front.far_v4.ip, v6=front.far_v6.ip, net4=CLIENT_NET4, net6=CLIENT_NET6,
                             gw_v4=front.near_v4.ip, gw_v6=front.near_v6.ip)
        self.backends = tuple(
            Backend(index=i, name=backend_name(i), ns=seg.far_ns, ifname=UPLINK_IFNAME, ifindex=ifindex,
                    v4=seg.far_v4.ip, v6=seg.far_v6.ip, net4=backend_net4(i), net6=backend_net6(i),
                    gw_v4=seg.near_v4.ip, gw_v6=seg.near_v6.ip, gw_ifname=seg.near_ifname, gw_ifindex=0)
            for i, (seg, ifindex) in enumerate(zip(segs[1:], ifindexes[1:])))
        for seg in segs:
            self._add_default_routes(seg.far_ns, seg.near_v4.ip, seg.near_v6.ip)

    def _join(self, nic: Nic, seg: Segment) -> int:
        """Move the NIC's tap into the far namespace as "uplink", addressed and up."""
        with IPRoute() as host:
            (index,) = host.link_lookup(ifname=nic.tap)
            host.link("set", index=index, net_ns_fd=seg.far_ns)
        ipr = self._iproutes[seg.far_ns]
        (index,) = ipr.link_lookup(ifname=nic.tap)
        ipr.link("set", index=index, ifname=seg.far_ifname)
        netlab._disable_tx_checksum_offload(seg.far_ns, seg.far_ifname)
        return netlab._configure(ipr, seg.far_ifname, seg.far_v4, seg.far_v6)
