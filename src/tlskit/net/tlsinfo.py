"""What a finished handshake tells: cipher names, peer chains, authorization, and plain-language TLS errors.

Everything here works on the C-level ``_ssl._SSLSocket`` object behind :class:`tlskit.net.engine.TLSEngine`
and on plain ``ssl.SSLContext`` objects; nothing touches a socket.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import TLSError, TLSVerificationError

__all__ = [
    "CipherInfo",
    "cipher_info",
    "explain_verification",
    "tls_error",
]

_ENCODING_DER: int = getattr(ssl, "_ssl").ENCODING_DER  # noqa: B009 - not re-exported by ssl

# OpenSSL name -> IANA/IETF name, from `openssl ciphers -stdname` (TLS 1.3 suites already use IANA names).
_IANA: dict[str, str] = {
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "DHE-RSA-AES256-GCM-SHA384": "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "DHE-RSA-CHACHA20-POLY1305": "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "DHE-RSA-AES128-GCM-SHA256": "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-CCM": "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
    "ECDHE-ECDSA-AES128-CCM": "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
    "ECDHE-ECDSA-AES256-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    "ECDHE-RSA-AES256-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "DHE-RSA-AES256-SHA256": "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    "ECDHE-ECDSA-AES128-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "ECDHE-RSA-AES128-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "DHE-RSA-AES128-SHA256": "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    "ECDHE-ECDSA-AES256-SHA": "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "ECDHE-RSA-AES256-SHA": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "DHE-RSA-AES256-SHA": "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    "ECDHE-ECDSA-AES128-SHA": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "ECDHE-RSA-AES128-SHA": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "DHE-RSA-AES128-SHA": "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    "AES256-GCM-SHA384": "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "AES128-GCM-SHA256": "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "AES256-SHA256": "TLS_RSA_WITH_AES_256_CBC_SHA256",
    "AES128-SHA256": "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "AES256-SHA": "TLS_RSA_WITH_AES_256_CBC_SHA",
    "AES128-SHA": "TLS_RSA_WITH_AES_128_CBC_SHA",
}


@dataclass(frozen=True)
class CipherInfo:
    """The negotiated cipher suite (Node's ``getCipher()``)."""

    name: str
    """OpenSSL's name, e.g. ``ECDHE-ECDSA-AES128-GCM-SHA256`` or ``TLS_AES_256_GCM_SHA384``."""
    standard_name: str
    """The IANA/IETF name, e.g. ``TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256``."""
    protocol: str
    """The protocol version the suite is defined for, e.g. ``TLSv1.3``."""
    bits: int
    """Secret bits of the symmetric cipher."""


def cipher_info(cipher: tuple[str, str, int] | None) -> CipherInfo | None:
    """Build a :class:`CipherInfo` from ``SSLObject.cipher()`` (None before the handshake)."""
    if cipher is None:
        return None
    name, protocol, bits = cipher
    standard = name if name.startswith("TLS_") else _IANA.get(name, name)
    return CipherInfo(name=name, standard_name=standard, protocol=protocol, bits=bits)


def chain_der(sslobj: Any, *, verified: bool) -> list[bytes]:
    """The peer's chain (leaf first) as DER, from the C-level SSL object.

    ``verified`` asks for the chain OpenSSL built (up to the trust anchor); otherwise the certificates as the
    peer sent them.  Both calls are private in ``_ssl`` before Python 3.13 and return certificate objects there.
    """
    getter = sslobj.get_verified_chain if verified else sslobj.get_unverified_chain
    certs = getter() or []
    return [c if isinstance(c, bytes) else c.public_bytes(_ENCODING_DER) for c in certs if c is not None]


# --- plain-language errors ---------------------------------------------------------------------------------

# OpenSSL reason code (ssl.SSLError.reason) -> (stable code, plain message, fix).
_REASONS: dict[str, tuple[str, str, str]] = {
    "HTTP_REQUEST": ("not_tls", "the peer sent a plaintext HTTP request, not a TLS handshake", "use https://"),
    "HTTPS_PROXY_REQUEST": ("not_tls", "the peer sent an HTTP proxy CONNECT request, not a TLS handshake", ""),
    "WRONG_VERSION_NUMBER": (
        "not_tls",
        "the peer does not speak TLS (the first bytes are not a TLS record)",
        "check that both sides use TLS on this port",
    ),
    "PACKET_LENGTH_TOO_LONG": ("not_tls", "the peer sent bytes that are not a TLS record", ""),
    "RECORD_LAYER_FAILURE": ("not_tls", "the peer sent bytes that are not a valid TLS record", ""),
    "UNSUPPORTED_PROTOCOL": (
        "protocol_version",
        "no TLS version is acceptable to both sides",
        "check min_version/max_version on both sides",
    ),
    "TLSV1_ALERT_PROTOCOL_VERSION": (
        "protocol_version",
        "the peer refused the TLS version offered",
        "check min_version/max_version on both sides",
    ),
    "NO_SHARED_CIPHER": ("no_shared_cipher", "no cipher suite is acceptable to both sides", "check the cipher lists"),
    "SSLV3_ALERT_HANDSHAKE_FAILURE": (
        "handshake_failure",
        "the peer aborted the handshake (no common cipher, group or signature algorithm?)",
        "check versions, ciphers and key types on both sides",
    ),
    "NO_APPLICATION_PROTOCOL": (
        "alpn_mismatch",
        "no ALPN protocol is acceptable to both sides",
        "configure a common ALPN protocol",
    ),
    "TLSV1_ALERT_NO_APPLICATION_PROTOCOL": (
        "alpn_mismatch",
        "the peer accepts none of the ALPN protocols offered",
        "configure a common ALPN protocol",
    ),
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": (
        "client_cert_required",
        "no client certificate offered, but the server requires one",
        "the client must present a certificate (cert=, key=)",
    ),
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": (
        "client_cert_required",
        "the server requires a client certificate and none was sent",
        "pass cert= and key= to the client context",
    ),
    "TLSV1_ALERT_UNKNOWN_CA": (
        "peer_rejected_certificate",
        "the peer does not trust our certificate (unknown CA)",
        "give the peer our CA as a trust anchor",
    ),
    "SSLV3_ALERT_BAD_CERTIFICATE": (
        "peer_rejected_certificate",
        "the peer rejected our certificate",
        "check our certificate's names, usage and chain",
    ),
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": (
        "peer_rejected_certificate",
        "the peer says our certificate has expired",
        "renew the certificate",
    ),
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": (
        "peer_rejected_certificate",
        "the peer could not verify our certificate",
        "check our certificate's chain and usage",
    ),
    "SSLV3_ALERT_CERTIFICATE_REVOKED": ("peer_rejected_certificate", "the peer says our certificate is revoked", ""),
    "TLSV1_ALERT_ACCESS_DENIED": ("access_denied", "the peer denied access (identity not allowed)", ""),
    "UNEXPECTED_EOF_WHILE_READING": (
        "eof",
        "the peer closed the connection without finishing the TLS exchange",
        "check the peer's logs: it may have rejected us",
    ),
    "UNSAFE_LEGACY_RENEGOTIATION_DISABLED": ("renegotiation", "the peer asked for insecure renegotiation", ""),
}

# Substrings of OpenSSL's verify messages (X509_verify_cert_error_string) -> (code, fix).
_VERIFY: tuple[tuple[str, str, str], ...] = (
    ("hostname mismatch", "hostname_mismatch", "connect with a name the certificate lists, or set server_name="),
    ("ip address mismatch", "hostname_mismatch", "connect with an address the certificate lists"),
    ("certificate has expired", "expired", "renew the certificate"),
    ("not yet valid", "not_yet_valid", "check the clocks, or wait until the certificate is valid"),
    ("self-signed certificate in certificate chain", "untrusted_root", "add the root CA with ca="),
    ("self-signed certificate", "self_signed", "trust this certificate explicitly with ca="),
    ("unable to get local issuer", "untrusted_root", "add the issuing CA with ca=, or send the intermediates"),
    ("unable to get issuer", "untrusted_root", "add the issuing CA with ca="),
    ("certificate revoked", "revoked", "the certificate was revoked: get a new one"),
    ("unsupported certificate purpose", "wrong_purpose", "issue a certificate with the right extended key usage"),
    ("unable to get certificate crl", "crl_missing", "provide the CRL of every CA in the chain"),
)


def tls_error(exc: BaseException, *, during: str = "handshake", server_side: bool = False) -> TLSError:
    """Translate ``exc`` (usually an ``ssl.SSLError``) into a :class:`TLSError` with a plain message.

    On the client side :func:`tlskit.pki.diagnose.explain_ssl_error` is asked first, when present: its advice
    is written for someone connecting to a server.  Servers get the neutral wording below.  The caller keeps
    ``exc`` as the cause (``raise tls_error(exc) from exc``).
    """
    if isinstance(exc, TLSError):
        return exc
    explained = None if server_side else _diagnose(exc)
    if explained is not None:
        return explained
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = str(exc.verify_message or exc.reason or exc)
        code, fix = "verify_failed", ""
        for needle, vcode, vfix in _VERIFY:
            if needle in text.lower():
                code, fix = vcode, vfix
                break
        err = TLSVerificationError(f"certificate verification failed: {text.rstrip('.')}", code=code, fix=fix)
        err.verify_code = exc.verify_code or 0
        return err
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or "")
        if reason in _REASONS:
            code, message, fix = _REASONS[reason]
            return TLSError(message, code=code, fix=fix)
        if isinstance(exc, ssl.SSLEOFError):
            return TLSError(f"the peer closed the connection during the {during}", code="eof")
        library = f"{exc.library} " if exc.library else ""
        return TLSError(f"TLS {during} failed ({library}{reason or exc})".strip(), code=reason.lower() or "tls_error")
    if isinstance(exc, TimeoutError):
        return TLSError(f"the TLS {during} timed out", code="timeout", fix="check that the peer speaks TLS")
    if isinstance(exc, ConnectionError | EOFError):
        return TLSError(f"the peer closed the connection during the {during}", code="eof")
    return TLSError(f"TLS {during} failed: {exc}", code="tls_error")


def _diagnose(exc: BaseException) -> TLSError | None:
    """Ask ``tlskit.pki.diagnose.explain_ssl_error`` (optional module) for a Problem or TLSError."""
    try:
        from ..pki import diagnose
    except ImportError:
        return None
    explain = getattr(diagnose, "explain_ssl_error", None)
    if explain is None:
        return None
    result = explain(exc)
    if result is None or isinstance(result, TLSError):
        return result
    code, message, fix = (getattr(result, attr, "") for attr in ("code", "message", "fix"))
    if not message:
        return None
    cls = TLSVerificationError if isinstance(exc, ssl.SSLCertVerificationError) else TLSError
    return cls(str(message), code=str(code or "tls_error"), fix=str(fix))


# --- verification we did not ask OpenSSL for ----------------------------------------------------------------


def explain_verification(
    ctx: ssl.SSLContext, chain: Sequence[bytes], *, hostname: str | None, client_cert: bool
) -> str | None:
    """Verify ``chain`` (DER, leaf first) against ``ctx``'s CA certificates; None if fine, else why not.

    Used when a peer was not verified during the handshake (``verify=False``), to report why verification
    would have failed, as Node's ``authorizationError`` does.  ``client_cert`` selects the client profile.
    """
    from cryptography import x509

    if not chain:
        return "the peer presented no certificate"
    roots = ctx.get_ca_certs(binary_form=True)
    if not roots:
        return "no trust anchors are configured, so the peer's certificate cannot be verified"
    try:
        leaf, *rest = (x509.load_der_x509_certificate(der) for der in chain)
        anchors = [x509.load_der_x509_certificate(der) for der in roots]
    except ValueError as exc:
        return f"the peer's certificate cannot be parsed ({exc})"
    verify_chain = _optional_verify_chain()
    if verify_chain is not None:
        result = verify_chain(leaf, roots=anchors, intermediates=rest, host=None if client_cert else hostname)
        if getattr(result, "ok", False):
            return None
        problems = getattr(result, "problems", ())
        return str(problems[0].message) if problems else "the peer's certificate did not verify"
    return _verify_with_cryptography(leaf, rest, anchors, hostname=hostname, client_cert=client_cert)


def _optional_verify_chain() -> Any:
    try:
        from ..pki import verify
    except ImportError:
        return None
    return getattr(verify, "verify_chain", None)


def _verify_with_cryptography(
    leaf: Any, intermediates: list[Any], anchors: list[Any], *, hostname: str | None, client_cert: bool
) -> str | None:
    from cryptography import x509
    from cryptography.x509 import verification

    builder = verification.PolicyBuilder().store(verification.Store(anchors))
    try:
        if client_cert or not hostname:
            builder.build_client_verifier().verify(leaf, intermediates)
        else:
            subject: x509.DNSName | x509.IPAddress
            try:
                subject = x509.IPAddress(ipaddress.ip_address(hostname))
            except ValueError:
                subject = x509.DNSName(hostname)
            builder.build_server_verifier(subject).verify(leaf, intermediates)
    except verification.VerificationError as exc:
        return f"certificate verification would fail: {exc}"
    return None
