"""tlskit's asyncio TLS transport end to end: real handshakes between tlskit clients and servers (and openssl)."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from conftest import PKI, MakeCert
from peers import requires
from tlskit.errors import TLSError, TLSVerificationError
from tlskit.net.client import Jitter, ReconnectingClient, connect
from tlskit.net.connection import TLSConnection
from tlskit.net.context import ClientAuth, client_context, server_context
from tlskit.net.framing import DelimitedFramer, JsonCodec
from tlskit.net.policy import PeerPolicy
from tlskit.net.server import Server, loop_factory, start_server

LOOPS = ["asyncio", "uvloop"]
V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


def run(coro: Coroutine[Any, Any, Any], loop: str = "asyncio") -> Any:
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop=loop == "uvloop")) as runner:
        return runner.run(asyncio.wait_for(coro, 60))


async def echo(conn: TLSConnection) -> None:
    while data := await conn.read():
        await conn.write(data)


def server_ctx(pki: PKI, **kw: Any) -> ssl.SSLContext:
    return server_context(cert=pki.server_pem, key=pki.server_key, **kw)


def client_ctx(pki: PKI, **kw: Any) -> ssl.SSLContext:
    return client_context(ca=pki.root_pem, **kw)


class Seen:
    """What the server's handler observed, for assertions after the fact."""

    def __init__(self) -> None:
        self.conns: list[dict[str, Any]] = []
        self.errors: list[tuple[TLSError, Any]] = []

    def record(self, conn: TLSConnection) -> None:
        self.conns.append(
            {
                "authorized": conn.authorized,
                "error": conn.authorization_error,
                "protocol": conn.protocol,
                "cipher": conn.cipher,
                "alpn": conn.alpn_protocol,
                "sni": conn.server_name,
                "reused": conn.session_reused,
                "peer": conn.peer_certificate,
                "chain": conn.peer_chain,
            }
        )

    def handler(self, then: Callable[[TLSConnection], Awaitable[None]] = echo) -> Any:
        async def handle(conn: TLSConnection) -> None:
            self.record(conn)
            await then(conn)

        return handle

    def on_error(self, error: TLSError, peer: Any) -> None:
        self.errors.append((error, peer))


async def roundtrip(conn: TLSConnection, data: bytes) -> bytes:
    await conn.write(data)
    return await conn.readexactly(len(data))


# --- handshakes and what each side sees ------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("version", [V12, V13])
def test_echo_and_handshake_details(pki: PKI, version: ssl.TLSVersion, loop: str) -> None:
    seen = Seen()

    async def main() -> None:
        ctx = server_ctx(pki, max_version=version)
        async with await start_server(seen.handler(), "127.0.0.1", 0, context=ctx) as server:
            conn = await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
            payload = os.urandom(300_000)  # several records and slices both ways
            assert await roundtrip(conn, payload) == payload
            assert conn.authorized and conn.authorization_error is None
            assert conn.protocol == seen.conns[0]["protocol"] == version.name.replace("_", ".").replace("v1.", "v1.")
            assert conn.cipher is not None and conn.cipher == seen.conns[0]["cipher"]
            assert conn.cipher.standard_name.startswith("TLS_")
            if version is V12:
                assert "_WITH_" in conn.cipher.standard_name and conn.cipher.name != conn.cipher.standard_name
            assert conn.peer_certificate is not None and conn.peer_certificate == pki.server_cert
            assert len(conn.peer_chain) == 3  # leaf, intermediate, root (the verified chain)
            assert conn.remote_address[1] == server.port and conn.local_address[0] == "127.0.0.1"
            assert conn.server_name == "localhost"
            await conn.close()
            assert conn.closed
        assert seen.conns[0]["authorized"] is False
        assert "not requested" in seen.conns[0]["error"]
        assert seen.conns[0]["sni"] == "localhost"

    run(main(), loop)


def test_mutual_tls_authorized(pki: PKI) -> None:
    seen = Seen()

    async def main() -> None:
        ctx = server_ctx(pki, ca=pki.root_pem, client_auth=ClientAuth.REQUIRED)
        async with await start_server(seen.handler(), "127.0.0.1", 0, context=ctx) as server:
            cctx = client_ctx(pki, cert=pki.client_pem, key=pki.client_key)
            conn = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost")
            assert await roundtrip(conn, b"hi") == b"hi"
            await conn.close()
        info = seen.conns[0]
        assert info["authorized"] is True and info["error"] is None
        assert info["peer"] == pki.client_cert
        assert info["chain"][0].subject.rfc4514_string() == "CN=client"

    run(main())


def test_optional_client_auth_without_certificate(pki: PKI) -> None:
    seen = Seen()

    async def main() -> None:
        ctx = server_ctx(pki, ca=pki.root_pem, client_auth=ClientAuth.OPTIONAL)
        async with await start_server(seen.handler(), "127.0.0.1", 0, context=ctx) as server:
            conn = await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
            assert await roundtrip(conn, b"x") == b"x"
            await conn.close()
        assert seen.conns[0]["authorized"] is False
        assert seen.conns[0]["error"] == "no client certificate offered"
        assert seen.conns[0]["peer"] is None

    run(main())


@pytest.mark.parametrize("version", [V12, V13])
def test_required_client_auth_refuses_missing_certificate(
    pki: PKI, version: ssl.TLSVersion, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()

    async def main() -> None:
        ctx = server_ctx(pki, ca=pki.root_pem, client_auth=ClientAuth.REQUIRED, max_version=version)
        server = await start_server(seen.handler(), "127.0.0.1", 0, context=ctx, on_tls_error=seen.on_error)
        async with server:
            with pytest.raises(TLSError) as info:
                # TLS 1.3 clients finish their side first and learn of the refusal on the first read.
                conn = await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
                await conn.read()
            assert isinstance(info.value, ssl.SSLError)
            assert info.value.code in {"client_cert_required", "handshake_failure"}
            assert isinstance(info.value.__cause__, ssl.SSLError)
            for _ in range(100):
                if seen.errors:
                    break
                await asyncio.sleep(0.05)
        assert not seen.conns
        error, peer = seen.errors[0]
        assert "certificate" in str(error) and peer[0] == "127.0.0.1"

    with caplog.at_level(logging.WARNING, logger="tlskit.server"):
        run(main())
    assert any("TLS handshake with 127.0.0.1:" in r.getMessage() for r in caplog.records)


def test_client_certificate_from_other_ca_is_refused(pki: PKI) -> None:
    seen = Seen()

    async def main() -> None:
        ctx = server_ctx(pki, ca=pki.root_pem, client_auth=ClientAuth.REQUIRED)
        server = await start_server(seen.handler(), "127.0.0.1", 0, context=ctx, on_tls_error=seen.on_error)
        async with server:
            cctx = client_ctx(pki, cert=pki.other_client_pem, key=pki.other_client_key)
            with pytest.raises(TLSError) as info:
                conn = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost")
                await conn.read()
            assert info.value.code == "client_cert_rejected" and "certificate" in info.value.message
            for _ in range(100):
                if seen.errors:
                    break
                await asyncio.sleep(0.05)
        error = seen.errors[0][0]
        # The server's wording is about the *client's* certificate, not about its own.
        assert isinstance(error, TLSVerificationError) and error.code == "client_cert_rejected"
        assert "client's certificate" in error.message and error.fix

    run(main())


def test_allow_list_rejects_other_identity(pki: PKI) -> None:
    seen = Seen()

    async def main() -> None:
        ctx = server_ctx(pki, ca=pki.root_pem, client_auth=ClientAuth.REQUIRED)
        policy = PeerPolicy(allow_cn=["someone-else"])
        server = await start_server(
            seen.handler(), "127.0.0.1", 0, context=ctx, policy=policy, on_tls_error=seen.on_error
        )
        async with server:
            cctx = client_ctx(pki, cert=pki.client_pem, key=pki.client_key)
            conn = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost")
            assert await conn.read() == b""  # the server closed without running the handler
            await conn.close()
        assert not seen.conns
        assert "not in the allow-list" in str(seen.errors[0][0])

    run(main())


def test_client_verification_failures_are_plain(pki: PKI) -> None:
    seen = Seen()

    async def main() -> None:
        other = server_context(cert=pki.other_server_pem, key=pki.other_server_key)
        async with await start_server(echo, "127.0.0.1", 0, context=other, on_tls_error=seen.on_error) as server:
            with pytest.raises(TLSVerificationError) as info:
                await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
            assert isinstance(info.value, ssl.SSLCertVerificationError)
            assert info.value.code in {"untrusted_root", "incomplete_chain"} and info.value.fix
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            for _ in range(100):
                if seen.errors:
                    break
                await asyncio.sleep(0.05)
        # The server hears the client's unknown_ca alert: it is about the server's own certificate.
        refused = seen.errors[0][0]
        assert refused.code == "server_cert_rejected" and "server's certificate" in refused.message, refused
        async with await start_server(echo, "127.0.0.1", 0, context=server_ctx(pki)) as server:
            with pytest.raises(TLSVerificationError) as info:
                await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="wrong.example")
            assert info.value.code == "hostname_mismatch"
            # The sentence names the requested host and the names the certificate does carry.
            assert "wrong.example" in info.value.message and "localhost" in info.value.message
            # verify=False still connects, and says why verification would have failed.
            insecure = client_ctx(pki, verify=False)
            conn = await connect("127.0.0.1", server.port, context=insecure, server_name="wrong.example")
            assert conn.authorized is False
            assert conn.authorization_error is not None and "wrong.example" in conn.authorization_error
            await conn.close()

    run(main())


def test_alpn_and_sni(pki: PKI, make_cert: MakeCert) -> None:
    seen = Seen()
    alt_pem, alt_key = make_cert(["alt.test"], name="alt")

    async def main() -> None:
        ctx = server_ctx(pki, alpn=["h2", "tlskit/1"], sni={"alt.test": (alt_pem, alt_key)})
        async with await start_server(seen.handler(), "127.0.0.1", 0, context=ctx) as server:
            cctx = client_ctx(pki, alpn=["tlskit/1"])
            conn = await connect("127.0.0.1", server.port, context=cctx, server_name="alt.test")
            assert await roundtrip(conn, b"a") == b"a"
            assert conn.alpn_protocol == "tlskit/1"
            assert conn.peer_certificate is not None
            assert "alt.test" in conn.peer_certificate.subject.rfc4514_string()
            await conn.close()
        assert seen.conns[0]["alpn"] == "tlskit/1" and seen.conns[0]["sni"] == "alt.test"

    run(main())


@pytest.mark.parametrize("version", [V12, V13])
def test_session_resumption(pki: PKI, version: ssl.TLSVersion) -> None:
    seen = Seen()

    async def main() -> None:
        ctx = server_ctx(pki, max_version=version)
        async with await start_server(seen.handler(), "127.0.0.1", 0, context=ctx) as server:
            cctx = client_ctx(pki)
            first = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost")
            assert await roundtrip(first, b"1") == b"1"  # TLS 1.3 tickets arrive after the handshake
            session = first.session
            assert not first.session_reused
            await first.close()
            second = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost", session=session)
            assert await roundtrip(second, b"2") == b"2"
            assert second.session_reused
            await second.close()
        assert [c["reused"] for c in seen.conns] == [False, True]

    run(main())


# --- streams, framing, backpressure ----------------------------------------------------------------------


def test_json_messages_both_ways(pki: PKI) -> None:
    async def handler(conn: TLSConnection) -> None:
        codec = JsonCodec(DelimitedFramer("\ufffd".encode()))
        async for message in conn.messages(codec):
            await conn.send({"seq": message["seq"], "echo": message["text"]}, codec)

    async def main() -> None:
        async with await start_server(handler, "127.0.0.1", 0, context=server_ctx(pki)) as server:
            conn = await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
            codec = JsonCodec(DelimitedFramer("\ufffd".encode()))
            for seq in range(50):
                await conn.send({"seq": seq, "text": "é\ufffd"}, codec)  # written in one loop turn: coalesced
            replies = []
            async for message in conn.messages(codec):
                replies.append(message)
                if len(replies) == 50:
                    break
            assert [r["seq"] for r in replies] == list(range(50))
            assert replies[0]["echo"] == "é\ufffd"
            await conn.close()

    run(main())


def test_write_eof_half_close(pki: PKI) -> None:
    """close_notify ends the client's direction only: the server still answers after reading EOF."""

    async def count_then_answer(conn: TLSConnection) -> None:
        size = 0
        while data := await conn.read():
            size += len(data)
        await conn.write(b"got %d" % size)

    async def main() -> None:
        async with await start_server(count_then_answer, "127.0.0.1", 0, context=server_ctx(pki)) as server:
            conn = await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
            await conn.write(b"z" * 100_000)
            conn.write_eof()
            assert await conn.readexactly(10) == b"got 100000"
            assert await conn.read() == b""
            await conn.close()

    run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_backpressure_bounds_buffers(pki: PKI, loop: str) -> None:
    """A peer that does not read makes the writer wait instead of buffering without bound."""
    total = 48 * 1024 * 1024  # more than loopback socket buffers can hold
    sent = {"server": 0}
    peaks = {"write": 0, "read": 0}
    done = asyncio.Event

    async def main() -> None:
        finished = done()

        async def flood(conn: TLSConnection) -> None:
            chunk = b"x" * 65536
            while sent["server"] < total:
                await conn.write(chunk)
                sent["server"] += len(chunk)
                peaks["write"] = max(peaks["write"], conn.write_buffer_size)
            finished.set()

        async with await start_server(flood, "127.0.0.1", 0, context=server_ctx(pki)) as server:
            conn = await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
            await asyncio.sleep(1.0)  # not reading
            assert not finished.is_set() and sent["server"] < total
            assert peaks["write"] < 1024 * 1024
            assert conn.read_buffer_size <= TLSConnection.READ_HIGH_WATER + 512 * 1024
            received = 0
            while received < total:
                data = await conn.read()
                assert data
                received += len(data)
                peaks["read"] = max(peaks["read"], conn.read_buffer_size)
            await finished.wait()
            await conn.close()
        assert received == total

    run(main(), loop)


def test_slow_server_reader_pushes_back_on_client(pki: PKI) -> None:
    gate = asyncio.Event
    state: dict[str, Any] = {}

    async def main() -> None:
        release = gate()

        async def lazy(conn: TLSConnection) -> None:
            state["conn"] = conn
            await release.wait()
            await echo(conn)

        async with await start_server(lazy, "127.0.0.1", 0, context=server_ctx(pki)) as server:
            conn = await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
            chunk = b"y" * 65536
            writer = asyncio.ensure_future(_write_many(conn, chunk, 48 * 1024 * 1024 // len(chunk)))
            await asyncio.sleep(1.0)
            assert not writer.done()  # blocked: the server stopped reading its socket
            assert state["conn"].read_buffer_size <= TLSConnection.READ_HIGH_WATER + 512 * 1024
            writer.cancel()
            release.set()
            conn.abort()

    run(main())


async def _write_many(conn: TLSConnection, chunk: bytes, count: int) -> None:
    for _ in range(count):
        await conn.write(chunk)


# --- server lifecycle ------------------------------------------------------------------------------------


def test_reload_under_traffic_drops_nothing(pki: PKI, make_cert: MakeCert) -> None:
    new_pem, new_key = make_cert(["localhost", "127.0.0.1"], name="renewed")

    async def main() -> None:
        async with await start_server(echo, "127.0.0.1", 0, context=server_ctx(pki)) as server:
            cctx = client_ctx(pki)
            old = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost")
            serials: list[int] = []

            async def one(i: int) -> None:
                conn = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost")
                assert await roundtrip(conn, b"%d" % i) == b"%d" % i
                assert conn.peer_certificate is not None
                serials.append(conn.peer_certificate.serial_number)
                await conn.close()

            halfway = asyncio.Event()

            async def traffic() -> None:
                for batch in range(8):
                    if batch == 3:
                        halfway.set()  # the reload happens while this batch is in flight
                    await asyncio.gather(*(one(batch * 5 + i) for i in range(5)))

            task = asyncio.ensure_future(traffic())
            await halfway.wait()
            server.reload(server_context(cert=new_pem, key=new_key))
            await task
            assert len(serials) == 40
            assert serials[-1] != serials[0]  # new handshakes use the new certificate
            assert await roundtrip(old, b"still here") == b"still here"  # open connection untouched
            assert old.peer_certificate is not None and old.peer_certificate.serial_number == serials[0]
            await old.close()

    run(main())


def test_graceful_close_lets_connections_finish(pki: PKI) -> None:
    async def slow_reply(conn: TLSConnection) -> None:
        request = await conn.read()
        await asyncio.sleep(0.3)
        await conn.write(b"reply to " + request)

    async def main() -> None:
        server = await start_server(slow_reply, "127.0.0.1", 0, context=server_ctx(pki))
        conn = await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
        await conn.write(b"req")
        closing = asyncio.ensure_future(server.close(deadline=10))
        await asyncio.sleep(0.05)
        with pytest.raises(OSError):
            await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
        assert await conn.readexactly(12) == b"reply to req"
        assert await conn.read() == b""  # handler returned: close_notify
        await closing
        assert server.connection_count == 0

    run(main())


def test_graceful_close_deadline_closes_the_rest(pki: PKI) -> None:
    async def forever(conn: TLSConnection) -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        server = await start_server(forever, "127.0.0.1", 0, context=server_ctx(pki))
        conn = await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
        await server.close(deadline=0.3)
        assert await conn.read() == b""
        assert server.connection_count == 0

    run(main())


def test_idle_timeout_closes_quiet_connections(pki: PKI) -> None:
    async def main() -> None:
        async with await start_server(echo, "127.0.0.1", 0, context=server_ctx(pki), idle_timeout=0.4) as server:
            conn = await connect("127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost")
            assert await asyncio.wait_for(conn.read(), 10) == b""

    run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_workers_share_port_and_resume_sessions(pki: PKI, loop: str) -> None:
    async def whoami(conn: TLSConnection) -> None:
        await conn.write(b"%d %d\n" % (os.getpid(), conn.session_reused))
        await conn.read()

    async def main() -> None:
        server = await start_server(whoami, "127.0.0.1", 0, context=server_ctx(pki), workers=2)
        try:
            assert len(server.worker_pids) == 2
            cctx = client_ctx(pki)
            session = None
            first_pid = None
            seen: collections.Counter[tuple[int, bool]] = collections.Counter()
            for _ in range(40):
                conn = await _connect_retrying(server, cctx, session)
                pid, reused = map(int, (await conn.readexactly(1) + await conn.read()).split())
                if session is None:
                    session, first_pid = conn.session, pid
                else:
                    assert reused == conn.session_reused == 1
                seen[(pid, bool(reused))] += 1
                await conn.close()
            assert {pid for pid, _ in seen} == set(server.worker_pids)
            assert any(pid != first_pid and reused for pid, reused in seen)  # resumed across workers
        finally:
            await server.close(deadline=2)
        assert server.worker_pids == []

    run(main(), loop)


async def _connect_retrying(server: Server, ctx: ssl.SSLContext, session: Any) -> TLSConnection:
    for _ in range(100):  # workers open their listeners right after the fork
        try:
            return await connect("127.0.0.1", server.port, context=ctx, server_name="localhost", session=session)
        except ConnectionRefusedError:
            await asyncio.sleep(0.05)
    raise AssertionError("workers never listened")


# --- clients -----------------------------------------------------------------------------------------------


def test_reconnecting_client_resumes(pki: PKI) -> None:
    seen = Seen()

    async def greet_and_hang_up(conn: TLSConnection) -> None:
        await conn.write(b"hello")

    async def main() -> None:
        server = await start_server(seen.handler(greet_and_hang_up), "127.0.0.1", 0, context=server_ctx(pki))
        async with server:
            client = ReconnectingClient(
                "127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost", jitter=Jitter.FULL
            )
            reused = []
            async for conn in client:
                assert client.current is conn
                assert await conn.read() == b"hello"
                reused.append(conn.session_reused)
                if len(reused) == 3:
                    await client.stop()
            assert reused == [False, True, True]
            assert client.connects == 3
        # No server: attempts run out with the connection error.
        gone = ReconnectingClient(
            "127.0.0.1", server.port, context=client_ctx(pki), initial_backoff=0.01, max_attempts=2
        )
        with pytest.raises(ConnectionRefusedError):
            async for _ in gone:
                pass

    run(main())


def test_reconnecting_client_reconnects_after_server_closes(pki: PKI) -> None:
    """The server ends each connection (close_notify + FIN); a loop body that returns without closing still
    gets a fresh connection next, and the finished one is closed rather than left open."""

    async def one_message(conn: TLSConnection) -> None:
        await conn.write(b'{"n": 1}\n')  # then the handler returns: the server closes

    async def main() -> None:
        async with await start_server(one_message, "127.0.0.1", 0, context=server_ctx(pki)) as server:
            client = ReconnectingClient(
                "127.0.0.1", server.port, context=client_ctx(pki), server_name="localhost", initial_backoff=0.01
            )
            seen: list[TLSConnection] = []
            got = []
            async for conn in client:
                if seen:
                    assert seen[-1].closed  # the iterator closed the previous connection before reconnecting
                seen.append(conn)
                got += [m async for m in conn.messages(JsonCodec(DelimitedFramer()))]
                assert conn.at_eof() and not conn.closed  # body returns; nobody here closes the connection
                if len(seen) == 3:
                    await client.stop()
            assert got == [{"n": 1}] * 3 and client.connects == 3
            assert all(c.closed for c in seen)

    run(main())


def test_handshake_timeout_on_client(pki: PKI) -> None:
    async def main() -> None:
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        with pytest.raises(TLSError) as info:
            await connect("127.0.0.1", port, context=client_ctx(pki), handshake_timeout=0.3)
        assert info.value.code == "handshake_timeout"
        silent.close()

    run(main())


@requires("openssl")
def test_openssl_s_client_handshake(pki: PKI) -> None:
    seen = Seen()

    async def main() -> None:
        ctx = server_ctx(pki, alpn=["tlskit/1"])
        async with await start_server(seen.handler(), "127.0.0.1", 0, context=ctx) as server:
            proc = await asyncio.create_subprocess_exec(
                "openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername", "localhost",
                "-CAfile", str(pki.root_pem), "-verify_return_error", "-alpn", "tlskit/1", "-quiet",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(b"ping from openssl\n")
                line = await asyncio.wait_for(proc.stdout.readline(), 20)
            finally:
                proc.kill()
                await proc.wait()
            assert line == b"ping from openssl\n"
        assert seen.conns[0]["protocol"] == "TLSv1.3"
        assert seen.conns[0]["alpn"] == "tlskit/1" and seen.conns[0]["sni"] == "localhost"

    run(main())
