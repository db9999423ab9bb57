"""HTTPS listener certificateRefs to PEM certificates.

Checks in order, per reference: group/kind (core Secret only: InvalidCertificateRef),
namespace (a Secret in another namespace needs a ReferenceGrant from Gateways of the
listener's namespace: RefNotPermitted), existence, type ``kubernetes.io/tls`` with
``tls.crt`` and ``tls.key`` holding a PEM certificate chain and a matching private key
(InvalidCertificateRef). The first failure gives the listener's reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctl.api import GATEWAY_GROUP, Gateway, Listener, Secret
from ctl.l7model import Certificate, SourceRef
from ctl.translate.conditions import Reason
from ctl.translate.index import SnapshotIndex

TLS_SECRET_TYPE = "kubernetes.io/tls"


@dataclass(frozen=True)
class CertificateResolution:
    certificates: tuple[Certificate, ...] = ()
    # (reason, message) of the first reference that failed.
    failure: tuple[Reason, str] | None = None


def resolve_certificates(gateway: Gateway, listener: Listener, index: SnapshotIndex) -> CertificateResolution:
    refs = listener.tls.certificate_refs if listener.tls else ()
    if not refs:
        return CertificateResolution(failure=(Reason.INVALID_CERTIFICATE_REF, "tls.certificateRefs is empty"))
    certificates = []
    for i, ref in enumerate(refs):
        where = f"tls.certificateRefs[{i}]"
        namespace = ref.namespace or gateway.namespace
        target = f"Secret {namespace}/{ref.name}"
        if ref.group != "" or ref.kind != "Secret":
            group = ref.group or "core"
            return CertificateResolution(
                failure=(Reason.INVALID_CERTIFICATE_REF, f"{where}: {ref.kind} ({group}) is not supported; only Secret is")
            )
        if namespace != gateway.namespace and not _granted(gateway, namespace, ref.name, index):
            return CertificateResolution(
                failure=(Reason.REF_NOT_PERMITTED, f"{where}: {target} is in another namespace and no ReferenceGrant allows it")
            )
        secret = index.secrets.get((namespace, ref.name))
        if secret is None:
            return CertificateResolution(failure=(Reason.INVALID_CERTIFICATE_REF, f"{where}: {target} not found"))
        problem = pem_problem(secret)
        if problem:
            return CertificateResolution(failure=(Reason.INVALID_CERTIFICATE_REF, f"{where}: {target} {problem}"))
        chain, key = secret.value("tls.crt"), secret.value("tls.key")
        assert chain is not None and key is not None
        certificates.append(Certificate(f"{namespace}/{ref.name}", chain, key, SourceRef("Secret", namespace, ref.name)))
    return CertificateResolution(tuple(certificates))


def pem_problem(secret: Secret) -> str | None:
    """Why the Secret cannot serve as a TLS certificate, or None."""
    # Imported here: only a configuration with a certificate pays for it (about 40 ms
    # of every agent's start otherwise, measured with python -X importtime).
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if secret.type != TLS_SECRET_TYPE:
        return f"has type {secret.type}, not {TLS_SECRET_TYPE}"
    chain, key = secret.value("tls.crt"), secret.value("tls.key")
    if chain is None or key is None:
        return "needs both tls.crt and tls.key"
    try:
        certificates = x509.load_pem_x509_certificates(chain)
    except ValueError:
        return "tls.crt holds no PEM certificate"
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        return "tls.key holds no unencrypted PEM private key"
    except Exception:  # noqa: BLE001 - an unsupported key algorithm is bad input too
        return "tls.key holds an unsupported private key"
    public = certificates[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != public:
        return "tls.key does not match the certificate in tls.crt"
    return None


def _granted(gateway: Gateway, namespace: str, name: str, index: SnapshotIndex) -> bool:
    for grant in index.grants_by_namespace.get(namespace, ()):
        from_gateway = any(
            f.group == GATEWAY_GROUP and f.kind == "Gateway" and f.namespace == gateway.namespace for f in grant.spec.from_
        )
        to_secret = any(t.group == "" and t.kind == "Secret" and t.name in (None, "", name) for t in grant.spec.to)
        if from_gateway and to_secret:
            return True
    return False
