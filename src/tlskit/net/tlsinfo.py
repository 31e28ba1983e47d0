"""What a finished handshake tells: cipher names, peer chains, authorization, and plain-language TLS errors.

Everything here works on the C-level ``_ssl._SSLSocket`` object behind :class:`tlskit.net.engine.TLSEngine`
and on plain ``ssl.SSLContext`` objects; nothing touches a socket.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from ..errors import TLSError, TlskitError, TLSVerificationError
from ..pki.problems import Code, Purpose, explain_ssl_error
from ..pki.verify import verify_chain

__all__ = [
    "CipherInfo",
    "chain_der",
    "cipher_info",
    "explain_verification",
    "peer_chain",
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


def tls_error(
    exc: BaseException,
    *,
    during: str = "handshake",
    server_side: bool = False,
    host: str | None = None,
    chain: Sequence[x509.Certificate] = (),
) -> TLSError:
    """Translate ``exc`` (usually an ``ssl.SSLError``) into a :class:`TLSError` with code, sentence and fix.

    The wording comes from :func:`tlskit.pki.problems.explain_ssl_error`, told who the peer is
    (``server_side``: we are the server, so the peer is a client), the name the client asked for (``host``)
    and the peer's certificates as sent (``chain``).  The caller keeps ``exc`` as the cause
    (``raise tls_error(exc) from exc``).
    """
    if isinstance(exc, TLSError):
        return exc
    problem = explain_ssl_error(exc, host=host, peer=Purpose.CLIENT if server_side else Purpose.SERVER, chain=chain)
    message = problem.message
    if during != "handshake" and problem.code == Code.UNKNOWN:
        # explain_ssl_error speaks of handshakes; a bad record on an open connection is not one
        message = message.replace("the TLS handshake failed", f"the TLS {during} failed", 1)
    if isinstance(exc, ssl.SSLCertVerificationError):
        err = TLSVerificationError(message, code=str(problem.code), fix=problem.fix)
        err.verify_code = exc.verify_code or 0
        return err
    return TLSError(message, code=str(problem.code), fix=problem.fix)


def peer_chain(sslobj: Any) -> list[x509.Certificate]:
    """The peer's certificates as sent, parsed, also after a failed handshake; [] if none or unparsable.

    A server gets [] for a client certificate that failed verification: OpenSSL keeps no chain it refused.
    """
    try:
        return [x509.load_der_x509_certificate(der) for der in chain_der(sslobj, verified=False)]
    except ValueError:  # a malformed certificate: the error message then just names no identities
        return []


# --- verification we did not ask OpenSSL for ----------------------------------------------------------------


def explain_verification(
    ctx: ssl.SSLContext, chain: Sequence[bytes], *, hostname: str | None, client_cert: bool
) -> str | None:
    """Verify ``chain`` (DER, leaf first) against ``ctx``'s CA certificates; None if fine, else why not.

    Used when a peer was not verified during the handshake (``verify=False``), to report why verification
    would have failed, as Node's ``authorizationError`` does.  ``client_cert`` selects the client profile.
    """
    if not chain:
        return "the peer presented no certificate"
    roots = ctx.get_ca_certs(binary_form=True)
    if not roots:
        return "no trust anchors are configured, so the peer's certificate cannot be verified"
    try:
        leaf, *rest = (x509.load_der_x509_certificate(der) for der in chain)
        anchors = [x509.load_der_x509_certificate(der) for der in roots]
        result = verify_chain(
            leaf,
            roots=anchors,
            intermediates=rest,
            host=None if client_cert else hostname,
            purpose=Purpose.CLIENT if client_cert else Purpose.SERVER,
        )
    except (ValueError, TlskitError) as exc:  # unparsable certificate, or a host verify_chain cannot use
        return f"the peer's certificate cannot be checked ({exc})"
    if result.ok:
        return None
    return result.problems[0].message if result.problems else "the peer's certificate did not verify"
