"""Certificates made at run time, as the Gateway API conformance suite makes them for the
Secrets its manifests name: RSA 2048, valid for a year, each either self-signed or
signed by a throwaway CA, with the hostnames as DNS subject alternative names.

``KeyPair.secret(namespace, name)`` gives the kubernetes.io/tls Secret holding it;
``matches_hostname`` checks a hostname against the names the way the suite's Go client
does (a ``*`` label stands for exactly one leftmost label, so ``*.org`` covers
``example.org``, which OpenSSL's own hostname check refuses)."""

from __future__ import annotations

import base64
import datetime
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = datetime.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    certificate: bytes  # PEM
    key: bytes  # PEM, unencrypted

    @property
    def sha256(self) -> str:
        """Fingerprint of the (first) certificate's DER form, as a TLS client sees it."""
        der = x509.load_pem_x509_certificate(self.certificate).public_bytes(serialization.Encoding.DER)
        return hashlib.sha256(der).hexdigest()

    def secret(self, namespace: str, name: str) -> dict:
        return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": name, "namespace": namespace},
                "data": {"tls.crt": base64.b64encode(self.certificate).decode(),
                         "tls.key": base64.b64encode(self.key).decode()}}


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _name(subject: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co"),
                      x509.NameAttribute(NameOID.COMMON_NAME, subject)])


def _builder(subject: str, public_key, now: datetime.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(_name(subject)).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALID_FOR))


def certificate_authority(name: str = "gateway-conformance-ca") -> KeyPair:
    key, now = _key(), datetime.datetime.now(datetime.timezone.utc)
    builder = _builder(name, key.public_key(), now)
    certificate = (builder.issuer_name(_name(name))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .sign(key, hashes.SHA256()))
    return KeyPair(certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def server_certificate(hosts: list[str], ca: KeyPair | None = None) -> KeyPair:
    """A server certificate for the hosts: self-signed, or signed by ca."""
    if not hosts:
        raise ValueError("a server certificate needs at least one hostname")
    key, now = _key(), datetime.datetime.now(datetime.timezone.utc)
    builder = _builder(hosts[0], key.public_key(), now)
    if ca is None:
        issuer, signer = _name(hosts[0]), key
    else:
        ca_certificate = x509.load_pem_x509_certificate(ca.certificate)
        issuer = ca_certificate.subject
        signer = serialization.load_pem_private_key(ca.key, password=None)
    certificate = (builder.issuer_name(issuer)
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .sign(signer, hashes.SHA256()))
    return KeyPair(certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def dns_names(certificate_der: bytes) -> list[str]:
    certificate = x509.load_der_x509_certificate(certificate_der)
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return extension.value.get_values_for_type(x509.DNSName)


def matches_hostname(names: list[str], hostname: str) -> bool:
    """Go's crypto/x509 rule: labels compared case-insensitively, a leading ``*`` label
    matching exactly one label."""
    host = hostname.lower().rstrip(".").split(".")
    for name in names:
        pattern = name.lower().rstrip(".").split(".")
        if len(pattern) != len(host):
            continue
        if all(p == h or (i == 0 and p == "*" and h) for i, (p, h) in enumerate(zip(pattern, host))):
            return True
    return False
