"""TLS clients: :func:`connect` (Node's ``tls.connect``) and a :class:`ReconnectingClient` that resumes sessions."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..errors import InputError, TLSError
from .connection import TLSConnection
from .context import client_context
from .explain import network_error
from .policy import PeerPolicy, validate_policy

__all__ = ["Jitter", "ReconnectingClient", "connect"]

log = logging.getLogger("tlskit.client")


def _client_setup(
    context: ssl.SSLContext | None, policy: PeerPolicy | None
) -> tuple[ssl.SSLContext, PeerPolicy | None]:
    """The context (tlskit's default on the system trust store if None) and the policy, both checked."""
    ctx = client_context() if context is None else context
    if not isinstance(ctx, ssl.SSLContext):
        raise InputError(f"context must be an ssl.SSLContext, not {type(ctx).__name__}", fix="use client_context()")
    if ctx.protocol == ssl.PROTOCOL_TLS_SERVER:
        raise InputError("context is a server context", fix="build it with tlskit.client_context()")
    return ctx, validate_policy(policy, ctx)


async def connect(
    host: str,
    port: int,
    *,
    context: ssl.SSLContext | None = None,
    policy: PeerPolicy | None = None,
    server_name: str | None = None,
    session: ssl.SSLSession | None = None,
    handshake_timeout: float = 10.0,
) -> TLSConnection:
    """Connect and finish the TLS handshake; return the :class:`TLSConnection`.

    The certificate is checked against ``server_name`` (default ``host``), which is also sent as SNI.  Pass
    ``session`` (a previous connection's :attr:`~TLSConnection.session`) to resume.  ``policy`` (a
    :class:`~tlskit.net.policy.PeerPolicy`: pins, an allow-list, a check) is applied after the handshake, with
    verification on or off; a refused server is closed before any application byte is sent.

    Raises :class:`~tlskit.errors.TLSVerificationError` if the server's certificate does not verify or the
    policy refuses the server, :class:`~tlskit.errors.TLSError` for other TLS failures and
    :class:`~tlskit.errors.NetworkError` (an ``OSError``) if no TCP connection can be made.
    """
    ctx, policy = _client_setup(context, policy)
    conn = TLSConnection(ctx, server_side=False, server_hostname=server_name or host, session=session, policy=policy)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(handshake_timeout):
            try:
                await loop.create_connection(lambda: conn, host, port)
            except OSError as exc:  # refused, unreachable, unknown host: words, not errno
                raise network_error(exc, action="connect", host=host, port=port) from exc
            await conn.wait_handshake()
    except TimeoutError as exc:
        conn.abort()
        raise TLSError(
            f"TLS handshake with {host}:{port} timed out after {handshake_timeout:g} s",
            code="handshake_timeout",
            fix="check that the server speaks TLS on this port",
        ) from exc
    except BaseException:
        conn.abort()
        raise
    return conn


class Jitter(enum.Enum):
    """How reconnect delays are randomized (AWS "Exponential Backoff And Jitter")."""

    FULL = "full"  # uniform in [0, backoff]: spreads a herd of clients best
    EQUAL = "equal"  # backoff/2 + uniform in [0, backoff/2]: never reconnects immediately
    NONE = "none"


class ReconnectingClient:
    """Keeps a connection to ``host:port``: reconnects with exponential backoff and jitter, resuming sessions.

    Iterate to get each new connection (``async for conn in client``) and use it until it ends; asking for
    the next one closes the current one (if still open), waits a jittered ``initial_backoff`` and reconnects.
    Or call :meth:`run` with a handler.  :meth:`stop` ends both.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext | None = None,
        policy: PeerPolicy | None = None,
        server_name: str | None = None,
        initial_backoff: float = 0.1,
        max_backoff: float = 30.0,
        jitter: Jitter = Jitter.FULL,
        handshake_timeout: float = 10.0,
        max_attempts: int | None = None,
        on_connect: Callable[[TLSConnection], Any] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if initial_backoff <= 0 or max_backoff < initial_backoff:
            raise InputError("backoff must satisfy 0 < initial_backoff <= max_backoff", fix="adjust the backoff")
        self.host, self.port = host, port
        self._context, self._policy = _client_setup(context, policy)
        self._server_name = server_name
        self._initial = initial_backoff
        self._max = max_backoff
        self._jitter = jitter
        self._handshake_timeout = handshake_timeout
        self._max_attempts = max_attempts
        self._on_connect = on_connect
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._stopping = asyncio.Event()
        self.current: TLSConnection | None = None
        """The live connection, if any."""
        self.session: ssl.SSLSession | None = None
        """The session offered on the next connect (the last connection's)."""
        self.connects = 0
        """Successful connections so far."""

    def _delay(self, failures: int) -> float:
        backoff = min(self._max, self._initial * 2.0 ** max(0, failures - 1))
        if self._jitter is Jitter.FULL:
            return self._rng.uniform(0, backoff)
        if self._jitter is Jitter.EQUAL:
            return backoff / 2 + self._rng.uniform(0, backoff / 2)
        return backoff

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _connect_once(self) -> TLSConnection:
        """Connect, retrying with backoff until it works, :meth:`stop` is called or attempts run out."""
        failures = 0
        while True:
            try:
                conn = await connect(
                    self.host,
                    self.port,
                    context=self._context,
                    policy=self._policy,
                    server_name=self._server_name,
                    session=self.session,
                    handshake_timeout=self._handshake_timeout,
                )
            except (OSError, TLSError) as exc:
                failures += 1
                if self._max_attempts is not None and failures >= self._max_attempts:
                    raise
                delay = self._delay(failures)
                log.info("connect to %s:%s failed (%s); retrying in %.2f s", self.host, self.port, exc, delay)
                await self._sleep(delay)
                if self._stopping.is_set():
                    raise asyncio.CancelledError from exc
                continue
            self.connects += 1
            self.current = conn
            if self._on_connect is not None:
                result = self._on_connect(conn)
                if inspect.isawaitable(result):
                    await result
            return conn

    def _remember_session(self, conn: TLSConnection) -> None:
        # TLS 1.3 tickets arrive after the handshake, so the session is taken when the connection is done.
        session = conn.session
        if session is not None:
            self.session = session

    async def __aiter__(self) -> AsyncIterator[TLSConnection]:
        first = True
        while not self._stopping.is_set():
            if not first:
                await self._sleep(self._delay(1))
                if self._stopping.is_set():
                    return
            first = False
            try:
                conn = await self._connect_once()
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    return
                raise
            try:
                yield conn
            finally:
                # Close whatever the body left open, never wait for it: after the server's close_notify + FIN
                # the transport stays open (eof_received lets the application answer), so waiting would hang.
                self._remember_session(conn)
                self.current = None
                if not conn.closed:
                    await conn.close(timeout=1.0)

    async def run(self, handler: Callable[[TLSConnection], Awaitable[Any]]) -> None:
        """Run ``await handler(conn)`` on every connection until :meth:`stop`; connection errors reconnect."""
        async for conn in self:
            try:
                await handler(conn)
            except (OSError, TLSError, EOFError) as exc:
                log.info("connection to %s:%s ended: %s", self.host, self.port, exc)
            finally:
                await conn.close(timeout=1.0)

    async def stop(self) -> None:
        """Close the current connection and stop reconnecting."""
        self._stopping.set()
        if self.current is not None:
            self._remember_session(self.current)
            await self.current.close(timeout=1.0)
