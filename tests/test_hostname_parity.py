"""Host name matching used in explanations agrees with the real decisions (issue 7).

``tlskit.pki.diagnose.host_matches`` words "not valid for HOST; it is valid for ..." in probe, verify and the
transport.  It must say "matches" exactly when the verifiers that decide do: OpenSSL (a real handshake through
Python's ``ssl`` with ``check_hostname``) and ``cryptography``'s web-PKI verifier (through ``verify_chain``).
The table covers wildcards, internationalised names, IPv4 and IPv6 spellings, a trailing dot and case.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tlskit.pki.diagnose import host_matches
from tlskit.pki.verify import verify_chain

NOW = dt.datetime.now(dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def root() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("parity root"))
        .issuer_name(_name("parity root"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    root: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], sans: list[x509.GeneralName]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca, ca_key = root
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("parity leaf"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=10))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def openssl_accepts(root: x509.Certificate, leaf: x509.Certificate, key: ec.EllipticCurvePrivateKey, host: str) -> bool:
    """A real TLS 1.3 handshake through tlskit's engine; True if OpenSSL, on the client side, accepted the name."""
    from cryptography.hazmat.primitives import serialization

    from tlskit.net._openssl import pem_file
    from tlskit.net.engine import TLSEngine

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pem = leaf.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pem_file(pem) as path:
        server.load_cert_chain(path)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cadata=root.public_bytes(serialization.Encoding.PEM).decode())
    client.hostname_checks_common_name = False
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = TLSEngine(client, server_side=False, server_hostname=host)
    try:
        cli.start()
        for _ in range(10):
            s_in.write(cli.data_to_send())
            with contextlib.suppress(ssl.SSLWantReadError):
                srv.do_handshake()
            cli.receive(s_out.read())
            if cli.handshake_complete:
                return True
    except ssl.SSLCertVerificationError as exc:
        assert exc.verify_code in (62, 64), exc  # a host name (62) or IP address (64) mismatch, nothing else
        return False
    raise AssertionError("the handshake did not finish")


def dns(*names: str) -> list[x509.GeneralName]:
    return [x509.DNSName(n) for n in names]


def ip(*addresses: str) -> list[x509.GeneralName]:
    return [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]


# (SANs, host, expected): every row is decided identically by tlskit, OpenSSL and cryptography.
TABLE: list[tuple[list[x509.GeneralName], str, bool]] = [
    (dns("example.com"), "example.com", True),
    (dns("example.com"), "EXAMPLE.com", True),  # case-insensitive
    (dns("Example.COM"), "example.com", True),
    (dns("example.com"), "www.example.com", False),
    (dns("www.example.com"), "example.com", False),
    (dns("*.example.com"), "www.example.com", True),
    (dns("*.example.com"), "WWW.Example.Com", True),
    (dns("*.example.com"), "example.com", False),  # a wildcard needs its label
    (dns("*.example.com"), "a.b.example.com", False),  # ... and covers exactly one
    (dns("*.example.com"), "xn--bcher-kva.example.com", True),  # an A-label is a label like any other
    (dns("xn--bcher-kva.example"), "xn--bcher-kva.example", True),
    (dns("xn--bcher-kva.example"), "bücher.example", True),  # the U-label, encoded by each side
    (dns("xn--bcher-kva.example"), "bucher.example", False),
    (dns("localhost"), "localhost", True),
    (dns("localhost"), "127.0.0.1", False),  # an address never matches a DNS name
    (ip("127.0.0.1"), "localhost", False),
    (ip("192.0.2.1"), "192.0.2.1", True),
    (ip("192.0.2.1"), "192.0.2.10", False),
    (ip("2001:db8::1"), "2001:db8::1", True),
    (ip("2001:db8::1"), "2001:DB8:0:0:0:0:0:1", True),  # another spelling of the same address
    (ip("2001:db8::1"), "2001:db8::2", False),
    (ip("::1"), "::1", True),
    (dns("192.0.2.1"), "192.0.2.1", False),  # an IP written as a DNS name is not an IP SAN
    (dns("example.com", "example.net") + ip("192.0.2.7"), "example.net", True),
    (dns("example.com", "example.net") + ip("192.0.2.7"), "192.0.2.7", True),
]


@pytest.mark.parametrize(("sans", "host", "expected"), TABLE, ids=[f"{h}-vs-{s}" for s, h, _ in TABLE])
def test_host_matching_agrees_with_openssl_and_cryptography(
    root: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    sans: list[x509.GeneralName],
    host: str,
    expected: bool,
) -> None:
    leaf, key = _leaf(root, sans)
    ours = host_matches(leaf, host)
    theirs_openssl = openssl_accepts(root[0], leaf, key, host)
    theirs_cryptography = verify_chain(leaf, roots=[root[0]], host=host).ok
    assert (ours, theirs_openssl, theirs_cryptography) == (expected, expected, expected)


@pytest.mark.parametrize("host", ["example.com.", "WWW.example.com.", "example.net."])
def test_trailing_dot(root: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], host: str) -> None:
    """A fully qualified name with the root's dot matches like the name without it, in all three.

    OpenSSL's X509_check_host would not match it; tlskit's engine strips the dot before OpenSSL sees the name
    (RFC 6066 sends SNI without it), as curl and browsers do.
    """
    leaf, key = _leaf(root, dns("example.com", "*.example.com"))
    expected = not host.endswith(".net.")
    assert host_matches(leaf, host) == expected
    assert verify_chain(leaf, roots=[root[0]], host=host).ok == expected
    assert openssl_accepts(root[0], leaf, key, host) == expected
