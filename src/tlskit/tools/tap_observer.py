"""What an eavesdropper learns from one connection: parser events in, observations and a verdict out.

The observer is driven by the relay (``data``, ``ended``, ``closed``) and hands :class:`Observation` objects
to a sink (a renderer, or a list in tests).  Encrypted records and plaintext beyond the display limit are
aggregated into bursts so a bulk transfer prints a few lines per second, not one per record; the relay asks
:meth:`ConnectionObserver.next_flush_in` when to call :meth:`ConnectionObserver.tick` to flush an idle burst.
"""

from __future__ import annotations

import datetime as dt
import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._iana import (
    alert_name,
    cipher_suite_name,
    extension_name,
    group_name,
    handshake_name,
    signature_scheme_name,
    version_name,
)
from .records import (
    Alert,
    CertificateInfo,
    Certificates,
    ChangeCipherSpec,
    ClientHello,
    ConnectionParser,
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

__all__ = ["ConnectionObserver", "Observation", "PayloadView", "Sink", "TapOptions", "verdict"]

READABLE = "plaintext: readable by anyone on the path"
_OPAQUE_TYPES = (ContentType.APPLICATION_DATA, ContentType.TLS12_CID, ContentType.HEARTBEAT)
_LINE_BREAKS = str.maketrans("", "", "\r\n\t")
# Token bucket for flushing a burst when the other direction starts talking: immediate, ordered output
# for request/response traffic, yet bounded output when both directions stream at once.
_TURN_TOKENS, _TURN_REFILL_PER_S = 8.0, 4.0


class PayloadView(enum.StrEnum):
    """How plaintext payloads are shown: as text where printable (else hex), or always as a hex dump."""

    AUTO = "auto"
    HEX = "hex"


@dataclass(frozen=True)
class TapOptions:
    """Tap settings.  ``max_shown`` plaintext bytes per direction are shown (``None``: all), the rest counted."""

    view: PayloadView = PayloadView.AUTO
    max_shown: int | None = 16384
    burst_gap: float = 0.25
    burst_span: float = 1.0
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class Observation:
    """One thing the eavesdropper saw.  ``fields`` are JSON-able; ``elapsed`` counts from connection start."""

    conn: int
    event: str
    direction: Direction | None
    time: dt.datetime
    elapsed: float
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The flat object printed by ``tlskit tap --json``."""
        return {
            "conn": self.conn,
            "dir": self.direction.value if self.direction else None,
            "time": self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "elapsed": round(self.elapsed, 6),
            "event": self.event,
            **self.fields,
        }


Sink = Callable[[Observation], None]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _other(direction: Direction) -> Direction:
    if direction is Direction.CLIENT_TO_SERVER:
        return Direction.SERVER_TO_CLIENT
    return Direction.CLIENT_TO_SERVER


def payload_fields(data: bytes, view: PayloadView) -> dict[str, str]:
    """``{"text": ...}`` if ``data`` is printable UTF-8 (and hex was not asked for), else ``{"hex": ...}``."""
    if view is PayloadView.AUTO:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if text.translate(_LINE_BREAKS).isprintable():
                return {"text": text}
    return {"hex": data.hex()}


@dataclass
class _Burst:
    kind: str
    note: str | None
    start: float
    last: float
    wall: dt.datetime
    records: int = 0
    size: int = 0


@dataclass
class _Summary:
    """What the verdict is computed from."""

    kinds: dict[Direction, StreamKind] = field(default_factory=dict)
    client_hello: ClientHello | None = None
    server_hello: ServerHello | None = None
    hello_retry: bool = False
    certificates: dict[Direction, tuple[CertificateInfo, ...]] = field(default_factory=dict)
    encrypted_records: dict[Direction, int] = field(default_factory=dict)
    alerts: list[tuple[Direction, int, int]] = field(default_factory=list)
    malformed: dict[Direction, str] = field(default_factory=dict)
    connect_error: str | None = None


class ConnectionObserver:
    """Observes one relayed connection.  Never raises from its entry points: the relay must not depend on it."""

    def __init__(
        self,
        conn: int,
        sink: Sink,
        *,
        options: TapOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.conn = conn
        self._sink = sink
        self._options = options or TapOptions()
        self._clock = clock
        self._wall = wall
        self._t0 = clock()
        self._parser = ConnectionParser()
        self._summary = _Summary()
        self._bytes = dict.fromkeys(Direction, 0)
        self._shown = dict.fromkeys(Direction, 0)
        self._bursts: dict[Direction, _Burst] = {}
        self._alert_length: dict[Direction, int] = {}
        self._blind: set[Direction] = set()  # directions no longer decoded after an observer fault
        self._tokens, self._tokens_at = _TURN_TOKENS, self._t0
        self._closed = False

    # -- driven by the relay ------------------------------------------------------------------------

    def opened(self, *, client: str, upstream: str) -> None:
        """A client connected; the tap is connecting to ``upstream``."""
        self._emit("open", None, client=client, upstream=upstream)

    def connect_failed(self, error: str) -> None:
        """The upstream connection failed; the client connection is being closed."""
        self._summary.connect_error = error
        self._emit("connect_failed", None, error=error)

    def data(self, direction: Direction, data: bytes) -> None:
        """Bytes relayed in ``direction`` (already written on)."""
        self._bytes[direction] += len(data)
        if direction in self._blind:
            return
        try:
            for event in self._parser.feed(direction, data):
                self._event(event)
        except Exception as exc:  # a parser bug must cost the display, never the relayed connection
            self._fault(direction, exc)

    def ended(self, direction: Direction, *, error: str | None = None) -> None:
        """``direction`` ended: EOF (half-close), or ``error`` (reset)."""
        incomplete = 0
        try:
            for event in [] if direction in self._blind else self._parser.end(direction):
                if isinstance(event, EndOfStream):
                    incomplete = event.incomplete
                else:
                    self._event(event)
        except Exception as exc:
            self._fault(direction, exc)
        self._emit("end", direction, bytes=self._bytes[direction], incomplete=incomplete, error=error)

    def closed(self) -> None:
        """Both sides are closed: flush, summarize, give the verdict (once)."""
        if self._closed:
            return
        self._closed = True
        self._flush_all()
        now = self._clock()
        self._emit(
            "close",
            None,
            duration=round(now - self._t0, 6),
            bytes={d.value: n for d, n in self._bytes.items()},
        )
        text, details = verdict(self._summary)
        self._emit("verdict", None, text=text, **details)

    def next_flush_in(self) -> float | None:
        """Seconds until :meth:`tick` should run to flush a burst, or ``None`` if none is pending."""
        opts = self._options
        deadlines = [min(b.last + opts.burst_gap, b.start + opts.burst_span) for b in self._bursts.values()]
        return None if not deadlines else max(0.0, min(deadlines) - self._clock())

    def tick(self) -> None:
        """Flush bursts that went idle or grew old."""
        now = self._clock()
        opts = self._options
        for direction, b in list(self._bursts.items()):
            if now - b.last >= opts.burst_gap or now - b.start >= opts.burst_span:
                self._flush(direction)

    # -- events ---------------------------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        d = event.direction
        s = self._summary
        match event:
            case Record():
                self._record(event)
            case Plaintext():
                self._plaintext(d, event.data)
            case StreamDetected():
                s.kinds[d] = event.kind
                self._emit("stream", d, kind=event.kind.value)
            case ClientHello():
                s.client_hello = event
                self._emit("client_hello", d, **_client_hello_fields(event))
            case ServerHello():
                if event.hello_retry_request:
                    s.hello_retry = True
                else:
                    s.server_hello = event
                self._emit("server_hello", d, **_server_hello_fields(event))
            case Certificates():
                s.certificates[d] = event.certificates
                self._emit("certificate", d, certificates=[_cert_fields(c) for c in event.certificates])
            case ServerKeyExchange():
                group = group_name(event.group) if event.group is not None else None
                self._emit("server_key_exchange", d, group=group, dh_bits=event.dh_bits, length=event.length)
            case HandshakeMessage():
                self._emit("handshake", d, message=handshake_name(event.msg_type), length=event.length)
            case ChangeCipherSpec():
                tls13 = self._parser.negotiated.tls13
                meaning = "TLS 1.3 compatibility no-op" if tls13 else "from here on this direction is encrypted"
                self._emit("change_cipher_spec", d, meaning=meaning)
            case Alert():
                self._alert(event)
            case Malformed():
                s.malformed[d] = event.reason
                self._emit("malformed", d, reason=event.reason)
            case _:
                pass

    def _record(self, record: Record) -> None:
        d = record.direction
        if record.encrypted:
            self._summary.encrypted_records[d] = self._summary.encrypted_records.get(d, 0) + 1
            if record.content_type in _OPAQUE_TYPES:
                self._add_burst(d, "application_data", record.length, note=self._flight_note(d))
                return
            if record.content_type is ContentType.ALERT:
                self._alert_length[d] = record.length  # shown with the Alert event that follows
                return
        self._emit(
            "record",
            d,
            type=record.content_type.name.lower(),
            version=version_name(record.version),
            length=record.length,
            encrypted=record.encrypted,
        )

    def _flight_note(self, d: Direction) -> str | None:
        """Under TLS 1.3 the server's first encrypted flight, before the client's, is the rest of its handshake."""
        client_encrypted = self._summary.encrypted_records.get(Direction.CLIENT_TO_SERVER, 0)
        if d is Direction.SERVER_TO_CLIENT and self._parser.negotiated.tls13 and not client_encrypted:
            return "TLS 1.3 handshake: certificate and Finished travel encrypted"
        return None

    def _alert(self, alert: Alert) -> None:
        d = alert.direction
        if alert.level is None or alert.description is None:
            self._emit("alert", d, encrypted=True, length=self._alert_length.pop(d, None))
            return
        self._summary.alerts.append((d, alert.level, alert.description))
        level = {1: "warning", 2: "fatal"}.get(alert.level, f"level {alert.level}")
        self._emit("alert", d, encrypted=False, level=level, description=alert_name(alert.description))

    def _plaintext(self, d: Direction, data: bytes) -> None:
        limit = self._options.max_shown
        room = len(data) if limit is None else max(0, limit - self._shown[d])
        shown = data[:room]
        if shown:
            self._shown[d] += len(shown)
            self._emit("plaintext", d, bytes=len(shown), **payload_fields(shown, self._options.view))
        if len(data) > len(shown):
            self._add_burst(d, "plaintext_more", len(data) - len(shown))

    def _fault(self, direction: Direction, exc: Exception) -> None:
        self._blind.add(direction)
        self._emit("observer_error", direction, error=f"{type(exc).__name__}: {exc}")

    # -- output -----------------------------------------------------------------------------------------

    def _emit(self, event: str, direction: Direction | None, **fields: Any) -> None:
        if self._bursts:
            self._flush_all()  # discrete events stay in chronological order with the bursts before them
        self._sink(Observation(self.conn, event, direction, self._wall(), self._clock() - self._t0, fields))

    def _add_burst(self, d: Direction, kind: str, size: int, *, note: str | None = None) -> None:
        now = self._clock()
        burst = self._bursts.get(d)
        if burst is not None and (burst.kind, burst.note) != (kind, note):
            self._flush(d)
            burst = None
        if burst is None:
            if _other(d) in self._bursts and self._take_token(now):
                self._flush(_other(d))
            burst = self._bursts[d] = _Burst(kind, note, start=now, last=now, wall=self._wall())
        burst.records += 1
        burst.size += size
        burst.last = now
        if now - burst.start >= self._options.burst_span:
            self._flush(d)

    def _take_token(self, now: float) -> bool:
        self._tokens = min(_TURN_TOKENS, self._tokens + (now - self._tokens_at) * _TURN_REFILL_PER_S)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _flush_all(self) -> None:
        for d in sorted(self._bursts, key=lambda d: self._bursts[d].start):
            self._flush(d)

    def _flush(self, d: Direction) -> None:
        b = self._bursts.pop(d, None)
        if b is None:
            return
        fields: dict[str, Any] = {"bytes": b.size, "duration": round(b.last - b.start, 6)}
        if b.kind == "application_data":
            fields.update(records=b.records, encrypted=True)
            if b.note:
                fields["note"] = b.note
        else:
            fields.update(reads=b.records, shown=False)
        self._sink(Observation(self.conn, b.kind, d, b.wall, b.start - self._t0, fields))


def _names(values: tuple[int, ...], namer: Callable[[int], str]) -> list[str]:
    return [namer(v) for v in values]


def _client_hello_fields(ch: ClientHello) -> dict[str, Any]:
    return {
        "sni": ch.server_name,
        "alpn": list(ch.alpn),
        "supported_versions": _names(ch.supported_versions, version_name),
        "legacy_version": version_name(ch.legacy_version),
        "cipher_suites": _names(ch.cipher_suites, cipher_suite_name),
        "supported_groups": _names(ch.supported_groups, group_name),
        "key_share_groups": _names(ch.key_share_groups, group_name),
        "signature_algorithms": _names(ch.signature_algorithms, signature_scheme_name),
        "session_id_length": ch.session_id_length,
        "extensions": _names(ch.extensions, extension_name),
    }


def _server_hello_fields(sh: ServerHello) -> dict[str, Any]:
    return {
        "hello_retry_request": sh.hello_retry_request,
        "version": version_name(sh.version),
        "version_from_extension": 43 in sh.extensions,
        "legacy_version": version_name(sh.legacy_version),
        "cipher_suite": cipher_suite_name(sh.cipher_suite),
        "key_share_group": group_name(sh.key_share_group) if sh.key_share_group is not None else None,
        "alpn": sh.alpn,
        "session_id_length": sh.session_id_length,
        "extensions": _names(sh.extensions, extension_name),
    }


def _cert_fields(cert: CertificateInfo) -> dict[str, Any]:
    if cert.error:
        return {"size": cert.size, "error": cert.error}
    return {
        "subject": cert.subject,
        "issuer": cert.issuer,
        "dns_names": list(cert.dns_names),
        "not_after": cert.not_after,
        "size": cert.size,
    }


def _visible(s: _Summary) -> list[str]:
    items = []
    ch, sh = s.client_hello, s.server_hello
    if ch is not None and ch.server_name:
        items.append(f"server name {ch.server_name}")
    if sh is not None and sh.alpn:
        items.append(f"ALPN {sh.alpn}")  # before TLS 1.3 the server's choice travels in clear too
    elif ch is not None and ch.alpn:
        items.append("ALPN " + " / ".join(ch.alpn))
    for direction, what in (
        (Direction.SERVER_TO_CLIENT, "certificate chain"),
        (Direction.CLIENT_TO_SERVER, "client certificate"),
    ):
        certs = s.certificates.get(direction)
        if certs:
            items.append(f"{what} ({'; '.join(c.subject or '?' for c in certs)})")
    items.append("sizes and timing")
    return items


def verdict(s: _Summary) -> tuple[str, dict[str, Any]]:
    """One line saying what the path could read, plus structured details for JSON."""
    if s.connect_error is not None:
        return f"nothing relayed: {s.connect_error}", {"readable": False, "protocol": None, "visible": []}
    plain = [d for d, kind in s.kinds.items() if kind is StreamKind.PLAINTEXT]
    if plain:
        text = READABLE if len(plain) == len(s.kinds) else f"{READABLE} ({plain[0]} is not TLS)"
        return text, {"readable": True, "protocol": "plaintext", "visible": ["everything"]}
    if not s.kinds:
        return "no data exchanged", {"readable": False, "protocol": None, "visible": []}
    visible = _visible(s)
    details: dict[str, Any] = {"readable": False, "visible": visible}
    shown = "visible: " + ", ".join(visible)
    fatal = next(((d, desc) for d, level, desc in s.alerts if level == 2), None)
    failure = ""
    if fatal is not None:
        side = "server" if fatal[0] is Direction.SERVER_TO_CLIENT else "client"
        failure = f"handshake failed ({alert_name(fatal[1])} alert from the {side})"
    sh = s.server_hello
    if sh is None:
        details["protocol"] = "TLS"
        if s.malformed:
            return f"not decodable as TLS ({next(iter(s.malformed.values()))}); {shown}", details
        return f"TLS {failure or 'handshake not completed (no ServerHello seen)'}; {shown}", details
    name = version_name(sh.version)
    details["protocol"] = name
    if failure and not s.encrypted_records:
        return f"{name} {failure}; {shown}", details
    if sh.version < 0x0303:
        name += " (obsolete)"
    return f"{name}: contents encrypted; {shown}", details
