"""tlskit inspect: summaries of certificates, chains, CSRs, CRLs and keys, cross-checked with openssl."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from peers import tool
from tlskit.cli.inspect_render import render_text
from tlskit.pki.ca import CertificateAuthority
from tlskit.pki.certs import build_csr
from tlskit.pki.files import load_certificates
from tlskit.pki.inspect import inspect_file, serial_hex, summarize
from tlskit.pki.keys import KeyType, generate_key, save_private_key

NOW = dt.datetime.now(dt.UTC)


def openssl(*args: str | Path, stdin: bytes | None = None) -> bytes:
    done = subprocess.run([tool("openssl"), *map(str, args)], input=stdin, capture_output=True, check=True, timeout=60)
    return done.stdout


def tlskit_inspect(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlskit", "inspect", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_certificate_summary_matches_openssl(pki, tmp_path: Path) -> None:
    leaf, intermediate = inspect_file(pki.server_pem)
    cert = load_certificates(pki.server_pem)[0]
    assert leaf["kind"] == "certificate" and leaf["chain_index"] == 0 and intermediate["chain_index"] == 1
    assert leaf["subject"] == "CN=localhost"
    assert leaf["issuer"] == intermediate["subject"] == "CN=tlskit Test Intermediate CA"
    assert leaf["sans"] == ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    assert (leaf["key_type"], leaf["key_size"]) == ("EC P-256", 256)
    assert leaf["extended_key_usage"] == ["serverAuth"]
    assert "digitalSignature" in leaf["key_usage"]
    assert leaf["basic_constraints"] == {"ca": False, "path_length": None}
    assert intermediate["basic_constraints"]["ca"] is True
    assert "keyCertSign" in intermediate["key_usage"]
    assert leaf["signature_algorithm"] == "ecdsa-with-sha256"
    assert leaf["expired"] is False and leaf["not_yet_valid"] is False and 360 <= leaf["days_left"] <= 366
    # the same facts from openssl
    single = tmp_path / "server-leaf.pem"
    single.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    serial = openssl("x509", "-in", single, "-noout", "-serial").decode().strip().split("=")[1]
    assert leaf["serial"] == serial
    fingerprint = openssl("x509", "-in", single, "-noout", "-fingerprint", "-sha256").decode().strip()
    assert fingerprint.split("=")[1] == leaf["fingerprint_sha256"]
    spki = openssl("pkey", "-pubin", "-outform", "DER", stdin=openssl("x509", "-in", single, "-noout", "-pubkey"))
    digest = openssl("dgst", "-sha256", "-binary", stdin=spki)
    assert leaf["spki_pin"] == "sha256:" + base64.b64encode(digest).decode()
    # the key's pin is the certificate's pin: what tlskit connect --pin compares
    assert inspect_file(pki.server_key)[0]["spki_pin"] == leaf["spki_pin"]
    json.dumps(leaf)  # JSON-able as it is


def test_validity_flags_follow_the_injected_clock(pki) -> None:
    cert = load_certificates(pki.server_pem)[0]
    later = summarize(cert, now=cert.not_valid_after_utc + dt.timedelta(days=2))
    assert later["expired"] is True and later["days_left"] < 0
    earlier = summarize(cert, now=cert.not_valid_before_utc - dt.timedelta(days=1))
    assert earlier["not_yet_valid"] is True
    assert "EXPIRED" in render_text(later) and "days left" in render_text(summarize(cert, now=NOW))


def test_csr_crl_and_keys(tmp_path: Path) -> None:
    key = generate_key(KeyType.RSA_2048)
    csr_path = tmp_path / "req.csr"
    csr_path.write_bytes(build_csr(key, cn="api.example", sans=["api.example", "10.0.0.1"]).public_bytes(
        serialization.Encoding.PEM
    ))  # fmt: skip
    (csr,) = inspect_file(csr_path)
    assert csr["kind"] == "csr" and csr["signature_valid"] is True and csr["requests_ca"] is False
    assert csr["sans"] == ["DNS:api.example", "IP:10.0.0.1"] and csr["key_type"] == "RSA"

    ca = CertificateAuthority.create_root(tmp_path / "ca", name="Inspect CA")
    issued = ca.issue(["gone.example"])
    ca.revoke(issued.cert, reason="keyCompromise")
    crl_path = tmp_path / "ca.crl"
    crl_path.write_bytes(ca.crl().public_bytes(serialization.Encoding.DER))  # DER on purpose: detected
    (crl,) = inspect_file(crl_path)
    assert crl["kind"] == "crl" and crl["issuer"] == "CN=Inspect CA" and crl["expired"] is False
    assert [(r["serial"], r["reason"]) for r in crl["revoked"]] == [
        (serial_hex(issued.cert.serial_number), "keyCompromise")
    ]
    assert "keyCompromise" in render_text(crl)

    save_private_key(key, tmp_path / "locked.pem", passphrase=b"s3cret")
    (locked,) = inspect_file(tmp_path / "locked.pem")
    assert locked["encrypted"] is True and locked["key_type"] is None
    (opened,) = inspect_file(tmp_path / "locked.pem", passphrase=b"s3cret")
    assert opened["encrypted"] is True and (opened["key_type"], opened["key_size"]) == ("RSA", 2048)
    public = tmp_path / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (pub,) = inspect_file(public)
    assert pub["kind"] == "public key" and pub["spki_pin"] == opened["spki_pin"] == csr["spki_pin"]


def test_openssl_made_files_inspect(tmp_path: Path) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.der"
    openssl("req", "-x509", "-newkey", "ed25519", "-nodes", "-subj", "/CN=ed", "-days", "2", "-keyout", key,
            "-outform", "DER", "-out", cert)  # fmt: skip
    (summary,) = inspect_file(cert)
    assert summary["subject"] == "CN=ed" and summary["key_type"] == "Ed25519"
    assert summary["self_issued"] is True and summary["signature_algorithm"] == "ed25519"


def test_cli_text_json_and_errors(pki, tmp_path: Path) -> None:
    text = tlskit_inspect(pki.server_pem, pki.root_pem)
    assert text.returncode == 0, text.stderr
    assert "CN=localhost" in text.stdout and "tlskit Test Root CA" in text.stdout and "SPKI pin" in text.stdout
    as_json = tlskit_inspect(pki.server_pem, pki.server_key, "--json")
    kinds = [s["kind"] for s in json.loads(as_json.stdout)]
    assert kinds == ["certificate", "certificate", "private key"]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    bad = tlskit_inspect(garbage)
    assert bad.returncode == 2 and bad.stderr.startswith("tlskit: error:") and "garbage.pem" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert tlskit_inspect(tmp_path / "missing.pem").returncode == 2


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_openssl_keys_describe(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.pem"
    if kind == "rsa":
        openssl("genrsa", "-out", path, "3072")
        expected = ("RSA", 3072)
    else:
        openssl("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", path)
        expected = ("EC P-384", 384)
    (summary,) = inspect_file(path)
    assert (summary["key_type"], summary["key_size"]) == expected and summary["encrypted"] is False
