"""Sans-IO framing: unit tests and Hypothesis properties (any split of a stream yields the same messages)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlskit.errors import FrameError, InputError
from tlskit.net.framing import (
    DEFAULT_MAX_SIZE,
    DelimitedFramer,
    Framer,
    JsonCodec,
    LengthPrefixedFramer,
    framer_from_spec,
)

FFFD = "\ufffd".encode()  # b"\xef\xbf\xbd", the delimiter of the Node examples


def feed_in_pieces(framer: Framer, data: bytes, cuts: list[int]) -> list[bytes]:
    """Feed ``data`` split at ``cuts`` (any positions, duplicates allowed) and collect the messages."""
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        out += framer.feed(data[start:cut])
        start = cut
    framer.end_of_stream()
    return out


# --- properties --------------------------------------------------------------------------------------------

payloads = st.lists(st.binary(max_size=300), max_size=20)
delimiters = st.sampled_from([b"\n", b"\r\n", FFFD, b"\x00\x00", b"ab"])


@given(payloads, st.lists(st.integers(min_value=0), max_size=30))
def test_length_prefixed_any_split(messages: list[bytes], cuts: list[int]) -> None:
    framer = LengthPrefixedFramer()
    stream = b"".join(framer.encode(m) for m in messages)
    assert feed_in_pieces(framer, stream, cuts) == messages
    assert framer.buffered == 0


@given(delimiters, payloads, st.lists(st.integers(min_value=0), max_size=30))
def test_delimited_any_split(delimiter: bytes, raw: list[bytes], cuts: list[int]) -> None:
    framer = DelimitedFramer(delimiter)
    # Representable messages: the first delimiter in message + delimiter is the terminating one.
    messages = [m for m in raw if (m + delimiter).find(delimiter) == len(m)]
    stream = b"".join(framer.encode(m) for m in messages)
    assert feed_in_pieces(framer, stream, cuts) == messages


@given(st.integers(min_value=1, max_value=64), st.binary(min_size=1, max_size=400), st.integers(1, 50))
def test_over_long_delimited_bounded(max_size: int, junk: bytes, chunk: int) -> None:
    framer = DelimitedFramer(FFFD, max_size=max_size)
    stream = junk.replace(FFFD, b"") + b"x" * (max_size + 1) + FFFD
    with pytest.raises(FrameError, match="exceeds the maximum message size"):
        for i in range(0, len(stream), chunk):
            framer.feed(stream[i : i + chunk])
            # Never more than max_size + (delimiter - 1) held back, plus the current read.
            assert framer.buffered <= max_size + len(FFFD) - 1 + chunk
    assert framer.failed and framer.buffered == 0


@given(st.integers(min_value=0, max_value=64), st.integers(min_value=1, max_value=1 << 31), st.integers(1, 50))
def test_over_long_length_prefix_refused_from_header(max_size: int, extra: int, chunk: int) -> None:
    framer = LengthPrefixedFramer(max_size=max_size + 1)
    header = (max_size + 1 + extra).to_bytes(4, "big")
    with pytest.raises(FrameError, match=f"frame of {max_size + 1 + extra} bytes"):
        for i in range(0, 4, chunk):
            framer.feed(header[i : i + chunk])
        framer.feed(b"\0" * chunk)  # never reached when the header arrived whole
    assert framer.buffered == 0


@settings(max_examples=50)
@given(
    st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
            max_leaves=10,
        ),
        max_size=8,
    ),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_json_over_fffd_any_split(values: list[object], cuts: list[int]) -> None:
    # Strings may contain U+FFFD itself: the codec escapes it so it never ends a frame early.
    values = [*values, "\ufffd inside"]
    codec = JsonCodec(DelimitedFramer(FFFD))
    stream = b"".join(codec.encode(v) for v in values)
    out: list[object] = []
    start = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        out += codec.feed(stream[start:cut])
        start = cut
    codec.end_of_stream()
    assert out == values


# --- units -------------------------------------------------------------------------------------------------


def test_length_prefixed_wire_format() -> None:
    framer = LengthPrefixedFramer()
    assert framer.encode(b"abc") == b"\x00\x00\x00\x03abc"
    assert framer.encode(b"") == b"\x00\x00\x00\x00"
    assert framer.feed(b"\x00\x00\x00\x03abc\x00\x00\x00\x00\x00\x00") == [b"abc", b""]
    assert framer.buffered == 2
    assert framer.feed(b"\x00\x01z") == [b"z"]


def test_delimited_split_delimiter_and_empty_messages() -> None:
    framer = DelimitedFramer(FFFD)
    assert framer.feed(b'{"seq":1}\xef') == []
    assert framer.feed(b"\xbf") == []
    assert framer.feed(b'\xbd{"seq":2}\xef\xbf\xbd\xef\xbf\xbd') == [b'{"seq":1}', b'{"seq":2}', b""]
    assert framer.buffered == 0


def test_delimited_exact_max_size_accepted() -> None:
    framer = DelimitedFramer(b"\r\n", max_size=4)
    assert framer.feed(b"abcd\r") == []
    assert framer.feed(b"\n") == [b"abcd"]
    with pytest.raises(FrameError):
        framer.feed(b"abcde\r\n")


def test_error_is_sticky() -> None:
    framer = DelimitedFramer(max_size=3)
    with pytest.raises(FrameError):
        framer.feed(b"abcdef")
    with pytest.raises(FrameError, match="exceeds"):
        framer.feed(b"\n")
    with pytest.raises(FrameError, match="exceeds"):
        framer.end_of_stream()


def test_end_of_stream_detects_truncation() -> None:
    for framer, partial in ((LengthPrefixedFramer(), b"\x00\x00\x00\x05ab"), (DelimitedFramer(), b"no newline")):
        framer.end_of_stream()  # nothing buffered: a clean EOF
        assert framer.feed(partial) == []
        with pytest.raises(FrameError, match="connection closed in the middle of a frame"):
            framer.end_of_stream()
        assert framer.failed


def test_encode_refusals() -> None:
    with pytest.raises(FrameError, match="contains the delimiter"):
        DelimitedFramer().encode(b"a\nb")
    with pytest.raises(FrameError, match="exceeds"):
        DelimitedFramer(max_size=2).encode(b"abc")
    with pytest.raises(FrameError, match="exceeds"):
        LengthPrefixedFramer(max_size=2).encode(b"abc")


def test_json_codec() -> None:
    codec = JsonCodec(LengthPrefixedFramer())
    data = codec.encode({"seq": 1, "text": "é"})
    assert data == b'\x00\x00\x00\x15{"seq":1,"text":"\xc3\xa9"}'  # compact UTF-8
    assert codec.feed(data) == [{"seq": 1, "text": "é"}]
    with pytest.raises(FrameError, match="JSON-serializable"):
        codec.encode({1, 2})
    with pytest.raises(FrameError, match="JSON-serializable"):
        codec.encode(float("nan"))


@pytest.mark.parametrize("bad", [b"{not json}", b"\xff\xfe", b'{"a":1'])
def test_json_decode_errors_are_frame_errors(bad: bytes) -> None:
    codec = JsonCodec(DelimitedFramer())
    with pytest.raises(FrameError, match="not valid JSON"):
        codec.feed(bad + b"\n")
    with pytest.raises(FrameError, match="not valid JSON"):
        codec.feed(b"{}\n")  # failed for good


def test_json_lines_interoperate_with_plain_json() -> None:
    codec = JsonCodec(framer_from_spec("lines"))  # type: ignore[arg-type]
    line = codec.encode({"seq": 7, "items": [1, 2]})
    assert line == b'{"seq":7,"items":[1,2]}\n'
    assert json.loads(line) == {"seq": 7, "items": [1, 2]}


def test_byte_at_a_time_large_message() -> None:
    # Each byte is scanned about once: feeding 256 KiB one byte at a time stays linear.
    framer = DelimitedFramer(FFFD)
    message = b"x" * (256 * 1024)
    got: list[bytes] = []
    for i in range(len(message)):
        got += framer.feed(message[i : i + 1])
    got += framer.feed(FFFD)
    assert got == [message]


def test_framer_from_spec() -> None:
    assert framer_from_spec("raw") is None
    lines = framer_from_spec("lines")
    assert isinstance(lines, DelimitedFramer) and lines.delimiter == b"\n"
    assert lines.max_size == DEFAULT_MAX_SIZE
    length = framer_from_spec("LENGTH", max_size=10)
    assert isinstance(length, LengthPrefixedFramer) and length.max_size == 10
    delim = framer_from_spec("delim:EFBFBD")
    assert isinstance(delim, DelimitedFramer) and delim.delimiter == FFFD
    for framer in (lines, length, delim):
        assert isinstance(framer, Framer)
    for bad, why in (("delim:zz", "not hexadecimal"), ("delim:", "empty"), ("json", "unknown"), ("raw:1", "unknown")):
        with pytest.raises(InputError, match=why):
            framer_from_spec(bad)


def test_invalid_parameters() -> None:
    with pytest.raises(InputError, match="max_size"):
        LengthPrefixedFramer(max_size=0)
    with pytest.raises(InputError, match="4-byte"):
        LengthPrefixedFramer(max_size=1 << 32)
    with pytest.raises(InputError, match="delimiter"):
        DelimitedFramer(b"")
