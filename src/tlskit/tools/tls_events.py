"""The events the TLS record parser emits, and the enums they use.

Every event is an immutable value naming its :class:`Direction`; the parser in :mod:`tlskit.tools.records`
produces them and the tap's observer consumes them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Alert",
    "CertificateInfo",
    "Certificates",
    "ChangeCipherSpec",
    "ClientHello",
    "ContentType",
    "Direction",
    "EndOfStream",
    "Event",
    "HandshakeMessage",
    "Malformed",
    "Plaintext",
    "Record",
    "ServerHello",
    "ServerKeyExchange",
    "StreamDetected",
    "StreamKind",
]


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
