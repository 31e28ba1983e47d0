"""PKCS#12: modern encryption that OpenSSL 3 opens without -legacy, round trips, and clear errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import PKI
from peers import tool
from tlskit.errors import InputError, KeyMismatchError, PassphraseError
from tlskit.pki.certs import key_matches
from tlskit.pki.files import load_certificates
from tlskit.pki.keys import generate_key, key_to_pem, load_private_key
from tlskit.pki.pkcs12 import export_pkcs12, import_pkcs12, load_pkcs12, save_pkcs12

PASS = b"p12-pass"


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("openssl"), *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def bundle_path(pki: PKI, tmp_path: Path) -> Path:
    chain = load_certificates(pki.server_pem)
    return save_pkcs12(
        tmp_path / "server.p12", chain[0], load_private_key(pki.server_key), passphrase=PASS, chain=chain
    )


def test_openssl3_opens_without_legacy(bundle_path: Path, tmp_path: Path) -> None:
    (tmp_path / "pw").write_bytes(PASS + b"\n")
    info = openssl("pkcs12", "-info", "-nokeys", "-passin", f"file:{tmp_path / 'pw'}", "-in", bundle_path)
    assert info.returncode == 0, info.stderr
    report = info.stdout + info.stderr
    assert "PBES2, PBKDF2, AES-256-CBC" in report and "MAC: sha256" in report
    assert "RC2" not in report and "3DES" not in report
    assert report.count("subject=") == 2  # leaf + intermediate, no duplicate leaf
    keys = openssl("pkcs12", "-in", bundle_path, "-nocerts", "-nodes", "-passin", f"pass:{PASS.decode()}")
    assert keys.returncode == 0 and "PRIVATE KEY" in keys.stdout


def test_round_trip(pki: PKI, bundle_path: Path) -> None:
    bundle = load_pkcs12(bundle_path, passphrase=PASS)
    chain = load_certificates(pki.server_pem)
    assert bundle.cert == chain[0]
    assert bundle.chain == tuple(chain[1:])
    assert bundle.friendly_name == "localhost"
    assert key_to_pem(bundle.key) == key_to_pem(load_private_key(pki.server_key))
    assert key_matches(bundle.cert, bundle.key)


def test_openssl_made_bundle_imports(pki: PKI, tmp_path: Path) -> None:
    out = tmp_path / "o.p12"
    made = openssl(
        "pkcs12", "-export", "-in", pki.client_pem, "-inkey", pki.client_key, "-passout", "pass:abc", "-out", out
    )
    assert made.returncode == 0, made.stderr
    bundle = load_pkcs12(out, passphrase=b"abc")
    assert bundle.cert == load_certificates(pki.client_pem)[0]
    cert_path, key_path = bundle.write(tmp_path / "client")
    assert cert_path.read_bytes() == pki.client_pem.read_bytes()
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"


def test_errors(pki: PKI, bundle_path: Path) -> None:
    cert = load_certificates(pki.server_pem)[0]
    with pytest.raises(KeyMismatchError, match="does not belong"):
        export_pkcs12(cert, generate_key(), passphrase=PASS)
    with pytest.raises(InputError, match="needs a passphrase"):
        export_pkcs12(cert, load_private_key(pki.server_key), passphrase=b"")
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        load_pkcs12(bundle_path, passphrase=b"wrong")
    with pytest.raises(PassphraseError, match="encrypted"):
        load_pkcs12(bundle_path, passphrase=None)
    with pytest.raises(InputError, match="inputs look switched"):
        load_pkcs12(pki.server_pem, passphrase=PASS)
    with pytest.raises(InputError, match="not a readable PKCS#12"):
        import_pkcs12(b"\x30\x03\x02\x01\x03", passphrase=PASS)


def test_repeated_chain_certificates_are_bundled_once(pki: PKI) -> None:
    """A server chain file given as the chain too (leaf + intermediate twice) bundles each certificate once."""
    leaf, *intermediates = load_certificates(pki.server_pem)
    key = load_private_key(pki.server_key)
    data = export_pkcs12(leaf, key, passphrase=b"pw", chain=[leaf, *intermediates, leaf, *intermediates])
    bundle = import_pkcs12(data, passphrase=b"pw")
    assert bundle.cert == leaf
    assert list(bundle.chain) == intermediates
