"""PKCS#12 bundles (.p12/.pfx): a key, its certificate and the chain, in one password-protected file.

Export uses modern encryption only: PBES2 with AES-256-CBC and PBKDF2-HMAC-SHA256 for both the key and the
certificates, and an HMAC-SHA256 integrity MAC, so OpenSSL 3 opens the file without ``-legacy`` (the RC2/3DES
defaults of older tools need the legacy provider).  Import reads any bundle cryptography can parse.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from .._fileio import read_bytes, write_atomic, write_many
from ..errors import InputError, PassphraseError
from .certs import check_key_matches
from .files import PemKind, certs_to_pem, detect_kind
from .keys import PrivateKey, key_to_pem

__all__ = ["KDF_ROUNDS", "Bundle", "bundle_chain", "export_pkcs12", "import_pkcs12", "load_pkcs12", "save_pkcs12"]

#: PBKDF2 iterations: OpenSSL 3's default for PKCS#12 is 2048; more costs little and slows guessing.
KDF_ROUNDS = 100_000


@dataclass(frozen=True)
class Bundle:
    """What a PKCS#12 file holds: the key, its certificate and the other certificates (the chain)."""

    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    friendly_name: str | None = None

    def write(
        self, prefix: str | os.PathLike[str], *, force: bool = False, passphrase: bytes | None = None
    ) -> tuple[Path, Path]:
        """Write ``PREFIX.pem`` (certificate then chain) and ``PREFIX-key.pem`` (0600) all-or-nothing."""
        p = os.fspath(prefix)
        cert_path, key_path = Path(f"{p}.pem"), Path(f"{p}-key.pem")
        write_many(
            [
                (cert_path, certs_to_pem([self.cert, *self.chain]), False),
                (key_path, key_to_pem(self.key, passphrase=passphrase), True),
            ],
            force=force,
        )
        return cert_path, key_path


def export_pkcs12(
    cert: x509.Certificate,
    key: PrivateKey,
    *,
    passphrase: bytes,
    chain: Sequence[x509.Certificate] = (),
    friendly_name: str | None = None,
    cert_source: str = "certificate",
    key_source: str = "key",
) -> bytes:
    """A PKCS#12 bundle of ``key``, ``cert`` and ``chain``; raises KeyMismatchError if the key is not the cert's.

    ``chain`` may repeat ``cert`` or list an intermediate twice (a server chain file given as ``--chain`` too):
    duplicates are dropped, the order kept.
    """
    check_key_matches(cert, key, cert_source=cert_source, key_source=key_source)
    if not passphrase:
        raise InputError("a PKCS#12 export needs a passphrase", fix="give passphrase=")
    extra = bundle_chain(cert, chain)
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase)
    )
    name = (friendly_name or _default_name(cert)).encode()
    return pkcs12.serialize_key_and_certificates(name, key, cert, extra or None, encryption)


def bundle_chain(cert: x509.Certificate, chain: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates to bundle beside ``cert``: ``chain`` without ``cert`` and without repeats, in order."""
    return [c for c in dict.fromkeys(chain) if c != cert]


def _default_name(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else "tlskit"


def save_pkcs12(
    path: str | os.PathLike[str],
    cert: x509.Certificate,
    key: PrivateKey,
    *,
    passphrase: bytes,
    chain: Sequence[x509.Certificate] = (),
    friendly_name: str | None = None,
    force: bool = False,
) -> Path:
    """Export and write atomically with mode 0600 (a bundle holds a private key)."""
    data = export_pkcs12(cert, key, passphrase=passphrase, chain=chain, friendly_name=friendly_name)
    return write_atomic(path, data, private=True, force=force)


def import_pkcs12(data: bytes, *, passphrase: bytes | None, source: str = "<pkcs12>") -> Bundle:
    """Parse a PKCS#12 bundle; it must hold a private key and its certificate."""
    kind = detect_kind(data)
    if b"-----BEGIN" in data or kind in (PemKind.CERTIFICATE, PemKind.CSR, PemKind.CRL, PemKind.PRIVATE_KEY):
        raise InputError(
            f"{source}: expected a PKCS#12 bundle but found a {kind if kind is not PemKind.UNKNOWN else 'PEM file'}",
            fix="the inputs look switched; pass the .p12/.pfx file here",
        )
    try:
        parsed = pkcs12.load_pkcs12(data, passphrase)
    except ValueError as exc:
        text = str(exc).lower()
        if "password" in text or "mac" in text:
            if not passphrase:
                raise PassphraseError(f"{source}: the bundle is encrypted", fix="give its passphrase") from exc
            raise PassphraseError(f"{source}: wrong passphrase for the bundle", fix="check the passphrase") from exc
        raise InputError(f"{source}: not a readable PKCS#12 bundle", fix="check the file") from exc
    except Exception as exc:  # UnsupportedAlgorithm for legacy RC2-40 bundles and the like
        raise InputError(
            f"{source}: unsupported PKCS#12 bundle ({exc})", fix="re-export it with modern (AES) encryption"
        ) from exc
    if parsed.key is None or parsed.cert is None:
        raise InputError(f"{source}: the bundle has no private key and certificate", fix="export it with the key")
    key = parsed.key
    if not isinstance(key, PrivateKey):
        raise InputError(f"{source}: unsupported key type in the bundle", fix="use an RSA, EC or Ed25519 key")
    cert = parsed.cert.certificate
    check_key_matches(cert, key, cert_source=source, key_source=source)
    name = parsed.cert.friendly_name
    return Bundle(
        key=key,
        cert=cert,
        chain=tuple(c.certificate for c in parsed.additional_certs),
        friendly_name=name.decode(errors="replace") if name else None,
    )


def load_pkcs12(path: str | os.PathLike[str], *, passphrase: bytes | None) -> Bundle:
    """Read a PKCS#12 file."""
    return import_pkcs12(read_bytes(path, what="PKCS#12 file"), passphrase=passphrase, source=os.fspath(path))
