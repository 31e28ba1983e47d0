"""server_context / client_context: real handshakes between them (stdlib sockets in threads) and openssl s_client.

Every case runs a full TLS handshake on 127.0.0.1 and then a small request/response, so refusals that TLS 1.3
reports only after the client's Finished (a missing client certificate) are observed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import PKI, MakeCert
from peers import OPENSSL, requires
from tlskit.errors import InputError, KeyMismatchError, PassphraseError
from tlskit.net.context import (
    ClientAuth,
    CrlCheck,
    KeyLogWarning,
    TLSProfile,
    client_context,
    server_context,
    tls_version_from_str,
)
from tlskit.pki.ca import CertificateAuthority
from tlskit.pki.certs import CertSpec, Profile, build_certificate
from tlskit.pki.files import load_certificate, load_certificates
from tlskit.pki.keys import generate_key, load_private_key, save_private_key
from tlskit.pki.names import parse_subject


@dataclass
class Outcome:
    """What both ends saw of one connection."""

    client_error: BaseException | None = None
    server_error: BaseException | None = None
    server_cert: bytes | None = None  # as received by the client
    client_cert: bytes | None = None  # as received by the server
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    reply: bytes = b""

    @property
    def ok(self) -> bool:
        return self.client_error is None and self.server_error is None and self.reply == b"pong:ping"


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str = "localhost") -> Outcome:
    """One connection: handshake, client sends ``ping``, server answers ``pong:ping``."""
    out = Outcome()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with conn, server_ctx.wrap_socket(conn, server_side=True) as tls:
                out.client_cert = tls.getpeercert(binary_form=True)
                tls.sendall(b"pong:" + tls.recv(100))
        except (ssl.SSLError, OSError) as exc:
            out.server_error = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            out.server_cert = tls.getpeercert(binary_form=True)
            out.version, out.alpn = tls.version(), tls.selected_alpn_protocol()
            out.cipher = tls.cipher()[0]  # type: ignore[index]
            tls.sendall(b"ping")
            out.reply = tls.recv(100)
            if not out.reply:
                raise ConnectionResetError("server closed the connection")
    except (ssl.SSLError, OSError) as exc:
        out.client_error = exc
    finally:
        thread.join(15)
        listener.close()
    return out


def der(path: Path) -> bytes:
    return load_certificate(path).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def server_ctx(pki: PKI) -> ssl.SSLContext:
    return server_context(cert=pki.server_pem, key=pki.server_key)


@pytest.fixture(scope="module")
def client_ctx(pki: PKI) -> ssl.SSLContext:
    return client_context(ca=pki.root_pem)


# --- basic handshakes and versions --------------------------------------------------------------------------


def test_default_handshake_is_tls13_and_verifies(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, pki: PKI
) -> None:
    out = handshake(server_ctx, client_ctx)
    assert out.ok, out
    assert out.version == "TLSv1.3"
    assert out.server_cert == der(pki.server_pem)
    assert client_ctx.check_hostname and client_ctx.verify_mode == ssl.CERT_REQUIRED
    assert not client_ctx.hostname_checks_common_name
    assert client_ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    for ctx in (server_ctx, client_ctx):
        assert ctx.options & ssl.OP_NO_COMPRESSION and ctx.options & ssl.OP_NO_RENEGOTIATION
        assert not ctx.options & ssl.OP_NO_TICKET
        tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
        assert tls12 and all("GCM" in n or "CHACHA20" in n for n in tls12)
        assert all(n.startswith("ECDHE-") for n in tls12)


@pytest.mark.parametrize(
    ("server_opts", "client_opts", "expected"),
    [
        ({"max_version": "1.2"}, {}, "TLSv1.2"),
        ({}, {"max_version": ssl.TLSVersion.TLSv1_2}, "TLSv1.2"),
        ({"min_version": "1.3"}, {"min_version": "TLSv1.3"}, "TLSv1.3"),
        ({"min_version": "1.3"}, {"max_version": "1.2"}, None),
        ({"max_version": "1.2"}, {"min_version": "1.3"}, None),
    ],
)
def test_min_max_version(
    pki: PKI, server_opts: dict[str, object], client_opts: dict[str, object], expected: str | None
) -> None:
    out = handshake(
        server_context(cert=pki.server_pem, key=pki.server_key, **server_opts),  # type: ignore[arg-type]
        client_context(ca=pki.root_pem, **client_opts),  # type: ignore[arg-type]
    )
    if expected is None:
        assert not out.ok
        assert isinstance(out.client_error, ssl.SSLError)
    else:
        assert out.ok, out
        assert out.version == expected


def test_tls12_uses_an_intermediate_suite(pki: PKI) -> None:
    out = handshake(
        server_context(cert=pki.rsa_server_pem, key=pki.rsa_server_key, max_version="1.2"),
        client_context(ca=pki.root_pem),
    )
    assert out.ok, out
    assert out.cipher is not None and out.cipher.startswith("ECDHE-RSA-") and "CBC" not in out.cipher


def test_profiles(pki: PKI) -> None:
    """Mozilla's configurations: modern refuses TLS 1.2 clients; both keep the server's order with ChaCha20."""
    with pytest.raises(InputError, match="below what profile=modern allows"):
        server_context(cert=pki.server_pem, key=pki.server_key, profile="modern", min_version="1.2")
    with pytest.raises(InputError, match="unknown TLS profile 'old'"):
        server_context(cert=pki.server_pem, key=pki.server_key, profile="old")
    modern = server_context(cert=pki.server_pem, key=pki.server_key, profile=TLSProfile.MODERN)
    intermediate = server_context(cert=pki.server_pem, key=pki.server_key)
    assert modern.minimum_version is ssl.TLSVersion.TLSv1_3
    assert intermediate.minimum_version is ssl.TLSVersion.TLSv1_2
    for ctx in (modern, intermediate):
        assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE and ctx.options & (1 << 21)  # PRIORITIZE_CHACHA
    refused = handshake(modern, client_context(ca=pki.root_pem, max_version="1.2"))
    assert not refused.ok and isinstance(refused.client_error, ssl.SSLError)
    assert handshake(modern, client_context(ca=pki.root_pem)).version == "TLSv1.3"


def test_a_client_listing_chacha_first_gets_it(pki: PKI) -> None:
    server = server_context(cert=pki.server_pem, key=pki.server_key, max_version="1.2")
    both = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"
    aes256_first = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"
    aes_first = handshake(server, client_context(ca=pki.root_pem, max_version="1.2", ciphers=aes256_first))
    chacha_first = handshake(server, client_context(ca=pki.root_pem, max_version="1.2", ciphers=both))
    assert aes_first.cipher == "ECDHE-ECDSA-AES128-GCM-SHA256"  # the server's order, not the client's
    assert chacha_first.cipher == "ECDHE-ECDSA-CHACHA20-POLY1305"  # ... unless the client prefers ChaCha20


def test_version_parsing() -> None:
    assert tls_version_from_str("1.2") is ssl.TLSVersion.TLSv1_2
    assert tls_version_from_str("TLSv1.3") is ssl.TLSVersion.TLSv1_3
    assert tls_version_from_str("tls1_3") is ssl.TLSVersion.TLSv1_3
    for bad in ("1.1", "1.0", "2", ssl.TLSVersion.TLSv1_1):
        with pytest.raises(InputError, match="deprecated"):
            tls_version_from_str(bad)


def test_max_below_min_is_refused(pki: PKI) -> None:
    with pytest.raises(InputError, match="below min_version"):
        client_context(ca=pki.root_pem, min_version="1.3", max_version="1.2")


def test_bad_cipher_list_and_alpn_are_input_errors(pki: PKI) -> None:
    with pytest.raises(InputError, match="selects no usable cipher"):
        client_context(ca=pki.root_pem, ciphers="NOPE-CIPHER")
    with pytest.raises(InputError, match="ALPN"):
        client_context(ca=pki.root_pem, alpn=["x" * 256])


# --- client authentication ----------------------------------------------------------------------------------


def test_client_auth_none_sends_no_request(pki: PKI, client_ctx: ssl.SSLContext) -> None:
    ctx = server_context(cert=pki.server_pem, key=pki.server_key)
    assert ctx.verify_mode == ssl.CERT_NONE
    out = handshake(ctx, client_context(ca=pki.root_pem, cert=pki.client_pem, key=pki.client_key))
    assert out.ok, out
    assert out.client_cert is None


def test_client_auth_optional(pki: PKI) -> None:
    ctx = server_context(cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth="optional")
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    anonymous = handshake(ctx, client_context(ca=pki.root_pem))
    assert anonymous.ok, anonymous
    assert anonymous.client_cert is None
    with_cert = handshake(ctx, client_context(ca=pki.root_pem, cert=pki.client_pem, key=pki.client_key))
    assert with_cert.ok, with_cert
    assert with_cert.client_cert == der(pki.client_pem)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_client_auth_required(pki: PKI, version: str) -> None:
    ctx = server_context(
        cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth=ClientAuth.REQUIRED, max_version=version
    )
    good = handshake(ctx, client_context(ca=pki.root_pem, cert=pki.client_pem, key=pki.client_key))
    assert good.ok, good
    assert good.client_cert == der(pki.client_pem)

    missing = handshake(ctx, client_context(ca=pki.root_pem))
    assert not missing.ok
    assert isinstance(missing.server_error, ssl.SSLError)
    assert "certificate" in str(missing.server_error).lower()

    wrong_ca = handshake(ctx, client_context(ca=pki.root_pem, cert=pki.other_client_pem, key=pki.other_client_key))
    assert not wrong_ca.ok
    assert isinstance(wrong_ca.server_error, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in str(wrong_ca.server_error)


def test_client_auth_parse_and_validation(pki: PKI) -> None:
    assert ClientAuth.parse("Required") is ClientAuth.REQUIRED
    assert ClientAuth.parse(ClientAuth.OPTIONAL) is ClientAuth.OPTIONAL
    with pytest.raises(InputError, match="none, optional, required"):
        ClientAuth.parse("sometimes")
    assert CrlCheck.parse("CHAIN") is CrlCheck.CHAIN
    with pytest.raises(InputError, match="leaf, chain"):
        client_context(ca=pki.root_pem, crls=pki.ca.crl(), crl_check="all")
    with pytest.raises(InputError, match="needs trust anchors"):
        server_context(cert=pki.server_pem, key=pki.server_key, client_auth="required")


def test_contexts_work_with_asyncio_streams(pki: PKI) -> None:
    # Plain SSLContexts: the stdlib asyncio TLS transport takes them as they are.
    server_ctx = server_context(
        cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth="required", alpn=["x-tlskit"]
    )
    client_ctx = client_context(ca=pki.root_pem, cert=pki.client_pem, key=pki.client_key, alpn=["x-tlskit"])

    async def main() -> tuple[bytes, str | None, bytes | None]:
        seen: list[bytes | None] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("ssl_object").getpeercert(True))
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
            )
            writer.write(b"hello\n")
            line = await reader.readline()
            alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
            writer.close()
        return line, alpn, seen[0]

    line, alpn, client_cert = asyncio.run(asyncio.wait_for(main(), 20))
    assert (line, alpn) == (b"hello\n", "x-tlskit")
    assert client_cert == der(pki.client_pem)


def test_server_rejected_by_client_from_other_ca(pki: PKI, server_ctx: ssl.SSLContext) -> None:
    out = handshake(server_ctx, client_context(ca=pki.other_root_pem))
    assert isinstance(out.client_error, ssl.SSLCertVerificationError)


# --- ALPN, SNI, hostname ------------------------------------------------------------------------------------


def test_alpn_negotiated(pki: PKI) -> None:
    ctx = server_context(cert=pki.server_pem, key=pki.server_key, alpn=["h2", "http/1.1"])
    out = handshake(ctx, client_context(ca=pki.root_pem, alpn=["http/1.1"]))
    assert out.ok, out
    assert out.alpn == "http/1.1"
    none_shared = handshake(ctx, client_context(ca=pki.root_pem, alpn=["x-custom"]))
    assert none_shared.ok, none_shared
    assert none_shared.alpn is None


@pytest.fixture
def sni_certs(make_cert: MakeCert) -> dict[str, tuple[Path, Path]]:
    return {
        "a.example": make_cert(["a.example"], name="a"),
        "*.b.example": make_cert(["*.b.example"], name="b"),
    }


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("a.example", "a.example"),
        ("A.Example.", "a.example"),
        ("x.b.example", "*.b.example"),
        ("b.example", None),  # a wildcard covers exactly one label
        ("y.x.b.example", None),
        ("other.example", None),
    ],
)
def test_sni_selects_certificate(
    pki: PKI, sni_certs: dict[str, tuple[Path, Path]], requested: str, expected: str | None
) -> None:
    ctx = server_context(cert=pki.server_pem, key=pki.server_key, sni=sni_certs)
    # Host name checking off: this test is about which certificate was served, mismatches included.
    out = handshake(ctx, client_context(ca=pki.root_pem, check_hostname=False), server_hostname=requested)
    assert out.ok, out
    assert out.server_cert == der(sni_certs[expected][0] if expected else pki.server_pem)


def test_sni_wildcard_verifies_and_keeps_client_auth(pki: PKI, sni_certs: dict[str, tuple[Path, Path]]) -> None:
    ctx = server_context(
        cert=pki.server_pem, key=pki.server_key, sni=sni_certs, ca=pki.root_pem, client_auth="required"
    )
    out = handshake(
        ctx, client_context(ca=pki.root_pem, cert=pki.client_pem, key=pki.client_key), server_hostname="x.b.example"
    )
    assert out.ok, out
    assert out.client_cert == der(pki.client_pem)
    # The swapped-in context must still demand a client certificate.
    refused = handshake(ctx, client_context(ca=pki.root_pem), server_hostname="a.example")
    assert not refused.ok


def test_sni_entry_with_its_own_passphrase(pki: PKI, make_cert: MakeCert, tmp_path: Path) -> None:
    cert, key = make_cert(["c.example"], name="c")
    encrypted = tmp_path / "c-enc-key.pem"
    save_private_key(load_private_key(key), encrypted, passphrase=b"sni-secret")
    ctx = server_context(cert=pki.server_pem, key=pki.server_key, sni={"c.example": (cert, encrypted, "sni-secret")})
    out = handshake(ctx, client_context(ca=pki.root_pem), server_hostname="c.example")
    assert out.ok, out
    assert out.server_cert == der(cert)
    with pytest.raises(PassphraseError):
        server_context(cert=pki.server_pem, key=pki.server_key, sni={"c.example": (cert, encrypted)})


def test_sni_validation(pki: PKI, sni_certs: dict[str, tuple[Path, Path]]) -> None:
    with pytest.raises(InputError, match="invalid SNI name"):
        server_context(cert=pki.server_pem, key=pki.server_key, sni={"a.*.example": sni_certs["a.example"]})
    cert, _ = sni_certs["a.example"]
    with pytest.raises(KeyMismatchError):
        server_context(cert=pki.server_pem, key=pki.server_key, sni={"a.example": (cert, pki.server_key)})


def test_no_common_name_fallback(pki: PKI, tmp_path: Path) -> None:
    key = generate_key()
    spec = CertSpec(subject=parse_subject("CN=localhost"), sans=(), profile=Profile.SERVER)
    cert = build_certificate(spec, public_key=key.public_key(), issuer_key=pki.ca.key, issuer=pki.ca.cert)
    ctx = server_context(cert=[cert, pki.ca.cert], key=key)
    out = handshake(ctx, client_context(ca=pki.root_pem))
    assert isinstance(out.client_error, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(out.client_error)
    # The chain itself is fine: only the CN-as-host-name fallback is off.
    assert handshake(ctx, client_context(ca=pki.root_pem, check_hostname=False)).ok


def test_verify_false_accepts_untrusted_server_but_keeps_anchors(pki: PKI, server_ctx: ssl.SSLContext) -> None:
    ctx = client_context(ca=pki.other_root_pem, verify=False)
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    # The anchors stay loaded so the connection layer can explain what verification would have said.
    assert [x509.load_der_x509_certificate(c) for c in ctx.get_ca_certs(binary_form=True)] == load_certificates(
        pki.other_root_pem
    )
    out = handshake(server_ctx, ctx, server_hostname="wrong.example")
    assert out.ok, out


def test_trust_anchor_forms(pki: PKI, server_ctx: ssl.SSLContext) -> None:
    root = load_certificate(pki.root_pem)
    for ca in (
        root,
        [root],
        pki.root_pem.read_bytes(),
        root.public_bytes(serialization.Encoding.DER),
        str(pki.root_pem),
    ):
        assert handshake(server_ctx, client_context(ca=ca)).ok
    # Partial chains: the intermediate alone is enough as an anchor, like Node's ca option.
    assert handshake(server_ctx, client_context(ca=pki.ca_pem)).ok
    # system_trust=True adds to the system store; the private root still works.
    assert handshake(server_ctx, client_context(ca=pki.root_pem, system_trust=True)).ok
    system_only = client_context()
    assert system_only.cert_store_stats()["x509_ca"] >= 0  # loaded lazily from a directory on some systems
    assert isinstance(handshake(server_ctx, system_only).client_error, ssl.SSLCertVerificationError)
    with pytest.raises(InputError, match="nothing to trust"):
        client_context(system_trust=False)
    with pytest.raises(InputError, match="switched"):
        client_context(ca=pki.server_key)


# --- identity loading errors ------------------------------------------------------------------------------


def test_key_mismatch(pki: PKI) -> None:
    with pytest.raises(KeyMismatchError, match="the key does not belong to the certificate"):
        server_context(cert=pki.server_pem, key=pki.client_key)


def test_chain_out_of_order(pki: PKI) -> None:
    leaf, intermediate = load_certificates(pki.server_pem)
    with pytest.raises(KeyMismatchError, match="does not start with"):
        server_context(cert=[intermediate, leaf], key=pki.server_key)


def test_switched_inputs(pki: PKI) -> None:
    with pytest.raises(InputError, match="switched"):
        server_context(cert=pki.server_key, key=pki.server_pem)
    with pytest.raises(InputError, match="switched"):
        server_context(cert=pki.server_pem, key=pki.server_pem)


def test_passphrase(pki: PKI, tmp_path: Path, server_ctx: ssl.SSLContext) -> None:
    encrypted = tmp_path / "enc-key.pem"
    save_private_key(load_private_key(pki.client_key), encrypted, passphrase=b"s3cret")
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        client_context(ca=pki.root_pem, cert=pki.client_pem, key=encrypted, passphrase="nope")
    with pytest.raises(PassphraseError, match="encrypted"):
        client_context(ca=pki.root_pem, cert=pki.client_pem, key=encrypted)
    with pytest.raises(InputError, match="both cert= and key="):
        client_context(ca=pki.root_pem, cert=pki.client_pem)
    ctx = client_context(ca=pki.root_pem, cert=pki.client_pem, key=encrypted, passphrase="s3cret")
    srv = server_context(cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth="required")
    out = handshake(srv, ctx)
    assert out.ok, out
    assert out.client_cert == der(pki.client_pem)


def test_objects_instead_of_paths(pki: PKI) -> None:
    chain = load_certificates(pki.server_pem)
    ctx = server_context(cert=chain, key=load_private_key(pki.server_key))
    out = handshake(ctx, client_context(ca=load_certificate(pki.root_pem)))
    assert out.ok, out
    assert out.server_cert == chain[0].public_bytes(serialization.Encoding.DER)


def test_missing_file_names_it(pki: PKI, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.pem"):
        server_context(cert=tmp_path / "nope.pem", key=pki.server_key)


# --- CRLs ------------------------------------------------------------------------------------------------


def test_crl_refuses_revoked_client(pki: PKI, tmp_path: Path) -> None:
    root = CertificateAuthority.create_root(None, name="CRL Test Root")
    good, bad = (root.issue([n], profile=Profile.CLIENT) for n in ("good-client", "bad-client"))
    root.revoke(bad.cert)
    crl_path = tmp_path / "root.crl"
    crl_path.write_bytes(root.crl().public_bytes(serialization.Encoding.PEM))
    srv = server_context(cert=pki.server_pem, key=pki.server_key, ca=root.cert, client_auth="required", crls=[crl_path])
    assert srv.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    ok = handshake(srv, client_context(ca=pki.root_pem, cert=list(good.chain), key=good.key))
    assert ok.ok, ok
    refused = handshake(srv, client_context(ca=pki.root_pem, cert=list(bad.chain), key=bad.key))
    assert isinstance(refused.server_error, ssl.SSLCertVerificationError)
    assert "revoked" in str(refused.server_error)


def test_crl_chain_needs_a_crl_per_ca(pki: PKI) -> None:
    root = CertificateAuthority.create_root(None, name="CRL Chain Root")
    inter = root.create_intermediate(None, name="CRL Chain Intermediate")
    client = inter.issue(["chain-client"], profile=Profile.CLIENT)
    opts = {"cert": pki.server_pem, "key": pki.server_key, "ca": root.cert, "client_auth": "required"}
    cctx = client_context(ca=pki.root_pem, cert=list(client.chain), key=client.key)
    leaf_only = server_context(**opts, crls=inter.crl(), crl_check=CrlCheck.LEAF)  # type: ignore[arg-type]
    assert handshake(leaf_only, cctx).ok
    chain_missing = server_context(**opts, crls=[inter.crl()], crl_check=CrlCheck.CHAIN)  # type: ignore[arg-type]
    out = handshake(chain_missing, cctx)
    assert isinstance(out.server_error, ssl.SSLCertVerificationError)
    assert "unable to get certificate CRL" in str(out.server_error)
    chain_full = server_context(**opts, crls=[inter.crl(), root.crl()], crl_check=CrlCheck.CHAIN)  # type: ignore[arg-type]
    assert handshake(chain_full, cctx).ok


def test_crl_input_errors(pki: PKI) -> None:
    with pytest.raises(InputError, match="expected a CRL"):
        server_context(
            cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth="optional", crls=pki.root_pem
        )


def test_a_crl_that_nothing_would_consult_is_refused(pki: PKI) -> None:
    """A CRL is a policy on who may talk: where OpenSSL would never read it, it is refused, not ignored."""
    crl = pki.ca.crl()
    with pytest.raises(InputError, match="does not ask for any") as err:
        server_context(cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, crls=[crl])  # client_auth=none
    assert "client_auth=optional" in (err.value.fix or "")
    with pytest.raises(InputError, match="verification is off"):
        client_context(ca=pki.root_pem, verify=False, crls=[crl])


# --- key logging: only when asked -------------------------------------------------------------------------


def test_keylog_only_when_asked(pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inherited = tmp_path / "inherited.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(inherited))
    # A server never reads SSLKEYLOGFILE: a key log decrypts every connection it ever served.
    srv = server_context(cert=pki.server_pem, key=pki.server_key)
    assert srv.keylog_filename is None
    # A client honours it, as browsers and curl do, but says so.
    with pytest.warns(KeyLogWarning, match="SSLKEYLOGFILE is set"):
        cli = client_context(ca=pki.root_pem)
    assert handshake(srv, cli).ok
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in inherited.read_text()
    monkeypatch.delenv("SSLKEYLOGFILE")
    assert client_context(ca=pki.root_pem).keylog_filename is None


def test_keylog_file_is_private(pki: PKI, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        log = tmp_path / "keys.log"
        srv = server_context(cert=pki.server_pem, key=pki.server_key, keylog=log)
        assert handshake(srv, client_context(ca=pki.root_pem)).ok
        assert handshake(srv, client_context(ca=pki.root_pem, max_version="1.2")).ok
        assert stat.S_IMODE(log.stat().st_mode) == 0o600  # not 0644 from the umask
        text = log.read_text()
        assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in text and "CLIENT_RANDOM" in text  # TLS 1.3 and 1.2
        # An existing key log that others can read is refused, not appended to.
        shared = tmp_path / "shared.log"
        shared.write_text("")
        shared.chmod(0o644)
        with pytest.raises(InputError, match="not a private regular file"):
            client_context(ca=pki.root_pem, keylog=shared)
        with pytest.raises(InputError, match="cannot open the key log"):
            client_context(ca=pki.root_pem, keylog=tmp_path / "missing-dir" / "keys.log")
    finally:
        os.umask(old)


# --- interop: openssl s_client against a server_context server ------------------------------------------


@contextlib.contextmanager
def serving(ctx: ssl.SSLContext) -> Iterator[int]:
    """Accept connections on 127.0.0.1 until the block ends; each gets a handshake and a short reply."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn, contextlib.suppress(ssl.SSLError, OSError), ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"hello\n")
            tls.unwrap()  # close_notify, so s_client does not report an unexpected EOF

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def s_client(port: int, *args: str, ca: Path) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    argv = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-CAfile", str(ca)]
    return subprocess.run(
        [*argv, "-verify_return_error", *args], input="", capture_output=True, text=True, timeout=30, check=False
    )


@requires("openssl")
def test_openssl_sees_intermediate_profile(pki: PKI) -> None:
    ecdsa = server_context(cert=pki.server_pem, key=pki.server_key)
    rsa = server_context(cert=pki.rsa_server_pem, key=pki.rsa_server_key)
    with serving(ecdsa) as port_ec, serving(rsa) as port_rsa:
        tls13 = s_client(port_ec, ca=pki.root_pem)
        assert tls13.returncode == 0, tls13.stdout + tls13.stderr
        assert "Verify return code: 0 (ok)" in tls13.stdout and "TLSv1.3" in tls13.stdout
        assert "Server Temp Key: X25519" in tls13.stdout
        for port, suite in ((port_ec, "ECDHE-ECDSA-CHACHA20-POLY1305"), (port_rsa, "ECDHE-RSA-AES256-GCM-SHA384")):
            ok = s_client(port, "-tls1_2", "-cipher", suite, ca=pki.root_pem)
            assert ok.returncode == 0, ok.stdout + ok.stderr
            assert suite in ok.stdout
        # No RSA key exchange, no CBC, no TLS < 1.2 - whatever the client offers.
        for port, args in (
            (port_rsa, ("-tls1_2", "-cipher", "AES128-SHA")),
            (port_rsa, ("-tls1_2", "-cipher", "AES256-GCM-SHA384")),
            (port_rsa, ("-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA")),
            (port_ec, ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA")),
            (port_ec, ("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")),
        ):
            refused = s_client(port, *args, ca=pki.root_pem)
            assert refused.returncode != 0, (args, refused.stdout)
            assert "Cipher is (NONE)" in refused.stdout or "alert" in refused.stderr, (args, refused.stderr)


@requires("openssl")
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_openssl_groups_restricted(pki: PKI, version: str) -> None:
    # An RSA certificate: in TLS 1.2 an ECDSA P-256 one would also need P-256 among the client's groups.
    with serving(server_context(cert=pki.rsa_server_pem, key=pki.rsa_server_key)) as port:
        for group, temp_key in (("P-384", "ECDH, secp384r1"), ("P-256", "ECDH, prime256v1"), ("X25519", "X25519")):
            ok = s_client(port, version, "-groups", group, ca=pki.root_pem)
            assert ok.returncode == 0, ok.stdout + ok.stderr
            assert f"Server Temp Key: {temp_key}" in ok.stdout
        for group in ("P-521", "X448"):
            refused = s_client(port, version, "-groups", group, ca=pki.root_pem)
            assert refused.returncode != 0, (group, refused.stdout)


@requires("openssl")
def test_openssl_client_certificate_and_alpn(pki: PKI) -> None:
    ctx = server_context(
        cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth="required", alpn=["h2", "x-tlskit"]
    )
    with serving(ctx) as port:
        out = s_client(
            port,
            "-ign_eof",
            "-cert",
            str(pki.client_pem),
            "-cert_chain",
            str(pki.intermediates_pem),
            "-key",
            str(pki.client_key),
            "-alpn",
            "x-tlskit",
            ca=pki.root_pem,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "ALPN protocol: x-tlskit" in out.stdout
        assert "hello" in out.stdout
        # TLS 1.2 refuses inside the handshake (in 1.3 the alert comes after the client's Finished).
        anonymous = s_client(port, "-tls1_2", ca=pki.root_pem)
        assert anonymous.returncode != 0
        assert "hello" not in anonymous.stdout


def test_certificates_are_not_written_to_disk(pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The key of an in-memory identity must not land in the temp directory on Linux (memfd is used).
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    server_context(cert=load_certificates(pki.server_pem), key=load_private_key(pki.server_key))
    assert list(tmp_path.iterdir()) == []


def test_expired_client_certificate_refused(pki: PKI, make_cert: MakeCert) -> None:
    expired_pem, expired_key = make_cert(
        ["client"], profile=Profile.CLIENT, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=400), days=30
    )
    srv = server_context(cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth="required")
    out = handshake(srv, client_context(ca=pki.root_pem, cert=expired_pem, key=expired_key))
    assert isinstance(out.server_error, ssl.SSLCertVerificationError)
    assert "expired" in str(out.server_error)
