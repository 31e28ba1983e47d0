"""Sans-IO TLS record and handshake parser: bytes in, events out (in the style of h11).

It decodes what a passive observer of one TCP connection can read: the record layer (types, versions,
lengths), the handshake messages sent in clear (ClientHello, ServerHello, and under TLS 1.2 the certificate
chain and the key exchange group), ChangeCipherSpec and plaintext alerts.  Everything after the keys change
is opaque; its bodies are skipped by arithmetic, never buffered, so a bulk transfer costs one header decode
per record.

The parser is tolerant (records split across reads, handshake messages split across records or coalesced
into one) and total: malformed input yields a :class:`Malformed` event and the direction stops decoding;
it never raises.  A stream whose first bytes are not a TLS record header is reported as plaintext.
The event types live in :mod:`.tls_events` and the message decoders in :mod:`.handshake`; both are
re-exported here.

Usage::

    parser = ConnectionParser()
    for event in parser.feed(Direction.CLIENT_TO_SERVER, data):
        ...
    parser.end(Direction.CLIENT_TO_SERVER)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._iana import handshake_name
from .handshake import (
    DecodeError,
    describe_certificate,
    parse_certificate,
    parse_client_hello,
    parse_server_hello,
    parse_server_key_exchange,
)
from .tls_events import (
    Alert,
    CertificateInfo,
    Certificates,
    ChangeCipherSpec,
    ClientHello,
    ContentType,
    Direction,
    EndOfStream,
    Event,
    HandshakeMessage,
    Malformed,
    Plaintext,
    Record,
    ServerHello,
    ServerKeyExchange,
    StreamDetected,
    StreamKind,
)

__all__ = [
    "MAX_HANDSHAKE_LENGTH",
    "MAX_RECORD_LENGTH",
    "Alert",
    "CertificateInfo",
    "Certificates",
    "ChangeCipherSpec",
    "ClientHello",
    "ConnectionParser",
    "ContentType",
    "Direction",
    "EndOfStream",
    "Event",
    "HandshakeMessage",
    "Malformed",
    "Negotiated",
    "Plaintext",
    "Record",
    "ServerHello",
    "ServerKeyExchange",
    "StreamDetected",
    "StreamKind",
    "StreamParser",
    "describe_certificate",
]

#: Largest TLSCiphertext fragment any TLS version allows (2^14 + 2048, RFC 5246 section 6.2.3).
MAX_RECORD_LENGTH = 2**14 + 2048
#: Largest handshake message reassembled; real chains are a few KiB (OpenSSL's default limit is 100 KiB).
MAX_HANDSHAKE_LENGTH = 2**18
TLS13 = 0x0304
_CONTENT_TYPES = frozenset(int(ct) for ct in ContentType)


@dataclass
class Negotiated:
    """What the ServerHello settled, shared by both directions of a connection (mutable parser state)."""

    version: int | None = None
    cipher_suite: int | None = None

    @property
    def tls13(self) -> bool:
        """True once a TLS 1.3 (or draft) ServerHello or HelloRetryRequest was seen."""
        return self.version is not None and (self.version == TLS13 or self.version >> 8 == 0x7F)


class _State(enum.Enum):
    DETECT = enum.auto()
    PLAINTEXT = enum.auto()
    RECORDS = enum.auto()
    STOPPED = enum.auto()


class StreamParser:
    """Parser for one direction.  ``feed`` bytes as they arrive, ``end`` at EOF; both return events."""

    def __init__(self, direction: Direction, *, negotiated: Negotiated | None = None) -> None:
        self.direction = direction
        self.negotiated = negotiated if negotiated is not None else Negotiated()
        self.kind: StreamKind | None = None
        self._state = _State.DETECT
        self._buf = bytearray()  # undecoded bytes; between feeds at most one unfinished clear record
        self._handshake = bytearray()  # clear handshake bytes awaiting a complete message
        self._skip = 0  # body bytes of an encrypted record still to pass over
        self._ccs_seen = False

    @property
    def stopped(self) -> bool:
        """True after a :class:`Malformed` event or :meth:`end`."""
        return self._state is _State.STOPPED

    def feed(self, data: bytes) -> list[Event]:
        """Consume the next bytes of this direction."""
        events: list[Event] = []
        if not data or self._state is _State.STOPPED:
            return events
        if self._state is _State.DETECT:
            self._buf += data
            kind = _detect(self._buf)
            if kind is None:
                return events
            self.kind = kind
            events.append(StreamDetected(self.direction, kind))
            data = bytes(self._buf)
            self._buf.clear()
            self._state = _State.PLAINTEXT if kind is StreamKind.PLAINTEXT else _State.RECORDS
        if self._state is _State.PLAINTEXT:
            events.append(Plaintext(self.direction, data))
            return events
        try:
            self._records(data, events)
        except DecodeError as exc:
            events.append(Malformed(self.direction, str(exc)))
            self._stop()
        return events

    def end(self) -> list[Event]:
        """The direction ended (EOF or reset)."""
        events: list[Event] = []
        if self._state is _State.DETECT and self._buf:
            # Too short to be a record header: whatever it is, it travelled readable.
            events += [
                StreamDetected(self.direction, StreamKind.PLAINTEXT),
                Plaintext(self.direction, bytes(self._buf)),
            ]
            self.kind = StreamKind.PLAINTEXT
            self._buf.clear()
        elif self._state is _State.STOPPED:
            return events
        events.append(EndOfStream(self.direction, len(self._buf) + self._skip + len(self._handshake)))
        self._stop()
        return events

    def _stop(self) -> None:
        self._state = _State.STOPPED
        self._buf.clear()
        self._handshake.clear()
        self._skip = 0

    def _encrypted(self, content_type: int, length: int) -> bool:
        if content_type in (ContentType.APPLICATION_DATA, ContentType.TLS12_CID):
            return True
        if self._ccs_seen and not self.negotiated.tls13:
            return True  # TLS 1.2: ChangeCipherSpec switched this direction to the new keys
        # A clear alert is exactly two bytes; anything else of that type is ciphertext.
        return content_type == ContentType.ALERT and length != 2

    def _records(self, data: bytes, events: list[Event]) -> None:
        start = 0
        if self._skip:
            start = min(self._skip, len(data))
            self._skip -= start
            if start == len(data):
                return
        buf = self._buf
        buf += memoryview(data)[start:]
        off = 0
        try:
            while len(buf) - off >= 5:
                content_type, major, minor = buf[off], buf[off + 1], buf[off + 2]
                length = int.from_bytes(buf[off + 3 : off + 5], "big")
                if content_type not in _CONTENT_TYPES:
                    raise DecodeError(f"unknown record type {content_type}: not TLS (or out of sync)")
                if major != 3 or minor > 4:
                    raise DecodeError(f"record version {major}.{minor} is not SSL 3.0 to TLS 1.3")
                if length > MAX_RECORD_LENGTH:
                    raise DecodeError(f"record length {length} exceeds the TLS maximum {MAX_RECORD_LENGTH}")
                ctype = ContentType(content_type)
                version = (major << 8) | minor
                available = len(buf) - off - 5
                if self._encrypted(ctype, length):
                    if self._handshake:
                        raise DecodeError("a handshake message was cut short by an encrypted record")
                    events.append(Record(self.direction, ctype, version, length, encrypted=True))
                    if ctype is ContentType.ALERT:
                        events.append(Alert(self.direction, None, None))
                    if available < length:
                        self._skip = length - available
                        off = len(buf)
                        break
                    off += 5 + length
                    continue
                if available < length:
                    break
                body = bytes(buf[off + 5 : off + 5 + length])
                off += 5 + length
                events.append(Record(self.direction, ctype, version, length, encrypted=False))
                self._clear_record(ctype, body, events)
        finally:
            del buf[:off]

    def _clear_record(self, ctype: ContentType, body: bytes, events: list[Event]) -> None:
        if ctype is not ContentType.HANDSHAKE and self._handshake:
            raise DecodeError(f"a handshake message was interrupted by a {ctype.name} record")
        if ctype is ContentType.CHANGE_CIPHER_SPEC:
            self._ccs_seen = True
            events.append(ChangeCipherSpec(self.direction))
        elif ctype is ContentType.ALERT:
            events.append(Alert(self.direction, body[0], body[1]))
        elif ctype is ContentType.HANDSHAKE:
            self._handshake += body
            self._messages(events)
        # A heartbeat in clear carries nothing worth decoding; the Record event already says it was there.

    def _messages(self, events: list[Event]) -> None:
        hs = self._handshake
        while len(hs) >= 4:
            msg_type, length = hs[0], int.from_bytes(hs[1:4], "big")
            if length > MAX_HANDSHAKE_LENGTH:
                raise DecodeError(f"{handshake_name(msg_type)} of {length} bytes exceeds {MAX_HANDSHAKE_LENGTH}")
            if len(hs) < 4 + length:
                return
            body = bytes(hs[4 : 4 + length])
            del hs[: 4 + length]
            events.append(self._message(msg_type, body))

    def _message(self, msg_type: int, body: bytes) -> Event:
        if msg_type == 1:
            return parse_client_hello(self.direction, body)
        if msg_type == 2:
            hello = parse_server_hello(self.direction, body)
            self.negotiated.version = TLS13 if hello.hello_retry_request else hello.version
            self.negotiated.cipher_suite = hello.cipher_suite
            return hello
        if msg_type == 11:
            return parse_certificate(self.direction, body, tls13=self.negotiated.tls13)
        if msg_type == 12:
            return parse_server_key_exchange(self.direction, body, suite=self.negotiated.cipher_suite)
        return HandshakeMessage(self.direction, msg_type=msg_type, length=len(body))


def _detect(head: bytearray) -> StreamKind | None:
    """TLS if the stream starts like a record header (known type, major version 3); ``None``: need more."""
    if head[0] not in _CONTENT_TYPES:
        return StreamKind.PLAINTEXT
    if len(head) < 2:
        return None
    return StreamKind.TLS if head[1] == 3 else StreamKind.PLAINTEXT


class ConnectionParser:
    """Both directions of one connection, sharing what the ServerHello negotiated.

    The client direction needs the server's choice: under TLS 1.3 a ChangeCipherSpec is a no-op and the
    handshake records after it are still clear, under TLS 1.2 they are encrypted.
    """

    def __init__(self) -> None:
        self.negotiated = Negotiated()
        self.streams = {d: StreamParser(d, negotiated=self.negotiated) for d in Direction}

    def feed(self, direction: Direction, data: bytes) -> list[Event]:
        """Consume bytes seen travelling in ``direction``."""
        return self.streams[direction].feed(data)

    def end(self, direction: Direction) -> list[Event]:
        """``direction`` ended."""
        return self.streams[direction].end()
