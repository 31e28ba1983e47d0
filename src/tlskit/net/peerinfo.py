"""Connection facts where other libraries hide them: tlskit's peer view of any finished TLS handshake.

aiohttp, websockets, httpx, amqtt and plain ``ssl`` sockets all keep an ``ssl.SSLObject`` or ``ssl.SSLSocket``
somewhere (aiohttp's ``request.transport.get_extra_info("ssl_object")``, websockets' ``connection.transport``,
httpx's ``response.extensions["network_stream"]``).  :func:`peer_info` finds it and answers in the words of
:class:`~tlskit.net.connection.TLSConnection`: ``authorized`` and ``authorization_error`` (Node's
``req.client.authorized`` and ``authorizationError``), ``peer_certificate``, ``peer_chain``, ``cipher``,
``protocol``, ``alpn_protocol``.

The words for an unauthorized peer are the ones tlskit's own connections use (:data:`NO_CLIENT_CERTIFICATE`,
:data:`CLIENT_AUTH_OFF`, and, for a client that did not verify its server, why verification would have failed).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from ..errors import InputError
from ..pki.names import common_name
from .context import ClientAuth
from .engine import TLSEngine
from .explain import explain_unverified
from .tlsinfo import CipherInfo, chain_der, cipher_info, peer_verified

__all__ = ["CLIENT_AUTH_OFF", "NO_CLIENT_CERTIFICATE", "PeerInfo", "client_authorization_error", "peer_info"]

_C_SSL: type = getattr(ssl, "_ssl")._SSLSocket  # noqa: B009 - not re-exported by ssl

NO_CLIENT_CERTIFICATE = "no client certificate offered"
"""Why a client is not authorized when the server asked for a certificate (optionally) and got none."""
CLIENT_AUTH_OFF = "client certificate not requested (client authentication is off)"
"""Why a client is not authorized when the server never asked for a certificate."""


def client_authorization_error(verify_mode: int) -> str:
    """Why a client whose certificate OpenSSL did not verify is not authorized (server side)."""
    return CLIENT_AUTH_OFF if verify_mode == ssl.CERT_NONE else NO_CLIENT_CERTIFICATE


@dataclass(frozen=True)
class PeerInfo:
    """What a finished handshake says about the peer, with the names :class:`TLSConnection` uses."""

    authorized: bool
    """True if OpenSSL verified the peer's certificate (Node's ``authorized``)."""
    authorization_error: str | None
    """Why :attr:`authorized` is False (None when it is True), like Node's ``authorizationError``."""
    peer_certificate: x509.Certificate | None
    """The peer's leaf certificate, or None if it sent none."""
    peer_chain: tuple[x509.Certificate, ...]
    """The peer's chain, leaf first: the one OpenSSL built when it verified the peer, else as the peer sent it."""
    peer_verified: bool
    """True if OpenSSL verified a certificate the peer sent, during the handshake."""
    server_side: bool
    """True if this side is the server (the peer is a client)."""
    client_auth: ClientAuth | None
    """Server side: what the server asked of the client (None on the client side)."""
    protocol: str | None
    """``"TLSv1.3"``, ``"TLSv1.2"``, ..."""
    cipher: CipherInfo | None
    """The negotiated cipher suite."""
    alpn_protocol: str | None
    """The protocol chosen through ALPN (``"h2"``, ``"http/1.1"``), if any."""
    server_name: str | None
    """The SNI name: sent (client side), or received (tlskit servers; servers built on ``ssl`` do not keep it)."""

    @property
    def peer_cn(self) -> str | None:
        """The common name of the peer's certificate (None without a certificate or a CN)."""
        return None if self.peer_certificate is None else common_name(self.peer_certificate.subject)


def _find_ssl_object(source: object) -> Any:
    """The C-level ``_ssl`` object behind ``source`` (or a TLSEngine), or None if it holds no TLS connection."""
    seen: set[int] = set()
    todo = [source]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, TLSEngine):
            return item
        if isinstance(item, ssl.SSLObject | ssl.SSLSocket):
            return item._sslobj  # type: ignore[union-attr]  # the C-level object behind both wrappers
        if isinstance(item, _C_SSL):  # what httpcore's synchronous streams hand out
            return item
        get_extra_info = getattr(item, "get_extra_info", None)
        if callable(get_extra_info):  # asyncio transports and streams, httpcore network streams
            todo.append(get_extra_info("ssl_object"))
        # aiohttp's request and websockets' connection keep a transport; httpx's response, a network stream.
        todo.append(getattr(item, "transport", None))
        extensions = getattr(item, "extensions", None)
        if isinstance(extensions, Mapping):
            todo.append(extensions.get("network_stream"))
    return None


def peer_info(source: Any) -> PeerInfo:
    """tlskit's view of the peer of a finished handshake held by ``source``.

    ``source`` is an ``ssl.SSLObject`` or ``ssl.SSLSocket``, an asyncio transport or ``StreamWriter``, an aiohttp
    request, a websockets connection, an httpx response, or a :class:`~tlskit.net.connection.TLSConnection` (whose
    ``authorized`` also says whether its peer policy accepted the peer).  Raises
    :class:`~tlskit.errors.InputError` if ``source`` holds no TLS connection or its handshake has not finished.
    """
    found = _find_ssl_object(source)
    if found is None:
        raise InputError(
            f"found no TLS connection in {type(source).__name__}",
            fix="pass an ssl.SSLObject or ssl.SSLSocket, an asyncio transport, an aiohttp request, a websockets "
            "connection or an httpx response of a TLS connection",
        )
    engine = found if isinstance(found, TLSEngine) else None
    raw: Any = found._ssl if engine is not None else found
    if raw.version() is None:
        raise InputError("the TLS handshake has not finished", fix="ask once the connection is established")
    server_side = bool(raw.server_side)
    ctx: ssl.SSLContext = raw.context
    verify_mode = engine.verify_mode if engine is not None else int(ctx.verify_mode)
    verified = peer_verified(raw, verify_mode)
    chain = chain_der(raw, verified=True) if verified else chain_der(raw, verified=False)
    error: str | None
    if engine is not None and hasattr(engine, "authorization_error"):
        error = engine.authorization_error  # a TLSConnection: the same answer, the peer policy included
    elif verified:
        error = None
    elif server_side:
        error = client_authorization_error(verify_mode)
    else:
        error = explain_unverified(ctx, chain_der(raw, verified=False), hostname=raw.server_hostname, client_cert=False)
    leaf = raw.getpeercert(True)
    return PeerInfo(
        authorized=error is None,
        authorization_error=error,
        peer_certificate=None if leaf is None else x509.load_der_x509_certificate(leaf),
        peer_chain=tuple(x509.load_der_x509_certificate(der) for der in chain),
        peer_verified=verified,
        server_side=server_side,
        client_auth=ClientAuth.of(ctx) if server_side else None,
        protocol=raw.version(),
        cipher=cipher_info(raw.cipher()),
        alpn_protocol=raw.selected_alpn_protocol(),
        server_name=engine.server_name if engine is not None else None if server_side else raw.server_hostname,
    )
