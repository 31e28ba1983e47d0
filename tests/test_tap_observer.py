"""The tap's observer and renderers, sans-IO: synthetic records and a fake clock, no sockets.

Burst aggregation (turn-taking, span cap), the plaintext display limit, the verdict's wording for cases the
live tests do not reach, and rendering of hostile payloads (markup, escapes, binary) are deterministic here.
"""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console

from tlskit.cli.tap_render import JsonRenderer, TextRenderer
from tlskit.tools.records import Direction
from tlskit.tools.tap import Observation, PayloadView, TapOptions
from tlskit.tools.tap_observer import READABLE, ConnectionObserver

LOGIN = b"username=alice&password=hunter2"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def app_record(size: int) -> bytes:
    return b"\x17\x03\x03" + size.to_bytes(2, "big") + bytes(size)


def tls_observer(clock: FakeClock, seen: list[Observation], **options: Any) -> ConnectionObserver:
    obs = ConnectionObserver(1, seen.append, options=TapOptions(**options), clock=clock)
    for direction in Direction:  # an opaque TLS stream: straight into application data
        obs.data(direction, app_record(0))
    clock.now += 5
    obs.tick()
    seen.clear()
    return obs


def test_encrypted_records_aggregate_into_bursts_with_turns_in_order() -> None:
    clock, seen = FakeClock(), list[Observation]()
    obs = tls_observer(clock, seen)
    c2s, s2c = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
    for _ in range(50):
        obs.data(c2s, app_record(1000))
        clock.now += 0.001
    for _ in range(30):  # the reply starts: the request burst is flushed first, in order
        obs.data(s2c, app_record(500))
        clock.now += 0.001
    assert obs.next_flush_in() is not None
    clock.now += 1.0
    obs.tick()
    assert obs.next_flush_in() is None
    bursts = [(o.direction, o.fields["records"], o.fields["bytes"]) for o in seen if o.event == "application_data"]
    assert bursts == [(c2s, 50, 50_000), (s2c, 30, 15_000)]


def test_a_long_transfer_is_summarised_about_once_per_burst_span() -> None:
    clock, seen = FakeClock(), list[Observation]()
    obs = tls_observer(clock, seen, burst_span=1.0, burst_gap=0.25)
    for _ in range(300):  # 3 s of one record every 10 ms
        obs.data(Direction.SERVER_TO_CLIENT, app_record(16384))
        clock.now += 0.01
    obs.closed()
    bursts = [o for o in seen if o.event == "application_data"]
    assert 3 <= len(bursts) <= 4
    assert sum(o.fields["bytes"] for o in bursts) == 300 * 16384


def test_plaintext_beyond_the_display_limit_is_counted_not_shown() -> None:
    clock, seen = FakeClock(), list[Observation]()
    obs = ConnectionObserver(1, seen.append, options=TapOptions(max_shown=10), clock=clock)
    obs.data(Direction.CLIENT_TO_SERVER, b"0123456789abcdef")
    obs.data(Direction.CLIENT_TO_SERVER, b"more")
    obs.closed()
    assert [o.fields["text"] for o in seen if o.event == "plaintext"] == ["0123456789"]
    assert [o.fields["bytes"] for o in seen if o.event == "plaintext_more"] == [10]


def render(observations: list[Observation]) -> str:
    buf = io.StringIO()
    renderer = TextRenderer(Console(file=buf, width=200, no_color=True, highlight=False, soft_wrap=True))
    for o in observations:
        renderer(o)
    return buf.getvalue()


def test_text_renderer_prints_peer_bytes_literally_and_binary_as_hex() -> None:
    clock, seen = FakeClock(), list[Observation]()
    obs = ConnectionObserver(1, seen.append, clock=clock)
    obs.data(Direction.CLIENT_TO_SERVER, b"[bold red]not markup[/] :smile:\r\n")
    obs.data(Direction.SERVER_TO_CLIENT, b"\x00\x01binary\xff\x1b[31m")
    obs.closed()
    text = render(seen)
    assert "    [bold red]not markup[/] :smile:" in text
    assert "00000000  00 01 62 69 6e 61 72 79 ff 1b 5b 33 31 6d" in text and "..binary..[31m" in text
    assert "\x1b" not in text
    hexed: list[Observation] = []
    ConnectionObserver(2, hexed.append, options=TapOptions(view=PayloadView.HEX)).data(
        Direction.CLIENT_TO_SERVER, b"GET /"
    )
    assert "00000000  47 45 54 20 2f" in render(hexed)


def test_json_renderer_writes_one_object_per_line() -> None:
    clock, seen = FakeClock(), list[Observation]()
    obs = ConnectionObserver(7, seen.append, clock=clock)
    obs.data(Direction.CLIENT_TO_SERVER, LOGIN)
    obs.closed()
    buf = io.StringIO()
    renderer = JsonRenderer(buf)
    for o in seen:
        renderer(o)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [o["event"] for o in lines] == ["stream", "plaintext", "close", "verdict"]
    assert lines[1] == {**lines[1], "conn": 7, "dir": "client->server", "text": LOGIN.decode(), "bytes": len(LOGIN)}
    assert lines[-1]["readable"] is True and lines[-1]["time"].endswith("Z")


# -- verdicts -------------------------------------------------------------------------------------------------


def record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return bytes([content_type]) + version.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def handshake(msg_type: int, body: bytes) -> bytes:
    return record(22, bytes([msg_type]) + len(body).to_bytes(3, "big") + body, version=0x0301)


def client_hello(sni: str) -> bytes:
    name = sni.encode()
    entry = b"\x00" + len(name).to_bytes(2, "big") + name
    sni_ext = b"\x00\x00" + (len(entry) + 2).to_bytes(2, "big") + len(entry).to_bytes(2, "big") + entry
    exts = len(sni_ext).to_bytes(2, "big") + sni_ext
    return handshake(1, b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x00\x2f" + b"\x01\x00" + exts)


def verdict_for(*flights: tuple[Direction, bytes]) -> str:
    seen: list[Observation] = []
    obs = ConnectionObserver(1, seen.append, clock=FakeClock())
    for direction, data in flights:
        obs.data(direction, data)
    for direction in Direction:
        obs.ended(direction)
    obs.closed()
    (verdict,) = [o for o in seen if o.event == "verdict"]
    return str(verdict.fields["text"])


C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


def test_verdict_when_only_one_direction_is_tls() -> None:
    """A TLS client talking to a plain HTTP server: the server's answer is readable."""
    text = verdict_for((C2S, client_hello("shop.example")), (S2C, b"HTTP/1.1 400 Bad Request\r\n\r\n"))
    assert text == f"{READABLE} (server->client is not TLS)"


def test_verdict_flags_an_obsolete_protocol_version() -> None:
    server_hello = handshake(2, b"\x03\x01" + bytes(32) + b"\x00" + b"\x00\x2f" + b"\x00")
    text = verdict_for(
        (C2S, client_hello("old.example")),
        (S2C, server_hello + record(20, b"\x01") + record(22, bytes(48))),
        (C2S, record(20, b"\x01") + record(23, bytes(64))),
    )
    assert text == "TLS 1.0 (obsolete): contents encrypted; visible: server name old.example, sizes and timing"


def test_verdict_for_incomplete_malformed_and_empty_connections() -> None:
    text = verdict_for((C2S, client_hello("slow.example")))
    assert (
        text == "TLS handshake not completed (no ServerHello seen); visible: server name slow.example, sizes and timing"
    )
    text = verdict_for((C2S, b"\x16\x03\x01\xff\xff"))
    assert text.startswith("not decodable as TLS (record length 65535 exceeds the TLS maximum 18432)")
    assert verdict_for() == "no data exchanged"
