"""Sans-IO message framing: bytes in, messages out (in the style of h11).

Nothing here touches a socket.  A connection feeds whatever bytes it read into :meth:`Framer.feed` and gets
back the complete messages they finished; :meth:`Framer.encode` turns a message into bytes to write.  The same
objects therefore work with asyncio, threads, or a test that splits a byte string at random points.

Two framings are provided, matching what Node programs commonly use on top of ``tls``:

* :class:`LengthPrefixedFramer` - a 4-byte big-endian length, then that many bytes;
* :class:`DelimitedFramer` - messages terminated by a delimiter (``b"\\n"`` by default, or any byte string,
  such as U+FFFD encoded as UTF-8, ``b"\\xef\\xbf\\xbd"``, which several Node examples use).

:class:`JsonCodec` carries JSON values over either.  Every framer enforces ``max_size`` (1 MiB by default): an
over-long frame is a protocol error (:class:`~tlskit.errors.FrameError`), raised as soon as it is detectable so a
peer can never make us buffer more than ``max_size`` plus one read.  A framer that failed stays failed: the byte
stream has lost its message boundaries and must be closed.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Protocol, runtime_checkable

from ..errors import FrameError, InputError

__all__ = [
    "DEFAULT_MAX_SIZE",
    "DelimitedFramer",
    "Framer",
    "JsonCodec",
    "LengthPrefixedFramer",
    "framer_from_spec",
]

DEFAULT_MAX_SIZE = 1 << 20
"""Largest message accepted by default (1 MiB)."""

_HEADER = struct.Struct(">I")
_TRUNCATED = "connection closed in the middle of a frame"


@runtime_checkable
class Framer(Protocol):
    """What a connection needs from a framing: incremental decoding, encoding and an EOF check."""

    max_size: int

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the messages they completed (possibly none)."""
        ...

    def encode(self, payload: bytes) -> bytes:
        """Return the bytes that carry ``payload`` as one message."""
        ...

    def end_of_stream(self) -> None:
        """Declare EOF; raise :class:`FrameError` if a message was cut off."""
        ...


def _check_max_size(max_size: int, *, limit: int | None = None) -> int:
    if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
        raise InputError(f"invalid max_size {max_size!r}", fix="give a positive number of bytes")
    if limit is not None and max_size > limit:
        raise InputError(f"max_size {max_size} does not fit the 4-byte length prefix", fix=f"use at most {limit}")
    return max_size


class _BufferedFramer:
    """Shared state: the receive buffer, the sticky failure, and the EOF check."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._failed: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message (bounded by ``max_size`` plus one read)."""
        return len(self._buf)

    @property
    def failed(self) -> bool:
        """True once a protocol error was seen; every later call raises it again."""
        return self._failed is not None

    def _fail(self, message: str, fix: str) -> FrameError:
        self._failed = FrameError(message, fix=fix)
        self._buf = bytearray()  # release the memory: the stream is unusable anyway
        return self._failed

    def _check_alive(self) -> None:
        if self._failed is not None:
            raise FrameError(self._failed.message, fix=self._failed.fix)

    def end_of_stream(self) -> None:
        """Declare EOF; raise :class:`FrameError` if a partial message is buffered."""
        self._check_alive()
        if self._buf:
            raise self._fail(_TRUNCATED, "the peer disconnected early; the partial message was discarded")


class LengthPrefixedFramer(_BufferedFramer):
    """Messages prefixed by their length as a 4-byte big-endian unsigned integer."""

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        super().__init__(_check_max_size(max_size, limit=0xFFFFFFFF))

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the messages they completed."""
        self._check_alive()
        buf = self._buf
        buf += data
        messages: list[bytes] = []
        pos = 0
        while len(buf) - pos >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buf, pos)
            # Checked on the header alone, so an over-long frame is refused before its body is buffered.
            if length > self.max_size:
                raise self._fail(
                    f"frame of {length} bytes exceeds the maximum message size of {self.max_size} bytes",
                    "the peer must send smaller messages, or raise max_size",
                )
            end = pos + _HEADER.size + length
            if end > len(buf):
                break
            messages.append(bytes(buf[pos + _HEADER.size : end]))
            pos = end
        if pos:
            del buf[:pos]  # one compaction per feed, not per message
        return messages

    def encode(self, payload: bytes) -> bytes:
        """Prefix ``payload`` with its length."""
        if len(payload) > self.max_size:
            raise FrameError(
                f"message of {len(payload)} bytes exceeds the maximum message size of {self.max_size} bytes",
                fix="send smaller messages or raise max_size",
            )
        return _HEADER.pack(len(payload)) + payload


class DelimitedFramer(_BufferedFramer):
    """Messages each terminated by ``delimiter`` (which is not part of the message)."""

    def __init__(self, delimiter: bytes = b"\n", *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if not isinstance(delimiter, bytes) or not delimiter:
            raise InputError(f"invalid delimiter {delimiter!r}", fix="give a non-empty byte string")
        super().__init__(_check_max_size(max_size))
        self.delimiter = delimiter
        # Where the next delimiter search starts: bytes before it are known to hold no delimiter, so each
        # byte is scanned about once however the stream is split.
        self._scan = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the messages they completed."""
        self._check_alive()
        buf = self._buf
        buf += data
        delim = self.delimiter
        messages: list[bytes] = []
        pos = 0
        while True:
            idx = buf.find(delim, max(pos, self._scan))
            if idx < 0:
                break
            if idx - pos > self.max_size:
                raise self._over_long(idx - pos)
            messages.append(bytes(buf[pos:idx]))
            pos = idx + len(delim)
        if pos:
            del buf[:pos]
        # A delimiter may straddle this feed and the next: rescan only its possible first bytes.
        self._scan = max(0, len(buf) - len(delim) + 1)
        # Without a delimiter, the first ``len(buf) - len(delim) + 1`` bytes are message content already.
        if self._scan > self.max_size:
            raise self._over_long(len(buf))
        return messages

    def _over_long(self, size: int) -> FrameError:
        return self._fail(
            f"message of at least {size} bytes without a delimiter exceeds the maximum message size of "
            f"{self.max_size} bytes",
            "the peer must send smaller messages or terminate them, or raise max_size",
        )

    def encode(self, payload: bytes) -> bytes:
        """Append the delimiter; refuse payloads that contain it (they would be split in two)."""
        if self.delimiter in payload:
            raise FrameError(
                f"message contains the delimiter {self.delimiter!r}",
                fix="escape it, or use length-prefixed framing",
            )
        if len(payload) > self.max_size:
            raise FrameError(
                f"message of {len(payload)} bytes exceeds the maximum message size of {self.max_size} bytes",
                fix="send smaller messages or raise max_size",
            )
        return payload + self.delimiter


class JsonCodec:
    """JSON values over a :class:`Framer`: compact UTF-8 out, any JSON value in."""

    def __init__(self, framer: Framer) -> None:
        self.framer = framer
        self._failed: FrameError | None = None

    def feed(self, data: bytes) -> list[Any]:
        """Add received bytes; return the decoded JSON values they completed.

        A frame that is not UTF-8 JSON is a :class:`FrameError`; values decoded earlier in the same call are
        discarded with it, because the peer is broken and the connection is about to close.
        """
        if self._failed is not None:
            raise FrameError(self._failed.message, fix=self._failed.fix)
        values: list[Any] = []
        for frame in self.framer.feed(data):
            try:
                values.append(json.loads(frame.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                self._failed = FrameError(
                    f"received a message that is not valid JSON ({exc})",
                    fix="the peer must send one UTF-8 JSON value per message",
                )
                raise FrameError(self._failed.message, fix=self._failed.fix) from exc
        return values

    def encode(self, value: Any) -> bytes:
        """Encode ``value`` as compact UTF-8 JSON in one frame."""
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise FrameError(f"cannot encode message as JSON ({exc})", fix="send JSON-serializable values") from exc
        data = text.encode("utf-8")
        delimiter = getattr(self.framer, "delimiter", None)
        if delimiter is not None and delimiter in data:
            # Non-ASCII delimiters (U+FFFD) may occur in strings; \\u escapes keep them out of the frame.
            data = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
        return self.framer.encode(data)

    def end_of_stream(self) -> None:
        """Declare EOF; raise :class:`FrameError` if a message was cut off."""
        self.framer.end_of_stream()


_SPEC_FIX = "use raw, lines, length or delim:HEX (e.g. delim:efbfbd for U+FFFD)"


def framer_from_spec(spec: str, *, max_size: int = DEFAULT_MAX_SIZE) -> Framer | None:
    """Build a framer from a CLI spec: ``raw`` (None: a plain byte stream), ``lines``, ``length``, ``delim:HEX``."""
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "raw" and not arg:
        return None
    if kind == "lines" and not arg:
        return DelimitedFramer(b"\n", max_size=max_size)
    if kind == "length" and not arg:
        return LengthPrefixedFramer(max_size=max_size)
    if kind == "delim":
        try:
            delimiter = bytes.fromhex(arg)
        except ValueError:
            raise InputError(f"framing {spec!r}: {arg!r} is not hexadecimal", fix=_SPEC_FIX) from None
        if not delimiter:
            raise InputError(f"framing {spec!r}: the delimiter is empty", fix=_SPEC_FIX)
        return DelimitedFramer(delimiter, max_size=max_size)
    raise InputError(f"unknown framing {spec!r}", fix=_SPEC_FIX)
