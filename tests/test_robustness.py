"""Misbehaving peers end only their own connection, with one clear log line (issue 3, done-means 3)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import struct
from collections.abc import Coroutine
from typing import Any

import pytest

from conftest import PKI
from tlskit.errors import TLSError
from tlskit.net.client import connect
from tlskit.net.connection import TLSConnection
from tlskit.net.context import client_context, server_context
from tlskit.net.framing import LengthPrefixedFramer
from tlskit.net.server import Server, start_server

LOGGER = "tlskit.server"


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def echo(conn: TLSConnection) -> None:
    while data := await conn.read():
        await conn.write(data)


async def framed_echo(conn: TLSConnection) -> None:
    framer = LengthPrefixedFramer(max_size=1024)
    async for message in conn.messages(framer):
        await conn.send(message, framer)


def contexts(pki: PKI) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return server_context(cert=pki.server_pem, key=pki.server_key), client_context(ca=pki.root_pem)


async def healthy(server: Server, cctx: ssl.SSLContext) -> TLSConnection:
    conn = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost")
    await check(conn)
    return conn


async def check(conn: TLSConnection) -> None:
    """The connection still carries framed messages both ways."""
    framer = LengthPrefixedFramer()
    await conn.send(b"still alive", framer)
    assert framer.feed(await conn.readexactly(4 + 11)) == [b"still alive"]


async def until(predicate: Any, what: str) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and needle in r.getMessage()]


def client_hello(pki: PKI) -> bytes:
    """A real ClientHello, produced by a sans-IO ssl client."""
    sslobj = client_context(ca=pki.root_pem).wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="x")
    with pytest.raises(ssl.SSLWantReadError):
        sslobj.do_handshake()
    return out.read()


def test_silent_connections_time_out_while_others_are_served(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    sctx, cctx = contexts(pki)

    async def main() -> None:
        async with await start_server(framed_echo, "127.0.0.1", 0, context=sctx, handshake_timeout=1.0) as server:
            silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(200)]
            await until(lambda: server.connection_count >= 200, "200 accepted connections")
            conn = await healthy(server, cctx)  # served while the 200 silent ones are still waiting
            assert server.connection_count >= 201
            results = await asyncio.gather(*(reader.read() for reader, _ in silent), return_exceptions=True)
            assert all(r == b"" or isinstance(r, ConnectionError) for r in results)
            await check(conn)
            await conn.close()
            for _, writer in silent:
                writer.close()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run(main())
    assert len(lines(caplog, "no ClientHello received within 1 s")) == 200


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (os.urandom(2048), "TLS handshake with 127.0.0.1:"),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "HTTP"),
        (b"\x16\x03\x01\xff\xff" + b"\x00" * 64, "TLS handshake with 127.0.0.1:"),
    ],
    ids=["random-bytes", "plaintext-http", "bogus-record"],
)
def test_garbage_ends_only_its_connection(
    pki: PKI, caplog: pytest.LogCaptureFixture, garbage: bytes, reason: str
) -> None:
    sctx, cctx = contexts(pki)
    errors: list[TLSError] = []

    async def main() -> None:
        server = await start_server(
            framed_echo, "127.0.0.1", 0, context=sctx, on_tls_error=lambda e, _: errors.append(e)
        )
        async with server:
            conn = await healthy(server, cctx)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(garbage)
            with contextlib.suppress(ConnectionError):
                await reader.read()  # the server hangs up (maybe after an alert)
            writer.close()
            await check(conn)
            await conn.close()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run(main())
    logged = lines(caplog, "TLS handshake with 127.0.0.1:")
    assert len(logged) == 1 and reason in logged[0]
    assert len(errors) == 1 and isinstance(errors[0], ssl.SSLError)


def test_disconnect_mid_handshake(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    sctx, cctx = contexts(pki)
    hello = client_hello(pki)

    async def main() -> None:
        async with await start_server(framed_echo, "127.0.0.1", 0, context=sctx) as server:
            conn = await healthy(server, cctx)
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(hello[: len(hello) // 2])
            await writer.drain()
            writer.close()
            await until(lambda: server.connection_count == 1, "the half handshake to end")
            await check(conn)
            await conn.close()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run(main())
    logged = lines(caplog, "TLS handshake with 127.0.0.1:")
    assert len(logged) == 1 and "closed the connection in the middle of its ClientHello" in logged[0]


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (struct.pack(">I", 100) + b"only ten b", "in the middle of a frame"),
        (struct.pack(">I", 10_000_000) + b"x" * 100, "exceeds"),
    ],
    ids=["disconnect-mid-frame", "over-long-frame"],
)
def test_framing_violations_end_only_their_connection(
    pki: PKI, caplog: pytest.LogCaptureFixture, frame: bytes, needle: str
) -> None:
    sctx, cctx = contexts(pki)

    async def main() -> None:
        async with await start_server(framed_echo, "127.0.0.1", 0, context=sctx) as server:
            conn = await healthy(server, cctx)
            bad = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost")
            await bad.write(frame)
            if needle == "exceeds":
                assert await bad.read() == b""  # the server closed it
            await bad.close()
            await until(lambda: server.connection_count == 1, "the bad connection to end")
            await check(conn)
            await conn.close()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run(main())
    logged = lines(caplog, needle)
    assert len(logged) == 1 and "closing connection" in logged[0]


def test_connection_cap_refuses_extras_quickly(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    sctx, cctx = contexts(pki)

    async def main() -> None:
        async with await start_server(echo, "127.0.0.1", 0, context=sctx, max_connections=3) as server:
            held = [await connect("127.0.0.1", server.port, context=cctx, server_name="localhost") for _ in range(3)]
            for _ in range(5):
                with pytest.raises((OSError, TLSError)) as info:
                    extra = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost")
                    await extra.read()  # TLS 1.3: a refusal after our Finished shows on the first read
                if isinstance(info.value, TLSError):
                    assert info.value.code != "handshake_timeout"  # refused, not left hanging
            assert server.refused == 5
            await held[0].close()
            await until(lambda: server.connection_count == 2, "a slot to free up")
            again = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost")
            await again.write(b"ok")
            assert await again.readexactly(2) == b"ok"
            for conn in [*held[1:], again]:
                await conn.close()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run(main())
    assert len(lines(caplog, "connection limit of 3 reached")) == 1  # rate-limited: not one line per refusal
