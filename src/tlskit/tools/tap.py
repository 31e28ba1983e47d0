"""``tlskit tap``: a transparent TCP relay that shows what an eavesdropper on the path sees.

Put it between a client and a server (``--listen`` where the client connects, ``--to`` the real server).
Every byte is relayed unchanged in both directions; a half-close (FIN) on one side is passed on as a
half-close to the other, and both sides are closed once both directions ended.  Buffering is bounded by
the stream reader's limit and the writer's high-water mark (``drain``), so a slow side slows its peer
instead of filling memory.

Observation happens beside the relay, never in its way: bytes are written on before they are parsed, TLS
bodies after the handshake are skipped by arithmetic, and a fault in the observer only stops the display.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec

from ..errors import InputError, TlskitError
from ..net.explain import network_error
from ..net.server import run
from .records import Direction
from .tap_observer import ConnectionObserver, Observation, PayloadView, Sink, TapOptions

__all__ = [
    "Endpoint",
    "Observation",
    "PayloadView",
    "Sink",
    "TapOptions",
    "TapServer",
    "parse_endpoint",
    "run_tap",
    "start_tap",
]

P = ParamSpec("P")

#: Read size and stream-reader limit: large enough that a bulk transfer costs few loop iterations.
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Endpoint:
    """A TCP host and port; prints as ``host:port`` or ``[v6]:port``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str, *, default_host: str | None = None, what: str = "address") -> Endpoint:
    """Parse ``HOST:PORT``, ``[V6]:PORT`` or (with ``default_host``) a bare ``PORT``."""
    raw = text.strip()
    host: str | None
    if raw.startswith("["):
        close = raw.find("]")
        if close < 0 or raw[close + 1 : close + 2] != ":":
            raise InputError(f"{what} {text!r} is not [IPv6]:PORT", fix="write it like [::1]:8443")
        host, port_text = raw[1:close], raw[close + 2 :]
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    elif ":" not in raw and default_host is not None:
        host, port_text = None, raw
    elif ":" not in raw:
        raise InputError(f"{what} {text!r} is not HOST:PORT", fix="write it like localhost:8443 or [::1]:8443")
    else:
        raise InputError(f"{what} {text!r} is ambiguous", fix="put an IPv6 address in brackets: [::1]:8443")
    host = host or default_host
    if not host:
        raise InputError(f"{what} {text!r} has no host", fix="write it as HOST:PORT")
    if not port_text.isdigit() or int(port_text) > 65535:
        low = 0 if default_host is not None else 1  # port 0 ("any free one") only makes sense for listening
        raise InputError(f"{what} {text!r} has no valid port", fix=f"give a port number from {low} to 65535")
    return Endpoint(host, int(port_text))


def _address(sockname: object) -> str:
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(Endpoint(str(sockname[0]), int(sockname[1])))
    return str(sockname)


def _os_error(exc: OSError) -> str:
    """``Connection refused`` rather than asyncio's ``[Errno 111] Connect call failed ('127.0.0.1', 1)``."""
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


class _Connection:
    """One relayed connection: two pumps, their observer, and the timer that flushes idle bursts."""

    def __init__(
        self,
        observer: ConnectionObserver,
        writers: list[asyncio.StreamWriter],
        *,
        on_output_error: Callable[[Exception], None],
    ) -> None:
        self.observer: ConnectionObserver | None = observer
        self.writers = writers
        self.aborted: str | None = None
        self._on_output_error = on_output_error
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def observe(
        self, method: Callable[Concatenate[ConnectionObserver, P], object], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Call an observer method; if the output fails (say a closed stdout pipe), stop observing, keep relaying."""
        if self.observer is None:
            return
        try:
            method(self.observer, *args, **kwargs)
        except Exception as exc:  # the sink's failure must not become the relayed connection's failure
            self.observer = None
            self._on_output_error(exc)

    def _schedule(self) -> None:
        delay = self.observer.next_flush_in() if self.observer is not None else None
        if delay is not None:
            self._timer = self._loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.observe(ConnectionObserver.tick)
        self._schedule()

    def abort(self, reason: str) -> None:
        """Drop both sides at once (a reset on one side is passed on as a reset)."""
        if self.aborted is None:
            self.aborted = reason
        for writer in self.writers:
            writer.transport.abort()

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction) -> None:
        """Relay one direction until EOF, then pass the half-close on."""
        error: str | None = None
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)  # relay first, look second
                self.observe(ConnectionObserver.data, direction, data)
                if self._timer is None:
                    self._schedule()
                await writer.drain()
        except OSError as exc:
            error = _os_error(exc)
            self.abort(f"{direction}: {error}")
        self.observe(ConnectionObserver.ended, direction, error=error or self.aborted)
        if not writer.is_closing() and writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()

    async def finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for writer in self.writers:
            writer.close()
        for writer in self.writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self.observe(ConnectionObserver.closed)


class TapServer:
    """A listening tap.  ``listen`` is the actual address (port 0 resolved); use :meth:`close` to stop."""

    def __init__(self, *, target: Endpoint, sink: Sink, options: TapOptions) -> None:
        self.target = target
        self.listen = Endpoint("", 0)
        self._server: asyncio.Server | None = None
        self._sink = sink
        self._options = options
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[_Connection] = set()
        #: The first exception raised by the sink; connections keep being relayed, unobserved.
        self.output_error: Exception | None = None
        self.output_failed = asyncio.Event()

    def _output_error(self, exc: Exception) -> None:
        if self.output_error is None:
            self.output_error = exc
        self.output_failed.set()

    async def _start(self, host: str, port: int) -> None:
        # Bind first, serve second: no connection can arrive before the tap is fully set up.
        self._server = await asyncio.start_server(self._handle, host, port, limit=_CHUNK, start_serving=False)
        sock_host, sock_port = self._server.sockets[0].getsockname()[:2]
        self.listen = Endpoint(sock_host, sock_port)
        await self._server.start_serving()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self, *, grace: float = 2.0) -> None:
        """Stop accepting, give open connections ``grace`` seconds to end, then drop them (verdicts still print)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            if pending:
                for conn in list(self._connections):
                    conn.abort("the tap was stopped")
                await asyncio.wait(pending, timeout=grace)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        observer = ConnectionObserver(next(self._ids), self._sink, options=self._options)
        conn = _Connection(observer, [client_writer], on_output_error=self._output_error)
        self._connections.add(conn)
        client = _address(client_writer.get_extra_info("peername"))
        conn.observe(ConnectionObserver.opened, client=client, upstream=str(self.target))
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target.host, self.target.port, limit=_CHUNK),
                    self._options.connect_timeout,
                )
            except OSError as exc:  # TimeoutError included
                timeout = f"no answer in {self._options.connect_timeout:g} s"
                why = timeout if isinstance(exc, TimeoutError) else _os_error(exc)
                conn.observe(ConnectionObserver.connect_failed, f"cannot connect to {self.target}: {why}")
                client_writer.transport.abort()
                return
            conn.writers.append(upstream_writer)
            await asyncio.gather(
                conn.pump(client_reader, upstream_writer, Direction.CLIENT_TO_SERVER),
                conn.pump(upstream_reader, client_writer, Direction.SERVER_TO_CLIENT),
            )
        finally:
            self._connections.discard(conn)
            await conn.finish()


async def start_tap(*, listen: Endpoint, target: Endpoint, sink: Sink, options: TapOptions | None = None) -> TapServer:
    """Listen on ``listen`` and relay every connection to ``target``, reporting observations to ``sink``."""
    loop = asyncio.get_running_loop()
    try:
        await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise network_error(exc, action="connect", host=target.host, port=target.port) from exc
    try:
        # One socket only: "localhost" may resolve to two addresses, and with port 0 each would get its own.
        infos = await loop.getaddrinfo(listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        host = str(infos[0][4][0])
    except OSError as exc:
        raise network_error(exc, action="listen", host=listen.host, port=listen.port) from exc
    tap = TapServer(target=target, sink=sink, options=options or TapOptions())
    try:
        await tap._start(host, listen.port)
    except OSError as exc:
        raise network_error(exc, action="listen", host=host, port=listen.port) from exc
    return tap


def run_tap(
    *,
    listen: Endpoint,
    target: Endpoint,
    sink: Sink,
    options: TapOptions | None = None,
    on_ready: Callable[[TapServer], None] | None = None,
) -> None:
    """Run a tap until SIGINT or SIGTERM, then close it (open connections get their verdicts)."""

    async def main() -> None:
        tap = await start_tap(listen=listen, target=target, sink=sink, options=options)
        if on_ready is not None:
            on_ready(tap)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' proactor loop
                loop.add_signal_handler(sig, stop.set)
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(tap.output_failed.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await tap.close()
        if tap.output_error is not None:
            raise TlskitError(
                f"cannot write the tap's output ({tap.output_error})", fix="check where standard output goes"
            ) from tap.output_error

    run(main())
