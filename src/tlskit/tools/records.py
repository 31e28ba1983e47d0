"""Sans-IO TLS record and handshake parser: bytes in, events out (in the style of h11).

It decodes what a passive observer of one TCP connection can read: the record layer (types, versions,
lengths), the handshake messages sent in clear (ClientHello, ServerHello, and under TLS 1.2 the certificate
chain and the key exchange group), ChangeCipherSpec and plaintext alerts.  Everything after the keys change
is opaque; its bodies are skipped by arithmetic, never buffered, so a bulk transfer costs one header decode
per record.

The parser is tolerant (records split across reads, handshake messages split across records or coalesced
into one) and total: malformed input yields a :class:`Malformed` event and the direction stops decoding;
it never raises.  A stream whose first bytes are not a TLS record header is reported as plaintext.

Usage::

    parser = ConnectionParser()
    for event in parser.feed(Direction.CLIENT_TO_SERVER, data):
        ...
    parser.end(Direction.CLIENT_TO_SERVER)
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass

from cryptography import x509

from ._iana import cipher_suite_name, extension_name, handshake_name

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
#: A ServerHello with this random is a HelloRetryRequest (RFC 8446 section 4.1.3).
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
TLS13 = 0x0304


class Direction(enum.StrEnum):
    """Which way the bytes travel."""

    CLIENT_TO_SERVER = "client->server"
    SERVER_TO_CLIENT = "server->client"


class StreamKind(enum.StrEnum):
    """What a direction's first bytes say it carries."""

    TLS = "tls"
    PLAINTEXT = "plaintext"


class ContentType(enum.IntEnum):
    """TLS record content types."""

    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    HEARTBEAT = 24
    TLS12_CID = 25


_CONTENT_TYPES = frozenset(int(ct) for ct in ContentType)


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every parser event."""

    direction: Direction


@dataclass(frozen=True, slots=True)
class StreamDetected(Event):
    """The first bytes of a direction were classified (always the first event of a direction)."""

    kind: StreamKind


@dataclass(frozen=True, slots=True)
class Plaintext(Event):
    """Bytes of a non-TLS stream, exactly as they travelled."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Record(Event):
    """One record header.  ``encrypted`` records are emitted as soon as the header arrives (body skipped)."""

    content_type: ContentType
    version: int
    length: int
    encrypted: bool


@dataclass(frozen=True, slots=True)
class ClientHello(Event):
    """The ClientHello, sent in clear by every TLS version (RFC 8446 section 4.1.2)."""

    legacy_version: int
    session_id_length: int
    cipher_suites: tuple[int, ...]
    extensions: tuple[int, ...]
    server_name: str | None
    alpn: tuple[str, ...]
    supported_versions: tuple[int, ...]
    supported_groups: tuple[int, ...]
    key_share_groups: tuple[int, ...]
    signature_algorithms: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ServerHello(Event):
    """The ServerHello (or HelloRetryRequest).  ``version`` is the negotiated one (supported_versions wins)."""

    legacy_version: int
    version: int
    cipher_suite: int
    session_id_length: int
    extensions: tuple[int, ...]
    hello_retry_request: bool
    key_share_group: int | None
    alpn: str | None


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What a sniffer learns from one certificate in a clear-text Certificate message."""

    size: int
    subject: str = ""
    issuer: str = ""
    dns_names: tuple[str, ...] = ()
    not_after: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Certificates(Event):
    """A Certificate message seen in clear (TLS 1.2 and older): the chain, leaf first."""

    certificates: tuple[CertificateInfo, ...]


@dataclass(frozen=True, slots=True)
class ServerKeyExchange(Event):
    """TLS 1.2 ServerKeyExchange: the (EC)DHE group, or the size of a finite-field prime."""

    length: int
    group: int | None
    dh_bits: int | None


@dataclass(frozen=True, slots=True)
class HandshakeMessage(Event):
    """Any other handshake message seen in clear (ServerHelloDone, ClientKeyExchange, ...)."""

    msg_type: int
    length: int


@dataclass(frozen=True, slots=True)
class ChangeCipherSpec(Event):
    """ChangeCipherSpec: under TLS 1.2 everything after it in this direction is encrypted."""


@dataclass(frozen=True, slots=True)
class Alert(Event):
    """An alert; ``level`` and ``description`` are ``None`` when it was encrypted."""

    level: int | None
    description: int | None

    @property
    def encrypted(self) -> bool:
        """True if the alert travelled encrypted (only its existence is visible)."""
        return self.description is None


@dataclass(frozen=True, slots=True)
class Malformed(Event):
    """The direction stopped being decodable; no further events follow for it."""

    reason: str


@dataclass(frozen=True, slots=True)
class EndOfStream(Event):
    """The direction ended; ``incomplete`` counts bytes of an unfinished record or message left over."""

    incomplete: int


class _DecodeError(Exception):
    """Raised inside the parser only; turned into a :class:`Malformed` event."""


class _Reader:
    """Bounds-checked big-endian reader over one message."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int) -> bytes:
        if n > self.remaining:
            raise _DecodeError(f"{self._what} is truncated")
        self._pos += n
        return self._data[self._pos - n : self._pos]

    def uint(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def vec(self, width: int) -> bytes:
        return self.take(self.uint(width))

    def sub(self, width: int, what: str) -> _Reader:
        return _Reader(self.vec(width), what)

    def end(self) -> None:
        if self.remaining:
            raise _DecodeError(f"{self._what} has {self.remaining} unexpected trailing bytes")


def _u16s(data: bytes, what: str) -> tuple[int, ...]:
    if len(data) % 2:
        raise _DecodeError(f"{what} has an odd length")
    return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def _text(raw: bytes) -> str:
    """Peer-supplied names as safe text: non-printable characters escaped, never interpreted."""
    decoded = raw.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in decoded)


def _extensions(r: _Reader, what: str) -> list[tuple[int, bytes]]:
    if not r.remaining:  # extensions are optional before TLS 1.3
        return []
    block = r.sub(2, f"{what} extensions")
    out = []
    while block.remaining:
        ext_type = block.uint(2)
        out.append((ext_type, block.vec(2)))
    return out


def _alpn(r: _Reader, what: str) -> tuple[str, ...]:
    names = r.sub(2, what)
    out = []
    while names.remaining:
        out.append(_text(names.vec(1)))
    return tuple(out)


def _parse_client_hello(direction: Direction, body: bytes) -> ClientHello:
    r = _Reader(body, "ClientHello")
    legacy_version = r.uint(2)
    r.take(32)  # random
    session_id = r.vec(1)
    suites = _u16s(r.vec(2), "ClientHello cipher suites")
    r.vec(1)  # compression methods
    extensions = _extensions(r, "ClientHello")
    r.end()
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    groups: tuple[int, ...] = ()
    shares: list[int] = []
    sigalgs: tuple[int, ...] = ()
    for ext_type, data in extensions:
        what = f"ClientHello {extension_name(ext_type)} extension"
        e = _Reader(data, what)
        if ext_type == 0 and data:
            names = e.sub(2, what)
            while names.remaining:
                name_type, name = names.uint(1), names.vec(2)
                if name_type == 0 and server_name is None:
                    server_name = _text(name)
        elif ext_type == 16:
            alpn = _alpn(e, what)
        elif ext_type == 43:
            versions = _u16s(e.vec(1), what)
        elif ext_type == 10:
            groups = _u16s(e.vec(2), what)
        elif ext_type == 51:
            entries = e.sub(2, what)
            while entries.remaining:
                shares.append(entries.uint(2))
                entries.vec(2)  # the public key itself
        elif ext_type == 13:
            sigalgs = _u16s(e.vec(2), what)
        else:
            continue
        e.end()
    return ClientHello(
        direction,
        legacy_version=legacy_version,
        session_id_length=len(session_id),
        cipher_suites=suites,
        extensions=tuple(ext_type for ext_type, _ in extensions),
        server_name=server_name,
        alpn=alpn,
        supported_versions=versions,
        supported_groups=groups,
        key_share_groups=tuple(shares),
        signature_algorithms=sigalgs,
    )


def _parse_server_hello(direction: Direction, body: bytes) -> ServerHello:
    r = _Reader(body, "ServerHello")
    legacy_version = r.uint(2)
    hrr = r.take(32) == HRR_RANDOM
    session_id = r.vec(1)
    suite = r.uint(2)
    r.uint(1)  # compression method
    extensions = _extensions(r, "ServerHello")
    r.end()
    version, key_share, alpn = legacy_version, None, None
    for ext_type, data in extensions:
        what = f"ServerHello {extension_name(ext_type)} extension"
        e = _Reader(data, what)
        if ext_type == 43:
            version = e.uint(2)
        elif ext_type == 51:
            key_share = e.uint(2)
            if not hrr:  # a HelloRetryRequest names only the group it wants
                e.vec(2)
        elif ext_type == 16:
            alpn = next(iter(_alpn(e, what)), None)
        else:
            continue
        e.end()
    return ServerHello(
        direction,
        legacy_version=legacy_version,
        version=version,
        cipher_suite=suite,
        session_id_length=len(session_id),
        extensions=tuple(ext_type for ext_type, _ in extensions),
        hello_retry_request=hrr,
        key_share_group=key_share,
        alpn=alpn,
    )


def describe_certificate(der: bytes) -> CertificateInfo:
    """Subject, issuer, DNS names and expiry of a DER certificate; unparseable input is described, not raised."""
    try:
        with warnings.catch_warnings():
            # Peer-supplied oddities (e.g. bad string types) warn; the tap reports, it does not lint.
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                dns_names = tuple(san.get_values_for_type(x509.DNSName))
            except x509.ExtensionNotFound:
                dns_names = ()
            return CertificateInfo(
                size=len(der),
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                dns_names=dns_names,
                not_after=cert.not_valid_after_utc.isoformat(),
            )
    # Hostile DER reaches cryptography's lazy accessors, which raise ValueError, TypeError, InvalidVersion,
    # DuplicateExtension...; any of them means "not a certificate we can describe", never a crash.
    except Exception as exc:
        return CertificateInfo(size=len(der), error=f"not a parseable X.509 certificate ({exc})")


def _parse_certificate(direction: Direction, body: bytes, *, tls13: bool) -> Certificates:
    r = _Reader(body, "Certificate")
    if tls13:
        r.vec(1)  # certificate_request_context
    entries = r.sub(3, "Certificate list")
    r.end()
    certs = []
    while entries.remaining:
        certs.append(describe_certificate(entries.vec(3)))
        if tls13:
            entries.vec(2)  # per-certificate extensions
    return Certificates(direction, certificates=tuple(certs))


def _parse_server_key_exchange(direction: Direction, body: bytes, *, suite: int | None) -> ServerKeyExchange:
    r = _Reader(body, "ServerKeyExchange")
    name = cipher_suite_name(suite) if suite is not None else ""
    group = dh_bits = None
    if "_ECDHE_" in name:
        if r.uint(1) == 3:  # named_curve; explicit curves carry no group id
            group = r.uint(2)
    elif "_DHE_" in name:
        dh_bits = int.from_bytes(r.vec(2), "big").bit_length()
    return ServerKeyExchange(direction, length=len(body), group=group, dh_bits=dh_bits)


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
        self._buf = bytearray()  # undecoded record bytes (at most one record plus a header)
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
        except _DecodeError as exc:
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
                    raise _DecodeError(f"unknown record type {content_type}: not TLS (or out of sync)")
                if major != 3 or minor > 4:
                    raise _DecodeError(f"record version {major}.{minor} is not SSL 3.0 to TLS 1.3")
                if length > MAX_RECORD_LENGTH:
                    raise _DecodeError(f"record length {length} exceeds the TLS maximum {MAX_RECORD_LENGTH}")
                ctype = ContentType(content_type)
                version = (major << 8) | minor
                available = len(buf) - off - 5
                if self._encrypted(ctype, length):
                    if self._handshake:
                        raise _DecodeError("a handshake message was cut short by an encrypted record")
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
            raise _DecodeError(f"a handshake message was interrupted by a {ctype.name} record")
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
                raise _DecodeError(f"{handshake_name(msg_type)} of {length} bytes exceeds {MAX_HANDSHAKE_LENGTH}")
            if len(hs) < 4 + length:
                return
            body = bytes(hs[4 : 4 + length])
            del hs[: 4 + length]
            events.append(self._message(msg_type, body))

    def _message(self, msg_type: int, body: bytes) -> Event:
        if msg_type == 1:
            return _parse_client_hello(self.direction, body)
        if msg_type == 2:
            hello = _parse_server_hello(self.direction, body)
            self.negotiated.version = TLS13 if hello.hello_retry_request else hello.version
            self.negotiated.cipher_suite = hello.cipher_suite
            return hello
        if msg_type == 11:
            return _parse_certificate(self.direction, body, tls13=self.negotiated.tls13)
        if msg_type == 12:
            return _parse_server_key_exchange(self.direction, body, suite=self.negotiated.cipher_suite)
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
