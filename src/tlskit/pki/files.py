"""Reading PKI objects from files: certificates (one or a chain), CSRs, CRLs; PEM or DER, auto-detected.

Every loader names the file and says what it found instead when the input is of the wrong kind.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .._fileio import read_bytes
from ..errors import InputError

T = TypeVar("T")

__all__ = [
    "PemKind",
    "certs_to_pem",
    "detect_kind",
    "load_certificate",
    "load_certificates",
    "load_crl",
    "load_csr",
    "parse_certificates",
    "parse_crl",
    "parse_csr",
]


class PemKind(enum.StrEnum):
    """What a PKI file holds."""

    CERTIFICATE = "certificate"
    CSR = "certificate signing request"
    CRL = "CRL"
    PRIVATE_KEY = "private key"
    PUBLIC_KEY = "public key"
    PKCS12 = "PKCS#12 bundle"
    UNKNOWN = "unknown"


_PEM_LABELS: dict[bytes, PemKind] = {
    b"CERTIFICATE": PemKind.CERTIFICATE,
    b"TRUSTED CERTIFICATE": PemKind.CERTIFICATE,
    b"CERTIFICATE REQUEST": PemKind.CSR,
    b"NEW CERTIFICATE REQUEST": PemKind.CSR,
    b"X509 CRL": PemKind.CRL,
    b"PRIVATE KEY": PemKind.PRIVATE_KEY,
    b"ENCRYPTED PRIVATE KEY": PemKind.PRIVATE_KEY,
    b"RSA PRIVATE KEY": PemKind.PRIVATE_KEY,
    b"EC PRIVATE KEY": PemKind.PRIVATE_KEY,
    b"PUBLIC KEY": PemKind.PUBLIC_KEY,
}


def detect_kind(data: bytes) -> PemKind:
    """Guess what ``data`` holds from its first PEM label, or by trial-parsing DER."""
    start = data.find(b"-----BEGIN ")
    if start >= 0:
        end = data.find(b"-----", start + 11)
        return _PEM_LABELS.get(data[start + 11 : end], PemKind.UNKNOWN)
    for kind, parse in (
        (PemKind.CERTIFICATE, x509.load_der_x509_certificate),
        (PemKind.CSR, x509.load_der_x509_csr),
        (PemKind.CRL, x509.load_der_x509_crl),
    ):
        try:
            parse(data)
        except x509.InvalidVersion:
            return kind  # the right structure with a version no standard defines: malformed, but of this kind
        except ValueError:
            continue
        return kind
    try:
        serialization.load_der_private_key(data, password=None)
    except (TypeError, UnsupportedAlgorithm):
        return PemKind.PRIVATE_KEY  # encrypted, or a key of a kind (curve) cryptography does not support
    except ValueError:
        pass
    else:
        return PemKind.PRIVATE_KEY
    if data[:1] == b"\x30":
        try:
            from cryptography.hazmat.primitives.serialization import pkcs12

            pkcs12.load_pkcs12(data, None)
        except UnsupportedAlgorithm:
            return PemKind.PKCS12  # a legacy bundle (RC2-40 and the like)
        except ValueError as exc:
            if "password" in str(exc).lower() or "mac" in str(exc).lower():
                return PemKind.PKCS12
        else:
            return PemKind.PKCS12
    return PemKind.UNKNOWN


def _wrong_kind(source: str, expected: PemKind, found: PemKind) -> InputError:
    if found is PemKind.UNKNOWN:
        return InputError(f"{source}: not a readable {expected} (malformed PEM or DER)", fix="check the file")
    return InputError(
        f"{source}: expected a {expected} but found a {found}", fix="the inputs look switched; check the file order"
    )


def parse_certificates(data: bytes, *, source: str = "<certificate>") -> list[x509.Certificate]:
    """Parse one certificate or a PEM chain (in file order)."""
    kind = detect_kind(data)
    if kind is not PemKind.CERTIFICATE:
        raise _wrong_kind(source, PemKind.CERTIFICATE, kind)
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise InputError(f"{source}: malformed certificate ({exc})", fix="check the file") from exc
    return certs


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """Load every certificate in a file (a PEM bundle, or a single DER certificate)."""
    return parse_certificates(read_bytes(path, what="certificate file"), source=os.fspath(path))


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """Load the first certificate of a file."""
    return load_certificates(path)[0]


def _parse_one(data: bytes, source: str, kind: PemKind, pem: Callable[[bytes], T], der: Callable[[bytes], T]) -> T:
    """Parse one object of ``kind`` from PEM or DER, naming the file and what it holds instead on error."""
    found = detect_kind(data)
    if found is not kind:
        raise _wrong_kind(source, kind, found)
    try:
        return pem(data) if b"-----BEGIN" in data else der(data)
    except (ValueError, x509.InvalidVersion) as exc:
        raise InputError(f"{source}: malformed {kind} ({exc})", fix="check the file") from exc


def parse_csr(data: bytes, *, source: str = "<csr>") -> x509.CertificateSigningRequest:
    """Parse a CSR (PEM or DER)."""
    return _parse_one(data, source, PemKind.CSR, x509.load_pem_x509_csr, x509.load_der_x509_csr)


def load_csr(path: str | os.PathLike[str]) -> x509.CertificateSigningRequest:
    """Load a CSR file (PEM or DER)."""
    return parse_csr(read_bytes(path, what="CSR file"), source=os.fspath(path))


def parse_crl(data: bytes, *, source: str = "<crl>") -> x509.CertificateRevocationList:
    """Parse a CRL (PEM or DER)."""
    return _parse_one(data, source, PemKind.CRL, x509.load_pem_x509_crl, x509.load_der_x509_crl)


def load_crl(path: str | os.PathLike[str]) -> x509.CertificateRevocationList:
    """Load a CRL file (PEM or DER)."""
    return parse_crl(read_bytes(path, what="CRL file"), source=os.fspath(path))


def certs_to_pem(certs: list[x509.Certificate]) -> bytes:
    """Concatenate certificates as PEM, in order."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
