"""One probing handshake, and what the server's plaintext flight shows.

Python's :mod:`ssl` does not expose the negotiated key-exchange group, nor whether the server asked for a
client certificate.  So every probing handshake runs through an :class:`ssl.MemoryBIO` pair over a plain
socket and keeps the bytes the server sent; the part of the server's flight that travels in clear (the
ServerHello and, under TLS 1.2, ServerKeyExchange and CertificateRequest) is then read from those bytes with
the sans-IO parser of :mod:`tlskit.tools.records`.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import ssl
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from ._iana import group_name
from .records import Alert, Direction, HandshakeMessage, ServerHello, ServerKeyExchange, StreamParser

__all__ = [
    "Handshake",
    "ProtocolVersion",
    "ServerFlight",
    "handshake",
    "parse_server_flight",
    "probe_context",
]


class ProtocolVersion(enum.StrEnum):
    """TLS protocol versions a probe can try, oldest first."""

    TLS1_0 = "TLS 1.0"
    TLS1_1 = "TLS 1.1"
    TLS1_2 = "TLS 1.2"
    TLS1_3 = "TLS 1.3"

    @property
    def ssl_version(self) -> ssl.TLSVersion:
        """The matching :class:`ssl.TLSVersion` (looked up by name: TLSv1/TLSv1_1 are deprecated aliases)."""
        return ssl.TLSVersion[("TLSv1", "TLSv1_1", "TLSv1_2", "TLSv1_3")[list(ProtocolVersion).index(self)]]

    @classmethod
    def from_wire(cls, value: int) -> ProtocolVersion | None:
        """The version for a wire number, or ``None`` (SSL 3.0, drafts, garbage)."""
        index = value - 0x0301
        return list(cls)[index] if 0 <= index < len(cls) else None

    @classmethod
    def from_ssl(cls, name: str | None) -> ProtocolVersion | None:
        """The version for :meth:`ssl.SSLObject.version` strings (``"TLSv1.2"``)."""
        mapping = {"TLSv1": cls.TLS1_0, "TLSv1.1": cls.TLS1_1, "TLSv1.2": cls.TLS1_2, "TLSv1.3": cls.TLS1_3}
        return mapping.get(name or "")


_CERTIFICATE_REQUEST = 13


@dataclass(frozen=True)
class ServerFlight:
    """What the plaintext part of the server's handshake flight says.

    ``certificate_request`` is only visible under TLS 1.2 and older (TLS 1.3 encrypts everything after the
    ServerHello).  ``alert`` is the description of the first plaintext alert, if any.
    """

    version: ProtocolVersion | None = None
    cipher_suite: int | None = None
    group: str | None = None
    hello_retry: bool = False
    certificate_request: bool = False
    alert: int | None = None


def parse_server_flight(data: bytes) -> ServerFlight:
    """Read the plaintext handshake messages and alerts from the bytes a server sent (never raises).

    Decoding is :mod:`tlskit.tools.records`' sans-IO parser; a malformed or truncated tail leaves whatever
    was readable before it.
    """
    fields: dict[str, Any] = {}
    for event in StreamParser(Direction.SERVER_TO_CLIENT).feed(data):
        if isinstance(event, ServerHello):
            fields["version"] = ProtocolVersion.from_wire(event.version)
            fields["cipher_suite"] = event.cipher_suite
            fields["hello_retry"] = fields.get("hello_retry", False) or event.hello_retry_request
            if event.key_share_group is not None:
                fields["group"] = group_name(event.key_share_group)
        elif isinstance(event, ServerKeyExchange):
            if event.group is not None:
                fields["group"] = group_name(event.group)
            elif event.dh_bits:
                fields["group"] = f"DH-{event.dh_bits}"
        elif isinstance(event, HandshakeMessage) and event.msg_type == _CERTIFICATE_REQUEST:
            fields["certificate_request"] = True
        elif isinstance(event, Alert) and event.description is not None:
            fields.setdefault("alert", event.description)
    return ServerFlight(**fields)


def probe_context(
    *,
    version: ProtocolVersion | None = None,
    ciphers: str = "ALL:@SECLEVEL=0",
    alpn: tuple[str, ...] = (),
    cert: str | None = None,
    key: str | None = None,
    passphrase: bytes | None = None,
) -> ssl.SSLContext:
    """A client context that accepts anything so the handshake completes and the chain can be examined.

    Security level 0 and the lowest protocol version the local OpenSSL has, so weak keys, SHA-1 signatures and
    old protocols are *reported* rather than making the handshake fail.  ``version`` pins one protocol version.
    Raises ``ValueError``/``ssl.SSLError`` when the local OpenSSL cannot do what is asked.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers(ciphers)
    if version is not None:
        # Pinning TLS 1.0/1.1 is exactly what a probe is for; Python's deprecation warning is noise here.
        # (catch_warnings is not thread-safe: build contexts before handing them to worker threads.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = version.ssl_version
    else:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if cert is not None:
        ctx.load_cert_chain(cert, key, password=passphrase)
    return ctx


@dataclass(frozen=True)
class Handshake:
    """The outcome of one probing handshake.

    ``error`` is the handshake's failure or, with ``after_handshake``, an alert that arrived right after it
    completed (TLS 1.3 servers reject client certificates that way).  ``sent`` is false when the local OpenSSL
    refused before a byte went out (e.g. no protocol version or cipher left to offer).  ``chain`` is the
    server's certificates in the order sent, DER; ``received`` every byte the server sent.
    """

    flight: ServerFlight
    error: ssl.SSLError | None = None
    after_handshake: bool = False
    sent: bool = True
    protocol: ProtocolVersion | None = None
    cipher: str | None = None
    alpn: str | None = None
    chain: tuple[bytes, ...] = ()
    received: bytes = field(default=b"", repr=False)

    @property
    def completed(self) -> bool:
        """The handshake finished and the server did not reject it afterwards."""
        return self.error is None


def _unverified_chain(obj: ssl.SSLObject) -> tuple[bytes, ...]:
    # Public (returning DER) since Python 3.13; on 3.10-3.12 only the C object has it (returning Certificates).
    getter = getattr(obj, "get_unverified_chain", None) or obj._sslobj.get_unverified_chain  # type: ignore[attr-defined]
    certs: list[Any] = getter() or []
    return tuple(c if isinstance(c, bytes) else c.public_bytes(2) for c in certs)  # 2 = _ssl.ENCODING_DER


def _has_complete_record(data: bytes | bytearray) -> bool:
    return len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big")


class _Pump:
    """Moves bytes between a socket and an SSLObject's memory BIOs, remembering what the server sent."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, server_hostname: str | None, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self.received = bytearray()
        self.sent = False

    def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sent = True
            # Best effort: a server that already closed must not hide the TLS error we are about to report.
            with contextlib.suppress(OSError):
                self.sock.sendall(data)

    def fill(self, *, until: float | None = None) -> bool:
        """Receive once into the incoming BIO; False on EOF.  Raises TimeoutError at the deadline."""
        left = (until or self.deadline) - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.incoming.write_eof()
            return False
        self.received += data
        self.incoming.write(data)
        return True

    def do_handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                self.flush()
                self.fill()
            except ssl.SSLError:
                self.flush()  # send our alert, as a real client would
                raise
            else:
                self.flush()
                return

    def settle(self, seconds: float) -> ssl.SSLError | None:
        """Read after the handshake until the server has said something, to catch a TLS 1.3 rejection alert.

        A TLS 1.3 server checks the client's certificate only after the client considers the handshake done;
        it then sends either an alert or (OpenSSL, Go, ...) session tickets.  One complete record is enough to
        know which; a silent server is given ``seconds``.
        """
        start, until = len(self.received), min(self.deadline, time.monotonic() + seconds)
        while True:
            try:
                self.obj.read(1)
                return None  # the server spoke first: it accepted us
            except ssl.SSLWantReadError:
                if _has_complete_record(self.received[start:]):
                    return None
                try:
                    if not self.fill(until=until):
                        continue  # EOF: the next read raises the reason
                except (TimeoutError, OSError):
                    return None
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return None  # closed without a word: nothing was rejected
            except ssl.SSLError as exc:
                return exc


def handshake(
    host: str,
    port: int,
    *,
    context: ssl.SSLContext,
    server_name: str | None,
    timeout: float = 10.0,
    settle: float = 0.0,
) -> Handshake:
    """Connect, handshake once, and report what happened; TLS failures are returned, not raised.

    ``settle`` > 0 waits that long after a TLS 1.3 handshake for a rejection alert.  Raises ``OSError``
    (``ConnectionRefusedError``, ``TimeoutError``, ``socket.gaierror``) when there is no TCP connection or the
    server stops answering.
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        pump = _Pump(sock, context, server_name, deadline)
        error: ssl.SSLError | None = None
        after = False
        try:
            pump.do_handshake()
        except ssl.SSLError as exc:
            error = exc
        else:
            if settle > 0 and pump.obj.version() == "TLSv1.3":
                error = pump.settle(settle)
                after = error is not None
        received = bytes(pump.received)
        flight = parse_server_flight(received)
        chain = _unverified_chain(pump.obj)  # still there after a failure, once the chain arrived
        if error is None:
            with contextlib.suppress(ssl.SSLError):
                pump.obj.unwrap()  # queues our close_notify; the peer's answer is not worth waiting for
            pump.flush()
        cipher = pump.obj.cipher()
        return Handshake(
            flight=flight,
            error=error,
            after_handshake=after,
            sent=pump.sent,
            protocol=ProtocolVersion.from_ssl(pump.obj.version()) or flight.version,
            cipher=cipher[0] if cipher else None,
            alpn=pump.obj.selected_alpn_protocol(),
            chain=chain,
            received=received,
        )
