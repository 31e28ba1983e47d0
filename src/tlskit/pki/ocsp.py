"""OCSP (RFC 6960) without I/O: requests built, requests answered, on cryptography's ``x509.ocsp``.

Client side: :func:`build_request` (a CertID with SHA-1 hashes, as RFC 5019 and every responder expect, and a
nonce) and :func:`get_url` (the RFC 6960 appendix A.1 GET form).  Responder side: :class:`OcspAuthority` (one CA
and whoever signs for it: the CA itself or a delegated responder with id-kp-OCSPSigning) and :func:`respond`.
Judging an answer is :func:`tlskit.pki.revocation.ocsp_answer`; fetching and serving live in :mod:`tlskit.net`.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import urllib.parse
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ..errors import InputError
from .certs import signing_hash, utc_now
from .keys import PrivateKey

__all__ = [
    "ANSWER_VALIDITY",
    "HASHES",
    "REQUEST_HASH",
    "CertID",
    "OcspAuthority",
    "OcspQuery",
    "build_request",
    "get_url",
    "issuer_hashes",
    "nonce_of",
    "parse_request",
    "respond",
    "unsuccessful",
]

#: The CertID hash of requests tlskit sends: SHA-1, which RFC 5019 requires responders to understand.
REQUEST_HASH = hashes.SHA1()  # noqa: S303 - an identifier, not a signature (RFC 5019)
_NONCE_BYTES = 16
#: How long an answer is good for unless told otherwise (nextUpdate - thisUpdate).
ANSWER_VALIDITY = dt.timedelta(hours=1)


def _der_length(data: bytes, at: int) -> tuple[int, int]:
    """(length, offset of the content) of the DER element whose length octets start at ``at``."""
    first = data[at]
    if first < 0x80:
        return first, at + 1
    count = first & 0x7F
    return int.from_bytes(data[at + 1 : at + 1 + count], "big"), at + 1 + count


def _public_key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's bits (RFC 6960 4.1.1: what issuerKeyHash hashes)."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    _, content = _der_length(spki, 1)  # outer SEQUENCE
    algorithm_length, algorithm_content = _der_length(spki, content + 1)  # AlgorithmIdentifier SEQUENCE
    bits_at = algorithm_content + algorithm_length  # the BIT STRING's tag
    length, start = _der_length(spki, bits_at + 1)
    return spki[start + 1 : start + length]  # the first content octet counts unused bits (always 0 for keys)


def issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CA certificate under ``algorithm``, as a CertID carries them."""

    def digest(data: bytes) -> bytes:
        h = hashes.Hash(algorithm)
        h.update(data)
        return h.finalize()

    return digest(issuer.subject.public_bytes()), digest(_public_key_bits(issuer))


@dataclass(frozen=True)
class CertID:
    """Which certificate an OCSP request or answer is about (RFC 6960 4.1.1)."""

    name_hash: bytes
    key_hash: bytes
    serial: int
    algorithm: str  # the hash's name: "sha1", "sha256"

    @classmethod
    def of(cls, item: ocsp.OCSPRequest | ocsp.OCSPSingleResponse | ocsp.OCSPResponse) -> CertID:
        return cls(item.issuer_name_hash, item.issuer_key_hash, item.serial_number, item.hash_algorithm.name)


@dataclass(frozen=True)
class OcspQuery:
    """An OCSP request for one certificate: its DER and the nonce it carries (None: sent without one)."""

    der: bytes
    nonce: bytes | None
    cert_id: CertID


def build_request(cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bool = True) -> OcspQuery:
    """An OCSP request for ``cert`` issued by ``issuer``, with a random nonce unless ``nonce=False``."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, REQUEST_HASH)
    value = os.urandom(_NONCE_BYTES) if nonce else None
    if value is not None:
        builder = builder.add_extension(x509.OCSPNonce(value), critical=False)
    request = builder.build()
    return OcspQuery(request.public_bytes(serialization.Encoding.DER), value, CertID.of(request))


def get_url(responder: str, request_der: bytes) -> str:
    """The GET form of a request (RFC 6960 A.1): the responder URL, '/', the URL-encoded base64 of the DER."""
    encoded = urllib.parse.quote(base64.b64encode(request_der).decode("ascii"), safe="")
    return f"{responder.rstrip('/')}/{encoded}"


def parse_request(data: bytes) -> ocsp.OCSPRequest | None:
    """The request in ``data`` (DER), or None if it is malformed (extensions included) or asks about more than one
    certificate."""
    try:
        request = ocsp.load_der_ocsp_request(data)
        request.serial_number  # noqa: B018 - parsing is lazy: touch the CertID so a broken one fails here
        nonce_of(request)  # a nonce twice, or extensions that do not parse
    except (ValueError, TypeError, NotImplementedError):  # InputError included
        return None
    return request


def nonce_of(message: ocsp.OCSPRequest | ocsp.OCSPResponse) -> bytes | None:
    """The nonce an OCSP request carries, or the one an answer echoes; None when it has none.

    Raises :class:`InputError` when the message's extensions are malformed (the nonce twice, an extension that
    does not parse): a responder answers such a request malformedRequest, a client judges such an answer invalid.
    """
    kind = "request" if isinstance(message, ocsp.OCSPRequest) else "answer"
    try:
        return message.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None
    except x509.DuplicateExtension as exc:
        name = "the nonce extension" if exc.oid == x509.OCSPNonce.oid else f"the extension {exc.oid.dotted_string}"
        reason = f"carries {name} twice"
        cause: Exception = exc
    except (ValueError, x509.UnsupportedGeneralNameType) as exc:
        reason, cause = f"has extensions that do not parse ({exc})", exc
    raise InputError(
        f"the OCSP {kind} {reason}",
        fix=f"{'send' if kind == 'request' else 'check the OCSP responder: it must send'} well-formed {kind}s, each "
        "extension once (RFC 5280 4.2)",
    ) from cause


@dataclass(frozen=True)
class OcspAuthority:
    """One CA as an OCSP responder sees it: the CA's certificate and who signs its answers.

    ``signer``/``key`` are the CA's own certificate and key, or a delegated responder's (issued by the CA with
    id-kp-OCSPSigning; its certificate is then sent along with each answer).
    """

    ca: x509.Certificate
    signer: x509.Certificate
    key: PrivateKey
    _hashes: dict[str, tuple[bytes, bytes]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def delegated(self) -> bool:
        return self.signer != self.ca

    def serves(self, cert_id: CertID) -> bool:
        """Whether a request's issuer hashes name this CA."""
        found = self._hashes.get(cert_id.algorithm)
        if found is None:
            algorithm = HASHES.get(cert_id.algorithm)
            if algorithm is None:
                return False
            found = self._hashes.setdefault(cert_id.algorithm, issuer_hashes(self.ca, algorithm))
        return found == (cert_id.name_hash, cert_id.key_hash)


HASHES: dict[str, hashes.HashAlgorithm] = {
    h.name: h
    for h in (hashes.SHA1(), hashes.SHA224(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512())  # noqa: S303
}


def respond(
    request: ocsp.OCSPRequest,
    authority: OcspAuthority,
    *,
    status: ocsp.OCSPCertStatus,
    revoked_at: dt.datetime | None = None,
    reason: x509.ReasonFlags | None = None,
    now: dt.datetime | None = None,
    validity: dt.timedelta = ANSWER_VALIDITY,
) -> tuple[bytes, dt.datetime]:
    """A signed answer to ``request`` saying ``status`` (with the revocation time and reason when revoked).

    thisUpdate is ``now``, nextUpdate ``now + validity``; the request's nonce is echoed.  Returns the DER and
    the nextUpdate.  A request :func:`parse_request` refuses (a nonce twice) raises :class:`InputError`.
    """
    at = utc_now(now).replace(microsecond=0)
    until = at + validity
    revoked = status is ocsp.OCSPCertStatus.REVOKED
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=request.hash_algorithm,
            cert_status=status,
            this_update=at,
            next_update=until,
            revocation_time=revoked_at if revoked else None,
            # RFC 5280 5.3.1 spirit: say nothing rather than "unspecified".
            revocation_reason=reason if revoked and reason not in (None, x509.ReasonFlags.unspecified) else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, authority.signer)
    )
    if authority.delegated:
        builder = builder.certificates([authority.signer])
    nonce = nonce_of(request)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(authority.key, signing_hash(authority.key))
    return response.public_bytes(serialization.Encoding.DER), until


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned error answer: ``MALFORMED_REQUEST``, ``UNAUTHORIZED`` (a CA not served here), ..."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)
