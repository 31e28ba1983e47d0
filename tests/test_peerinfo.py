"""tlskit.peer_info: the peer view of connections other libraries made, in TLSConnection's words; tls_error
explaining other libraries' failures."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import pytest

from conftest import PKI
from tlskit import (
    ClientAuth,
    InputError,
    PeerInfo,
    client_context,
    connect,
    peer_info,
    server_context,
    start_server,
    tls_error,
)
from tlskit.net.peerinfo import CLIENT_AUTH_OFF, NO_CLIENT_CERTIFICATE


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[PeerInfo, PeerInfo]:
    """One handshake over loopback with plain ssl sockets; (server's view, client's view)."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[PeerInfo] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            seen.append(peer_info(tls))
            tls.sendall(b"x")

    thread = threading.Thread(target=serve)
    thread.start()
    with (
        socket.create_connection(listener.getsockname()) as raw,
        client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.recv(1)
        client_view = peer_info(tls)
    thread.join()
    listener.close()
    return seen[0], client_view


def test_ssl_sockets_both_sides(pki: PKI) -> None:
    server = server_context(cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth=ClientAuth.OPTIONAL)
    mutual = client_context(ca=pki.root_pem, cert=pki.client_pem, key=pki.client_key)
    seen_by_server, seen_by_client = _handshake(server, mutual)
    assert seen_by_server.authorized and seen_by_server.authorization_error is None
    assert seen_by_server.peer_cn == "client" and seen_by_server.server_side
    assert seen_by_server.client_auth is ClientAuth.OPTIONAL
    assert [c.subject for c in seen_by_server.peer_chain] == [pki.client_cert.subject, pki.ca.cert.subject,
                                                              pki.root.cert.subject]  # fmt: skip
    assert seen_by_client.authorized and seen_by_client.peer_cn == "localhost"
    assert seen_by_client.server_name == "localhost" and seen_by_client.protocol == "TLSv1.3"
    assert seen_by_client.cipher is not None and seen_by_client.cipher.standard_name.startswith("TLS_")

    anonymous, _ = _handshake(server, client_context(ca=pki.root_pem))
    assert not anonymous.authorized and anonymous.authorization_error == NO_CLIENT_CERTIFICATE
    not_asked, _ = _handshake(server_context(cert=pki.server_pem, key=pki.server_key), mutual)
    assert not_asked.authorization_error == CLIENT_AUTH_OFF and not_asked.peer_certificate is None


def test_unverified_client_is_told_why(pki: PKI) -> None:
    server = server_context(cert=pki.other_server_pem, key=pki.other_server_key)
    _, seen = _handshake(server, client_context(ca=pki.root_pem, verify=False))
    assert not seen.authorized and not seen.peer_verified
    assert seen.authorization_error is not None and "trust" in seen.authorization_error


def test_asyncio_streams_and_tlskit_connections_agree(pki: PKI) -> None:
    server = server_context(cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth=ClientAuth.REQUIRED)
    client = client_context(ca=pki.root_pem, cert=pki.client_pem, key=pki.client_key)
    views: dict[str, Any] = {}

    async def main() -> None:
        async def handler(conn: Any) -> None:
            views["tlskit"] = peer_info(conn)
            views["authorized"], views["error"] = conn.authorized, conn.authorization_error
            await conn.close()

        async with await start_server(handler, "127.0.0.1", 0, context=server) as srv:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=client,
                                                           server_hostname="localhost")  # fmt: skip
            views["streams"] = peer_info(writer)
            await reader.read()
            writer.close()
            conn = await connect("127.0.0.1", srv.port, context=client, server_name="localhost")
            views["client"] = peer_info(conn)
            await conn.close()

    asyncio.run(main())
    assert views["tlskit"].authorized == views["authorized"] and views["tlskit"].authorization_error == views["error"]
    assert views["tlskit"].peer_cn == "client"
    assert views["streams"].peer_cn == views["client"].peer_cn == "localhost"
    assert views["streams"].server_name == "localhost"


@pytest.mark.parametrize("thing", [object(), socket.socket()])
def test_no_tls_connection(thing: object) -> None:
    with pytest.raises(InputError, match="found no TLS connection"):
        peer_info(thing)


def _wrapped(inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("a library's own error") from exc
    except RuntimeError as outer:
        return outer


CASES: list[tuple[Callable[[], BaseException], bool, str]] = [
    (lambda: _wrapped(EOFError("connection closed")), True, "client_cert_rejected"),
    (lambda: _wrapped(ConnectionResetError(104, "reset")), True, "client_cert_rejected"),
    (lambda: _wrapped(EOFError("connection closed")), False, "connection_closed"),
]


@pytest.mark.parametrize(("make", "sent_cert", "code"), CASES)
def test_tls_error_reads_through_other_libraries(make: Callable[[], BaseException], sent_cert: bool, code: str) -> None:
    error = tls_error(make(), host="localhost", sent_cert=sent_cert)
    assert error.code == code
    assert error.fix
