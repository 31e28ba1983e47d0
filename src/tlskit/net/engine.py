"""A sans-IO TLS engine: ciphertext in, plaintext out, ciphertext to send.

:class:`TLSEngine` wraps OpenSSL through ``ssl.MemoryBIO`` and never touches a socket; the asyncio adapter in
:mod:`tlskit.net.connection` moves bytes between it and a transport.

Why not the stdlib asyncio TLS transport: its ``SSLProtocol`` preallocates a 256 KiB read buffer per
connection (about 280 KB of RSS per idle connection).  Here nothing is preallocated: ciphertext is read into
one buffer shared by all connections of a thread, copied into the connection's memory BIO, and decrypted
record by record.  CPython's ``ssl`` sets ``SSL_MODE_RELEASE_BUFFERS``, so OpenSSL frees its record buffers
while a connection is idle.  A memory BIO never shrinks (OpenSSL's ``BUF_MEM``), so ciphertext is fed and
produced in slices of :data:`SLICE` bytes to bound what a busy connection keeps afterwards.

The engine uses the C-level object behind ``ssl.SSLObject`` (``SSLContext._wrap_bio``) with itself as
``owner``: that saves the Python wrapper per connection, and the context's ``sni_callback`` receives the
engine, whose :attr:`context` can be swapped exactly like ``SSLObject.context``.

The engine is TLS and nothing else: it reports what the handshake established (:attr:`peer_verified`, the
peer's chain, protocol, cipher) but neither judges the peer (:mod:`tlskit.net.policy`) nor puts failures into
words (:mod:`tlskit.net.explain`); the asyncio adapter :mod:`tlskit.net.connection` does both.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .tlsinfo import CipherInfo, chain_der, cipher_info, peer_verified

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["RECORD", "SLICE", "EngineState", "SNICapture", "TLSEngine", "install_sni_capture"]

SLICE = 16 * 1024 + 256
"""Bytes of ciphertext fed per step: one full TLS record plus its overhead."""

RECORD = 16 * 1024
"""A TLS record carries at most 16 KiB of plaintext: one ``SSL_read`` never returns more, and plaintext is
encrypted in pieces of this size, so that every record but the last is full (a piece one byte longer would
cost a second, tiny record: its own header, tag and AEAD call, on both sides)."""
_READ_SIZE = RECORD
_MAX_CIPHERTEXT = 2**14 + 2048  # the largest record body TLS allows (RFC 5246 6.2.3; TLS 1.3's is smaller)

# ssl.SSLContext.verify_mode converts to an enum on every access; handshakes read the raw int instead.
_raw_verify_mode = getattr(ssl, "_ssl")._SSLContext.verify_mode.__get__  # noqa: B009
_SSLWantRead = ssl.SSLWantReadError
_SSLZeroReturn = ssl.SSLZeroReturnError


class EngineState(enum.Enum):
    """Where a connection is in its life."""

    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSING = "closing"  # we sent close_notify
    CLOSED = "closed"


_HANDSHAKING, _OPEN, _CLOSING, _CLOSED = EngineState


class TLSEngine:
    """One TLS connection's state machine over two memory BIOs.

    Drive it with :meth:`start` (client side: returns nothing, the ClientHello waits in :meth:`data_to_send`),
    :meth:`receive` (ciphertext in, plaintext chunks out), :meth:`encrypt` (plaintext in) and
    :meth:`close_notify`; after each call, send whatever :meth:`data_to_send` returns.
    """

    __slots__ = (
        "__weakref__",  # _ssl keeps its owner as a weak reference
        "_base_context",
        "_bio_in",
        "_bio_out",
        "_eof",
        "_partial",
        "_rec_header",
        "_rec_left",
        "_server_name",
        "_ssl",
        "_state",
    )

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        self._bio_in = ssl.MemoryBIO()
        self._bio_out = ssl.MemoryBIO()
        if server_hostname is not None:
            # SNI carries the name without the root's trailing dot (RFC 6066 3), and OpenSSL would not match
            # "example.com." against a certificate for example.com: strip it, as curl and browsers do.
            server_hostname = server_hostname.rstrip(".")
            if not server_hostname.isascii():  # the codec is slow; an ASCII name is already its own A-label
                server_hostname = server_hostname.encode("idna").decode("ascii")
        wrap: Callable[..., Any] = context._wrap_bio  # type: ignore[attr-defined]
        self._ssl: Any = wrap(
            self._bio_in,
            self._bio_out,
            server_side=server_side,
            server_hostname=server_hostname,
            owner=self,
            session=session,
        )
        self._base_context = context
        self._state = _HANDSHAKING
        self._eof = False
        # Where the record boundaries are in the ciphertext fed so far (see _scan): the bytes of the record being
        # received that are in the BIO, its header bytes while incomplete, and the body bytes it still lacks.
        self._partial = 0
        self._rec_header = b""
        self._rec_left = 0
        self._server_name: str | None = None

    # -- driving ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin the handshake (client side: writes the ClientHello into :meth:`data_to_send`)."""
        self._step_handshake()

    def receive(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Feed ciphertext from the peer; return the plaintext chunks it completed.

        Raises ``ssl.SSLError`` when the peer breaks the protocol or the handshake fails; :meth:`data_to_send`
        may then hold an alert for the peer.  Check :attr:`handshake_complete` and :attr:`eof` afterwards.
        """
        chunks: list[bytes] = []
        size = len(data)
        if size <= SLICE:
            self._scan(data)
            self._bio_in.write(data)
            self._pump(chunks)
            return chunks
        view = memoryview(data)
        for start in range(0, size, SLICE):
            piece = view[start : start + SLICE]
            self._scan(piece)
            self._bio_in.write(piece)
            self._pump(chunks)
        return chunks

    def _scan(self, data: bytes | bytearray | memoryview) -> None:
        """Follow the TLS record headers through ``data``, the ciphertext about to go into the BIO.

        Afterwards ``_partial`` is how many bytes of an incomplete record the BIO holds: once open, the engine reads
        only while the BIO holds more than that, so OpenSSL is never asked for a record it cannot have yet (each
        such read raises ``SSLWantReadError``, an exception object built in C: a bulk transfer would pay for one
        per slice).  A record is 5 header bytes (its length in the last two) and that many body bytes; the scan
        jumps from header to header, a step or two per slice.

        A header no TLS record can have (an unknown content type, a length over the protocol's maximum: plain HTTP,
        garbage) ends the tracking for good: ``_partial`` stays 0, so OpenSSL reads the bytes and rejects them at
        once with its own error, instead of the engine waiting for a record that will never be complete.
        """
        n = len(data)
        left = self._rec_left  # body bytes the record being received still lacks (0: a header comes next)
        if left < 0:  # not a TLS record stream any more: OpenSSL decides
            return
        if left > n:
            self._rec_left = left - n
            self._partial += n
            return
        i = left
        header = self._rec_header
        if header:  # a header cut in two by the previous piece
            need = 5 - len(header)
            if i + need > n:
                self._rec_header = header + bytes(data[i:n])
                self._partial = len(self._rec_header)
                return
            header += bytes(data[i : i + need])
            i += need
            if not 20 <= header[0] <= 24 or (header[3] << 8) | header[4] > _MAX_CIPHERTEXT:
                self._untrack()
                return
            end = i + ((header[3] << 8) | header[4])
            if end > n:
                self._rec_header, self._rec_left, self._partial = b"", end - n, 5 + n - i
                return
            i = end
        while i + 5 <= n:
            length = (data[i + 3] << 8) | data[i + 4]
            if not 20 <= data[i] <= 24 or length > _MAX_CIPHERTEXT:
                self._untrack()
                return
            end = i + 5 + length
            if end > n:
                self._rec_header, self._rec_left, self._partial = b"", end - n, n - i
                return
            i = end
        self._rec_header = bytes(data[i:n])
        self._rec_left, self._partial = 0, n - i

    def _untrack(self) -> None:
        self._rec_header, self._rec_left, self._partial = b"", -1, 0

    def _pump(self, chunks: list[bytes]) -> None:
        if self._state is _HANDSHAKING and not self._step_handshake():
            return
        # Read until OpenSSL has nothing left: no ciphertext waiting in the BIO, no plaintext in its buffer.  The
        # checks save the SSLWantReadError that a read with nothing to read raises (an exception object built
        # in C, costlier than the two calls), once per handshake and once per received flight after it.
        bio, pending, read = self._bio_in, self._ssl.pending, self._ssl.read
        # Open, the stream is TLS records only, so a record cut short at the end of the BIO can be waited for
        # (see _scan); during the handshake a peer may send anything, and OpenSSL decides.
        partial = self._partial if self._state is _OPEN else 0
        try:
            while bio.pending > partial or pending():
                chunk = read(_READ_SIZE)
                if not chunk:
                    # close_notify: _ssl returns b"" for it, or raises SSLZeroReturnError once ours was sent.
                    self._eof = True
                    break
                chunks.append(chunk)
        except _SSLWantRead:
            pass
        except _SSLZeroReturn:
            self._eof = True

    def _step_handshake(self) -> bool:
        try:
            self._ssl.do_handshake()
        except _SSLWantRead:
            return False
        self._state = _OPEN
        return True

    def encrypt(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt application data; the records wait in :meth:`data_to_send`."""
        if self._state is not _OPEN:
            raise ConnectionResetError("the TLS connection is closed")
        write = self._ssl.write
        if len(data) <= RECORD:
            write(data)
            return
        view = memoryview(data)
        for start in range(0, len(view), RECORD):
            write(view[start : start + RECORD])

    def encrypt_pieces(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Encrypt ``data`` and return its ciphertext in pieces, draining the BIO after every slice.

        Large writes go through here so the outgoing BIO never grows past one slice.
        """
        if self._state is not _OPEN:
            raise ConnectionResetError("the TLS connection is closed")
        write, read = self._ssl.write, self._bio_out.read
        view = memoryview(data)
        pieces = []
        for start in range(0, len(view), RECORD):
            write(view[start : start + RECORD])
            pieces.append(read())
        return pieces

    def encrypt_chunks(self, chunks: list[bytes]) -> list[bytes]:
        """Encrypt each of ``chunks`` and return all the ciphertext pieces.

        Chunks of a record or less (what :meth:`receive` returns) are encrypted together and read from the BIO
        in one piece: one call and one bytes object instead of one per record.
        """
        if self._state is not _OPEN:
            raise ConnectionResetError("the TLS connection is closed")
        write, out = self._ssl.write, self._bio_out
        pieces = []
        for chunk in chunks:
            if len(chunk) <= RECORD:
                write(chunk)
            else:
                if out.pending:
                    pieces.append(out.read())
                pieces += self.encrypt_pieces(chunk)
        if out.pending:
            pieces.append(out.read())
        return pieces

    def data_to_send(self) -> bytes:
        """Ciphertext waiting for the peer (b"" when none)."""
        out = self._bio_out
        return out.read() if out.pending else b""

    def close_notify(self) -> None:
        """Queue a close_notify alert (once); reading stays possible until the peer's arrives."""
        if self._state is not _OPEN:
            self._state = _CLOSED if self._state is _HANDSHAKING else self._state
            return
        self._state = _CLOSING
        # Ours is queued (SSLWantReadError says the peer's has not come yet; it is not waited for).
        try:  # noqa: SIM105 - contextlib.suppress costs a context manager object on every close
            self._ssl.shutdown()
        except ssl.SSLError:
            pass

    def mark_closed(self) -> None:
        """The transport is gone; nothing more can be sent."""
        self._state = _CLOSED

    # -- state -----------------------------------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def handshake_complete(self) -> bool:
        return self._state is not _HANDSHAKING and self._ssl.version() is not None

    @property
    def eof(self) -> bool:
        """True once the peer sent close_notify."""
        return self._eof

    @property
    def server_side(self) -> bool:
        return bool(self._ssl.server_side)

    @property
    def context(self) -> ssl.SSLContext:
        """The context in use; an ``sni_callback`` may assign another one, as with ``ssl.SSLObject``."""
        ctx: ssl.SSLContext = self._ssl.context
        return ctx

    @context.setter
    def context(self, ctx: ssl.SSLContext) -> None:
        self._ssl.context = ctx

    # -- handshake results -------------------------------------------------------------------------------------

    @property
    def verify_mode(self) -> int:
        """The ``ssl.CERT_*`` mode of the context the connection was created with (SNI swaps keep it)."""
        return int(_raw_verify_mode(self._base_context))

    @property
    def peer_verified(self) -> bool:
        """True if OpenSSL verified a certificate the peer sent, during the handshake.

        A client verifies the server unless its context says ``CERT_NONE`` (the handshake fails otherwise); a
        server verifies a client certificate when it asked for one and the client sent one.
        """
        if self._state is _HANDSHAKING:
            return False
        return peer_verified(self._ssl, _raw_verify_mode(self._base_context))

    @property
    def protocol(self) -> str | None:
        """``"TLSv1.3"``, ``"TLSv1.2"``, ... (None before the handshake)."""
        version: str | None = self._ssl.version()
        return version

    @property
    def cipher(self) -> CipherInfo | None:
        return cipher_info(self._ssl.cipher())

    @property
    def alpn_protocol(self) -> str | None:
        alpn: str | None = self._ssl.selected_alpn_protocol()
        return alpn

    @property
    def server_name(self) -> str | None:
        """The SNI name: received from the client (server side) or sent (client side)."""
        if self._ssl.server_side:
            return self._server_name
        name: str | None = self._ssl.server_hostname
        return name

    @property
    def session(self) -> ssl.SSLSession | None:
        """The TLS session, to pass as ``session=`` for resumption (TLS 1.3: arrives after the handshake)."""
        session: ssl.SSLSession | None = self._ssl.session
        return session

    @property
    def session_reused(self) -> bool:
        return bool(self._ssl.session_reused)

    @property
    def peer_chain_der(self) -> list[bytes]:
        """The peer's certificates as DER, leaf first: the verified chain if OpenSSL built one, else as sent."""
        return chain_der(self._ssl, verified=True) or chain_der(self._ssl, verified=False)

    @property
    def peer_chain(self) -> list[x509.Certificate]:
        """The peer's chain parsed (see :attr:`peer_chain_der`)."""
        from cryptography import x509

        return [x509.load_der_x509_certificate(der) for der in self.peer_chain_der]

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        """The peer's leaf certificate, or None if it sent none."""
        from cryptography import x509

        der = self._ssl.getpeercert(True)
        return None if der is None else x509.load_der_x509_certificate(der)


class SNICapture:
    """``sni_callback`` that records the requested server name on the engine, then runs the original callback."""

    __slots__ = ("inner",)

    def __init__(self, inner: Callable[..., Any] | None) -> None:
        self.inner = inner

    def __call__(self, sslobj: Any, server_name: str | None, ctx: ssl.SSLContext) -> Any:
        if isinstance(sslobj, TLSEngine):
            sslobj._server_name = server_name
        return None if self.inner is None else self.inner(sslobj, server_name, ctx)


def install_sni_capture(ctx: ssl.SSLContext) -> None:
    """Wrap ``ctx.sni_callback`` (once) so engines learn the SNI name the client sent.

    This changes ``ctx``; the original callback still runs, so other users of the context see no difference.
    """
    current = ctx.sni_callback
    if not isinstance(current, SNICapture):
        ctx.sni_callback = SNICapture(current)
