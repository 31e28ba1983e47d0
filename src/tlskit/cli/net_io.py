"""Plumbing shared by ``tlskit serve`` and ``tlskit connect``: stdio <-> connection pumps, framing on stdio,
and one-line descriptions of connections.

On stdin/stdout a connection is either a plain byte stream (``--frames raw``) or one message per line
(one JSON value per line with ``--json``), whatever the framing on the wire.  The log lines on stderr quote
peers (subjects, SNI, ALPN, errors): those values are printed with control characters escaped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._text import printable
from ..errors import FrameError, InputError, TLSError
from .common import to_flags

if TYPE_CHECKING:
    from cryptography import x509

    from ..net.connection import MessageCodec, TLSConnection

__all__ = [
    "CHUNK",
    "Framing",
    "PrintableFormatter",
    "StdinReader",
    "describe",
    "echo",
    "failure",
    "pump_in",
    "pump_out",
    "summary_lines",
    "write_stdout",
]

CHUNK = 64 * 1024
"""Bytes read at a time from a connection, stdin or a process."""


# --- messages <-> lines ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Framing:
    """How bytes on the wire map to lines on stdin/stdout: ``raw`` passes bytes through unchanged."""

    spec: str = "raw"
    json: bool = False

    @classmethod
    def from_options(cls, frames: str | None, as_json: bool) -> Framing:
        """``--json`` alone means newline-delimited JSON; ``--json`` over ``raw`` cannot work."""
        from ..net.framing import framer_from_spec

        spec = frames or ("lines" if as_json else "raw")
        framer_from_spec(spec)  # validate now, so a typo is a usage error before any connection
        if as_json and spec.strip().lower() == "raw":
            raise InputError("--json needs message framing", fix="add --frames lines, length or delim:HEX")
        return cls(spec, as_json)

    def codec(self) -> MessageCodec | None:
        """A fresh codec for one connection (framers buffer per connection), or None for raw bytes."""
        if self.spec == "raw":
            return None
        from ..net.framing import JsonCodec, framer_from_spec

        framer = framer_from_spec(self.spec)
        if framer is None:
            return None
        return JsonCodec(framer) if self.json else framer

    def to_line(self, message: Any) -> bytes:
        """One received message as one output line."""
        if self.json:
            return json.dumps(message, ensure_ascii=False).encode() + b"\n"
        return bytes(message) + b"\n"

    def from_line(self, line: bytes) -> Any:
        """One input line (without its newline) as a message to send; InputError if it is not JSON."""
        if not self.json:
            return line
        try:
            return json.loads(line)
        except ValueError as exc:
            raise InputError(f"not JSON: {line[:60]!r}", fix="write one JSON value per line") from exc


async def pump_in(
    conn: TLSConnection, framing: Framing, codec: MessageCodec | None, out: Callable[[bytes], Awaitable[None]]
) -> None:
    """Carry what the peer sends to ``out`` (bytes, or one line per message) until the peer closes."""
    if codec is None:
        while data := await conn.read(CHUNK):
            await out(data)
        return
    async for message in conn.messages(codec):
        await out(framing.to_line(message))


async def pump_out(
    chunks: Callable[[], Awaitable[bytes]],
    conn: TLSConnection,
    framing: Framing,
    codec: MessageCodec | None,
    *,
    warn: Callable[[str], None],
) -> None:
    """Carry bytes from ``chunks`` (b"" at EOF) to the peer: as they come, or one message per line."""
    pending = b""
    while data := await chunks():
        if codec is None:
            await conn.write(data)
            continue
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            await _send_line(conn, framing, codec, line, warn)
    if pending and codec is not None:
        await _send_line(conn, framing, codec, pending, warn)


async def _send_line(
    conn: TLSConnection, framing: Framing, codec: MessageCodec, line: bytes, warn: Callable[[str], None]
) -> None:
    line = line.removesuffix(b"\r")
    if not line.strip() and framing.json:
        return
    try:
        await conn.send(framing.from_line(line), codec)
    except (InputError, FrameError) as exc:
        warn(f"line not sent: {exc}")  # one bad line must not end the session


# --- describing connections ------------------------------------------------------------------------------


def _subject(cert: x509.Certificate | None) -> str:
    return "-" if cert is None else printable(cert.subject.rfc4514_string()) or "(empty subject)"


def describe(conn: TLSConnection) -> str:
    """One line: authorization, protocol, cipher, SNI, ALPN, resumption.

    A server that asked for no certificate (or made it optional and got none) says so: its client was not
    refused anything, so it is not "not authorized".
    """
    from ..net.context import ClientAuth

    if conn.authorized:
        who = f"authorized ({_subject(conn.peer_certificate)})"
    elif conn.client_auth is ClientAuth.NONE or (conn.client_auth is not None and conn.peer_certificate is None):
        who = f"anonymous client ({printable(str(conn.authorization_error))})"
    else:
        who = f"not authorized ({printable(str(conn.authorization_error))})"
    cipher = conn.cipher.standard_name if conn.cipher else "-"
    resumed = "yes" if conn.session_reused else "no"
    return (
        f"{who}, {conn.protocol}, {cipher}, sni={printable(conn.server_name or '-')}, "
        f"alpn={printable(conn.alpn_protocol or '-')}, "
        f"resumed={resumed}"
    )


def summary_lines(conn: TLSConnection, *, verified: bool) -> list[str]:
    """What ``connect`` prints after the handshake: protocol, cipher, ALPN, the peer's chain, verification."""
    from ..net.server import format_peer

    cipher = conn.cipher
    lines = [
        f"connected to {format_peer(conn.remote_address)} (server name {printable(conn.server_name or '-')})",
        f"protocol {conn.protocol}, cipher {cipher.standard_name if cipher else '-'}"
        f"{f' ({cipher.name})' if cipher and cipher.name != cipher.standard_name else ''}, "
        f"ALPN {printable(conn.alpn_protocol or '-')}, session {'resumed' if conn.session_reused else 'new'}",
        "peer chain:",
    ]
    for depth, cert in enumerate(conn.peer_chain):
        until = cert.not_valid_after_utc.date().isoformat()
        lines.append(f"  {depth} {_subject(cert)}  (issuer {_subject_name(cert.issuer)}, until {until})")
    if conn.authorized:
        lines.append("verification: OK")
    elif verified:
        lines.append(f"verification: FAILED: {printable(str(conn.authorization_error))}")
    else:
        lines.append(f"verification: would fail: {printable(str(conn.authorization_error))} (not enforced: --insecure)")
    return lines


def _subject_name(name: x509.Name) -> str:
    return printable(name.rfc4514_string()) or "(empty)"


def failure(exc: TLSError, what: str) -> str:
    """``what (code): message; fix: fix`` - the one line for a failed handshake."""
    fix = f"; fix: {printable(to_flags(exc.fix))}" if exc.fix else ""
    return f"{what} ({exc.code}): {printable(exc.message)}{fix}"


def echo(prefix: str, text: str) -> None:
    """A ``prefix: text`` line on stderr (the log of serve and connect), control characters escaped.

    Written straight to the stream, once per line: ``serve`` writes two per connection, and click.echo's checks
    (colour stripping, which printable() makes moot) would cost more than the rest of the line.
    """
    stream = sys.stderr
    stream.write(f"{prefix}: {printable(text)}\n")
    stream.flush()


class PrintableFormatter(logging.Formatter):
    """Log lines of the library (which quote peers and their errors) with control characters escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


# --- stdin in a thread -------------------------------------------------------------------------------------


class StdinReader:
    """Chunks of stdin, b"" at (and after) EOF, read by a daemon thread.

    A thread works for every kind of stdin (a terminal, a pipe, a regular file, which epoll refuses) and, being a
    daemon, never keeps the process alive once the peer has closed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # A small queue gives backpressure: the thread reads ahead by at most a few chunks.
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)
        self._loop = loop
        self._eof = False
        threading.Thread(target=self._run, name="tlskit-stdin", daemon=True).start()

    def _run(self) -> None:
        fd = sys.stdin.fileno()
        while True:
            try:
                data = os.read(fd, CHUNK)
            except OSError:
                data = b""
            try:
                asyncio.run_coroutine_threadsafe(self._queue.put(data), self._loop).result()
            except (RuntimeError, concurrent.futures.CancelledError):  # the loop is closed: the command ended
                return
            if not data:
                return

    async def read(self) -> bytes:
        if self._eof:
            return b""
        data = await self._queue.get()
        self._eof = not data
        return data


async def write_stdout(data: bytes) -> None:
    """Write to stdout at once (the other side may be a person waiting for a reply)."""
    out = sys.stdout.buffer
    out.write(data)
    out.flush()
