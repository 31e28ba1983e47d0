"""TLSConnection: the sans-IO :class:`~tlskit.net.engine.TLSEngine` as an asyncio protocol, with streams.

One object per connection is the engine, the asyncio protocol and the application's handle (Node's
``TLSSocket``): fewer objects per idle connection.  Reads use ``asyncio.BufferedProtocol`` into a scratch
buffer shared by every connection of the thread (the event loop calls ``get_buffer`` and ``buffer_updated``
back to back), so an idle connection holds no read buffer at all.

Flow control both ways: decrypted data waiting for the application above :attr:`READ_HIGH_WATER` pauses
reading from the socket; :meth:`TLSConnection.write` waits while the transport says its buffer is full
(``pause_writing``).  Small writes made in one loop iteration are coalesced into one TLS record and one
``send()``.

A relay that moves bytes between this connection and another transport (``tlskit tunnel``) need not read in a
loop: :meth:`TLSConnection.attach` hands decrypted chunks, the end of the stream and the write-side flow control
straight to a :class:`PlaintextSink`, which pauses and resumes reading (:meth:`TLSConnection.pause_reading`)
as its own output fills and drains.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol, cast

from ..errors import TLSError
from ..pki.problems import Purpose, handshake_eof
from .context import ClientAuth, client_certificate_loaded
from .engine import RECORD, EngineState, TLSEngine
from .explain import explain_unverified, problem_error, refusal_error, tls_error
from .peerinfo import client_authorization_error
from .policy import PeerPolicy, judge
from .tlsinfo import chain_der, peer_chain

__all__ = ["ConnectionListener", "MessageCodec", "PlaintextSink", "TLSConnection"]

_SCRATCH_SIZE = 256 * 1024
_COALESCE_LIMIT = 64 * 1024
_OPEN = EngineState.OPEN
_HANDSHAKING = EngineState.HANDSHAKING
_CLOSING = EngineState.CLOSING
_local = threading.local()
_monotonic = time.monotonic
_NOT_YET = "the handshake has not finished"
_EXPLAIN_LATER = "(explained on first use)"  # sentinel: a client that did not verify the server


def _scratch() -> memoryview:
    """The calling thread's shared read buffer (one per thread, never per connection)."""
    buf: memoryview | None = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = memoryview(bytearray(_SCRATCH_SIZE))
    return buf


class ConnectionListener(Protocol):
    """What a server hears from its connections."""

    def tls_connection_made(self, conn: TLSConnection) -> None: ...
    def tls_handshake_done(self, conn: TLSConnection) -> None: ...
    def tls_handshake_failed(self, conn: TLSConnection, error: TLSError) -> None: ...
    def tls_connection_lost(self, conn: TLSConnection) -> None: ...


class PlaintextSink(Protocol):
    """Takes a connection's plaintext as it is decrypted, instead of :meth:`TLSConnection.read` (see ``attach``)."""

    def tls_data(self, chunks: list[bytes]) -> None:
        """Decrypted application data, in order."""

    def tls_eof(self) -> None:
        """The peer finished sending (close_notify, or a TCP FIN without one); called once."""

    def tls_writing(self, paused: bool) -> None:
        """The socket's send buffer went above (True) or back below (False) its high-water mark."""

    def tls_lost(self, exc: BaseException | None) -> None:
        """The socket is closed (``exc`` says why if that was abnormal); nothing more will come."""


class MessageCodec(Protocol):
    """A framer or codec from :mod:`tlskit.net.framing` (``feed``/``encode``/``end_of_stream``)."""

    def feed(self, data: bytes) -> list[Any]: ...
    def encode(self, payload: Any) -> bytes: ...
    def end_of_stream(self) -> None: ...


class TLSConnection(TLSEngine, asyncio.BufferedProtocol):
    """A TLS connection: handshake results (see :class:`TLSEngine`), byte streams and framed messages.

    Obtained from :func:`tlskit.connect` or passed to a :func:`tlskit.start_server` handler, with the
    handshake finished.
    """

    READ_HIGH_WATER = 128 * 1024
    """Decrypted bytes buffered for the application above which the socket is no longer read."""
    READ_LOW_WATER = 32 * 1024

    __slots__ = (
        "_answered",
        "_auth_error",
        "_authorized",
        "_buffered",
        "_chunks",
        "_drain_waiter",
        "_error",
        "_handshake_waiter",
        "_idle",
        "_listener",
        "_loop",
        "_lost",
        "_lost_waiter",
        "_opened",
        "_pending",
        "_pending_size",
        "_policy",
        "_read_paused",
        "_read_waiter",
        "_refused",
        "_scratch",
        "_sink",
        "_task",
        "_transport",
        "_write_paused",
    )

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
        listener: ConnectionListener | None = None,
        policy: PeerPolicy | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(context, server_side=server_side, server_hostname=server_hostname, session=session)
        # The event loop, kept: on Python 3.11 every asyncio.get_running_loop() is a getpid() system call.
        self._loop = loop
        self._listener = listener
        self._policy = policy
        self._authorized = False
        self._auth_error: str | None = _NOT_YET
        self._refused = False
        self._transport: asyncio.Transport | None = None
        self._scratch = _scratch()
        self._chunks: list[bytes] | None = None
        self._buffered = 0
        self._read_paused = False
        self._write_paused = False
        self._answered = False  # a handshake flight was sent (a server: its answer to the ClientHello)
        self._pending: list[bytes] | None = None
        self._pending_size = 0
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._handshake_waiter: asyncio.Future[None] | None = None
        self._lost_waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._lost = False
        # Idle sweeps survived (the server's idle timeout closes at 2); -1 until the first byte arrives.
        self._idle = -1
        self._task: asyncio.Task[Any] | None = None
        self._sink: PlaintextSink | None = None
        self._opened = 0.0

    def __repr__(self) -> str:
        peer = self.remote_address
        return f"<TLSConnection {self.state.value} peer={peer!r} protocol={self.protocol}>"

    # -- asyncio protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._opened = _monotonic()
        if self._listener is not None:
            self._listener.tls_connection_made(self)
        if not self.server_side:
            try:
                self.start()
            except ssl.SSLError as exc:
                self._fail(exc)
                return
            transport.write(self.data_to_send())

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        self._idle = 0
        handshaking = self._state is _HANDSHAKING
        had_eof = self._eof
        try:
            chunks = self.receive(self._scratch[:nbytes])
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        out = self._bio_out
        transport = self._transport
        if out.pending and transport is not None:
            transport.write(out.read())
            self._answered = True
        if handshaking and self._state is not _HANDSHAKING and not self._on_handshake():
            return  # the peer was refused: what it sent along is dropped unread
        sink = self._sink
        if sink is not None:
            if chunks:
                sink.tls_data(chunks)
            if self._eof and not had_eof:
                sink.tls_eof()
        elif chunks:
            self._deliver(chunks)
        elif self._eof:
            self._wake_reader()
        if self._eof and self._state is _CLOSING and transport is not None:
            transport.close()  # both close_notify alerts exchanged

    def eof_received(self) -> bool:
        if self._state is _HANDSHAKING:
            self._fail(self._eof_error())
            return False
        had_eof, self._eof = self._eof, True
        self._wake_reader()
        if self._sink is not None and not had_eof:
            self._sink.tls_eof()
        # Keep the transport so the application may still answer, unless we already said goodbye.
        return self._state is not _CLOSING

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state is _HANDSHAKING and self._error is None:
            self._fail(exc or self._eof_error())
        self.mark_closed()
        self._lost = True
        self._eof = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake_reader()
        self._wake_drain()
        waiter = self._lost_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        sink, self._sink = self._sink, None  # nothing more will come; a sink usually refers back to us: no cycle
        if sink is not None:
            sink.tls_lost(self._error)
        if self._listener is not None:
            self._listener.tls_connection_lost(self)

    def _eof_error(self) -> TLSError:
        peer = Purpose.CLIENT if self.server_side else Purpose.SERVER
        return problem_error(handshake_eof(peer, received_any=self.received_any, answered=self._answered))

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._sink is not None:
            self._sink.tls_writing(True)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()
        if self._sink is not None:
            self._sink.tls_writing(False)

    # -- relaying ----------------------------------------------------------------------------------------------

    def attach(self, sink: PlaintextSink) -> None:
        """From now on hand decrypted data, EOF, write-side flow control and the close to ``sink``.

        What was decrypted before and not read yet goes to ``sink`` first; an EOF or a close that already
        happened is reported at once.  :meth:`read` is no longer used.  The sink controls reading with
        :meth:`pause_reading` and :meth:`resume_reading`.
        """
        self._sink = sink
        chunks, self._chunks, self._buffered = self._chunks, None, 0
        if chunks:
            sink.tls_data(chunks)
        if self._read_paused:
            self.resume_reading()
        if self._write_paused:
            sink.tls_writing(True)
        if self._eof:
            sink.tls_eof()
        if self._lost:
            sink.tls_lost(self._error)

    def pause_reading(self) -> None:
        """Stop reading from the socket (the peer is slowed down by TCP once the kernel buffers fill)."""
        if not self._read_paused and self._transport is not None and not self._lost:
            self._read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the socket again after :meth:`pause_reading`."""
        if self._read_paused and self._transport is not None and not self._lost:
            self._read_paused = False
            self._transport.resume_reading()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    # -- events ----------------------------------------------------------------------------------------------

    def _on_handshake(self) -> bool:
        """The handshake finished: judge the peer (the one peer check), then tell whoever waits.

        Returns False if the peer policy refused the peer; the connection is then closing.
        """
        self._settle_authorization()
        verdict = judge(self, self._policy)
        if verdict.refusal is not None:
            self._refused, self._authorized = True, False
            self._auth_error = verdict.refusal.message
            # close_notify is the one alert the ssl module can send after the handshake; then the socket closes.
            self.close_notify()
            self._fail(refusal_error(verdict.refusal, server_side=self.server_side), handshaking=True)
            return False
        waiter = self._handshake_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._listener is not None:
            self._listener.tls_handshake_done(self)
        return True

    def _settle_authorization(self) -> None:
        """Node's ``authorized``/``authorizationError`` from what OpenSSL verified (the policy comes after)."""
        if self.peer_verified:
            self._authorized, self._auth_error = True, None
        elif self.server_side:
            self._auth_error = client_authorization_error(self.verify_mode)
        else:
            self._auth_error = _EXPLAIN_LATER  # worked out on first use: most programs never ask

    def _fail(self, exc: BaseException, *, handshaking: bool | None = None) -> None:
        """A TLS error or a lost connection: remember it, send any alert, close, tell whoever waits."""
        if handshaking is None:
            handshaking = self._state is _HANDSHAKING
        sslobj = self._ssl
        error = tls_error(
            exc,
            during="handshake" if handshaking else "connection",
            server_side=bool(sslobj.server_side),
            host=self.server_name,
            chain=peer_chain(sslobj) if isinstance(exc, ssl.SSLError) else (),
            sent_cert=None if self.server_side else client_certificate_loaded(self._base_context),
        )
        if error is not exc:
            error.__cause__ = exc
        self._error = error
        transport = self._transport
        if transport is not None and not transport.is_closing():
            alert = self.data_to_send()
            if alert:
                transport.write(alert)
            transport.close()
        self.mark_closed()
        waiter = self._handshake_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self._wake_reader()
        self._wake_drain()
        if handshaking and self._listener is not None:
            self._listener.tls_handshake_failed(self, error)

    def _deliver(self, chunks: list[bytes]) -> None:
        if self._chunks is None:
            self._chunks = chunks
        else:
            self._chunks.extend(chunks)
        self._buffered += sum(map(len, chunks))
        if self._buffered > self.READ_HIGH_WATER and not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()
        self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None:
            self._read_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait_handshake(self) -> None:
        """Wait until the handshake finished and the peer was accepted; raise the :class:`TLSError` otherwise."""
        while self._state is _HANDSHAKING and self._error is None:
            if self._handshake_waiter is None:
                self._handshake_waiter = self._event_loop().create_future()
            await self._handshake_waiter
        if self._error is not None and (self._refused or not self.handshake_complete):
            raise self._error

    # -- who the peer is ---------------------------------------------------------------------------------------

    @property
    def authorized(self) -> bool:
        """True if the peer's certificate verified (Node's ``authorized``) and the peer policy accepted it."""
        if self._auth_error is _EXPLAIN_LATER:
            self._explain_unverified()
        return self._authorized

    @property
    def authorization_error(self) -> str | None:
        """Why :attr:`authorized` is False (None when it is True), like Node's ``authorizationError``.

        For a client that did not verify the server (``verify=False``) it says why verification would have failed.
        """
        if self._auth_error is _EXPLAIN_LATER:
            self._explain_unverified()
        return self._auth_error

    def _explain_unverified(self) -> None:
        why = explain_unverified(
            self.context, chain_der(self._ssl, verified=False), hostname=self._ssl.server_hostname, client_cert=False
        )
        self._authorized, self._auth_error = why is None, why

    @property
    def refused(self) -> bool:
        """True if the peer policy refused the peer (the connection was closed right after the handshake)."""
        return self._refused

    @property
    def client_auth(self) -> ClientAuth | None:
        """Server side: what the server asked of this client (None on the client side)."""
        return ClientAuth.of(self._base_context) if self.server_side else None

    @property
    def policy(self) -> PeerPolicy | None:
        """The peer policy this connection was judged by."""
        return self._policy

    # -- reading ---------------------------------------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all buffered if ``n < 0``) as soon as any arrive; b"" at EOF."""
        while not self._chunks:
            if self._error is not None and not isinstance(self._error, ConnectionError):
                raise self._error
            if self._eof:
                return b""
            waiter = self._read_waiter = self._event_loop().create_future()
            await waiter
        return self._take(n)

    def _take(self, n: int) -> bytes:
        chunks = self._chunks
        assert chunks
        if n < 0 or n >= self._buffered:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._chunks = None
        elif len(chunks[0]) > n:
            first = chunks[0]
            data, chunks[0] = first[:n], first[n:]
        else:
            count, size = 0, 0
            while count < len(chunks) and size + len(chunks[count]) <= n:
                size += len(chunks[count])
                count += 1
            data = chunks[0] if count == 1 else b"".join(chunks[:count])
            del chunks[:count]
        self._buffered -= len(data)
        if self._read_paused and self._buffered <= self.READ_LOW_WATER and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
        return data

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``asyncio.IncompleteReadError`` if the stream ends first."""
        parts: list[bytes] = []
        got = 0
        while got < n:
            data = await self.read(n - got)
            if not data:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            parts.append(data)
            got += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def at_eof(self) -> bool:
        """True when the peer finished sending and everything was read."""
        return self._eof and not self._chunks

    async def messages(self, codec: MessageCodec) -> AsyncIterator[Any]:
        """Yield messages decoded by ``codec`` (a framer or ``JsonCodec``) until the peer closes.

        A framing violation raises :class:`~tlskit.errors.FrameError` (the connection must then be closed; a
        server handler can let it propagate: the server logs one line and closes).
        """
        while True:
            data = await self.read()
            if not data:
                codec.end_of_stream()
                return
            for message in codec.feed(data):
                yield message

    async def send(self, message: Any, codec: MessageCodec) -> None:
        """Encode ``message`` with ``codec`` and write it (with backpressure)."""
        await self.write(codec.encode(message))

    # -- writing ---------------------------------------------------------------------------------------------

    def write_nowait(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` without waiting; call :meth:`drain` to respect backpressure."""
        if self._state is not _OPEN or self._transport is None:
            raise self._error or ConnectionResetError("the TLS connection is closed")
        self._idle = 0
        size = len(data)
        pending = self._pending
        if pending is None:
            if size >= RECORD:
                self._encrypt_out(data)
                return
            self._pending = [bytes(data)]
            self._pending_size = size
            self._event_loop().call_soon(self._flush)
            return
        pending.append(bytes(data))
        self._pending_size += size
        if self._pending_size >= _COALESCE_LIMIT:
            self._flush()

    def writelines_nowait(self, chunks: list[bytes]) -> None:
        """Queue several pieces at once, encrypted record by record and handed to the socket in one call.

        For data that arrives as a list, such as the chunks a :class:`PlaintextSink` receives: no joining, one
        ``writelines`` (one ``writev`` system call) for all.  Call :meth:`drain` to respect backpressure.
        """
        if self._state is not _OPEN or self._transport is None:
            raise self._error or ConnectionResetError("the TLS connection is closed")
        self._idle = 0
        self._flush()  # what write_nowait queued goes first
        try:
            self._transport.writelines(self.encrypt_chunks(chunks))
        except ssl.SSLError as exc:
            self._fail(exc)
            error = self._error
            assert error is not None
            raise error from exc

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``; wait while the peer is not keeping up (backpressure)."""
        self.write_nowait(data)
        if self._write_paused:
            await self.drain()

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark."""
        while self._write_paused and not self._lost:
            if self._drain_waiter is None:
                self._drain_waiter = self._event_loop().create_future()
            await self._drain_waiter
        if self._lost and self._error is not None:
            raise self._error

    def _flush(self) -> None:
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        if self._state is _OPEN and self._transport is not None:
            self._encrypt_out(pending[0] if len(pending) == 1 else b"".join(pending))

    def _encrypt_out(self, data: bytes | bytearray | memoryview) -> None:
        transport = self._transport
        assert transport is not None
        try:
            if len(data) <= RECORD:
                self.encrypt(data)
                transport.write(self._bio_out.read())
            else:
                transport.writelines(self.encrypt_pieces(data))
        except ssl.SSLError as exc:
            self._fail(exc)
            error = self._error
            assert error is not None
            raise error from exc

    @property
    def write_buffer_size(self) -> int:
        """Bytes accepted by :meth:`write` and not yet handed to the kernel."""
        transport_size = self._transport.get_write_buffer_size() if self._transport is not None else 0
        return transport_size + (self._pending_size if self._pending is not None else 0)

    @property
    def read_buffer_size(self) -> int:
        """Decrypted bytes waiting for :meth:`read`."""
        return self._buffered

    # -- closing ---------------------------------------------------------------------------------------------

    def write_eof(self) -> None:
        """Send close_notify: the peer reads EOF; we can still read what it sends before closing."""
        self._flush()
        self.close_notify()
        out = self.data_to_send()
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(out)

    def start_close(self, *, linger: float = 2.0) -> None:
        """Begin a graceful close without waiting: flush and send close_notify, then close the socket.

        The socket is closed when the peer's close_notify (or EOF) arrives, or after ``linger`` seconds.
        Closing at once would make the kernel answer the peer's own close_notify with a reset, which kills
        peers that do not ignore SIGPIPE (``openssl s_server``) before they flush their output.
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._state is _OPEN:
            self.write_eof()
        if self._eof or self._state is not _CLOSING:
            transport.close()
        else:
            self._event_loop().call_later(linger, transport.close)

    async def close(self, *, timeout: float = 5.0) -> None:
        """Send close_notify and close; abort if that does not complete within ``timeout`` seconds."""
        self.start_close(linger=min(2.0, timeout / 2))
        if not await self.wait_closed(timeout=timeout):
            self.abort()
            await self.wait_closed(timeout=timeout)

    def abort(self) -> None:
        """Close at once, discarding unsent data (no close_notify)."""
        self.mark_closed()
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self, *, timeout: float | None = None) -> bool:
        """Wait until the socket is closed; False if ``timeout`` passed first."""
        if self._lost or self._transport is None:
            return True
        if self._lost_waiter is None:
            self._lost_waiter = self._event_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._lost_waiter), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def closed(self) -> bool:
        return self._lost

    @property
    def opened_at(self) -> float:
        """When the socket was connected (``time.monotonic()``, the event loop's clock); handshake times start here."""
        return self._opened

    @property
    def received_any(self) -> bool:
        """True once any byte came from the peer (a handshake timeout tells 'no ClientHello' from 'stalled')."""
        return self._idle >= 0

    # -- addresses -------------------------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info (``peername``, ``sockname``, ``socket``, ...)."""
        return default if self._transport is None else self._transport.get_extra_info(name, default)

    @property
    def remote_address(self) -> Any:
        """The peer's address tuple, as ``socket.getpeername()`` returns it."""
        return self.get_extra_info("peername")

    @property
    def local_address(self) -> Any:
        return self.get_extra_info("sockname")

    @property
    def error(self) -> BaseException | None:
        """What ended the connection abnormally, if anything did."""
        return self._error
