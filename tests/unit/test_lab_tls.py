"""The lab's TLS pieces on loopback, without a gateway: the suite-style certificates,
the echo pods' HTTPS and TCP echo servers, and lab.tlsclient's exchanges and verdicts
(which the conformance replays rely on to tell a passing gateway from a failing one)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lab import certs, echo, tlsclient


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    ca = certs.certificate_authority()
    server = certs.server_certificate(["abc.example.com", "other.example.com"], ca)
    other = certs.server_certificate(["*", "*.org"])
    work = tmp_path_factory.mktemp("pki")
    (work / "crt").write_bytes(server.certificate)
    (work / "key").write_bytes(server.key)
    return {"ca": ca, "server": server, "other": other, "context": echo.tls_context(str(work / "crt"), str(work / "key"))}


@pytest.fixture
def serve(pki) -> Iterator:
    servers = []

    def start(server):
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


POD = echo.Pod("tls-backend-0", "gateway-conformance-infra", "127.0.0.1")


def request(port: int, trust: certs.KeyPair, protocol: str, sni: str = "abc.example.com") -> dict:
    return tlsclient.exchange({"addr": "127.0.0.1", "port": port, "sni": sni, "host": sni, "path": "/x?y=1",
                               "trust": trust.certificate.decode(), "protocol": protocol}, timeout=5)


def test_certificates_carry_the_names_and_chain_to_the_ca(pki):
    leaf = x509.load_pem_x509_certificate(pki["server"].certificate)
    ca = x509.load_pem_x509_certificate(pki["ca"].certificate)
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)
    der = leaf.public_bytes(serialization.Encoding.DER)
    assert certs.dns_names(der) == ["abc.example.com", "other.example.com"]
    secret = pki["server"].secret("gateway-conformance-infra", "tls-checks-certificate")
    assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {"tls.crt", "tls.key"}


@pytest.mark.parametrize("names,host,matches", [
    (["*.org"], "example.org", True),  # Go accepts it; OpenSSL's own check would not
    (["*.org"], "third-example.wildcard.org", False),
    (["*"], "example.org", False),
    (["abc.example.com"], "ABC.example.com.", True),
    (["*.example.com"], "example.com", False),
])
def test_hostname_rules_are_go_s(names, host, matches):
    assert certs.matches_hostname(names, host) is matches


def test_https_echo_reports_the_sni_and_the_client_sees_its_certificate(pki, serve):
    port = serve(echo.http_server(POD, 0, pki["context"]))
    answer = request(port, pki["ca"], "https")
    assert answer["status"] == 200, answer
    assert answer["certificate"]["sha256"] == pki["server"].sha256
    body = answer["body"]
    assert (body["pod"], body["path"], body["host"]) == ("tls-backend-0", "/x?y=1", "abc.example.com")
    assert body["tls"]["serverName"] == "abc.example.com" and body["tls"]["negotiatedProtocol"] == "http/1.1"


def test_tcp_echo_over_tls_and_plain(pki, serve):
    tls_port = serve(echo.tcp_server(POD, 0, {"tcp": 3000, "tls": 8443}, pki["context"]))
    answer = request(tls_port, pki["ca"], "tcp-echo")
    assert (answer["greeting"], answer["ping"], answer["isTLS"]) == ("Gateway API Test TCP Server", "PONG", "true")
    assert answer["test"]["tls"]["serverName"] == "abc.example.com" and answer["test"]["pod"] == "tls-backend-0"
    plain_port = serve(echo.tcp_server(POD, 0, {"tcp": 3000}))
    # A TLS client against the plain port fails at the handshake, as a gateway that
    # forwarded TLS to the plain port would make it.
    assert request(plain_port, pki["ca"], "tcp-echo")["stage"] == "tls"


def test_a_certificate_the_client_does_not_trust_fails_the_handshake(pki, serve):
    port = serve(echo.http_server(POD, 0, pki["context"]))
    answer = request(port, pki["other"], "https")
    assert answer["stage"] == "tls" and "CERTIFICATE_VERIFY_FAILED" in answer["error"]


def test_h2_needs_the_server_to_choose_h2(pki, serve):
    # The echo pods speak HTTP/1.1 only (ALPN http/1.1): an HTTP/2 request is refused
    # by the client rather than sent as HTTP/1.1.
    port = serve(echo.http_server(POD, 0, pki["context"]))
    answer = request(port, pki["ca"], "h2")
    assert answer["stage"] in ("tls", "request"), answer
