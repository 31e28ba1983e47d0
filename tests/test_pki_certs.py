"""Certificates and CSRs: the extensions strict verifiers demand, for every key type, checked by real verifiers."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from conftest import PKI, MakeCert
from tlskit.errors import InputError, KeyMismatchError
from tlskit.pki.ca import CertificateAuthority
from tlskit.pki.certs import (
    BACKDATE,
    Profile,
    build_csr,
    check_key_matches,
    csr_names,
    key_matches,
    random_serial,
    self_signed,
)
from tlskit.pki.keys import KeyType, generate_key


@pytest.fixture(scope="module")
def mem_root() -> CertificateAuthority:
    """An in-memory root (no directory) for library-level checks."""
    return CertificateAuthority.create_root(None, name="Memory Root")


def ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


@pytest.mark.parametrize("key_type", list(KeyType))
def test_leaf_extensions_fit_key_type(mem_root: CertificateAuthority, key_type: KeyType) -> None:
    issued = mem_root.issue(["host.example", "10.0.0.1"], key_type=key_type)
    cert = issued.cert
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert ku.value.key_encipherment == key_type.value.startswith("rsa")
    assert not ku.value.key_cert_sign
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert not eku.critical and list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ski = ext(cert, x509.SubjectKeyIdentifier)
    aki = ext(cert, x509.AuthorityKeyIdentifier)
    root_ski = ext(mem_root.cert, x509.SubjectKeyIdentifier)
    assert not ski.critical and not aki.critical
    assert aki.value.key_identifier == root_ski.value.digest
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical  # the subject is not empty
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "host.example"
    assert key_matches(cert, issued.key)


def test_ca_extensions(mem_root: CertificateAuthority) -> None:
    sub = mem_root.create_intermediate(None, name="Memory Sub", path_length=0)
    for cert in (mem_root.cert, sub.cert):
        bc = ext(cert, x509.BasicConstraints)
        assert bc.critical and bc.value.ca
        ku = ext(cert, x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
        with pytest.raises(x509.ExtensionNotFound):
            ext(cert, x509.ExtendedKeyUsage)
    assert ext(sub.cert, x509.BasicConstraints).value.path_length == 0
    # 10 years, backdated a few minutes
    lifetime = sub.cert.not_valid_after_utc - sub.cert.not_valid_before_utc
    assert dt.timedelta(days=3650) <= lifetime <= dt.timedelta(days=3650) + BACKDATE
    with pytest.raises(InputError, match="path length 0"):
        sub.create_intermediate(None, name="Too Deep")


@pytest.mark.parametrize("profile", list(Profile))
def test_profiles_set_eku(mem_root: CertificateAuthority, profile: Profile) -> None:
    cert = mem_root.issue(["x.example"], profile=profile).cert
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == profile.usages


def test_san_critical_only_with_empty_subject(mem_root: CertificateAuthority) -> None:
    long_uri = "spiffe://trust.example/" + "x" * 80  # too long for a CN, so the subject stays empty
    cert = mem_root.issue([long_uri], profile=Profile.CLIENT).cert
    assert cert.subject == x509.Name([])
    assert ext(cert, x509.SubjectAlternativeName).critical


def test_validity_and_serials(mem_root: CertificateAuthority) -> None:
    now = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
    cert = mem_root.issue(["x.example"], now=now).cert
    assert cert.not_valid_before_utc == now - BACKDATE
    assert cert.not_valid_after_utc == now + dt.timedelta(days=365)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=366)
    serials = {mem_root.issue(["x.example"]).cert.serial_number for _ in range(20)}
    assert len(serials) == 20
    for s in [*serials, *(random_serial() for _ in range(1000))]:
        assert 0 < s < 2**128
        assert len(s.to_bytes((s.bit_length() + 8) // 8, "big")) <= 20  # DER length incl. sign byte


def test_leaf_never_outlives_its_ca() -> None:
    short = CertificateAuthority.create_root(None, name="Short Root", days=30)
    cert = short.issue(["x.example"], days=365).cert
    assert cert.not_valid_after_utc == short.cert.not_valid_after_utc
    with pytest.raises(InputError, match="expires before"):
        short.issue(["x.example"], now=dt.datetime.now(dt.UTC) + dt.timedelta(days=60))


def test_cryptography_verifier_accepts(mem_root: CertificateAuthority) -> None:
    """cryptography's verifier enforces RFC 5280 + CA/B Forum profile rules (critical BC, AKI, SAN, ...)."""
    sub = mem_root.create_intermediate(None, name="Verifier Sub")
    store = Store([mem_root.cert])
    for kt in KeyType:
        server = sub.issue(["localhost", "127.0.0.1"], key_type=kt)
        chain = (
            PolicyBuilder()
            .store(store)
            .build_server_verifier(x509.DNSName("localhost"))
            .verify(server.cert, list(server.chain[1:]))
        )
        assert chain[-1] == mem_root.cert and len(chain) == 3
    client = sub.issue(["client@example.com"], profile=Profile.CLIENT)
    verified = PolicyBuilder().store(store).build_client_verifier().verify(client.cert, list(client.chain[1:]))
    assert verified.chain[0] == client.cert


def _strict_handshake(root: Path, cert: Path, key: Path, host: str = "localhost") -> str:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(root))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(20)

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"x")
            except (ssl.SSLError, OSError):
                pass  # the client side reports the failure

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with socket.create_connection(listener.getsockname(), timeout=20) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.recv(1)
                version = tls.version() or ""
        thread.join(20)
    return version


@pytest.mark.parametrize("key_type", [KeyType.EC_P384, KeyType.RSA_2048, KeyType.ED25519])
def test_python_strict_handshake_per_key_type(
    pki: PKI, ca: CertificateAuthority, tmp_path: Path, key_type: KeyType
) -> None:
    cert, key = ca.issue(["localhost", "127.0.0.1"], key_type=key_type).write(tmp_path / "leaf")
    assert _strict_handshake(pki.root_pem, cert, key).startswith("TLS")


def test_python_strict_handshake_session_fixture(pki: PKI) -> None:
    assert _strict_handshake(pki.root_pem, pki.server_pem, pki.server_key, host="127.0.0.1")


def test_expired_and_not_yet_valid_are_rejected(pki: PKI, make_cert: MakeCert) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = make_cert(now=now - dt.timedelta(days=400), days=30, name="expired")
    future = make_cert(now=now + dt.timedelta(days=2), name="future")
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        _strict_handshake(pki.root_pem, *expired)
    with pytest.raises(ssl.SSLCertVerificationError, match="not yet valid"):
        _strict_handshake(pki.root_pem, *future)


def test_build_csr_names_and_signature() -> None:
    key = generate_key()
    csr = build_csr(key, sans=["a.example", "*.a.example", "::1", "ops@a.example", "https://a.example/"])
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=a.example"
    assert len(csr_names(csr)) == 5
    with_dn = build_csr(key, subject="/C=DE/O=Acme", cn="b.example")
    assert with_dn.subject.rfc4514_string() == "CN=b.example,O=Acme,C=DE"
    with pytest.raises(InputError, match="needs a subject"):
        build_csr(key)


def test_self_signed_from_key_and_from_csr() -> None:
    key = generate_key(KeyType.RSA_2048)
    cert = self_signed(key, cn="self.example")
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    # a host-name CN is copied into the SAN: TLS clients only look there
    assert list(ext(cert, x509.SubjectAlternativeName).value) == [x509.DNSName("self.example")]
    csr = build_csr(key, subject="/O=Acme/CN=from-csr.example", sans=["from-csr.example", "10.1.1.1"])
    from_csr = self_signed(key, csr=csr, days=10)
    assert from_csr.subject == csr.subject
    assert len(list(ext(from_csr, x509.SubjectAlternativeName).value)) == 2
    with pytest.raises(KeyMismatchError):
        self_signed(generate_key(), csr=csr)


def _tampered_csr() -> x509.CertificateSigningRequest:
    key = generate_key()
    der = bytearray(build_csr(key, cn="victim.example").public_bytes(serialization.Encoding.DER))
    i = der.find(b"victim")
    der[i : i + 6] = b"attack"
    return x509.load_der_x509_csr(bytes(der))


def test_sign_csr_checks_signature_and_ca_requests(mem_root: CertificateAuthority) -> None:
    with pytest.raises(InputError, match="signature does not verify"):
        mem_root.sign_csr(_tampered_csr())
    key = ec.generate_private_key(ec.SECP256R1())
    ca_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Wants CA")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(InputError, match="CA:true"):
        mem_root.sign_csr(ca_csr)
    cert = mem_root.sign_csr(ca_csr, allow_ca=True)
    assert ext(cert, x509.BasicConstraints).value.ca
    no_san = build_csr(generate_key(), subject="/O=NoSan")
    with pytest.raises(InputError, match="no subjectAltName"):
        mem_root.sign_csr(no_san)
    assert mem_root.sign_csr(no_san, profile=Profile.CLIENT).subject == no_san.subject


def test_check_key_matches_names_both_files(pki: PKI) -> None:
    with pytest.raises(KeyMismatchError) as info:
        check_key_matches(pki.server_cert, generate_key(), cert_source="s.pem", key_source="k.pem")
    assert "k.pem" in str(info.value) and "s.pem" in str(info.value)
