"""Private keys: generate, load (PEM or DER, PKCS#8, PKCS#1, SEC1, OpenSSH-free), save, describe.

Loading auto-detects the encoding and gives one actionable error for every common mistake: a certificate or
CSR given where a key is expected ("the inputs look switched"), an encrypted key without a passphrase, a wrong
passphrase, a file that is not a key at all.
"""

from __future__ import annotations

import enum
import os
from typing import TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from .._fileio import read_bytes, write_atomic
from ..errors import InputError, PassphraseError

__all__ = [
    "KeyEncoding",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "describe_public_key",
    "generate_key",
    "key_is_encrypted",
    "key_to_pem",
    "load_private_key",
    "parse_private_key",
    "save_private_key",
]

PrivateKey: TypeAlias = (
    rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
)
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey


class KeyType(enum.StrEnum):
    """Key algorithms tlskit generates.  ``EC_P256`` is the default: fast, small, universally supported."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    ED25519 = "ed25519"

    @classmethod
    def parse(cls, value: str | KeyType) -> KeyType:
        """Parse a user-supplied key type name, with an error that lists the valid ones."""
        try:
            return cls(str(value).lower())
        except ValueError:
            choices = ", ".join(k.value for k in cls)
            raise InputError(f"unknown key type {value!r}", fix=f"use one of: {choices}") from None


def generate_key(key_type: KeyType | str = KeyType.EC_P256) -> PrivateKey:
    """Generate a new private key of ``key_type``."""
    kt = KeyType.parse(key_type)
    if kt is KeyType.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if kt is KeyType.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    if kt is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    bits = int(kt.value.split("-")[1])
    # 65537 is the only public exponent anyone should use (and the only one some verifiers accept).
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


_NOT_KEY_MARKERS = {
    b"-----BEGIN CERTIFICATE-----": "a certificate",
    b"-----BEGIN CERTIFICATE REQUEST-----": "a certificate signing request",
    b"-----BEGIN NEW CERTIFICATE REQUEST-----": "a certificate signing request",
    b"-----BEGIN X509 CRL-----": "a CRL",
    b"-----BEGIN PUBLIC KEY-----": "a public key",
}


def _as_private(key: object, source: str) -> PrivateKey:
    if isinstance(
        key,
        rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey,
    ):
        return key
    raise InputError(f"{source}: unsupported key algorithm {type(key).__name__}", fix="use an RSA, EC or Ed25519 key")


def _der_is_encrypted(data: bytes) -> bool:
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:
        return True  # "Password was not given but private key is encrypted"
    except Exception:  # anything else means "not an encrypted key"
        return False
    return False


def key_is_encrypted(data: bytes) -> bool:
    """Whether PEM or DER private-key bytes are encrypted (PEM says so in its header; DER is probed)."""
    if b"-----BEGIN" in data:
        return b"ENCRYPTED" in data
    return _der_is_encrypted(data)


def _refuse_der_non_key(data: bytes, source: str) -> None:
    from .files import PemKind, detect_kind  # files does not import keys; local import keeps it that way

    kind = detect_kind(data)
    if kind not in (PemKind.PRIVATE_KEY, PemKind.UNKNOWN):
        fix = (
            "extract the key with 'tlskit pkcs12 import'"
            if kind is PemKind.PKCS12
            else "the inputs look switched; pass the key file here"
        )
        raise InputError(f"{source}: expected a private key but found a {kind}", fix=fix)


def parse_private_key(data: bytes, *, passphrase: bytes | None = None, source: str = "<key>") -> PrivateKey:
    """Parse a private key from PEM or DER bytes (auto-detected), decrypting with ``passphrase`` if needed."""
    for marker, what in _NOT_KEY_MARKERS.items():
        if marker in data and b"PRIVATE KEY-----" not in data:
            raise InputError(
                f"{source}: expected a private key but found {what}",
                fix="the inputs look switched; pass the key file here",
            )
    is_pem = b"-----BEGIN" in data
    if not is_pem:
        _refuse_der_non_key(data, source)
    loader = serialization.load_pem_private_key if is_pem else serialization.load_der_private_key
    try:
        key = loader(data, password=passphrase)
    except TypeError as exc:
        # cryptography: "Password was not given but private key is encrypted" / "... not encrypted"
        locked = PassphraseError(f"{source}: the private key is encrypted", fix="give its passphrase (passphrase=)")
        if not passphrase:  # None, or b"" (which cryptography takes for no passphrase)
            raise locked from exc
        try:
            key = loader(data, password=None)  # a passphrase for an unencrypted key is harmless
        except TypeError:
            raise locked from exc
        except Exception as again:  # ValueError, UnsupportedAlgorithm: the key itself is unreadable
            raise InputError(f"{source}: not a readable private key", fix="check the key file") from again
    except ValueError as exc:
        # PEM says so in its header ("ENCRYPTED PRIVATE KEY" or Proc-Type); DER must be probed.
        encrypted = b"ENCRYPTED" in data if is_pem else passphrase is not None and _der_is_encrypted(data)
        if encrypted:
            if passphrase is None:
                raise PassphraseError(
                    f"{source}: the private key is encrypted", fix="give its passphrase (passphrase=)"
                ) from exc
            raise PassphraseError(
                f"{source}: wrong passphrase for the private key", fix="check the passphrase"
            ) from exc
        raise InputError(
            f"{source}: not a readable private key ({'malformed PEM' if is_pem else 'not PEM or DER'})",
            fix="check that the file is a PEM or DER private key",
        ) from exc
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for exotic keys
        raise InputError(f"{source}: unsupported private key ({exc})", fix="use an RSA, EC or Ed25519 key") from exc
    return _as_private(key, source)


def load_private_key(path: str | os.PathLike[str], *, passphrase: bytes | None = None) -> PrivateKey:
    """Load a private key file (PEM or DER, encrypted or not)."""
    return parse_private_key(read_bytes(path, what="key file"), passphrase=passphrase, source=os.fspath(path))


class KeyEncoding(enum.StrEnum):
    """How a private key is written: PKCS#8 in PEM (the default) or in DER."""

    PEM = "pem"
    DER = "der"

    @classmethod
    def for_path(cls, path: str | os.PathLike[str]) -> KeyEncoding:
        """DER for ``.der``/``.key.der`` names, PEM otherwise."""
        return cls.DER if os.fspath(path).lower().endswith(".der") else cls.PEM


def key_to_pem(key: PrivateKey, *, passphrase: bytes | None = None, encoding: KeyEncoding = KeyEncoding.PEM) -> bytes:
    """Serialize as PKCS#8 (PEM by default), encrypted if a passphrase is given.

    cryptography's best available encryption is PBES2 with AES-256-CBC and PBKDF2-HMAC-SHA256, which OpenSSL 3
    reads without ``-legacy``.
    """
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    fmt = serialization.Encoding.DER if encoding is KeyEncoding.DER else serialization.Encoding.PEM
    return key.private_bytes(fmt, serialization.PrivateFormat.PKCS8, enc)


def save_private_key(
    key: PrivateKey,
    path: str | os.PathLike[str],
    *,
    passphrase: bytes | None = None,
    encoding: KeyEncoding | None = None,
    force: bool = False,
) -> None:
    """Write ``key`` atomically as PKCS#8 with mode 0600; refuses to overwrite without ``force``.

    ``encoding=None`` picks DER for a ``.der`` file name and PEM otherwise.
    """
    chosen = encoding or KeyEncoding.for_path(path)
    write_atomic(path, key_to_pem(key, passphrase=passphrase, encoding=chosen), private=True, force=force)


def describe_public_key(key: PublicKey) -> tuple[str, int]:
    """Return (algorithm name, size in bits), e.g. ``("EC P-256", 256)`` or ``("RSA", 2048)``."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"EC {names.get(key.curve.name, key.curve.name)}", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    return "Ed448", 456
