"""Keys round-trip with OpenSSL: openssl-made keys (every format, encrypted too) load; tlskit keys pass its checks."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from conftest import PKI
from peers import tool
from tlskit.errors import ExistingFileError, InputError, PassphraseError
from tlskit.pki.keys import (
    KeyEncoding,
    KeyType,
    describe_public_key,
    generate_key,
    key_to_pem,
    load_private_key,
    parse_private_key,
    save_private_key,
)

PASS = "s3cret-pass"

# name -> (openssl argv writing OUT, expected class, encrypted?)
OPENSSL_KEYS: dict[str, tuple[list[str], type, bool]] = {
    "rsa-pkcs8": (["genrsa", "-out", "OUT", "2048"], rsa.RSAPrivateKey, False),
    "rsa-traditional": (["genrsa", "-traditional", "-out", "OUT", "2048"], rsa.RSAPrivateKey, False),
    "rsa-pkcs8-aes256": (
        ["genrsa", "-aes256", "-passout", f"pass:{PASS}", "-out", "OUT", "2048"],
        rsa.RSAPrivateKey,
        True,
    ),
    "rsa-traditional-aes256": (
        ["genrsa", "-traditional", "-aes256", "-passout", f"pass:{PASS}", "-out", "OUT", "2048"],
        rsa.RSAPrivateKey,
        True,
    ),
    "ec-pkcs8": (
        ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "OUT"],
        ec.EllipticCurvePrivateKey,
        False,
    ),
    "ec-sec1": (
        ["ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", "OUT"],
        ec.EllipticCurvePrivateKey,
        False,
    ),
    "ec-pkcs8-aes256": (
        [
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-aes256",
            "-pass",
            f"pass:{PASS}",
            "-out",
            "OUT",
        ],
        ec.EllipticCurvePrivateKey,
        True,
    ),
    "ed25519": (["genpkey", "-algorithm", "ED25519", "-out", "OUT"], ed25519.Ed25519PrivateKey, False),
    "ed25519-aes256": (
        ["genpkey", "-algorithm", "ED25519", "-aes256", "-pass", f"pass:{PASS}", "-out", "OUT"],
        ed25519.Ed25519PrivateKey,
        True,
    ),
    "ec-der": (
        ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-outform", "DER", "-out", "OUT"],
        ec.EllipticCurvePrivateKey,
        False,
    ),
}


def openssl(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("openssl"), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("name", list(OPENSSL_KEYS))
def test_openssl_made_keys_load(tmp_path: Path, name: str) -> None:
    argv, cls, encrypted = OPENSSL_KEYS[name]
    out = tmp_path / "key"
    made = openssl(*[str(out) if a == "OUT" else a for a in argv])
    assert made.returncode == 0, made.stderr
    if encrypted:
        with pytest.raises(PassphraseError, match="encrypted"):
            load_private_key(out)
        with pytest.raises(PassphraseError, match="wrong passphrase"):
            load_private_key(out, passphrase=b"not it")
        key = load_private_key(out, passphrase=PASS.encode())
    else:
        key = load_private_key(out)
    assert isinstance(key, cls)


def test_encrypted_der_pkcs8_loads(tmp_path: Path) -> None:
    pem = tmp_path / "k.pem"
    save_private_key(generate_key(), pem)
    der = tmp_path / "k.der"
    made = openssl(
        "pkcs8", "-topk8", "-v2", "aes256", "-in", pem, "-passout", f"pass:{PASS}", "-outform", "DER", "-out", der
    )
    assert made.returncode == 0, made.stderr
    with pytest.raises(PassphraseError, match="encrypted"):
        load_private_key(der)
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        load_private_key(der, passphrase=b"nope")
    assert isinstance(load_private_key(der, passphrase=PASS.encode()), ec.EllipticCurvePrivateKey)


@pytest.mark.parametrize(
    ("key_type", "encrypted"),
    [(kt, False) for kt in KeyType] + [(kt, True) for kt in (KeyType.EC_P256, KeyType.RSA_2048, KeyType.ED25519)],
)
def test_tlskit_keys_pass_openssl_check(tmp_path: Path, key_type: KeyType, encrypted: bool) -> None:
    key = generate_key(key_type)
    path = tmp_path / "k.pem"
    save_private_key(key, path, passphrase=PASS.encode() if encrypted else None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    passin = ["-passin", f"pass:{PASS}"] if encrypted else []
    # OpenSSL 3.0's pkey -check cannot check Ed25519 keys; parsing them is the check there.
    check = ["-noout"] if key_type is KeyType.ED25519 else ["-check", "-noout"]
    result = openssl("pkey", "-in", path, *passin, *check)
    assert result.returncode == 0, result.stderr
    if "-check" in check:
        assert "Key is valid" in result.stdout + result.stderr
    text = openssl("pkey", "-in", path, *passin, "-pubout").stdout
    assert text.startswith("-----BEGIN PUBLIC KEY-----")
    assert describe_public_key(key.public_key())[1] >= 255


def test_der_round_trip_and_encoding_choice(tmp_path: Path) -> None:
    key = generate_key(KeyType.EC_P384)
    save_private_key(key, tmp_path / "k.der")
    data = (tmp_path / "k.der").read_bytes()
    assert data[:1] == b"\x30"  # DER, chosen from the suffix
    assert openssl("pkey", "-inform", "DER", "-in", tmp_path / "k.der", "-check", "-noout").returncode == 0
    back = load_private_key(tmp_path / "k.der")
    assert key_to_pem(back) == key_to_pem(key)
    assert key_to_pem(key, encoding=KeyEncoding.DER) == data


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    save_private_key(generate_key(), path)
    original = path.read_bytes()
    with pytest.raises(ExistingFileError, match="force=True"):  # the library names its parameter; the CLI, --force
        save_private_key(generate_key(), path)
    assert path.read_bytes() == original
    save_private_key(generate_key(), path, force=True)
    assert path.read_bytes() != original
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wrong_inputs_are_named(pki: PKI, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="inputs look switched"):
        load_private_key(pki.server_pem)
    der_cert = tmp_path / "cert.der"
    der_cert.write_bytes(pki.server_cert.public_bytes(serialization.Encoding.DER))
    with pytest.raises(InputError, match=r"cert\.der: expected a private key but found a certificate"):
        load_private_key(der_cert)
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\n@@@@\n-----END PRIVATE KEY-----\n")
    with pytest.raises(InputError, match=r"bad\.pem: not a readable private key \(malformed PEM\)"):
        load_private_key(bad)
    with pytest.raises(InputError, match="not PEM or DER"):
        parse_private_key(b"\x01\x02garbage", source="junk")
    with pytest.raises(InputError, match="no such key file"):
        load_private_key(tmp_path / "missing.pem")
    with pytest.raises(InputError, match="unknown key type"):
        generate_key("dsa-1024")
