"""The relay between a TLS connection and a plain transport, at the protocol level: no read loops, no copies.

Decrypted chunks go from :class:`~tlskit.net.connection.TLSConnection` (through its
:class:`~tlskit.net.connection.PlaintextSink` hook) straight into the plain transport, and what the plain side
receives goes straight to :meth:`TLSConnection.write_nowait`.  Flow control is the transports' own: a side
whose send buffer passes its high-water mark pauses reading on the other side until it drains, so a slow
reader slows its peer (through TCP) instead of growing memory; what one connection can hold is bounded by the
two high-water marks plus one read.

The end of a stream is passed on as the same thing on the other side: close_notify (or a TCP FIN) from the TLS
peer becomes a FIN to the plain side, a FIN from the plain side becomes close_notify, and each direction ends
on its own (half-close).  When both have ended, both sides are closed.  A reset or a TLS error on one side
aborts the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from typing import TYPE_CHECKING, cast

from ...errors import TLSError

if TYPE_CHECKING:
    from ...net.connection import TLSConnection

__all__ = ["Relay"]

_SCRATCH_SIZE = 256 * 1024
_local = threading.local()


def _scratch() -> memoryview:
    """The calling thread's read buffer for plain sides (one per thread, shared by every relay in it)."""
    buf: memoryview | None = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = memoryview(bytearray(_SCRATCH_SIZE))
    return buf


class Relay(asyncio.BufferedProtocol):
    """One relayed connection: the plain side's asyncio protocol and the TLS side's plaintext sink.

    The plain side is read into a buffer shared by every relay of the thread (``asyncio.BufferedProtocol``):
    what arrives is encrypted from there at once, so an idle relay holds no buffer and no copy is made for
    the event loop.  Use it as the plain side's protocol (``loop.create_connection(lambda: relay, ...)`` or a listener's
    factory): the plain side is not read until :meth:`start` joins it to the TLS connection.  ``header`` (a
    PROXY protocol header) is written to the plain side before anything else.  :attr:`done` resolves once both
    sides are closed; :attr:`tls_to_plain` and :attr:`plain_to_tls` count payload bytes, and :attr:`ended`
    says how it ended, in the words of ``names`` (what the TLS and the plain peer are: "client", "target").
    """

    __slots__ = (
        "_discard",
        "_done",
        "_early",
        "_header",
        "_names",
        "_plain",
        "_plain_eof",
        "_plain_lost",
        "_tls",
        "_tls_eof",
        "_tls_lost",
        "ended",
        "plain_to_tls",
        "tls_to_plain",
    )

    def __init__(
        self, *, done: asyncio.Future[None], header: bytes = b"", names: tuple[str, str] = ("client", "target")
    ) -> None:
        self._tls: TLSConnection | None = None
        self._header = header
        self._names = names
        self._plain: asyncio.Transport | None = None
        self._done = done
        self._tls_eof = False
        self._plain_eof = False
        self._tls_lost = False
        self._plain_lost = False
        self._early: bytes = b""  # what the plain side sent before the TLS side was joined (one read at most)
        self._discard = False
        self.tls_to_plain = 0
        self.plain_to_tls = 0
        self.ended = ""

    @property
    def done(self) -> asyncio.Future[None]:
        return self._done

    @property
    def plain(self) -> asyncio.Transport | None:
        return self._plain

    @property
    def buffered(self) -> int:
        """Bytes this relay holds: waiting in the plain transport, the TLS transport, or decrypted and unsent."""
        plain = self._plain.get_write_buffer_size() if self._plain is not None else 0
        tls = self._tls
        return plain + len(self._early) + (0 if tls is None else tls.write_buffer_size + tls.read_buffer_size)

    def start(self, tls: TLSConnection) -> None:
        """Join the plain side to ``tls`` and start relaying (TLS data already received goes first)."""
        self._tls = tls
        tls.attach(self)
        early, self._early = self._early, b""
        if early:
            self.data_received(early)
        if self._plain_eof:
            self.eof_received()
        plain = self._plain
        if plain is not None and not plain.is_closing():
            plain.resume_reading()

    def refuse(self) -> None:
        """Never joined (the TLS side failed): end the plain side with a FIN, not a reset.

        Closing a socket with unread input makes the kernel send a reset, so what the plain peer still sends is
        read and dropped until its FIN (or for two seconds at most).
        """
        self._discard, self._early = True, b""
        plain = self._plain
        if plain is None or plain.is_closing():
            return
        if plain.can_write_eof():
            plain.write_eof()
        plain.resume_reading()
        asyncio.get_running_loop().call_later(2.0, plain.close)

    def abort(self, reason: str) -> None:
        """Drop both sides at once (drain deadline, shutdown)."""
        self._end(reason)
        if self._tls is not None:
            self._tls.abort()
        if self._plain is not None:
            self._plain.abort()
        if self._tls is None:
            self._tls_lost = True
            self._finish()

    def _end(self, how: str) -> None:
        if not self.ended:
            self.ended = how

    def _finish(self) -> None:
        if self._tls_lost and self._plain_lost and not self._done.done():
            self._done.set_result(None)

    def _both_ended(self) -> None:
        if self._tls_eof and self._plain_eof:
            assert self._tls is not None
            self._tls.start_close()
            if self._plain is not None:
                self._plain.close()

    # -- the plain side (asyncio.BufferedProtocol) ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        plain = self._plain = cast(asyncio.Transport, transport)
        if self._header:
            plain.write(self._header)
        if self._tls is None:
            plain.pause_reading()  # nothing to send it to yet

    def get_buffer(self, sizehint: int) -> memoryview:
        return _scratch()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_scratch()[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        tls = self._tls
        if tls is None:  # a read that was under way when reading was paused
            if self._discard:
                return
            self._early += bytes(data)
            if self._plain is not None:
                self._plain.pause_reading()
            return
        self.plain_to_tls += len(data)
        try:
            tls.write_nowait(data)
        except (ConnectionError, ssl.SSLError) as exc:
            self._end(f"TLS error: {exc}" if isinstance(exc, TLSError) else f"{self._names[0]} gone")
            if self._plain is not None:
                self._plain.abort()

    def eof_received(self) -> bool:
        self._plain_eof = True
        self._end(f"{self._names[1]} closed")
        if self._discard:
            return False
        if self._tls is not None:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                self._tls.write_eof()
            self._both_ended()
        return True  # keep sending what the TLS peer still sends (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._plain_lost = True
        tls = self._tls
        if exc is not None:
            self._end(f"{self._names[1]} reset" if isinstance(exc, ConnectionError) else f"{self._names[1]}: {exc}")
        else:
            self._end(f"{self._names[1]} closed")
        if tls is None:
            self._tls_lost = True  # never joined: nothing on the TLS side to wait for
        elif exc is not None:
            tls.abort()
        elif not self._tls_lost:
            tls.start_close()
        self._finish()

    def pause_writing(self) -> None:
        if self._tls is not None:
            self._tls.pause_reading()

    def resume_writing(self) -> None:
        if self._tls is not None:
            self._tls.resume_reading()

    # -- the TLS side (PlaintextSink) ------------------------------------------------------------------------

    def tls_data(self, chunks: list[bytes]) -> None:
        plain = self._plain
        if plain is None or plain.is_closing():
            return
        if len(chunks) == 1:
            data = chunks[0]
            self.tls_to_plain += len(data)
            plain.write(data)
            return
        for chunk in chunks:
            self.tls_to_plain += len(chunk)
        plain.writelines(chunks)

    def tls_eof(self) -> None:
        self._tls_eof = True
        self._end(f"{self._names[0]} closed")
        plain = self._plain
        if plain is not None and not plain.is_closing() and plain.can_write_eof():
            plain.write_eof()
        self._both_ended()

    def tls_writing(self, paused: bool) -> None:
        plain = self._plain
        if plain is None or plain.is_closing():
            return
        if paused:
            plain.pause_reading()
        else:
            plain.resume_reading()

    def tls_lost(self, exc: BaseException | None) -> None:
        self._tls_lost = True
        if exc is None:
            self._end(f"{self._names[0]} closed")
        elif isinstance(exc, ConnectionError):
            self._end(f"{self._names[0]} reset")
        else:
            self._end(f"TLS error: {exc}")
        plain = self._plain
        if plain is None:
            self._plain_lost = True
        elif not plain.is_closing():
            if exc is None and self._tls_eof:
                plain.close()
            else:
                plain.abort()
        self._finish()
