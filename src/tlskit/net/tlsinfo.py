"""What a finished handshake tells, as facts: cipher names and the peer's certificates.

Everything here works on the C-level ``_ssl._SSLSocket`` object behind :class:`tlskit.net.engine.TLSEngine`;
nothing touches a socket and nothing here explains (that is :mod:`tlskit.net.explain`).
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from typing import Any

from cryptography import x509

__all__ = ["CipherInfo", "chain_der", "cipher_info", "peer_chain", "peer_verified"]

_CERT_NONE = int(ssl.CERT_NONE)
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
    """A :class:`CipherInfo` for ``SSLObject.cipher()`` (None before the handshake)."""
    return None if cipher is None else _cipher_info(*cipher)


@functools.lru_cache(maxsize=128)  # a server meets a handful of suites: one immutable object each, not one per call
def _cipher_info(name: str, protocol: str, bits: int) -> CipherInfo:
    standard = name if name.startswith("TLS_") else _IANA.get(name, name)
    return CipherInfo(name=name, standard_name=standard, protocol=protocol, bits=bits)


def peer_verified(sslobj: Any, verify_mode: int) -> bool:
    """True if OpenSSL verified a certificate the peer sent, in the finished handshake of ``sslobj``.

    ``verify_mode`` is the ``ssl.CERT_*`` mode of the context the connection was made with.  A client verifies
    the server unless that mode is ``CERT_NONE`` (the handshake fails otherwise); a server verifies a client
    certificate when it asked for one and the client sent one.
    """
    if verify_mode == _CERT_NONE:
        return False
    return not sslobj.server_side or sslobj.getpeercert(True) is not None


def chain_der(sslobj: Any, *, verified: bool) -> list[bytes]:
    """The peer's chain (leaf first) as DER, from the C-level SSL object.

    ``verified`` asks for the chain OpenSSL built (up to the trust anchor); otherwise the certificates as the
    peer sent them.  Both calls are private in ``_ssl`` before Python 3.13 and return certificate objects there.
    """
    getter = sslobj.get_verified_chain if verified else sslobj.get_unverified_chain
    certs = getter() or []
    return [c if isinstance(c, bytes) else c.public_bytes(_ENCODING_DER) for c in certs if c is not None]


def peer_chain(sslobj: Any) -> list[x509.Certificate]:
    """The peer's certificates as sent, parsed, also after a failed handshake; [] if none or unparsable.

    A server gets [] for a client certificate that failed verification: OpenSSL keeps no chain it refused.
    """
    try:
        return [x509.load_der_x509_certificate(der) for der in chain_der(sslobj, verified=False)]
    except ValueError:  # a malformed certificate: the error message then just names no identities
        return []
