"""Write tests/golden/conformance-*/input.yaml from the upstream conformance manifests.

Run by hand when the upstream manifests change (``python tests/golden/adapt_conformance.py``);
the generated inputs are committed. The adaptation, per test file:

- the test's own objects, minus Deployments and ConfigMaps (no pods here), with the
  GatewayClass placeholder replaced by our class ``xdp-gateway``;
- from base-manifests.yaml only the three Namespaces and the Services the test's routes
  reference (its Gateways share ports with each other, which is noise for an L4 case);
- a GatewayClass with our controllerName;
- for every Service, one EndpointSlice with ready endpoints, as many as the Deployment's
  replicas (default 1), at 10.99.<10+n>.<11..>, port = the Service port's targetPort;
- TCP/UDPRouteMultipleRoutesAttachment: the newer route the Go test creates a second
  after the manifests (a v1alpha2 route), and creationTimestamps one second apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CONFORMANCE = HERE.parents[2] / "shared" / "gateway-api" / "v1.6.1" / "conformance"
CLASS = "xdp-gateway"
CONTROLLER = "xdp-gateway.io/gateway-controller"
KEPT_KINDS = {"Gateway", "TCPRoute", "UDPRoute", "TLSRoute", "HTTPRoute", "GRPCRoute", "ReferenceGrant", "Service", "Namespace"}

NEWER_ROUTES = {
    "tcproute-multiple-routes-attachment": ("TCPRoute", "tcproute-attach-older", "tcproute-attach-newer",
                                            "tcp-multi-route-attach-gateway", "tcp", "tcp-attach-backend-2", 3000),
    "udproute-multiple-routes-attachment": ("UDPRoute", "udproute-attach-older", "udproute-attach-newer",
                                            "udp-multi-route-attach-gateway", "udp", "udp-attach-backend-2", 8080),
}


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _key(doc: dict) -> tuple[str, str, str]:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def adapt(test_file: Path) -> list[dict]:
    base = _docs(CONFORMANCE / "base-manifests.yaml")
    test = _docs(test_file)
    deployments = {_key(d)[1:]: d for d in base + test if d["kind"] == "Deployment"}
    base_services = {_key(d)[1:]: d for d in base if d["kind"] == "Service"}

    out: list[dict] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": CLASS}, "spec": {"controllerName": CONTROLLER}},
        *[d for d in base if d["kind"] == "Namespace"],
    ]
    kept = [d for d in test if d["kind"] in KEPT_KINDS]
    for doc in kept:
        if doc["kind"] == "Gateway":
            doc["spec"]["gatewayClassName"] = CLASS
    referenced = {
        (ref.get("namespace", doc["metadata"]["namespace"]), ref["name"])
        for doc in kept if doc["kind"].endswith("Route")
        for rule in doc["spec"].get("rules", []) for ref in rule.get("backendRefs", [])
    }
    test_services = {_key(d)[1:] for d in kept if d["kind"] == "Service"}
    out += [base_services[key] for key in sorted(referenced) if key in base_services and key not in test_services]
    out += kept

    name = test_file.stem
    if name in NEWER_ROUTES:
        kind, older, newer, gateway, section, backend, port = NEWER_ROUTES[name]
        for doc in out:
            if doc["kind"] == kind and doc["metadata"]["name"] == older:
                doc["metadata"]["creationTimestamp"] = "2024-12-31T23:00:00Z"
        out.append({
            "apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": kind,
            "metadata": {"name": newer, "namespace": "gateway-conformance-infra",
                         "creationTimestamp": "2024-12-31T23:00:01Z"},
            "spec": {"parentRefs": [{"name": gateway, "sectionName": section}],
                     "rules": [{"backendRefs": [{"name": backend, "port": port}]}]},
        })

    services = [d for d in out if d["kind"] == "Service"]
    for n, service in enumerate(services):
        ns, svc = service["metadata"].get("namespace", "default"), service["metadata"]["name"]
        replicas = deployments.get((ns, svc), {}).get("spec", {}).get("replicas", 1)
        out.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-static", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{k: v for k, v in (("name", p.get("name")), ("protocol", p.get("protocol", "TCP")),
                                          ("port", p.get("targetPort", p["port"]))) if v is not None}
                      for p in service["spec"]["ports"]],
            "endpoints": [{"addresses": [f"10.99.{10 + n}.{11 + i}"], "conditions": {"ready": True}}
                          for i in range(replicas)],
        })
    return out


def main() -> int:
    for test_file in sorted(CONFORMANCE.glob("*.yaml")):
        if test_file.name == "base-manifests.yaml":
            continue
        case = HERE / f"conformance-{test_file.stem}"
        case.mkdir(exist_ok=True)
        header = f"# Adapted from conformance/{test_file.name} by tests/golden/adapt_conformance.py\n"
        body = yaml.safe_dump_all(adapt(test_file), sort_keys=False, explicit_start=True)
        (case / "input.yaml").write_text(header + body)
        print(case.relative_to(HERE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
