"""The problem vocabulary shared by verify, probe and the transport: codes, Problem, and failures explained.

A :class:`Problem` is a stable ``code`` (see :class:`Code`), a sentence a person can read and a fix that never
says "turn verification off".  This module is the one place where failures become words:

- :func:`explain_ssl_error`: an ``ssl.SSLError`` from OpenSSL (verify codes, TLS alerts) as one Problem, told
  who the peer was and, when known, whether a client certificate was asked for and sent;
- :func:`explain_rejection`: a rejection by ``cryptography``'s verifier as one Problem;
- :func:`unique`: the one de-duplication of a list of findings.

:mod:`tlskit.pki.diagnose` finds the problems of a certificate chain itself, in the same vocabulary.
"""

from __future__ import annotations

import enum
import errno
import os
import re
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "EXTENSION_ERRORS",
    "Code",
    "Problem",
    "Purpose",
    "dn",
    "explain_os_error",
    "explain_rejection",
    "explain_ssl_error",
    "ext",
    "handshake_eof",
    "handshake_timeout",
    "label",
    "names_of",
    "unique",
    "utc",
    "when",
]

_E = TypeVar("_E", bound=x509.ExtensionType)

#: What cryptography raises for certificate extensions it cannot parse or accept.
EXTENSION_ERRORS = (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


class Purpose(enum.StrEnum):
    """What the certificate is checked for: a TLS server (serverAuth) or a TLS client (clientAuth)."""

    SERVER = "server"
    CLIENT = "client"

    @property
    def eku(self) -> x509.ObjectIdentifier:
        """The extended key usage this purpose requires."""
        return ExtendedKeyUsageOID.SERVER_AUTH if self is Purpose.SERVER else ExtendedKeyUsageOID.CLIENT_AUTH


class Code(enum.StrEnum):
    """Stable problem codes (JSON output, ``tlskit probe``, ``TLSError.code``)."""

    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    SELF_SIGNED = "self_signed"
    UNTRUSTED_ROOT = "untrusted_root"
    INCOMPLETE_CHAIN = "incomplete_chain"
    WRONG_ORDER = "wrong_order"
    NO_SAN = "no_san"
    WEAK_KEY = "weak_key"
    WEAK_SIGNATURE = "weak_signature"
    REVOKED = "revoked"
    CLIENT_CERT_REQUIRED = "client_cert_required"
    CLIENT_CERT_REJECTED = "client_cert_rejected"
    SERVER_CERT_REJECTED = "server_cert_rejected"
    PEER_NOT_ALLOWED = "peer_not_allowed"
    PIN_MISMATCH = "pin_mismatch"
    PEER_REFUSED = "peer_refused"
    WRONG_PURPOSE = "wrong_purpose"
    PROTOCOL_TOO_OLD = "protocol_too_old"
    NOT_TLS = "not_tls"
    PLAINTEXT_HTTP = "plaintext_http"
    MALFORMED_HANDSHAKE = "malformed_handshake"
    OVERSIZED_MESSAGE = "oversized_message"
    TRUNCATED_HANDSHAKE = "truncated_handshake"
    PROTOCOL_VIOLATION = "protocol_violation"
    BAD_RECORD_MAC = "bad_record_mac"
    RENEGOTIATION_REFUSED = "renegotiation_refused"
    NO_SHARED_GROUP = "no_shared_group"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    NO_SHARED_CIPHER = "no_shared_cipher"
    UNRECOGNIZED_NAME = "unrecognized_name"
    CONNECTION_CLOSED = "connection_closed"
    TIMEOUT = "timeout"
    ADDRESS_IN_USE = "address_in_use"
    PRIVILEGED_PORT = "privileged_port"
    ADDRESS_NOT_AVAILABLE = "address_not_available"
    CONNECTION_REFUSED = "connection_refused"
    HOST_UNREACHABLE = "host_unreachable"
    NAME_NOT_RESOLVED = "name_not_resolved"
    TOO_MANY_FILES = "too_many_files"
    NETWORK_ERROR = "network_error"
    CA_CONSTRAINTS = "ca_constraints"
    PATH_LENGTH_EXCEEDED = "path_length_exceeded"
    NAME_CONSTRAINTS = "name_constraints"
    BAD_SIGNATURE = "bad_signature"
    KEY_USAGE = "key_usage"
    CRL_INVALID = "crl_invalid"
    OCSP_INVALID = "ocsp_invalid"
    REVOCATION_UNKNOWN = "revocation_unknown"
    REVOCATION_UNAVAILABLE = "revocation_unavailable"
    NO_REVOCATION_URL = "no_revocation_url"
    TOO_COMPLEX = "too_complex"
    NONCONFORMING = "nonconforming"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Problem:
    """One finding: a stable ``code``, a plain ``message`` and what to do about it (``fix``)."""

    code: str
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        """The JSON shape used everywhere: ``{"code", "message", "fix"}``."""
        return {"code": str(self.code), "message": self.message, "fix": self.fix}

    def __str__(self) -> str:
        return f"{self.message}; fix: {self.fix}" if self.fix else self.message


def unique(problems: Iterable[Problem]) -> list[Problem]:
    """``problems`` in order, each finding once (two walks of a chain, or two sources, may report the same)."""
    return list(dict.fromkeys(problems))


# ------------------------------------------------------------------------------------------- naming things


def utc(at: datetime | None) -> datetime:
    """``at`` as an aware UTC datetime (naive values are taken as UTC); now if None."""
    if at is None:
        return datetime.now(UTC)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def label(cert: x509.Certificate) -> str:
    """A short human name for a certificate: its CN, else its whole subject."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        value = cns[0].value
        return value if isinstance(value, str) else bytes(value).decode(errors="replace")
    return dn(cert.subject)


def dn(name: x509.Name) -> str:
    """A distinguished name as RFC 4514 text."""
    return name.rfc4514_string() or "(empty name)"


def ext(cert: x509.Certificate, kind: type[_E]) -> x509.Extension[_E] | None:
    """The extension of that class, or None (absent, or the extensions do not parse)."""
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    except EXTENSION_ERRORS:  # malformed extensions are reported by the checks that parse them on purpose
        return None


def names_of(cert: x509.Certificate) -> list[str]:
    """The identities a certificate carries: its DNS and IP subjectAltNames (or, lacking any, its CN)."""
    san = ext(cert, x509.SubjectAlternativeName)
    if san is not None:
        names = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)]
        if names:
            return names
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return [f"CN={label(cert)}"] if cns else []


def when(moment: datetime) -> str:
    """A moment as people read it in a message: ``2025-01-31 12:00 UTC``."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# ------------------------------------------------------------------------------------- ssl error explanation

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) -> (code, what is wrong, fix).  {cert} reads "the server's
# certificate" or "the client's certificate", {peer} "server" or "client", depending on who was verified.
_ISSUER_FIX = "send the intermediate CA certificates with the leaf; if the issuer is a root, trust it (ca=)"
_VERIFY_CODES: dict[int, tuple[Code, str, str]] = {
    2: (Code.INCOMPLETE_CHAIN, "an issuer certificate for {cert} is missing", _ISSUER_FIX),
    9: (Code.NOT_YET_VALID, "{cert} is not valid yet", "check the clocks; wait, or reissue it with an earlier start"),
    10: (Code.EXPIRED, "{cert} has expired", "renew the certificate and install the new one"),
    18: (Code.SELF_SIGNED, "{cert} is self-signed and not trusted",
         "use a certificate issued by a trusted CA, or trust this one explicitly (ca=)"),
    19: (Code.UNTRUSTED_ROOT, "the {peer}'s chain ends at a self-signed root that is not trusted",
         "trust that root CA (ca=), or use a certificate from a CA you already trust"),
    20: (Code.INCOMPLETE_CHAIN, "the issuer of {cert} was not sent and is not in the trust store", _ISSUER_FIX),
    21: (Code.INCOMPLETE_CHAIN, "the issuer of {cert} was not sent and is not in the trust store", _ISSUER_FIX),
    22: (Code.PATH_LENGTH_EXCEEDED, "the {peer}'s chain is too long", "use a shorter CA hierarchy"),
    23: (Code.REVOKED, "{cert} has been revoked by its CA", "replace it with a newly issued certificate"),
    24: (Code.CA_CONSTRAINTS, "an issuer in the {peer}'s chain is not a valid CA", "issue only from CA certificates"),
    25: (Code.PATH_LENGTH_EXCEEDED, "the {peer}'s chain breaks a CA's path-length limit",
         "issue from a CA higher up, or recreate the CA with a larger path length"),
    26: (Code.WRONG_PURPOSE, "{cert} is not meant for a TLS {peer} (extendedKeyUsage)",
         "reissue it with the {peer} profile"),
    27: (Code.UNTRUSTED_ROOT, "the root of the {peer}'s chain is not trusted for this purpose",
         "trust the right root CA"),
    28: (Code.UNTRUSTED_ROOT, "the root of the {peer}'s chain is marked as rejected", "trust the right root CA"),
    32: (Code.KEY_USAGE, "the issuer of {cert} may not sign certificates (keyUsage lacks keyCertSign)",
         "recreate the CA certificate with keyCertSign"),
    47: (Code.NAME_CONSTRAINTS, "the names in {cert} are outside what its CA may certify (name constraints)",
         "issue it from a CA allowed to certify those names"),
    48: (Code.NAME_CONSTRAINTS, "the names in {cert} are excluded by its CA's name constraints",
         "issue it from a CA allowed to certify those names"),
    66: (Code.WEAK_KEY, "the key of {cert} is too small", "reissue it with an EC P-256 or RSA-2048+ key"),
    67: (Code.WEAK_KEY, "the key of a CA in the {peer}'s chain is too small",
         "use a CA with an EC P-256 or RSA-2048+ key"),
    68: (Code.WEAK_SIGNATURE, "{cert} is signed with a weak digest (SHA-1 or MD5)", "reissue it signed with SHA-256"),
    79: (Code.CA_CONSTRAINTS, "the {peer}'s chain contains an invalid CA certificate",
         "recreate the CA with proper basicConstraints and keyUsage (tlskit ca init)"),
}  # fmt: skip
for _c in (4, 6, 7):
    _VERIFY_CODES[_c] = (Code.BAD_SIGNATURE, "the signature on {cert} does not verify", "reissue it from its CA")
for _c in (3, 8, 11, 12, 33, 35, 36):
    _VERIFY_CODES[_c] = (Code.CRL_INVALID, "a CRL needed to check {cert} is missing, expired or invalid",
                         "give a current CRL from the issuing CA")  # fmt: skip
for _c in (62, 64):
    _VERIFY_CODES[_c] = (Code.HOSTNAME_MISMATCH, "{cert} is not valid for {host}",
                         "connect with a name the certificate carries, or reissue it with {host} as a SAN")  # fmt: skip

# OpenSSL reason strings (ssl.SSLError.reason) -> code, as seen by a client (peer = SERVER).
_REASONS: dict[str, Code] = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": Code.CLIENT_CERT_REQUIRED,
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": Code.CLIENT_CERT_REQUIRED,
    "SSLV3_ALERT_HANDSHAKE_FAILURE": Code.CLIENT_CERT_REQUIRED,
    "TLSV1_ALERT_UNKNOWN_CA": Code.CLIENT_CERT_REJECTED,
    "SSLV3_ALERT_BAD_CERTIFICATE": Code.CLIENT_CERT_REJECTED,
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": Code.CLIENT_CERT_REJECTED,
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": Code.CLIENT_CERT_REJECTED,
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": Code.CLIENT_CERT_REJECTED,
    "SSLV3_ALERT_CERTIFICATE_REVOKED": Code.CLIENT_CERT_REJECTED,
    "TLSV1_ALERT_ACCESS_DENIED": Code.CLIENT_CERT_REJECTED,
    "UNSUPPORTED_PROTOCOL": Code.PROTOCOL_TOO_OLD,
    "TLSV1_ALERT_PROTOCOL_VERSION": Code.PROTOCOL_TOO_OLD,
    "NO_PROTOCOLS_AVAILABLE": Code.PROTOCOL_TOO_OLD,
    "VERSION_TOO_LOW": Code.PROTOCOL_TOO_OLD,
    "WRONG_VERSION_NUMBER": Code.NOT_TLS,
    "UNKNOWN_PROTOCOL": Code.PROTOCOL_TOO_OLD,  # an SSL 2.0-style ClientHello
    "HTTP_REQUEST": Code.PLAINTEXT_HTTP,
    "HTTPS_PROXY_REQUEST": Code.PLAINTEXT_HTTP,
    "RECORD_LAYER_FAILURE": Code.NOT_TLS,
    "PACKET_LENGTH_TOO_LONG": Code.OVERSIZED_MESSAGE,
    "EXCESSIVE_MESSAGE_SIZE": Code.OVERSIZED_MESSAGE,
    "ENCRYPTED_LENGTH_TOO_LONG": Code.OVERSIZED_MESSAGE,
    "DATA_LENGTH_TOO_LONG": Code.OVERSIZED_MESSAGE,
    "RECORD_TOO_LARGE": Code.OVERSIZED_MESSAGE,
    "TLSV1_ALERT_RECORD_OVERFLOW": Code.OVERSIZED_MESSAGE,
    "LENGTH_MISMATCH": Code.MALFORMED_HANDSHAKE,
    "LENGTH_TOO_SHORT": Code.MALFORMED_HANDSHAKE,
    "BAD_LENGTH": Code.MALFORMED_HANDSHAKE,
    "BAD_PACKET_LENGTH": Code.MALFORMED_HANDSHAKE,
    "BAD_PACKET": Code.MALFORMED_HANDSHAKE,
    "BAD_EXTENSION": Code.MALFORMED_HANDSHAKE,
    "BAD_KEY_SHARE": Code.MALFORMED_HANDSHAKE,
    "BAD_LEGACY_VERSION": Code.MALFORMED_HANDSHAKE,
    "BAD_ECPOINT": Code.MALFORMED_HANDSHAKE,
    "BAD_PSK": Code.MALFORMED_HANDSHAKE,
    "BAD_PSK_IDENTITY": Code.MALFORMED_HANDSHAKE,
    "BAD_DATA": Code.MALFORMED_HANDSHAKE,
    "BAD_HANDSHAKE_LENGTH": Code.MALFORMED_HANDSHAKE,
    "BAD_SIGNATURE": Code.MALFORMED_HANDSHAKE,
    "PARSE_TLSEXT": Code.MALFORMED_HANDSHAKE,
    "CLIENTHELLO_TLSEXT": Code.MALFORMED_HANDSHAKE,
    "DUPLICATE_EXTENSION": Code.MALFORMED_HANDSHAKE,
    "NO_COMPRESSION_SPECIFIED": Code.MALFORMED_HANDSHAKE,
    "MISSING_SIGALGS_EXTENSION": Code.MALFORMED_HANDSHAKE,
    "UNEXPECTED_MESSAGE": Code.PROTOCOL_VIOLATION,
    "UNEXPECTED_RECORD": Code.PROTOCOL_VIOLATION,
    "UNEXPECTED_CCS_MESSAGE": Code.PROTOCOL_VIOLATION,
    "CCS_RECEIVED_EARLY": Code.PROTOCOL_VIOLATION,
    "TOO_MANY_WARN_ALERTS": Code.PROTOCOL_VIOLATION,
    "SSLV3_ALERT_UNEXPECTED_MESSAGE": Code.PROTOCOL_VIOLATION,
    "SSLV3_ALERT_ILLEGAL_PARAMETER": Code.PROTOCOL_VIOLATION,
    "TLSV1_ALERT_DECODE_ERROR": Code.PROTOCOL_VIOLATION,
    "TLSV1_ALERT_INTERNAL_ERROR": Code.PROTOCOL_VIOLATION,
    "TLSV1_ALERT_MISSING_EXTENSION": Code.PROTOCOL_VIOLATION,
    "TLSV1_ALERT_UNSUPPORTED_EXTENSION": Code.PROTOCOL_VIOLATION,
    "DECRYPTION_FAILED_OR_BAD_RECORD_MAC": Code.BAD_RECORD_MAC,
    "BAD_RECORD_MAC": Code.BAD_RECORD_MAC,
    "BAD_DECRYPT": Code.BAD_RECORD_MAC,
    "SSLV3_ALERT_BAD_RECORD_MAC": Code.BAD_RECORD_MAC,
    "NO_RENEGOTIATION": Code.RENEGOTIATION_REFUSED,
    "TLSV1_ALERT_NO_RENEGOTIATION": Code.RENEGOTIATION_REFUSED,
    "NO_SUITABLE_KEY_SHARE": Code.NO_SHARED_GROUP,
    "NO_SUITABLE_GROUPS": Code.NO_SHARED_GROUP,
    "WRONG_CURVE": Code.NO_SHARED_GROUP,
    "NO_SHARED_CIPHER": Code.NO_SHARED_CIPHER,
    "NO_CIPHERS_AVAILABLE": Code.NO_SHARED_CIPHER,
    "NO_SUITABLE_SIGNATURE_ALGORITHM": Code.NO_SHARED_CIPHER,
    "TLSV1_UNRECOGNIZED_NAME": Code.UNRECOGNIZED_NAME,
    "TLSV1_ALERT_UNRECOGNIZED_NAME": Code.UNRECOGNIZED_NAME,
    "UNEXPECTED_EOF_WHILE_READING": Code.CONNECTION_CLOSED,
    "EE_KEY_TOO_SMALL": Code.WEAK_KEY,
    "CA_KEY_TOO_SMALL": Code.WEAK_KEY,
    "CA_MD_TOO_WEAK": Code.WEAK_SIGNATURE,
}

_CLOSED_FIX = "check the peer's log: it may require a client certificate, refuse the SNI name or not speak TLS"
_REASON_TEXT: dict[Code, tuple[str, str]] = {
    Code.CLIENT_CERT_REQUIRED: (
        "the server requires a client certificate and none was sent",
        "give a client certificate and key issued by a CA the server trusts (cert=, key=)",
    ),
    Code.CLIENT_CERT_REJECTED: (
        "the server rejected the client certificate (alert: {reason})",
        "use a client certificate issued by a CA the server trusts, valid now and with the client profile",
    ),
    Code.SERVER_CERT_REJECTED: (
        "the client rejected this server's certificate ({reason})",
        "serve a certificate (with its intermediates) from a CA the client trusts, valid for the name it uses",
    ),
    Code.PROTOCOL_TOO_OLD: (
        "no protocol version in common: the peer offers only versions refused here (TLS 1.0/1.1 or older)",
        "upgrade the peer to TLS 1.2 or 1.3 rather than lowering the minimum version",
    ),
    Code.NOT_TLS: (
        "the peer does not speak TLS on this port (a plaintext service, e.g. HTTP?)",
        "check the port, or use a plaintext client for a plaintext service",
    ),
    Code.PLAINTEXT_HTTP: (
        "the client spoke plain HTTP to a TLS port",
        "use https:// (the client sent an unencrypted HTTP request)",
    ),
    Code.MALFORMED_HANDSHAKE: (
        "the {peer} sent a malformed TLS handshake message ({reason}): its length fields or extensions do not add up",
        "nothing to change here; if the {peer} is yours, update or fix its TLS library",
    ),
    Code.OVERSIZED_MESSAGE: (
        "the {peer} sent a TLS record or handshake message larger than TLS allows ({reason})",
        "nothing to change here: it was refused before being buffered; if the {peer} is yours, check that it "
        "speaks TLS",
    ),
    Code.PROTOCOL_VIOLATION: (
        "the {peer} broke the TLS protocol ({reason}): a message out of order or one it did not expect",
        "if the {peer} is yours, update its TLS library; run tlskit probe HOST:PORT to see the handshake",
    ),
    Code.BAD_RECORD_MAC: (
        "a TLS record from the {peer} failed its integrity check ({reason}): the data was altered on the way",
        "check for a middlebox rewriting the connection; retry",
    ),
    Code.RENEGOTIATION_REFUSED: (
        "renegotiation was refused: TLS 1.2 renegotiation is disabled (a denial-of-service lever and the root of "
        "past injection attacks), so the connection was closed",
        "do not renegotiate: open a new connection instead (TLS 1.3 has no renegotiation at all)",
    ),
    Code.NO_SHARED_GROUP: (
        "no key-exchange group in common with the peer (tlskit offers X25519, P-256 and P-384)",
        "enable X25519 or P-256 on the peer",
    ),
    Code.NO_SHARED_CIPHER: (
        "no cipher suite or signature algorithm in common with the peer",
        "enable the Mozilla intermediate cipher suites on both sides",
    ),
    Code.UNRECOGNIZED_NAME: (
        "the server has no certificate for the requested server name (SNI)",
        "connect with a name the server is configured for (server_name=)",
    ),
    Code.CONNECTION_CLOSED: ("the peer closed the connection during the handshake", _CLOSED_FIX),
    Code.WEAK_KEY: ("a key in use is too small for OpenSSL's security level", "use EC P-256 or RSA-2048+ keys"),
    Code.WEAK_SIGNATURE: ("a certificate is signed with a weak digest (SHA-1 or MD5)", "reissue it with SHA-256"),
}


# Alerts a server sends when it does not accept a client certificate (or, from some servers, the lack of one).
_CERT_ALERTS = frozenset({
    "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "TLSV1_ALERT_ACCESS_DENIED", "TLSV1_ALERT_DECRYPT_ERROR", "SSLV3_ALERT_HANDSHAKE_FAILURE",
})  # fmt: skip


# A client that sent its certificate and then sees the connection close: under TLS 1.3 the client's side of the
# handshake is over before the server has checked that certificate, and servers on Python's asyncio (aiohttp,
# websockets, amqtt) close without sending the alert, so the client reads nothing but the end of the stream.
_CLOSED_ERRORS = (EOFError, ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError)
_REFUSED_WITHOUT_ALERT = (
    "the server closed the connection right after the handshake without answering: it most likely did not "
    "accept the client certificate (a TLS 1.3 server checks it after the client's side of the handshake, and "
    "some servers close without an alert)",
    "use a client certificate issued by a CA the server trusts, valid now and with the client profile; the "
    "server's log says more",
)


def explain_ssl_error(
    exc: BaseException,
    *,
    host: str | None = None,
    peer: Purpose = Purpose.SERVER,
    chain: Sequence[x509.Certificate] = (),
    sent_cert: bool | None = None,
    cert_requested: bool | None = None,
    after_handshake: bool = False,
) -> Problem:
    """Turn an OpenSSL error (or a socket error during a handshake) into one Problem.

    ``peer`` is who was on the other side: ``Purpose.SERVER`` when this side is a client (the default),
    ``Purpose.CLIENT`` in a server's handshake-failure hook.  ``chain`` (the peer's certificates, if known)
    lets messages name the identities and dates of the certificate.  A client that knows whether it sent a
    certificate (``sent_cert``) and whether the server asked for one (``cert_requested``) gets a precise answer
    where alerts are ambiguous: a server may answer a *missing* certificate with ``bad_certificate`` (Go does),
    and a client that sent none must not be told its certificate was rejected.  A client that sent one and then
    sees the connection closed without a word (an ``EOFError`` or a reset) is told that its certificate was
    most likely refused.
    ``after_handshake``: the error came on an established connection (so a handshake_failure alert from a client
    answers a refused renegotiation).
    """
    if sent_cert and peer is Purpose.SERVER and isinstance(exc, _CLOSED_ERRORS):
        return Problem(Code.CLIENT_CERT_REJECTED, *_REFUSED_WITHOUT_ALERT)
    if not isinstance(exc, ssl.SSLError):  # the socket failed under the handshake rather than TLS itself
        if isinstance(exc, TimeoutError):
            return Problem(Code.TIMEOUT, "the TLS handshake timed out", "check that the peer speaks TLS on this port")
        return Problem(Code.CONNECTION_CLOSED, f"the connection failed during the handshake ({exc})", _CLOSED_FIX)
    verify_code = getattr(exc, "verify_code", None)
    if isinstance(exc, ssl.SSLCertVerificationError) and isinstance(verify_code, int):
        message = str(getattr(exc, "verify_message", "") or exc)
        return _explain_verify(verify_code, message, host=host, peer=peer, chain=chain)
    reason = str(getattr(exc, "reason", None) or "")
    if peer is Purpose.SERVER and sent_cert is not None:
        known = _client_cert_problem(reason, sent_cert=sent_cert, cert_requested=cert_requested)
        if known is not None:
            return known
    code = _REASONS.get(reason)
    if code is None and isinstance(exc, ssl.SSLEOFError):
        code = Code.CONNECTION_CLOSED
    if after_handshake and peer is Purpose.CLIENT and reason == "SSLV3_ALERT_HANDSHAKE_FAILURE":
        # The only handshake a client can start on an established connection is a TLS 1.2 renegotiation, which
        # OpenSSL refuses here (OP_NO_RENEGOTIATION) with a no_renegotiation alert; the client then gives up.
        code = Code.RENEGOTIATION_REFUSED
    elif code is Code.CLIENT_CERT_REJECTED and peer is Purpose.CLIENT:
        code = Code.SERVER_CERT_REJECTED  # an alert from the client is about *our* certificate
    elif code is Code.CLIENT_CERT_REQUIRED and peer is Purpose.CLIENT and reason.startswith("SSLV3_ALERT"):
        code = Code.NO_SHARED_CIPHER
    if code is None:
        text = reason or str(exc)
        return Problem(Code.UNKNOWN, f"the TLS handshake failed ({text})", "run tlskit probe HOST:PORT for a diagnosis")
    message, fix = _REASON_TEXT[code]
    if reason == "SSLV3_ALERT_HANDSHAKE_FAILURE" and code is Code.CLIENT_CERT_REQUIRED:
        message = (
            "the server aborted the handshake (handshake_failure alert): most often it requires a client "
            "certificate that was not sent; it can also mean no cipher or protocol version in common"
        )
    elif code is Code.CLIENT_CERT_REQUIRED and peer is Purpose.CLIENT:
        message = "the client sent no certificate, and this server requires one"
        fix = "give the client a certificate from a CA this server trusts (profile=Profile.CLIENT)"
    else:
        message, fix = _PEER_WORDS.get((code, peer), (message, fix))
        if reason == "HTTPS_PROXY_REQUEST":
            message = "the client sent an HTTP proxy request (CONNECT) to a TLS port"
            fix = "configure the client to use this address as an https:// server, not as a proxy"
    if reason == "TLSV1_ALERT_DECODE_ERROR" and peer is Purpose.SERVER and sent_cert is False:
        # GnuTLS (TLS 1.2) answers a missing client certificate with decode_error: say so to a client that sent none.
        message += "; some servers (GnuTLS) answer a missing client certificate this way"
        fix = "if the server requires a client certificate, give one (cert=, key=); else " + fix
    pretty = reason.replace("SSLV3_ALERT_", "").replace("TLSV1_ALERT_", "").replace("_", " ").lower()
    words = {"reason": pretty or "alert", "peer": peer.value}
    return Problem(code, message.format(**words), fix.format(**words))


# Sentences that depend on which side the peer is: (code, peer) -> (message, fix).
_PEER_WORDS: dict[tuple[Code, Purpose], tuple[str, str]] = {
    (Code.NOT_TLS, Purpose.CLIENT): (
        "the client does not speak TLS: its first bytes are not a TLS record (a plaintext protocol, a port scanner "
        "or random bytes)",
        "point only TLS clients at this port",
    ),
    (Code.PROTOCOL_TOO_OLD, Purpose.CLIENT): (
        "the client offers only protocol versions refused here (SSL 2.0/3.0, TLS 1.0/1.1)",
        "upgrade the client to TLS 1.2 or 1.3 rather than lowering the minimum version",
    ),
}


def handshake_eof(peer: Purpose, *, received_any: bool, answered: bool = True) -> Problem:
    """The peer closed the connection before the handshake finished.

    ``received_any``: it sent part of a handshake; ``answered``: this side had sent its flight (a server that
    had not answered yet holds only part of a ClientHello).
    """
    if received_any and peer is Purpose.CLIENT and not answered:
        return Problem(
            Code.TRUNCATED_HANDSHAKE,
            "the client closed the connection in the middle of its ClientHello (a truncated handshake: a scanner, "
            "a broken client or a cut connection)",
            "nothing to do for a scanner; if the client is yours, check its network path and TLS library",
        )
    if received_any:
        return Problem(
            Code.TRUNCATED_HANDSHAKE,
            f"the {peer.value} closed the connection in the middle of the handshake, after this side's answer "
            "(it may have refused the certificate, version or suite it was offered)",
            f"check the {peer.value}'s log for why it gave up",
        )
    if peer is Purpose.CLIENT:
        return Problem(
            Code.CONNECTION_CLOSED,
            "the client connected and closed without sending a ClientHello (a port check or a health probe?)",
            "nothing to do, unless a TLS client expected to connect",
        )
    return Problem(Code.CONNECTION_CLOSED, "the peer closed the connection during the handshake", _CLOSED_FIX)


def handshake_timeout(seconds: float, *, received_any: bool) -> Problem:
    """A server's handshake deadline passed: the client stalled (or never spoke)."""
    if received_any:
        return Problem(
            Code.HANDSHAKE_TIMEOUT,
            f"handshake not completed within {seconds:g} s: the client stalled in the middle of it",
            "nothing to do for a stalled or hostile client; a slow legitimate one needs a longer handshake_timeout",
        )
    return Problem(
        Code.HANDSHAKE_TIMEOUT,
        f"no ClientHello received within {seconds:g} s",
        "check that the client speaks TLS to this port (a plaintext client waits for the server to speak first)",
    )


# ------------------------------------------------------------------------------------ the network explained

_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN})
_OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})


def explain_os_error(exc: OSError, *, action: str, host: str, port: int) -> Problem:
    """A socket error while listening (``action="listen"``) or connecting (``"connect"``) as one Problem.

    Shared by every command that listens or connects (serve, connect, probe, tap, demo and the tunnel), so a
    busy port or an unreachable host reads the same everywhere.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # The system's words for errno: uvloop's strerror repeats the whole call ("error while attempting to bind on
    # address ('127.0.0.1', 443): permission denied").  A resolver error's errno is not an errno.
    why = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno and exc.errno > 0 and not isinstance(exc, socket.gaierror):
        why = os.strerror(exc.errno)
    if isinstance(exc, socket.gaierror):
        return Problem(
            Code.NAME_NOT_RESOLVED,
            f"cannot resolve the host name {host!r} ({why})",
            "check the spelling and the DNS settings, or give an IP address",
        )
    number = exc.errno
    if isinstance(exc, TimeoutError) or number == errno.ETIMEDOUT:
        return Problem(
            Code.TIMEOUT,
            f"cannot {action} {where}: no answer in time",
            "check the address, and that no firewall drops the packets",
        )
    if number in _OUT_OF_FILES:
        return Problem(
            Code.TOO_MANY_FILES,
            f"cannot {action} {where}: this process has no file descriptors left ({why})",
            "raise the limit (ulimit -n) or lower max_connections",
        )
    if action == "listen":
        if number == errno.EADDRINUSE:
            return Problem(
                Code.ADDRESS_IN_USE,
                f"cannot listen on {where}: the port is already in use by another program",
                "stop the program listening there (ss -ltnp shows it) or choose another port (0 picks a free one)",
            )
        if number in (errno.EACCES, errno.EPERM) and 0 < port < 1024:
            return Problem(
                Code.PRIVILEGED_PORT,
                f"cannot listen on {where}: ports below 1024 are privileged ({why})",
                "use a port from 1024 up, or give the program CAP_NET_BIND_SERVICE",
            )
        if number == errno.EADDRNOTAVAIL:
            return Problem(
                Code.ADDRESS_NOT_AVAILABLE,
                f"cannot listen on {where}: {host} is not an address of this machine",
                "listen on 127.0.0.1, 0.0.0.0 (every interface) or one of this machine's addresses",
            )
        return Problem(Code.NETWORK_ERROR, f"cannot listen on {where}: {why}", "check the address and port")
    if number == errno.ECONNREFUSED:
        return Problem(
            Code.CONNECTION_REFUSED,
            f"cannot connect to {where}: connection refused (nothing listens there)",
            "check the host and port, and that the server is running",
        )
    if number in _UNREACHABLE:
        return Problem(
            Code.HOST_UNREACHABLE,
            f"cannot connect to {where}: the host is unreachable ({why})",
            "check the address and the network (routes, VPN, firewall)",
        )
    return Problem(Code.NETWORK_ERROR, f"cannot {action} {where}: {why}", "check the host and port")


def _client_cert_problem(reason: str, *, sent_cert: bool, cert_requested: bool | None) -> Problem | None:
    """A client's failure caused by client authentication, which only the client knows it attempted."""
    # TLS 1.3 has an alert for it; TLS 1.2 servers say handshake_failure after a CertificateRequest.
    if "CERTIFICATE_REQUIRED" in reason or (not sent_cert and cert_requested is not False and reason in _CERT_ALERTS):
        message, fix = _REASON_TEXT[Code.CLIENT_CERT_REQUIRED]
        return Problem(Code.CLIENT_CERT_REQUIRED, message, fix)
    if sent_cert and cert_requested is not False and reason in _CERT_ALERTS:
        pretty = reason.replace("SSLV3_ALERT_", "").replace("TLSV1_ALERT_", "").replace("_", " ").lower()
        message, fix = _REASON_TEXT[Code.CLIENT_CERT_REJECTED]
        return Problem(Code.CLIENT_CERT_REJECTED, message.format(reason=pretty), fix)
    return None


def _explain_verify(
    verify_code: int, verify_message: str, *, host: str | None, peer: Purpose, chain: Sequence[x509.Certificate]
) -> Problem:
    words = {"cert": f"the {peer.value}'s certificate", "peer": peer.value, "host": host or "the requested name"}
    code, message, fix = _VERIFY_CODES.get(
        verify_code, (Code.UNKNOWN, f"{{cert}} did not verify ({verify_message})", "run tlskit probe for details")
    )
    message, fix = message.format(**words), fix.format(**words)
    if chain:
        leaf, top = chain[0], chain[-1]
        if code is Code.HOSTNAME_MISMATCH:
            message += f"; it is valid for: {', '.join(names_of(leaf)) or 'no names'}"
        elif code is Code.EXPIRED:
            message += f" (on {when(leaf.not_valid_after_utc)})"
        elif code is Code.NOT_YET_VALID:
            message += f" (until {when(leaf.not_valid_before_utc)})"
        elif code is Code.INCOMPLETE_CHAIN and top is not leaf:
            # the chain reached an intermediate whose issuer is unknown: that issuer is the untrusted root
            code = Code.UNTRUSTED_ROOT
            message = (
                f"the {peer.value}'s chain ends with '{label(top)}', issued by '{dn(top.issuer)}', which is not trusted"
            )
            fix = f"trust the root CA '{dn(top.issuer)}' (ca=), or use a certificate from a CA you already trust"
        elif code is Code.INCOMPLETE_CHAIN:
            message += f" ('{dn(leaf.issuer)}')"
    if peer is Purpose.CLIENT:  # a server refusing a client: one code, the reason in the sentence
        if code in (Code.INCOMPLETE_CHAIN, Code.UNTRUSTED_ROOT, Code.SELF_SIGNED):
            # Advice for the server's operator: the client's CA is the one thing the server decides.
            fix = (
                "give the client a certificate issued by a CA this server trusts, "
                "or add that CA to the server's trusted client CAs (ca=)"
            )
        return Problem(Code.CLIENT_CERT_REJECTED, f"the client certificate was rejected: {message}", fix)
    return Problem(code, message, fix)


# ------------------------------------------------------------------- cryptography's verifier explained

_WEAK_KEY = ("a key in the chain is of a forbidden or too weak kind", "use EC P-256 or RSA-2048+ keys")
_EKU = ("the certificate's extendedKeyUsage does not allow this purpose", "reissue it with the right profile")
_NO_SAN = ("the certificate has no subjectAltName", "reissue it with the host names as SANs")
_REJECTIONS: list[tuple[str, Code, str, str]] = [
    ("no matching subjectAltName", Code.HOSTNAME_MISMATCH, "the certificate is not valid for {host}",
     "use a name it carries, or reissue it with {host} as a SAN"),
    ("has no subjectAltName", Code.NO_SAN, *_NO_SAN),
    ("2.5.29.17: Certificate is missing", Code.NO_SAN, *_NO_SAN),
    ("not valid at validation time", Code.EXPIRED, "a certificate in the chain is outside its validity period",
     "renew it, or check the clock"),
    ("name constraint", Code.NAME_CONSTRAINTS, "a CA's name constraints forbid the certificate's names",
     "issue it from a CA allowed to certify those names"),
    ("path length", Code.PATH_LENGTH_EXCEEDED, "a CA's path-length limit is exceeded", "issue from a CA higher up"),
    ("max depth", Code.PATH_LENGTH_EXCEEDED, "the chain is too long", "use a shorter CA hierarchy"),
    ("Exceeded maximum", Code.TOO_COMPLEX, "path building gave up: the chain or its name constraints are too "
     "complex", "send only the certificates of the chain"),
    ("basicConstraints.cA must not", Code.CA_CONSTRAINTS, "a CA certificate is used as the end-entity certificate",
     "issue a separate end-entity certificate from that CA"),
    ("basicConstraints", Code.CA_CONSTRAINTS, "an issuer in the chain is not a proper CA certificate",
     "recreate the CA with tlskit ca init / ca intermediate"),
    ("keyCertSign", Code.KEY_USAGE, "a keyUsage is wrong for the certificate's role",
     "reissue it with the right profile"),
    ("EKU", Code.WRONG_PURPOSE, *_EKU),
    ("extendedKeyUsage", Code.WRONG_PURPOSE, *_EKU),
    ("signature does not match", Code.BAD_SIGNATURE, "a signature in the chain does not verify",
     "reissue the certificate from the CA in the chain"),
    ("public key", Code.WEAK_KEY, *_WEAK_KEY),
    ("RSA key", Code.WEAK_KEY, *_WEAK_KEY),
    ("signature algorithm", Code.WEAK_SIGNATURE, "a signature algorithm in the chain is forbidden",
     "reissue it signed with SHA-256"),
    ("no interior errors", Code.UNTRUSTED_ROOT, "no path to a trusted root was found",
     "trust the root CA (ca=) and give the intermediates (intermediates=)"),
]  # fmt: skip
"""cryptography's rejection messages (a fragment) -> (code, plain sentence, fix); the first match wins."""


def explain_rejection(exc: Exception, leaf: x509.Certificate, host: str | None) -> Problem:
    """``cryptography``'s verifier rejected the chain of ``leaf`` (for ``host``): that rejection as one Problem."""
    text = str(exc).removeprefix("validation failed: ")
    where = re.search(r"encountered processing <Certificate\(subject=<Name\((.*?)\)>", text)
    text = re.sub(r" \(encountered processing .*$", "", text)
    about = f" (in '{where.group(1)}')" if where else ""
    for fragment, code, message, fix in _REJECTIONS:
        if fragment in text:
            extra = (
                f"; it is valid for: {', '.join(names_of(leaf)) or 'no names'}"
                if code is Code.HOSTNAME_MISMATCH
                else ""
            )
            return Problem(code, message.format(host=host) + extra + about, fix.format(host=host))
    return Problem(
        Code.NONCONFORMING,
        f"the chain breaks RFC 5280 / CA/B Forum rules: {text}{about}",
        "reissue the offending certificate with a standard profile (tlskit ca issue)",
    )
