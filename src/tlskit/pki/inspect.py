"""Inspect PKI objects: JSON-able summaries of certificates, CSRs, CRLs and keys (rendered by ``tlskit.cli``).

``summarize(obj)`` works on parsed objects; ``inspect_file(path)`` detects what a file holds (a chain gives one
summary per certificate).  Every certificate summary carries the SHA-256 fingerprint and the SPKI pin in the
``sha256:BASE64`` form that ``tlskit connect --pin`` takes.
"""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from .._fileio import read_bytes
from ..errors import InputError
from . import files, keys
from .urls import crl_urls, issuer_urls, ocsp_urls

__all__ = [
    "Summary",
    "inspect_file",
    "key_description",
    "serial_hex",
    "spki_pin",
    "spki_sha256",
    "summarize",
    "usage_name",
]

Summary = dict[str, Any]
"""A JSON-able summary; ``summary["kind"]`` says what it describes."""

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
_SIG_NAMES = {
    oid: name.lower().replace("_", "-")
    for name, oid in vars(SignatureAlgorithmOID).items()
    if isinstance(oid, x509.ObjectIdentifier)
}
_PRIVATE_KEYS = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)
_PUBLIC_KEYS = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
    dsa.DSAPublicKey,
    x25519.X25519PublicKey,
    x448.X448PublicKey,
)
_KU_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def serial_hex(serial: int) -> str:
    """A serial as upper-case hex with an even number of digits, as OpenSSL (and ``tlskit ca list``) print it."""
    text = f"{serial:X}"
    return text.zfill(len(text) + len(text) % 2)


def usage_name(oid: x509.ObjectIdentifier) -> str:
    """The conventional name of an extended key usage (``serverAuth``), or its dotted OID."""
    return _EKU_NAMES.get(oid, oid.dotted_string)


def _camel(flag: str) -> str:
    head, *rest = flag.split("_")
    name = head + "".join(p.capitalize() for p in rest)
    return {"keyCertSign": "keyCertSign", "crlSign": "cRLSign"}.get(name, name)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


_EXTENSION_ERRORS = (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def _extensions(obj: Any) -> tuple[x509.Extensions, str | None]:
    """The object's extensions, or none and the parse error (a summary must not fail on a malformed one)."""
    try:
        return obj.extensions, None
    except _EXTENSION_ERRORS as exc:
        return x509.Extensions([]), str(exc)


def _ext(exts: x509.Extensions, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return exts.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def spki_sha256(key: keys.PublicKey | x509.Certificate | Any) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo of a public key or certificate: what a pin compares."""
    public = key.public_key() if isinstance(key, x509.Certificate) else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


def spki_pin(key: keys.PublicKey | x509.Certificate | Any) -> str:
    """``sha256:BASE64`` of the DER SubjectPublicKeyInfo (the HPKP / ``--pin`` form)."""
    return "sha256:" + base64.b64encode(spki_sha256(key)).decode()


def key_description(key: Any) -> tuple[str, int]:
    """(type, size in bits) of a public or private key, e.g. ``("EC P-256", 256)``, ``("DSA", 1024)``."""
    if isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
    ):
        key = key.public_key()
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return keys.describe_public_key(key)
    if isinstance(key, dsa.DSAPublicKey | dsa.DSAPrivateKey):
        return "DSA", key.key_size
    if isinstance(key, dh.DHPublicKey):
        return "DH", key.key_size
    if isinstance(key, x25519.X25519PublicKey):
        return "X25519", 256
    if isinstance(key, x448.X448PublicKey):
        return "X448", 448
    return type(key).__name__, 0


def general_name(name: x509.GeneralName) -> str:
    """A SAN entry as OpenSSL prints it: ``DNS:example.com``, ``IP:127.0.0.1``, ``URI:...``."""
    prefix = {
        x509.DNSName: "DNS",
        x509.IPAddress: "IP",
        x509.RFC822Name: "email",
        x509.UniformResourceIdentifier: "URI",
        x509.DirectoryName: "DirName",
        x509.RegisteredID: "RID",
    }.get(type(name), "otherName")
    value = name.value
    if isinstance(value, x509.Name):
        return f"{prefix}:{value.rfc4514_string()}"
    if isinstance(value, x509.ObjectIdentifier):
        return f"{prefix}:{value.dotted_string}"
    if isinstance(value, bytes):
        return f"{prefix}:{value.hex()}"
    return f"{prefix}:{value}"


def _public_key_fields(public: Any) -> Summary:
    if public is None:  # the key did not parse (limbo has such certificates); say so rather than fail
        return {"key_type": "unreadable", "key_size": 0, "spki_pin": None}
    try:
        kind, size = key_description(public)
        pin: str | None = spki_pin(public)
    except (ValueError, UnsupportedAlgorithm):
        kind, size, pin = "unsupported", 0, None
    return {"key_type": kind, "key_size": size, "spki_pin": pin}


def signature_name(oid: x509.ObjectIdentifier) -> str:
    """A signature algorithm's conventional name (``ecdsa-with-sha256``), or its dotted OID."""
    return _SIG_NAMES.get(oid, oid.dotted_string)


def _summarize_certificate(cert: x509.Certificate, now: datetime) -> Summary:
    exts, broken = _extensions(cert)
    san = _ext(exts, x509.SubjectAlternativeName)
    ku = _ext(exts, x509.KeyUsage)
    eku = _ext(exts, x509.ExtendedKeyUsage)
    bc = _ext(exts, x509.BasicConstraints)
    ski = _ext(exts, x509.SubjectKeyIdentifier)
    aki = _ext(exts, x509.AuthorityKeyIdentifier)
    after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
    try:
        public: Any = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        public = None
    return {
        "kind": "certificate",
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": serial_hex(cert.serial_number),
        "version": cert.version.name,
        "not_before": _iso(before),
        "not_after": _iso(after),
        "days_left": (after - now).days,
        "expired": now > after,
        "not_yet_valid": now < before,
        "self_issued": cert.issuer == cert.subject,
        "sans": [general_name(n) for n in san] if isinstance(san, x509.SubjectAlternativeName) else [],
        **_public_key_fields(public),
        "key_usage": _key_usage(ku),
        "extended_key_usage": [usage_name(u) for u in eku] if isinstance(eku, x509.ExtendedKeyUsage) else [],
        "basic_constraints": (
            {"ca": bc.ca, "path_length": bc.path_length} if isinstance(bc, x509.BasicConstraints) else None
        ),
        "subject_key_id": ski.digest.hex() if isinstance(ski, x509.SubjectKeyIdentifier) else None,
        "authority_key_id": (
            aki.key_identifier.hex()
            if isinstance(aki, x509.AuthorityKeyIdentifier) and aki.key_identifier is not None
            else None
        ),
        "crl_urls": crl_urls(cert),
        "ocsp_urls": ocsp_urls(cert),
        "ca_issuers_urls": issuer_urls(cert),
        "signature_algorithm": signature_name(cert.signature_algorithm_oid),
        "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        "malformed_extensions": broken,
    }


def _key_usage(ku: x509.ExtensionType | None) -> list[str]:
    if not isinstance(ku, x509.KeyUsage):
        return []
    names = [_camel(flag) for flag in _KU_FLAGS if getattr(ku, flag)]
    if ku.key_agreement:
        names += [n for n, f in (("encipherOnly", ku.encipher_only), ("decipherOnly", ku.decipher_only)) if f]
    return names


def _summarize_csr(csr: x509.CertificateSigningRequest) -> Summary:
    exts, _ = _extensions(csr)
    san = _ext(exts, x509.SubjectAlternativeName)
    bc = _ext(exts, x509.BasicConstraints)
    try:
        public: Any = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        public = None
    return {
        "kind": "csr",
        "subject": csr.subject.rfc4514_string(),
        "sans": [general_name(n) for n in san] if isinstance(san, x509.SubjectAlternativeName) else [],
        **_public_key_fields(public),
        "requests_ca": bool(isinstance(bc, x509.BasicConstraints) and bc.ca),
        "signature_valid": csr.is_signature_valid,
        "signature_algorithm": signature_name(csr.signature_algorithm_oid),
    }


def _summarize_crl(crl: x509.CertificateRevocationList, now: datetime) -> Summary:
    number = _ext(_extensions(crl)[0], x509.CRLNumber)
    revoked = []
    for entry in crl:
        reason = _ext(_extensions(entry)[0], x509.CRLReason)
        revoked.append(
            {
                "serial": serial_hex(entry.serial_number),
                "revoked_at": _iso(entry.revocation_date_utc),
                "reason": reason.reason.value if isinstance(reason, x509.CRLReason) else None,
            }
        )
    next_update = crl.next_update_utc
    return {
        "kind": "crl",
        "issuer": crl.issuer.rfc4514_string(),
        "this_update": _iso(crl.last_update_utc),
        "next_update": _iso(next_update),
        "expired": next_update is not None and now > next_update,
        "crl_number": number.crl_number if isinstance(number, x509.CRLNumber) else None,
        "revoked": revoked,
        "signature_algorithm": signature_name(crl.signature_algorithm_oid),
    }


def summarize(obj: object, *, now: datetime | None = None) -> Summary:
    """A JSON-able summary of a certificate, CSR, CRL, private key or public key.  ``now`` defaults to the clock."""
    moment = datetime.now(UTC) if now is None else now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    if isinstance(obj, x509.Certificate):
        return _summarize_certificate(obj, moment)
    if isinstance(obj, x509.CertificateSigningRequest):
        return _summarize_csr(obj)
    if isinstance(obj, x509.CertificateRevocationList):
        return _summarize_crl(obj, moment)
    if isinstance(obj, _PRIVATE_KEYS):
        return {"kind": "private key", "encrypted": False, **_public_key_fields(obj.public_key())}
    if isinstance(obj, _PUBLIC_KEYS):
        return {"kind": "public key", **_public_key_fields(obj)}
    raise InputError(f"cannot inspect a {type(obj).__name__}", fix="give a certificate, CSR, CRL or key")


def inspect_file(
    path: str | os.PathLike[str], *, passphrase: bytes | None = None, now: datetime | None = None
) -> list[Summary]:
    """Summaries of what a file holds (one per certificate for a chain), each with its ``file``."""
    source = os.fspath(path)
    data = read_bytes(path, what="file")
    kind = files.detect_kind(data)
    objects: list[object]
    if kind is files.PemKind.CERTIFICATE:
        objects = list(files.parse_certificates(data, source=source))
    elif kind is files.PemKind.CSR:
        objects = [files.parse_csr(data, source=source)]
    elif kind is files.PemKind.CRL:
        objects = [files.parse_crl(data, source=source)]
    elif kind is files.PemKind.PRIVATE_KEY:
        encrypted = keys.key_is_encrypted(data)
        if encrypted and passphrase is None:
            return [
                {
                    "kind": "private key",
                    "file": source,
                    "encrypted": True,
                    "key_type": None,
                    "key_size": None,
                    "spki_pin": None,
                }
            ]
        key = keys.parse_private_key(data, passphrase=passphrase, source=source)
        return [{**summarize(key, now=now), "encrypted": encrypted, "file": source}]
    elif kind is files.PemKind.PUBLIC_KEY:
        try:
            loader = serialization.load_pem_public_key if b"-----BEGIN" in data else serialization.load_der_public_key
            objects = [loader(data)]
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InputError(f"{source}: malformed public key ({exc})", fix="check the file") from exc
    elif kind is files.PemKind.PKCS12:
        raise InputError(f"{source}: is a PKCS#12 bundle", fix="unpack it first with tlskit pkcs12 import")
    else:
        raise InputError(f"{source}: not a certificate, CSR, CRL or key (malformed PEM or DER)", fix="check the file")
    out = []
    for index, obj in enumerate(objects):
        summary = {**summarize(obj, now=now), "file": source}
        if len(objects) > 1:
            summary["chain_index"] = index
        out.append(summary)
    return out
