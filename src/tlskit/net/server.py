"""start_server: a TLS server in the style of Node's ``tls.createServer``, on :class:`TLSConnection`.

Per-connection timers would cost a heap entry each, so deadlines are swept instead: connections waiting for
their handshake sit in an insertion-ordered dict (same timeout for all, so the oldest expire first and a sweep
stops at the first one still in time), and the idle timeout marks connections on every sweep and closes those
untouched for two sweeps (so one closes between ``idle_timeout`` and 1.5x that).

``workers=N`` forks N processes sharing the port (see :mod:`tlskit.net.workers`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from ..errors import FrameError, InputError, TLSError
from ..pki.problems import handshake_timeout
from .connection import TLSConnection
from .engine import EngineState, install_sni_capture
from .explain import network_error, problem_error
from .policy import PeerPolicy, validate_policy
from .workers import WorkerPool

__all__ = [
    "EVENT_LOOP_ENV",
    "Handler",
    "Server",
    "TLSErrorHook",
    "echo",
    "format_peer",
    "loop_factory",
    "run",
    "start_server",
]

log = logging.getLogger("tlskit.server")

Handler = Callable[[TLSConnection], Coroutine[Any, Any, Any]]
TLSErrorHook = Callable[[TLSError, Any], Any]
T = TypeVar("T")


def format_peer(address: Any) -> str:
    """``127.0.0.1:443`` / ``[::1]:443`` for a socket address tuple."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


EVENT_LOOP_ENV = "TLSKIT_EVENT_LOOP"
"""``asyncio`` or ``uvloop``: the event loop :func:`loop_factory` picks when not told (the CLI's loop)."""


def loop_factory(*, use_uvloop: bool | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """An event loop factory: uvloop's (a dependency on Linux and macOS) unless ``use_uvloop=False``.

    Without ``use_uvloop``, ``TLSKIT_EVENT_LOOP=asyncio`` (or ``uvloop``) in the environment decides.
    """
    if use_uvloop is None:
        chosen = os.environ.get(EVENT_LOOP_ENV, "").strip().lower()
        if chosen not in ("", "asyncio", "uvloop"):
            raise InputError(f"{EVENT_LOOP_ENV}={chosen!r} is not an event loop", fix="set it to asyncio or uvloop")
        use_uvloop = {"asyncio": False, "uvloop": True}.get(chosen)
    if use_uvloop is not False:
        try:
            import uvloop
        except ImportError:
            if use_uvloop:
                raise InputError(
                    "uvloop is not installed", fix="pip install uvloop (Windows has none: use use_uvloop=False)"
                ) from None
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """``asyncio.run(main)`` on uvloop when available (see :func:`loop_factory`)."""
    try:
        factory = loop_factory(use_uvloop=use_uvloop)
    except BaseException:
        main.close()  # never to run: no "coroutine ... was never awaited" warning after the error
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


class _Refused(asyncio.Protocol):
    """Stands in for a connection over the cap: closes it at once, before any TLS work."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()


class _Unchanged(enum.Enum):
    UNCHANGED = enum.auto()


_UNCHANGED = _Unchanged.UNCHANGED


class Server:
    """A running TLS server (see :func:`start_server`).  Use ``async with`` or call :meth:`close`."""

    def __init__(
        self,
        handler: Handler,
        *,
        context: ssl.SSLContext,
        policy: PeerPolicy | None,
        handshake_timeout: float,
        max_connections: int | None,
        idle_timeout: float | None,
        on_tls_error: TLSErrorHook | None,
    ) -> None:
        self._handler = handler
        self._context = context
        self._policy = policy
        self._handshake_timeout = handshake_timeout
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._on_tls_error = on_tls_error
        self._loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._conns: set[TLSConnection] = set()
        self._handshaking: dict[TLSConnection, float] = {}
        self._handshake_sweeper: asyncio.TimerHandle | None = None
        self._idle_sweeper: asyncio.TimerHandle | None = None
        self._closing = False
        self._closed = asyncio.Event()
        self._drained: asyncio.Event | None = None
        self._refused_logged = 0.0
        self._workers: WorkerPool | None = None  # in the parent of workers=N
        self._addresses: list[Any] = []
        self.refused = 0
        """Connections refused because of ``max_connections``."""

    # -- information -----------------------------------------------------------------------------------------

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (with workers: the parent's placeholders holding the port)."""
        if self._workers is not None:
            return list(self._workers.sockets)
        return list(self._server.sockets) if self._server is not None else []

    @property
    def addresses(self) -> list[Any]:
        """The addresses listened on (still known after :meth:`close`)."""
        return list(self._addresses)

    @property
    def port(self) -> int:
        """The port the server listens on (the OS's pick for ``port=0``)."""
        port: int = self.addresses[0][1]
        return port

    @property
    def context(self) -> ssl.SSLContext:
        return self._context

    @property
    def policy(self) -> PeerPolicy | None:
        """The peer policy every new connection is judged by (see :class:`~tlskit.net.policy.PeerPolicy`)."""
        return self._policy

    @property
    def connection_count(self) -> int:
        """Open connections in this process (handshaking included)."""
        return len(self._conns)

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers (empty with ``workers=1``)."""
        return [] if self._workers is None else list(self._workers.pids)

    def is_serving(self) -> bool:
        return not self._closing

    # -- starting --------------------------------------------------------------------------------------------

    async def _listen(self, host: str | None, port: int, *, backlog: int, reuse_port: bool) -> None:
        install_sni_capture(self._context)
        try:
            self._server = await self._loop.create_server(
                self._make_connection, host, port, backlog=backlog, reuse_port=reuse_port or None
            )
        except OSError as exc:  # a busy or privileged port, an address not of this machine: words, not errno
            raise network_error(exc, action="listen", host=host, port=port) from exc
        self._addresses = [s.getsockname() for s in self._server.sockets]
        if self._idle_timeout:
            self._schedule_idle_sweep()

    def _make_connection(self) -> asyncio.BaseProtocol:
        limit = self._max_connections
        if self._closing or (limit is not None and len(self._conns) >= limit):
            self.refused += 1
            now = time.monotonic()
            if now - self._refused_logged >= 1.0:  # one line per second, not one per refused peer
                self._refused_logged = now
                log.warning("connection limit of %s reached: refusing new connections (%d so far)", limit, self.refused)
            return _Refused()
        return TLSConnection(self._context, server_side=True, listener=self, policy=self._policy, loop=self._loop)

    async def _worker(self, host: str | None, port: int, backlog: int) -> Server:
        """In a forked worker: a server like this one, listening on the shared port (SO_REUSEPORT).

        Called after the fork, so it reads the context and policy current at that moment (a reload forks anew).
        """
        server = Server(
            self._handler,
            context=self._context,
            policy=self._policy,
            handshake_timeout=self._handshake_timeout,
            max_connections=self._max_connections,
            idle_timeout=self._idle_timeout,
            on_tls_error=self._on_tls_error,
        )
        await server._listen(host, port, backlog=backlog, reuse_port=True)
        return server

    # -- ConnectionListener ----------------------------------------------------------------------------------

    def tls_connection_made(self, conn: TLSConnection) -> None:
        self._conns.add(conn)
        self._handshaking[conn] = self._loop.time() + self._handshake_timeout
        if self._handshake_sweeper is None:
            self._schedule_handshake_sweep()

    def tls_handshake_done(self, conn: TLSConnection) -> None:
        self._handshaking.pop(conn, None)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s: %s %s, authorized=%s%s", format_peer(conn.remote_address), conn.protocol,
                conn.cipher.name if conn.cipher else "-", conn.authorized,
                f" ({conn.authorization_error})" if conn.authorization_error else "",
            )  # fmt: skip
        try:
            handler = self._handler(conn)
        except Exception:
            log.exception("%s: handler could not start", format_peer(conn.remote_address))
            conn.start_close()
            return
        conn._task = self._loop.create_task(self._serve(conn, handler))

    def tls_handshake_failed(self, conn: TLSConnection, error: TLSError) -> None:
        self._handshaking.pop(conn, None)
        self._report(error, conn)

    def tls_connection_lost(self, conn: TLSConnection) -> None:
        self._conns.discard(conn)
        self._handshaking.pop(conn, None)
        if not self._conns and self._drained is not None:
            self._drained.set()

    def _report(self, error: TLSError, conn: TLSConnection) -> None:
        peer = conn.remote_address
        # ``tls_error`` lets a program that reports failures itself (on_tls_error) filter these records out.
        if conn.refused:
            log.warning("refused %s: %s", format_peer(peer), error, extra={"tls_error": error})
        else:
            log.warning("TLS handshake with %s failed: %s", format_peer(peer), error, extra={"tls_error": error})
        if self._on_tls_error is not None:
            try:
                self._on_tls_error(error, peer)
            except Exception:
                log.exception("on_tls_error hook failed")

    async def _serve(self, conn: TLSConnection, handler: Coroutine[Any, Any, Any]) -> None:
        """Run one connection's handler, then close the connection.

        One wrapper coroutine instead of a done-callback: that would cost every idle connection a
        ``functools.partial``, its argument tuple, a bound method and a copied ``contextvars.Context``.
        """
        try:
            await handler
        except Exception as exc:
            _log_handler_error(conn, exc)
        finally:
            conn._task = None
            conn.start_close()

    # -- timeouts --------------------------------------------------------------------------------------------

    def _schedule_handshake_sweep(self) -> None:
        interval = min(1.0, max(0.05, self._handshake_timeout / 4))
        self._handshake_sweeper = self._loop.call_later(interval, self._sweep_handshakes)

    def _sweep_handshakes(self) -> None:
        self._handshake_sweeper = None
        now = self._loop.time()
        expired = []
        for conn, deadline in self._handshaking.items():
            if deadline > now:
                break  # insertion order is deadline order
            expired.append(conn)
        for conn in expired:
            del self._handshaking[conn]
            problem = handshake_timeout(self._handshake_timeout, received_any=conn.received_any)
            self._report(problem_error(problem), conn)
            conn.abort()
        if self._handshaking:
            self._schedule_handshake_sweep()

    def _schedule_idle_sweep(self) -> None:
        assert self._idle_timeout
        self._idle_sweeper = self._loop.call_later(self._idle_timeout / 2, self._sweep_idle)

    def _sweep_idle(self) -> None:
        for conn in list(self._conns):
            if conn.state is EngineState.HANDSHAKING:
                continue
            conn._idle += 1
            if conn._idle == 2:
                log.info("%s: closing idle connection (%g s)", format_peer(conn.remote_address), self._idle_timeout)
                conn.start_close()
            elif conn._idle > 2:
                conn.abort()  # did not close gracefully within a sweep
        if not self._closing:
            self._schedule_idle_sweep()

    # -- reload and shutdown ---------------------------------------------------------------------------------

    def reload(self, context: ssl.SSLContext, *, policy: PeerPolicy | _Unchanged | None = _UNCHANGED) -> None:
        """Use ``context`` (and ``policy``, if given) for new handshakes; open connections keep theirs.

        With workers, new workers are started with them and the old ones retire gracefully.
        """
        _check_server_context(context)
        new_policy = self._policy if isinstance(policy, _Unchanged) else policy
        new_policy = validate_policy(new_policy, context)
        self._context, self._policy = context, new_policy
        if self._workers is not None:
            self._workers.reload()
        else:
            install_sni_capture(context)
        log.info("reloaded TLS context")

    async def close(self, *, deadline: float = 10.0) -> None:
        """Stop accepting, let connections finish for up to ``deadline`` seconds, then close the rest."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        if self._workers is not None:
            await self._workers.close(deadline=deadline)
            self._closed.set()
            return
        if self._server is not None:
            self._server.close()
        if self._conns:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), deadline)
            except TimeoutError:
                log.info("closing %d connections still open after %g s", len(self._conns), deadline)
        remaining = list(self._conns)
        for conn in remaining:
            if conn._task is not None:
                conn._task.cancel()
        # close_notify to all at once; whoever does not finish closing within a second is aborted.
        await asyncio.gather(*(conn.close(timeout=1.0) for conn in remaining))
        for timer in (self._handshake_sweeper, self._idle_sweeper):
            if timer is not None:
                timer.cancel()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def serve_forever(self) -> None:
        """Wait until the server is closed (by :meth:`close`, or a signal: :meth:`install_signal_handlers`)."""
        await self._closed.wait()

    def install_signal_handlers(
        self, *, reload: Callable[[], ssl.SSLContext] | None = None, deadline: float = 10.0
    ) -> None:
        """SIGTERM/SIGINT close gracefully; SIGHUP calls ``reload()`` for a new context, if given."""
        loop = self._loop

        def stop() -> None:
            loop.create_task(self.close(deadline=deadline))

        def hup() -> None:
            assert reload is not None
            try:
                self.reload(reload())
            except Exception as exc:
                log.error("reload failed, keeping the current context: %s", exc)

        loop.add_signal_handler(signal.SIGTERM, stop)
        loop.add_signal_handler(signal.SIGINT, stop)
        if reload is not None:
            loop.add_signal_handler(signal.SIGHUP, hup)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _Echo:
    """The :class:`~tlskit.net.connection.PlaintextSink` of :func:`echo`: decrypted records straight back."""

    __slots__ = ("conn", "done")

    def __init__(self, conn: TLSConnection, done: asyncio.Future[None]) -> None:
        self.conn, self.done = conn, done

    def tls_data(self, chunks: list[bytes]) -> None:
        try:
            self.conn.writelines_nowait(chunks)
        except (OSError, TLSError) as exc:  # closed meanwhile: the handler ends as a read would
            self._finish(exc)

    def tls_writing(self, paused: bool) -> None:
        # The peer does not read as fast as it writes: stop reading until what we owe it has gone out.
        if paused:
            self.conn.pause_reading()
        else:
            self.conn.resume_reading()

    def tls_eof(self) -> None:
        self._finish(None)

    def tls_lost(self, exc: BaseException | None) -> None:
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        # As read() does: a TLS failure (a bad record, a refused renegotiation) is raised to the handler's
        # caller, which logs why; a peer that merely went away is an ordinary end.
        if self.done.done():
            return
        if exc is not None and not isinstance(exc, ConnectionError):
            self.done.set_exception(exc)
        else:
            self.done.set_result(None)


async def echo(conn: TLSConnection) -> None:
    """A ready-made handler: send back every byte the peer sends, until it finishes (``tlskit serve --echo``).

    Records are re-encrypted as they are decrypted, from the event loop's callbacks, with backpressure (reading
    pauses while the peer does not take what it is sent); no coroutine runs per chunk.
    """
    done = conn._event_loop().create_future()
    conn.attach(_Echo(conn, done))
    await done


def _log_handler_error(conn: TLSConnection, exc: Exception) -> None:
    peer = format_peer(conn.remote_address)
    if isinstance(exc, FrameError):
        log.warning("%s: closing connection: %s", peer, exc)
    elif isinstance(exc, TLSError):
        log.warning("%s: TLS error: %s", peer, exc)
    elif isinstance(exc, ConnectionError):
        log.info("%s: connection lost: %s", peer, exc)
    else:
        log.error("%s: handler raised %s", peer, type(exc).__name__, exc_info=exc)


def _check_server_context(context: Any) -> None:
    if not isinstance(context, ssl.SSLContext):
        raise InputError(
            f"context must be an ssl.SSLContext, not {type(context).__name__}", fix="use tlskit.server_context()"
        )
    if context.check_hostname or context.protocol == ssl.PROTOCOL_TLS_CLIENT:
        raise InputError("context is a client context", fix="build it with tlskit.server_context()")


async def start_server(
    handler: Handler,
    host: str | None = None,
    port: int = 0,
    *,
    context: ssl.SSLContext,
    policy: PeerPolicy | None = None,
    handshake_timeout: float = 10.0,
    max_connections: int | None = None,
    idle_timeout: float | None = None,
    on_tls_error: TLSErrorHook | None = None,
    workers: int = 1,
    backlog: int = 1024,
    reuse_port: bool = False,
) -> Server:
    """Listen on ``host:port`` and run ``await handler(conn)`` for every connection after its handshake.

    - ``policy``: the :class:`~tlskit.net.policy.PeerPolicy` (allow-lists, pins, a check) every client is judged
      by after its handshake; a refused client is closed before the handler runs and reported like a failed
      handshake.  An allow-list or pins need a context that asks for client certificates.
    - ``handshake_timeout``: connections that do not finish the handshake in time are dropped.
    - ``max_connections``: connections beyond it are closed at once, before any TLS work.
    - ``idle_timeout``: connections with no traffic either way for that long are closed.
    - ``on_tls_error(error, peer_address)``: called with a :class:`~tlskit.errors.TLSError` for each failed
      handshake (Node's ``tlsClientError``); each is also logged as one line on the ``tlskit.server`` logger.
    - ``workers``: N > 1 forks N worker processes sharing the port (see :mod:`tlskit.net.workers`).

    When the handler returns the connection is closed with close_notify; an exception it raises is logged and
    closes only that connection.
    """
    _check_server_context(context)
    policy = validate_policy(policy, context)
    if handshake_timeout <= 0:
        raise InputError("handshake_timeout must be positive", fix="pass a number of seconds such as 10")
    if idle_timeout is not None and idle_timeout <= 0:
        raise InputError("idle_timeout must be positive or None", fix="pass a number of seconds, or None")
    if max_connections is not None and max_connections < 1:
        raise InputError("max_connections must be at least 1", fix="pass a positive number, or None")
    if workers < 1:
        raise InputError("workers must be at least 1", fix="pass workers=1 for a single process")
    server = Server(
        handler,
        context=context,
        policy=policy,
        handshake_timeout=handshake_timeout,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        on_tls_error=on_tls_error,
    )
    if workers == 1:
        await server._listen(host, port, backlog=backlog, reuse_port=reuse_port)
        return server
    server._workers = await WorkerPool.start(server._worker, host, port, count=workers, backlog=backlog)
    server._addresses = [s.getsockname() for s in server._workers.sockets]
    return server
