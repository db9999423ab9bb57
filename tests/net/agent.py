"""A stand-in agent process for the network tier: loads the data path (reusing pinned
maps), attaches it to the gateway's interfaces (replacing what is there) and programs
a desired state read from JSON, then exits without detaching.

    python -m tests.net.agent --pin-dir D --netns NS --xdp IFINDEX... --desired FILE

Prints one JSON line: {"ops": <number of map writes the plan needed>}.
"""

from __future__ import annotations

import argparse
import json
import sys
from ipaddress import ip_address
from pathlib import Path

from ctl.dataplane.dataplane import Dataplane
from ctl.dataplane.loader import DataplaneSpec, XdpMode
from ctl.model import (DesiredState, Endpoint, FrontendKey, NatMode, Protocol,
                                 Service, WeightedEndpoint)


def service_to_json(s: Service) -> dict:
    return {
        "frontend": [str(s.frontend.address), s.frontend.port, s.frontend.protocol.name],
        "backends": [[str(b.endpoint.address), b.endpoint.port, b.weight] for b in s.backends],
        "reject_weight": s.reject_weight, "nat": s.nat.value,
        "snat_addresses": [str(a) for a in s.snat_addresses], "owner": s.owner,
    }


def service_from_json(d: dict) -> Service:
    addr, port, proto = d["frontend"]
    return Service(
        frontend=FrontendKey(ip_address(addr), port, Protocol[proto]),
        backends=tuple(WeightedEndpoint(Endpoint(ip_address(a), p), w) for a, p, w in d["backends"]),
        reject_weight=d["reject_weight"], nat=NatMode(d["nat"]),
        snat_addresses=tuple(ip_address(a) for a in d["snat_addresses"]),
        owner=d["owner"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pin-dir", required=True, type=Path)
    parser.add_argument("--netns", required=True)
    parser.add_argument("--xdp", type=int, nargs="*", default=[])
    parser.add_argument("--tc", type=int, nargs="*", default=[])
    parser.add_argument("--desired", required=True, type=Path)
    args = parser.parse_args(argv)
    dataplane = Dataplane.load(DataplaneSpec(pin_dir=args.pin_dir))
    for ifindex in args.xdp:
        dataplane.attach_xdp(ifindex, XdpMode.NATIVE, netns=args.netns)
    for ifindex in args.tc:
        dataplane.attach_tc(ifindex, netns=args.netns)
    desired = DesiredState(tuple(service_from_json(s) for s in json.loads(args.desired.read_text())))
    plan = dataplane.program(desired)
    print(json.dumps({"ops": len(plan.ops)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
