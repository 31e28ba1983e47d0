"""Helpers shared by the tunnel tests: plaintext targets that count what reaches them, and clients."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlskit.net.server import loop_factory
from tlskit.tools.tunnel import TunnelGroup, TunnelSpec

if TYPE_CHECKING:
    from conftest import PKI


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a test's coroutine on tlskit's default loop, bounded."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(asyncio.wait_for(coro, 120))


@dataclass
class Target:
    """A plaintext TCP (or Unix socket) server in the test's event loop.

    ``mode``: ``echo`` (back at once; FIN passed back after the echo), ``reply`` (reads to EOF, then answers
    ``got N bytes sha256 HEX`` and closes), ``hold`` (reads nothing until :meth:`release`, then behaves like
    ``reply``).  ``connections`` counts accepted connections; ``received`` the bytes read.
    """

    mode: str = "echo"
    connections: int = 0
    received: int = 0
    first_bytes: list[bytes] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        digest = hashlib.sha256()
        total = 0
        first = b""
        try:
            if self.mode == "hold":
                await self.released.wait()
            while data := await reader.read(256 * 1024):
                total += len(data)
                self.received += len(data)
                if len(first) < 256:
                    first += data[: 256 - len(first)]
                digest.update(data)
                if self.mode == "echo":
                    writer.write(data)
                    await writer.drain()
            self.first_bytes.append(first)
            if self.mode != "echo":
                writer.write(f"got {total} bytes sha256 {digest.hexdigest()}".encode())
            if writer.can_write_eof():
                writer.write_eof()
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def release(self) -> None:
        self.released.set()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def target(mode: str = "echo", *, unix: Path | None = None) -> AsyncIterator[Target]:
    t = Target(mode)
    if unix is not None:
        t.server = await asyncio.start_unix_server(t.handle, str(unix))
    else:
        t.server = await asyncio.start_server(t.handle, "127.0.0.1", 0)
    try:
        yield t
    finally:
        t.release()
        t.server.close()


@contextlib.asynccontextmanager
async def tunnels(*specs: TunnelSpec, watch_interval: float | None = None) -> AsyncIterator[TunnelGroup]:
    group = TunnelGroup(specs, watch_interval=watch_interval)
    await group.start()
    try:
        yield group
    finally:
        await group.close(deadline=2.0)


def port_of(group: TunnelGroup, index: int = 0) -> int:
    port: int = group.tunnels[index].address[1]
    return port


async def tls_exchange(port: int, ctx: ssl.SSLContext, data: bytes = b"ping") -> tuple[bytes, str | None]:
    """Connect with tlskit, send ``data``, send close_notify (half-close), read to the end.

    Returns (bytes read, the error's code or class if the connection failed, else None).
    """
    from tlskit import TLSError, connect

    got = b""
    try:
        conn = await connect("127.0.0.1", port, context=ctx, server_name="localhost")
    except TLSError as exc:
        return got, exc.code
    except OSError as exc:
        return got, type(exc).__name__
    try:
        await conn.write(data)
        conn.write_eof()
        while chunk := await conn.read():
            got += chunk
    except TLSError as exc:
        return got, exc.code
    except OSError as exc:
        return got, type(exc).__name__
    finally:
        await conn.close(timeout=2.0)
    return got, None


def plain_exchange(port: int, data: bytes, *, half_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


@contextlib.contextmanager
def in_thread(fn: object) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=fn, daemon=True)  # type: ignore[arg-type]
    thread.start()
    try:
        yield thread
    finally:
        thread.join(30)


@dataclass
class LoadResult:
    done: int = 0
    failures: list[str] = field(default_factory=list)
    serials: set[int] = field(default_factory=set)
    after_reload: list[int] = field(default_factory=list)
    """For each reload: the connections begun after it (and before the next) that completed."""


async def reload_under_load(
    pki: PKI, tmp_path: Path, *, clients: int, reloads: int, interval: float, size: int, watch_interval: float
) -> LoadResult:
    """``clients`` keep connecting (handshake, echo ``size`` bytes, close) through a server tunnel while it is
    reloaded ``reloads`` times, every ``interval`` seconds: by ``reload()``, and by renewed files on disk (watched).
    """
    from tlskit import TLSError, client_context, connect

    cert, key = tmp_path / "live.pem", tmp_path / "live-key.pem"
    cert.write_bytes(pki.server_pem.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())
    result = LoadResult()
    async with target("echo") as t:
        spec = TunnelSpec(mode="server", listen="127.0.0.1:0", target=f"127.0.0.1:{t.port}", cert=cert, key=key)
        async with tunnels(spec, watch_interval=watch_interval) as group:
            port = port_of(group)
            stop = asyncio.Event()
            payload = b"x" * size
            completed = asyncio.Event()  # set when a connection of the current reload's generation completes

            async def load() -> None:
                ctx = client_context(ca=pki.root_pem)
                while not stop.is_set():
                    generation = len(result.after_reload)
                    try:
                        conn = await connect("127.0.0.1", port, context=ctx, server_name="localhost")
                        leaf = conn.peer_certificate
                        assert leaf is not None
                        result.serials.add(leaf.serial_number)
                        await conn.write(payload)
                        assert await conn.readexactly(size) == payload
                        await conn.close()
                        result.done += 1
                        if generation and generation == len(result.after_reload):
                            result.after_reload[-1] += 1
                            completed.set()
                    except (OSError, TLSError, AssertionError, asyncio.IncompleteReadError) as exc:
                        result.failures.append(repr(exc))

            tasks = [asyncio.create_task(load()) for _ in range(clients)]
            for i in range(reloads):
                await asyncio.sleep(interval)
                if i % 2:
                    group.reload()
                else:  # a renewal: new files written in place of the old (atomically, as tools do)
                    pki.ca.issue(["localhost"]).write(tmp_path / f"new{i}")
                    os.replace(tmp_path / f"new{i}-key.pem", key)
                    os.replace(tmp_path / f"new{i}.pem", cert)
                completed.clear()
                result.after_reload.append(0)
                # Served after this reload?  Waited for (generously bounded), not expected within the interval.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(completed.wait(), 30)
            await asyncio.sleep(2 * watch_interval + 0.1)
            stop.set()
            await asyncio.gather(*tasks)
            # A broken file keeps the old configuration, and the tunnel keeps serving.
            key.write_text("not a key")
            assert group.tunnels[0].reload() is False
            _, error = await tls_exchange(port, client_context(ca=pki.root_pem))
            assert error is None, error
    return result
