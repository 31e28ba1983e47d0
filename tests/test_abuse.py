"""Abuse, bounded in time and count, on loopback only (issue 12, item 4), against both servers tlskit ships:
``start_server`` (tests/abuse_server.py, an echo server in its own process) and ``tlskit serve --echo``.

The server runs in a process of its own so its memory (``VmRSS``) and file descriptors are read from
``/proc/PID`` apart from the load generator.  No assertion is about elapsed time: the machine is shared and slow
at times, so outcomes are asserted (the good client finished while the stalled ones were still open; every
stalled one was closed by the handshake timeout) and times are only printed.

- 1000 connections that send part of a ClientHello and stall, while a good client completes a handshake;
- a connect/close flood and a handshake flood: the server keeps serving, descriptors and memory return to their
  level after a warm-up round;
- plain HTTP, random bytes, truncated, malformed and oversized ClientHellos: a clean close and one line in words
  with a problem code each; a TLS 1.2 renegotiation refused;
- an over-long line in framed mode: the connection is closed with a clear error, the server's memory bounded;
- certificates reloaded every 100 ms while handshakes and transfers run: no failed connection, every byte exact;
- soak: sequential connections (handshake, small echo, close), RSS growing less than 5 MiB after warm-up
  (20,000 in ``make test``; ``make soak`` runs 100,000 against both servers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import PKI, TLSKIT
from peers import Peer, port_from_port_line, requires, running, start, tool
from test_cli_net import port_from_serve
from test_failure_words import EXPECTED, client_hello, hostile
from tlskit.errors import TLSError
from tlskit.net.client import connect
from tlskit.net.context import client_context
from tlskit.net.server import run

KINDS = ["library", "serve"]
ABUSE_SERVER = Path(__file__).with_name("abuse_server.py")
MIB = 1024 * 1024
SOAK = int(os.environ.get("TLSKIT_SOAK_CONNECTIONS", "20000"))
SOAK_KINDS = KINDS if "TLSKIT_SOAK_CONNECTIONS" in os.environ else ["serve"]


# --- the server under test ---------------------------------------------------------------------------------------


@dataclass
class Target:
    """A server process: its port, and what ``/proc`` and its output say about it."""

    kind: str
    peer: Peer

    @property
    def port(self) -> int:
        return self.peer.port

    @property
    def pid(self) -> int:
        return self.peer.proc.pid

    def rss(self) -> int:
        """Resident memory in bytes."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024  # type: ignore[union-attr]

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def failures(self, code: str) -> int:
        """Failed handshakes logged with ``code``."""
        pattern = rf"^TLSERR {code} " if self.kind == "library" else rf"handshake failed \({code}\): "
        return sum(1 for line in list(self.peer.lines) if re.search(pattern, line))

    def closed_with(self, needle: str) -> list[str]:
        """Lines about connections that ended with an error mentioning ``needle``."""
        pattern = r"^CLOSED " if self.kind == "library" else r"^serve: \S+ closed"
        return [line for line in list(self.peer.lines) if re.search(pattern, line) and needle in line]

    def reloads(self) -> int:
        needle = "RELOADED" if self.kind == "library" else "reloaded TLS context"
        return sum(1 for line in list(self.peer.lines) if needle in line)

    def reload(self) -> None:
        """Ask for a reload (serve: SIGHUP; the library server reloads by itself with --reload-every)."""
        if self.kind == "serve":
            os.kill(self.pid, signal.SIGHUP)

    def alive(self) -> None:
        assert self.peer.proc.poll() is None, self.peer.output[-3000:]
        assert "Traceback" not in self.peer.output, self.peer.output[-3000:]


@contextlib.contextmanager
def target(
    kind: str, pki: PKI, *, handshake_timeout: float = 10, frames: str = "raw", reload: bool = False
) -> Iterator[Target]:
    options = ["--cert", pki.server_pem, "--key", pki.server_key, "--handshake-timeout", handshake_timeout]
    if kind == "library":
        argv = [sys.executable, ABUSE_SERVER, *options, "--frames", frames]
        argv += ["--reload-every", "0.1"] if reload else []
        port_from = port_from_port_line
    else:
        argv = [TLSKIT, "serve", "0", *options, "--frames", frames, "--echo"]
        port_from = port_from_serve
    with running([str(a) for a in argv], port_from=port_from) as peer:
        yield Target(kind, peer)
        assert "Traceback" not in peer.output, peer.output[-3000:]


# --- load generator helpers ----------------------------------------------------------------------------------------


async def until(predicate: Callable[[], bool], what: str, *, timeout: float = 120) -> None:
    """Poll ``predicate``; a generous bound only against hanging forever."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


def client(pki: PKI) -> ssl.SSLContext:
    return client_context(ca=pki.root_pem)


async def echo_once(port: int, ctx: ssl.SSLContext, payload: bytes = b"ping") -> None:
    conn = await connect("127.0.0.1", port, context=ctx, server_name="localhost", handshake_timeout=60)
    try:
        await conn.write(payload)
        assert await conn.readexactly(len(payload)) == payload
    finally:
        await conn.close(timeout=10)


async def gather_limited(jobs: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)


async def read_to_end(reader: asyncio.StreamReader, timeout: float = 60) -> bytes:
    """What the server sent before closing (an alert at most); a reset counts as not clean."""
    return await asyncio.wait_for(reader.read(), timeout)


# --- 1000 stalled handshakes ------------------------------------------------------------------------------------

# The handshake timeout while 1000 handshakes stall: long enough that opening them all and one good handshake
# finish well before it on a slow, shared machine (the test asserts that no timeout fired by then).
STALL_TIMEOUT = 60.0


@pytest.mark.parametrize("kind", KINDS)
def test_stalled_handshakes_do_not_stop_a_good_client(pki: PKI, kind: str) -> None:
    partial = client_hello(pki)[:60]
    stalled_count = 1000

    async def main(server: Target, base: int) -> tuple[float, int]:
        stalled: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for _ in range(stalled_count // 100):
            batch = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", server.port) for _ in range(100)))
            for _, writer in batch:
                writer.write(partial)
            stalled += batch
        await until(lambda: server.fds() >= base + stalled_count, "the server to accept every stalled connection")
        started = time.monotonic()
        await echo_once(server.port, client(pki))
        took = time.monotonic() - started
        still_open = sum(1 for reader, _ in stalled if not reader.at_eof())
        assert server.failures("handshake_timeout") == 0  # the good client finished before any timeout fired
        # Every stalled one is closed once the handshake timeout fires (a generous bound against hanging forever).
        closing = (read_to_end(reader, STALL_TIMEOUT + 120) for reader, _ in stalled)
        ends = await asyncio.gather(*closing, return_exceptions=True)
        for _, writer in stalled:
            writer.close()
        assert all(end == b"" or isinstance(end, ConnectionResetError) for end in ends), set(map(repr, ends))
        return took, still_open

    with target(kind, pki, handshake_timeout=STALL_TIMEOUT) as server:
        base = server.fds()
        took, still_open = run(main(server, base))
        assert still_open == stalled_count
        run(until(lambda: server.failures("handshake_timeout") == stalled_count, "every timeout to be logged"))
        run(until(lambda: server.fds() <= base, "the stalled descriptors to be closed", timeout=60))
        server.alive()
    print(f"\n[{kind}] good handshake + echo in {took * 1000:.0f} ms with {stalled_count} stalled handshakes open")


# --- floods --------------------------------------------------------------------------------------------------------


async def connect_close_flood(port: int, count: int) -> None:
    async def one() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()

    results = await gather_limited([one] * count, 100)
    assert not [r for r in results if isinstance(r, BaseException)], results[:3]


async def handshake_flood(port: int, ctx: ssl.SSLContext, count: int) -> None:
    results = await gather_limited([lambda: echo_once(port, ctx)] * count, 50)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed, failed[:3]


@pytest.mark.parametrize("kind", KINDS)
def test_floods_leave_descriptors_and_memory_at_their_level(pki: PKI, kind: str) -> None:
    ctx = client(pki)
    with target(kind, pki) as server:
        base = server.fds()
        levels = []
        for _ in range(2):  # the first round warms up (allocator arenas, OpenSSL caches); the second must not grow
            run(connect_close_flood(server.port, 2000))
            run(handshake_flood(server.port, ctx, 500))
            run(until(lambda: server.fds() <= base, "the flood's descriptors to be closed", timeout=60))
            levels.append((server.fds(), server.rss()))
        run(echo_once(server.port, ctx))  # still serving
        server.alive()
    (fds0, rss0), (fds1, rss1) = levels
    print(f"\n[{kind}] after warm-up: {fds0} fds, {rss0 / MIB:.1f} MiB; after a second flood: {fds1}, {rss1 / MIB:.1f}")
    assert fds1 == fds0
    assert rss1 - rss0 < 4 * MIB


# --- garbage on the TLS port ------------------------------------------------------------------------------------


WORDS = {"plain-http": ("the client spoke plain HTTP to a TLS port", "use https://")}


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_gets_a_clean_close_and_words(pki: PKI, kind: str) -> None:
    cases = hostile(pki)

    async def send(port: int, data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        got = await read_to_end(reader)  # EOF (perhaps after an alert): no reset, no hang
        writer.close()
        return got

    with target(kind, pki) as server:
        for name, data in cases.items():
            answer = run(send(server.port, data))
            assert answer == b"" or answer[:1] == b"\x15", (name, answer)  # nothing, or a TLS alert
            code = str(EXPECTED[name])
            run(until(lambda code=code: server.failures(code) >= 1, f"the {code} line"))  # type: ignore[misc]
        truncated = client_hello(pki)[:100]
        run(send_and_close(server.port, truncated))
        run(until(lambda: server.failures("truncated_handshake") == 1, "the truncated_handshake line"))
        run(echo_once(server.port, client(pki)))
        server.alive()
        log = server.peer.output
    assert "unknown" not in re.findall(r"(?:TLSERR |handshake failed \()(\w+)", log)
    for sentence in WORDS["plain-http"]:
        assert sentence in log


async def send_and_close(port: int, data: bytes) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.close()


@requires("openssl")
@pytest.mark.parametrize("kind", KINDS)
def test_renegotiation_is_refused(pki: PKI, kind: str) -> None:
    with target(kind, pki) as server:
        argv = [tool("openssl"), "s_client", "-tls1_2", "-connect", f"127.0.0.1:{server.port}"]
        argv += ["-CAfile", str(pki.root_pem), "-servername", "localhost"]
        s_client = start(argv)
        try:
            s_client.write(b"hello\n")
            s_client.wait_for(r"^hello$", timeout=30)  # echoed: the handshake is done and the line was sent alone
            s_client.write(b"R\n")  # s_client's command to renegotiate
            s_client.wait_for("no renegotiation", timeout=30)
        finally:
            s_client.stop()
        run(until(lambda: bool(server.closed_with("renegotiation_refused")), "the renegotiation_refused line"))
        server.alive()


# --- framed mode -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_over_long_line_closes_the_connection_with_bounded_memory(pki: PKI, kind: str) -> None:
    async def flood_line(port: int) -> int:
        conn = await connect("127.0.0.1", port, context=client(pki), server_name="localhost")
        sent = 0
        chunk = b"x" * 65536
        with contextlib.suppress(ConnectionError, TLSError):
            while sent < 64 * MIB and not conn.closed:  # no newline: one endless line
                await conn.write(chunk)
                sent += len(chunk)
            await asyncio.wait_for(conn.read(), 30)
        conn.abort()
        return sent

    with target(kind, pki, frames="lines") as server:
        run(echo_once(server.port, client(pki), b"warm up\n"))
        before = server.rss()
        sent = run(flood_line(server.port))
        run(until(lambda: bool(server.closed_with("exceeds the maximum message size")), "the framing error line"))
        after = server.rss()
        run(echo_once(server.port, client(pki), b"still here\n"))
        server.alive()
    print(f"\n[{kind}] sent {sent / MIB:.1f} MiB without a newline; server RSS +{(after - before) / MIB:.1f} MiB")
    assert after - before < 8 * MIB  # the 1 MiB line limit, not the 64 MiB sent


# --- reload under load ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_reload_every_100ms_under_load_loses_nothing(pki: PKI, kind: str) -> None:
    ctx = client(pki)
    rng = random.Random(12)

    async def worker(port: int, stop: asyncio.Event, done: list[int]) -> None:
        while not stop.is_set():
            payload = rng.randbytes(rng.randrange(1, 256 * 1024))
            await echo_once(port, ctx, payload)  # readexactly + equality: byte-exact or it raises
            done.append(len(payload))

    async def reloader(server: Target, stop: asyncio.Event) -> None:
        while not stop.is_set():
            server.reload()
            await asyncio.sleep(0.1)

    async def main(server: Target) -> list[int]:
        stop, done = asyncio.Event(), []
        tasks = [asyncio.create_task(worker(server.port, stop, done)) for _ in range(8)]
        tasks.append(asyncio.create_task(reloader(server, stop)))
        await until(lambda: server.reloads() >= 30 and len(done) >= 100, "30 reloads and 100 transfers")
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)], results
        return done

    with target(kind, pki, reload=True) as server:
        done = run(main(server))
        reloads = server.reloads()
        server.alive()
        assert server.failures(r"\w+") == 0
    print(f"\n[{kind}] {len(done)} transfers ({sum(done) / MIB:.1f} MiB) byte-exact across {reloads} reloads")


# --- soak -------------------------------------------------------------------------------------------------------------


def sequential(port: int, ctx: ssl.SSLContext, count: int) -> None:
    """``count`` connections one after the other: handshake, a 4-byte echo, close (a blocking client: fast)."""
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"ping")
                got = b""
                while len(got) < 4 and (data := tls.recv(4 - len(got))):
                    got += data
                assert got == b"ping"


@pytest.mark.soak
@pytest.mark.timeout(max(300, SOAK // 20))  # a bound against hanging (20 connections/s at the least), not a speed
@pytest.mark.parametrize("kind", SOAK_KINDS)
def test_soak_sequential_connections_keep_memory_flat(pki: PKI, kind: str) -> None:
    ctx = client(pki)
    warm_up = min(2000, SOAK // 10)
    with target(kind, pki) as server:
        sequential(server.port, ctx, warm_up)
        before = server.rss()
        started = time.monotonic()
        sequential(server.port, ctx, SOAK - warm_up)
        took = time.monotonic() - started
        after = server.rss()
        server.alive()
    print(
        f"\n[{kind}] soak: {SOAK} sequential connections; RSS {before / MIB:.1f} -> {after / MIB:.1f} MiB after "
        f"{warm_up} of warm-up ({(SOAK - warm_up) / took:.0f} connections/s)"
    )
    assert after - before < 5 * MIB
