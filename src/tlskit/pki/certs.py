"""CSRs and certificates with the extensions strict verifiers expect.

Every certificate tlskit makes carries what Python's ``VERIFY_X509_STRICT``, OpenSSL, GnuTLS, Node and the
CA/Browser-Forum-style checks in cryptography's verifier accept: a critical basicConstraints, a critical keyUsage
that fits the key type, a non-critical extendedKeyUsage on leaves, subject and authority key identifiers, and a
subjectAltName (critical only when the subject is empty, as RFC 5280 requires).  Serials are random 128-bit
integers and notBefore is backdated a few minutes so peers with slightly slow clocks accept a fresh certificate.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import InputError, KeyMismatchError
from .keys import PrivateKey, PublicKey
from .names import name_for_cn, parse_sans, parse_subject
from .urls import RevocationURLs

__all__ = [
    "BACKDATE",
    "CertSpec",
    "Profile",
    "build_certificate",
    "build_csr",
    "check_key_matches",
    "check_public_key",
    "key_matches",
    "random_serial",
    "self_signed",
    "signing_hash",
    "utc_now",
]

#: How far notBefore is moved into the past: covers peers whose clocks run a little slow.
BACKDATE = dt.timedelta(minutes=5)


class Profile(enum.StrEnum):
    """What a leaf certificate may be used for (its extendedKeyUsage)."""

    SERVER = "server"
    CLIENT = "client"
    SERVER_AND_CLIENT = "server-and-client"

    @property
    def usages(self) -> list[x509.ObjectIdentifier]:
        """The EKU OIDs of this profile."""
        return {
            Profile.SERVER: [ExtendedKeyUsageOID.SERVER_AUTH],
            Profile.CLIENT: [ExtendedKeyUsageOID.CLIENT_AUTH],
            Profile.SERVER_AND_CLIENT: [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        }[self]


@dataclass(frozen=True, kw_only=True)
class CertSpec:
    """Everything that goes into one certificate except the keys: an immutable description.

    ``profile=None`` with ``ca=True`` makes a CA certificate; ``path_length`` only applies to CAs.
    ``urls`` are the issuing CA's publication points (CRL, OCSP, caIssuers).  ``ocsp_signer=True`` (with
    ``profile=None``) makes a delegated OCSP responder certificate: id-kp-OCSPSigning and id-pkix-ocsp-nocheck.
    """

    subject: x509.Name
    sans: tuple[x509.GeneralName, ...] = ()
    profile: Profile | None = Profile.SERVER
    ca: bool = False
    path_length: int | None = None
    days: int = 365
    urls: RevocationURLs | None = None
    ocsp_signer: bool = False


def utc_now(now: dt.datetime | None = None) -> dt.datetime:
    """``now`` (naive values are taken as UTC) or the current time, as an aware UTC datetime."""
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)


def random_serial() -> int:
    """A random positive 128-bit serial number (at most 17 DER bytes, well under RFC 5280's 20)."""
    return secrets.randbits(128) or 1


def signing_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """The digest to sign with: SHA-384 for P-384, SHA-256 otherwise, none for Ed25519/Ed448."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _key_usage(public_key: PublicKey, *, ca: bool) -> x509.KeyUsage:
    # RSA leaves also get keyEncipherment for (legacy) RSA key exchange; EC/EdDSA keys can only sign.
    rsa_leaf = isinstance(public_key, rsa.RSAPublicKey) and not ca
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=rsa_leaf,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def check_public_key(public_key: object, what: str) -> PublicKey:
    if isinstance(
        public_key,
        rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey,
    ):
        if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048:
            raise InputError(f"{what}: RSA key of {public_key.key_size} bits is too small", fix="use at least rsa-2048")
        return public_key
    raise InputError(f"{what}: unsupported public key type", fix="use an RSA, EC or Ed25519 key")


def build_certificate(
    spec: CertSpec,
    *,
    public_key: PublicKey,
    issuer_key: PrivateKey,
    issuer: x509.Certificate | None = None,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Sign a certificate for ``spec`` with ``issuer_key``; ``issuer=None`` makes it self-signed.

    notAfter never exceeds the issuer's: a certificate that outlives its CA only fails later and more confusingly.
    """
    check_public_key(public_key, "certificate")
    start = utc_now(now) - BACKDATE
    end = start + BACKDATE + dt.timedelta(days=spec.days)
    if spec.days < 1:
        raise InputError(f"validity of {spec.days} days", fix="give days=1 or more")
    if issuer is not None:
        end = min(end, issuer.not_valid_after_utc)
        if end <= start:
            raise InputError(
                f"the CA {issuer.subject.rfc4514_string()} expires before the new certificate would start",
                fix="renew the CA or issue at an earlier time",
            )
    if not spec.subject and not spec.sans:
        raise InputError("a certificate needs a subject or at least one subjectAltName", fix="give a name")
    if spec.ca and spec.path_length is not None and spec.path_length < 0:
        raise InputError(f"path length {spec.path_length} is negative", fix="give 0 or more")

    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject)
        .issuer_name(issuer.subject if issuer is not None else spec.subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.BasicConstraints(ca=spec.ca, path_length=spec.path_length if spec.ca else None), critical=True
        )
        .add_extension(_key_usage(public_key, ca=spec.ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    issuer_public = issuer.public_key() if issuer is not None else public_key
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(check_public_key(issuer_public, "issuer")),
        critical=False,
    )
    if spec.profile is not None and not spec.ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(spec.profile.usages), critical=False)
    if spec.ocsp_signer:
        # RFC 6960 4.2.2.2: a delegated responder is marked by id-kp-OCSPSigning; nocheck (4.2.2.2.1) tells
        # clients not to ask about the responder's own certificate (it is short-lived instead).
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    for extension in spec.urls.extensions() if spec.urls else ():
        builder = builder.add_extension(extension, critical=False)
    if spec.sans:
        # RFC 5280 4.2.1.6: critical exactly when the subject is empty.
        builder = builder.add_extension(x509.SubjectAlternativeName(list(spec.sans)), critical=not spec.subject)
    return builder.sign(issuer_key, signing_hash(issuer_key))


def leaf_subject(sans: Sequence[x509.GeneralName], cn: str | None = None) -> x509.Name:
    """A subject with CN ``cn``, else the first SAN (if it fits in a CN), else empty."""
    text = cn if cn is not None else (name_for_cn(sans[0]) if sans else None)
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)]) if text else x509.Name([])


def _sans_from_subject(subject: x509.Name) -> list[x509.GeneralName]:
    """Modern verifiers ignore the CN, so a host-name-looking CN is copied into the SAN."""
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        return []
    try:
        gn = parse_sans([str(cns[-1].value)])[0]
    except InputError:
        return []
    return [gn] if isinstance(gn, x509.DNSName | x509.IPAddress) else []


def build_csr(
    key: PrivateKey,
    *,
    cn: str | None = None,
    sans: Sequence[str | x509.GeneralName] = (),
    subject: str | x509.Name | None = None,
) -> x509.CertificateSigningRequest:
    """A CSR signed by ``key``.  The subject is ``subject`` (DN) or just ``CN=cn``; ``sans`` become a SAN request."""
    names = parse_sans(sans)
    if subject is not None:
        name = parse_subject(subject)
        if cn is not None:
            name = x509.Name([*name, x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    else:
        name = leaf_subject(names, cn)
    if not name and not names:
        raise InputError("a CSR needs a subject or at least one subjectAltName", fix="give cn=, subject= or sans=")
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=not name)
    try:
        return builder.sign(key, signing_hash(key))
    except ValueError as exc:
        raise InputError(f"cannot build CSR: {exc}", fix="check the names") from exc


def csr_names(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    """The SANs a CSR asks for (falling back to a host-name-looking CN)."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return _sans_from_subject(csr.subject)
    return list(ext.value)


def check_csr_signature(csr: x509.CertificateSigningRequest, *, source: str = "CSR") -> None:
    """Refuse a CSR whose self-signature does not verify (it was altered, or is not proof of key possession)."""
    try:
        valid = csr.is_signature_valid
    except UnsupportedAlgorithm as exc:  # a key of a kind (or curve) cryptography cannot check
        raise InputError(
            f"{source}: the CSR's key is of an unsupported kind ({exc})", fix="use an RSA, EC or Ed25519 key"
        ) from exc
    except (ValueError, InvalidSignature) as exc:
        valid = False
        cause: Exception | None = exc
    else:
        cause = None
    if not valid:
        raise InputError(
            f"{source}: the CSR's signature does not verify", fix="recreate the CSR with its private key"
        ) from cause


def self_signed(
    key: PrivateKey,
    *,
    cn: str | None = None,
    sans: Sequence[str | x509.GeneralName] = (),
    csr: x509.CertificateSigningRequest | None = None,
    days: int = 365,
    profile: Profile = Profile.SERVER_AND_CLIENT,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """A self-signed leaf for ``key``: names from ``cn``/``sans``, or subject and SANs from ``csr``.

    A host-name-looking CN with no SAN is also put in the SAN, since TLS clients only look at the SAN.
    """
    if csr is not None:
        if cn is not None or sans:
            raise InputError("give either a CSR or names, not both", fix="drop cn=/sans=, or csr=")
        check_csr_signature(csr)
        if not key_matches(csr, key):
            raise KeyMismatchError("the key does not belong to the CSR", fix="pass the key the CSR was made with")
        subject, names = csr.subject, csr_names(csr)
    else:
        names = parse_sans(sans)
        subject = leaf_subject(names, cn)
        if not names:
            names = _sans_from_subject(subject)
    spec = CertSpec(subject=subject, sans=tuple(names), profile=profile, days=days)
    return build_certificate(spec, public_key=key.public_key(), issuer_key=key, now=now)


def _spki(obj: x509.Certificate | x509.CertificateSigningRequest | PrivateKey) -> bytes:
    public = obj.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(cert: x509.Certificate | x509.CertificateSigningRequest, key: PrivateKey) -> bool:
    """True when ``key`` is the private half of the public key in ``cert`` (or a CSR)."""
    return _spki(cert) == _spki(key)


def check_key_matches(cert: x509.Certificate, key: PrivateKey, *, cert_source: str, key_source: str) -> None:
    """Raise :class:`KeyMismatchError` naming both files when ``key`` does not belong to ``cert``."""
    if not key_matches(cert, key):
        raise KeyMismatchError(
            f"{key_source}: this key does not belong to the certificate in {cert_source}",
            fix="pass the key that was created with this certificate",
        )
