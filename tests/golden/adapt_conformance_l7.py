"""Write tests/golden/conformance-<test>/input.yaml from the upstream L7 conformance manifests.

Run by hand when the upstream manifests change (``python tests/golden/adapt_conformance_l7.py``);
the generated inputs are committed. The adaptation of each file of
``../shared/gateway-api/v1.6.1/conformance-l7`` (what each test asserts is summarised in
``../shared/gateway-api/CONFORMANCE-L7.md``):

- the test's own objects, minus Deployments, Pods and ConfigMaps (no pods here), with the
  GatewayClass and controller placeholders replaced by ours;
- from base-manifests.yaml the three Namespaces, the Gateways the test's routes name and
  the Services they reference (backendRefs and RequestMirror backends);
- every Gateway without ``spec.addresses`` gets its own address (192.0.2.20, .21, ...):
  in a cluster each Gateway gets its own load balancer address, and the base Gateways'
  identical HTTP :80 listeners would otherwise conflict on one shared address;
- the Secrets the suite generates at setup (``certificate``, ``tls-validity-checks-
  certificate``, ``tls-terminate-checks-certificate``...) from ``conformance-secrets.yaml``,
  self-signed certificates made once by this script and committed;
- for every Service without slices in the test, one EndpointSlice with ready endpoints,
  as many as the Deployment's replicas (default 1), at 10.99.<10+n>.<11..>, port = the
  Service port's targetPort; a test's own empty EndpointSlices (HTTPRouteServiceTypes)
  get infra-backend-v1's addresses, as the Go test fills them.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def _shared() -> Path:
    configured = os.environ.get("XDPGW_SHARED")
    if configured:
        return Path(configured)
    for parent in HERE.parents:
        if (parent / "shared" / "gateway-api").is_dir():
            return parent / "shared"
    raise SystemExit("../shared/gateway-api not found (set XDPGW_SHARED)")


CLASS = "xdp-gateway"
CONTROLLER = "xdp-gateway.io/gateway-controller"
KEPT_KINDS = {
    "Gateway", "GatewayClass", "TCPRoute", "UDPRoute", "TLSRoute", "HTTPRoute", "GRPCRoute", "ReferenceGrant",
    "Service", "Namespace", "Secret", "EndpointSlice",
}
SECRETS_FILE = HERE / "conformance-secrets.yaml"
# Secrets the suite creates at setup: (namespace, name) -> DNS names of the certificate.
SUITE_SECRETS = {
    ("gateway-conformance-web-backend", "certificate"): ["*"],
    ("gateway-conformance-infra", "tls-validity-checks-certificate"): ["*", "*.org", "*.wildcard.org"],
    ("gateway-conformance-infra", "tls-terminate-checks-certificate"): ["tls.example.com"],
    ("gateway-conformance-infra", "tls-passthrough-checks-certificate"): ["abc.example.com"],
    ("gateway-conformance-app-backend", "tls-passthrough-checks-certificate"): ["abc.example.com"],
    ("gateway-conformance-infra", "tls-checks-certificate"): ["abc.example.com", "other.example.com"],
}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _key(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def _suite_secrets() -> dict[tuple[str, str], dict[str, Any]]:
    if not SECRETS_FILE.is_file():
        SECRETS_FILE.write_text(
            "# Self-signed certificates standing in for the ones the conformance suite generates\n"
            "# at setup; made once by adapt_conformance_l7.py. Test data only.\n"
            + yaml.safe_dump_all([_make_secret(ns, name, dns) for (ns, name), dns in SUITE_SECRETS.items()],
                                 sort_keys=False, explicit_start=True)
        )
    return {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in _docs(SECRETS_FILE)}


def _make_secret(namespace: str, name: str, dns_names: list[str]) -> dict[str, Any]:
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650 * 10))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(certificate.public_bytes(serialization.Encoding.PEM)).decode(),
            "tls.key": base64.b64encode(pem_key).decode(),
        },
    }


def _placeholders(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _placeholders(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_placeholders(v) for v in doc]
    if doc == "{GATEWAY_CLASS_NAME}":
        return CLASS
    if doc == "{GATEWAY_CONTROLLER_NAME}":
        return CONTROLLER
    return doc


def adapt(test_file: Path, base: list[dict[str, Any]], secrets: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    test = [_placeholders(d) for d in _docs(test_file)]
    base = [_placeholders(d) for d in base]
    deployments = {_key(d)[1:]: d for d in base + test if d["kind"] == "Deployment"}
    base_gateways = {_key(d)[1:]: d for d in base if d["kind"] == "Gateway"}
    base_services = {_key(d)[1:]: d for d in base if d["kind"] == "Service"}

    kept = [d for d in test if d["kind"] in KEPT_KINDS]
    out: list[dict[str, Any]] = []
    if not any(d["kind"] == "GatewayClass" for d in kept):
        out.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                    "metadata": {"name": CLASS}, "spec": {"controllerName": CONTROLLER}})
    out += [d for d in base if d["kind"] == "Namespace"]
    own = {_key(d) for d in kept}
    routes = [d for d in kept if d["kind"].endswith("Route")]
    parents = {
        (ref.get("namespace", d["metadata"]["namespace"]), ref["name"])
        for d in routes for ref in d["spec"].get("parentRefs", [])
    }
    out += [base_gateways[key] for key in sorted(parents) if key in base_gateways and ("Gateway", *key) not in own]
    referenced = {
        (ref.get("namespace", d["metadata"]["namespace"]), ref["name"])
        for d in routes for rule in d["spec"].get("rules", [])
        for ref in [
            *rule.get("backendRefs", []),
            *(f["requestMirror"]["backendRef"] for f in rule.get("filters", []) if f.get("type") == "RequestMirror"),
        ]
    }
    out += [base_services[key] for key in sorted(referenced) if key in base_services and ("Service", *key) not in own]
    out += kept

    certificate_refs = {
        (ref.get("namespace", g["metadata"]["namespace"]), ref["name"])
        for g in out if g["kind"] == "Gateway"
        for listener in g["spec"]["listeners"]
        for ref in (listener.get("tls") or {}).get("certificateRefs", [])
        if ref.get("kind", "Secret") == "Secret" and ref.get("group", "") == ""
    }
    out += [secrets[key] for key in sorted(certificate_refs) if key in secrets and ("Secret", *key) not in own]

    for n, gateway in enumerate(g for g in out if g["kind"] == "Gateway"):
        if not gateway["spec"].get("addresses"):
            gateway["spec"]["addresses"] = [{"type": "IPAddress", "value": f"192.0.2.{20 + n}"}]

    sliced = {(d["metadata"]["namespace"], d["metadata"]["labels"].get("kubernetes.io/service-name"))
              for d in out if d["kind"] == "EndpointSlice"}
    for d in out:
        if d["kind"] == "EndpointSlice" and not d.get("endpoints"):
            family = d["addressType"]
            d["endpoints"] = [
                {"addresses": [f"10.99.0.{11 + i}" if family == "IPv4" else f"fd99::{11 + i:x}"], "conditions": {"ready": True}}
                for i in range(2)
            ]
    services = [d for d in out if d["kind"] == "Service"]
    for n, service in enumerate(services):
        ns, svc = service["metadata"].get("namespace", "default"), service["metadata"]["name"]
        if (ns, svc) in sliced:
            continue
        replicas = deployments.get((ns, svc), {}).get("spec", {}).get("replicas", 1)
        out.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-static", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{k: v for k, v in (("name", p.get("name")), ("protocol", p.get("protocol", "TCP")),
                                          ("port", p.get("targetPort", p["port"])),
                                          ("appProtocol", p.get("appProtocol"))) if v is not None}
                      for p in service["spec"].get("ports", [])],
            "endpoints": [{"addresses": [f"10.99.{10 + n}.{11 + i}"], "conditions": {"ready": True}}
                          for i in range(replicas)],
        })
    return out


def main() -> int:
    shared = _shared()
    conformance = shared / "gateway-api" / "v1.6.1"
    base = _docs(conformance / "conformance" / "base-manifests.yaml")
    secrets = _suite_secrets()
    for test_file in sorted((conformance / "conformance-l7").glob("*.yaml")):
        case = HERE / f"conformance-{test_file.stem}"
        case.mkdir(exist_ok=True)
        header = f"# Adapted from conformance-l7/{test_file.name} by tests/golden/adapt_conformance_l7.py\n"
        body = yaml.safe_dump_all(adapt(test_file, base, secrets), sort_keys=False, explicit_start=True)
        (case / "input.yaml").write_text(header + body)
        print(case.relative_to(HERE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
