"""``tlskit tap`` end to end: real clients and servers on 127.0.0.1 with the tap between them.

Plaintext HTTP shows the login form and the verdict "readable"; TLS 1.3 (``openssl s_client``) shows SNI and
ALPN and no application bytes; TLS 1.2 (``openssl s_server``) shows the certificate chain; 100 MB each way
arrive byte-exact through the CLI; half-closes pass through in both directions; malformed records never stop
the relay.  The observer's burst aggregation is tested sans-IO with a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import PKI, TLSKIT
from peers import OPENSSL, openssl_server, requires
from tlskit.cli.demo_tap import run_tap_scene
from tlskit.errors import InputError
from tlskit.tools.records import Direction
from tlskit.tools.tap import Endpoint, Observation, TapOptions, TapServer, parse_endpoint, start_tap
from tlskit.tools.tap_observer import READABLE

LOCAL = "127.0.0.1"
T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def tap_to(port: int, **options: Any) -> AsyncIterator[tuple[TapServer, list[Observation]]]:
    """A tap in front of 127.0.0.1:``port``; observations are collected, the tap is always closed."""
    seen: list[Observation] = []
    tap = await start_tap(
        listen=Endpoint(LOCAL, 0), target=Endpoint(LOCAL, port), sink=seen.append, options=TapOptions(**options)
    )
    try:
        yield tap, seen
    finally:
        await tap.close(grace=10)


@contextlib.asynccontextmanager
async def server(handler: Callable[..., Awaitable[None]], **kwargs: Any) -> AsyncIterator[int]:
    srv = await asyncio.start_server(handler, LOCAL, 0, **kwargs)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


def named(seen: list[Observation], event: str, direction: Direction | None = None) -> list[dict[str, Any]]:
    return [o.to_json() for o in seen if o.event == event and (direction is None or o.direction is direction)]


def verdict_of(seen: list[Observation]) -> str:
    (v,) = named(seen, "verdict")
    return str(v["text"])


def dump(seen: list[Observation]) -> str:
    return "\n".join(json.dumps(o.to_json()) for o in seen)


def assert_not_seen(secret: bytes, output: str) -> None:
    assert secret.decode() not in output and secret.hex() not in output


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await reader.read()


# -- plaintext ---------------------------------------------------------------------------------------------

LOGIN = b"username=alice&password=hunter2"


async def login_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    body = await reader.readexactly(length)
    reply = b"welcome alice" if body == LOGIN else b"who are you"
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(reply), reply))
    await writer.drain()
    writer.close()


def login_post(host: str) -> bytes:
    return (
        b"POST /login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(LOGIN), LOGIN)
    )


def test_plaintext_http_login_shows_the_password_and_the_verdict_readable() -> None:
    async def scenario() -> tuple[bytes, list[Observation]]:
        async with server(login_handler) as port, tap_to(port) as (tap, seen):
            reader, writer = await asyncio.open_connection(LOCAL, tap.listen.port)
            writer.write(login_post("shop.example"))
            response = await read_all(reader)
            writer.close()
        return response, seen

    response, seen = run(scenario())
    assert response.endswith(b"\r\n\r\nwelcome alice")
    shown = "".join(o["text"] for o in named(seen, "plaintext", Direction.CLIENT_TO_SERVER))
    assert "password=hunter2" in shown and shown.startswith("POST /login HTTP/1.1")
    assert "welcome alice" in "".join(o["text"] for o in named(seen, "plaintext", Direction.SERVER_TO_CLIENT))
    assert verdict_of(seen) == READABLE
    (close,) = named(seen, "close")
    assert close["bytes"] == {"client->server": len(login_post("shop.example")), "server->client": len(response)}
    assert [o["conn"] for o in named(seen, "verdict")] == [1]


# -- TLS -------------------------------------------------------------------------------------------------------

SECRET = b"card=4111111111111111&cvv=737"


def python_server_context(pki: PKI, *, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_pem, pki.server_key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(alpn)
    return ctx


@requires("openssl")
def test_tls13_shows_sni_and_alpn_from_the_client_hello_and_no_application_bytes(pki: PKI) -> None:
    assert OPENSSL is not None
    received = bytearray()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := await reader.read(65536):
                received.extend(data)
                writer.write(data)
            writer.close()

    async def scenario() -> list[Observation]:
        ctx = python_server_context(pki, alpn=["h2"])
        async with server(echo, ssl=ctx) as port, tap_to(port) as (tap, seen):
            client = await asyncio.create_subprocess_exec(
                OPENSSL, "s_client", "-connect", f"{LOCAL}:{tap.listen.port}", "-servername", "localhost",
                "-alpn", "h2", "-CAfile", str(pki.root_pem),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await client.communicate(SECRET + b"\n")
            assert client.returncode == 0, out.decode(errors="replace")
            assert b"Verify return code: 0 (ok)" in out and b"ALPN protocol: h2" in out
        return seen

    seen = run(scenario())
    assert bytes(received) == SECRET + b"\n"  # it did travel, through the tap
    (hello,) = named(seen, "client_hello")
    assert hello["sni"] == "localhost" and hello["alpn"] == ["h2"]
    assert "TLS 1.3" in hello["supported_versions"] and hello["key_share_groups"]
    assert "TLS_AES_256_GCM_SHA384" in hello["cipher_suites"]
    (sh,) = named(seen, "server_hello")
    assert sh["version"] == "TLS 1.3" and sh["version_from_extension"] and sh["cipher_suite"].startswith("TLS_")
    assert not named(seen, "certificate") and not named(seen, "plaintext")
    app = named(seen, "application_data")
    assert app and all(o["encrypted"] for o in app)
    assert sum(o["bytes"] for o in app if o["dir"] == "client->server") > len(SECRET)
    assert_not_seen(SECRET, dump(seen))
    assert verdict_of(seen) == "TLS 1.3: contents encrypted; visible: server name localhost, ALPN h2, sizes and timing"


@requires("openssl")
def test_tls12_shows_the_certificate_chain_in_clear(pki: PKI) -> None:
    async def scenario(port: int) -> tuple[bytes, list[Observation]]:
        ctx = ssl.create_default_context(cafile=str(pki.root_pem))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        async with tap_to(port) as (tap, seen):
            reader, writer = await asyncio.open_connection(LOCAL, tap.listen.port, ssl=ctx, server_hostname="localhost")
            writer.write(b"GET / HTTP/1.0\r\nCookie: " + SECRET + b"\r\n\r\n")
            response = await read_all(reader)
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        return response, seen

    chain = ("-cert", str(pki.server_pem), "-cert_chain", str(pki.intermediates_pem), "-key", str(pki.server_key))
    with openssl_server(*chain, "-tls1_2", "-www") as peer:
        response, seen = run(scenario(peer.port))
    assert response.startswith(b"HTTP/1.0 200 ok")
    (certs,) = named(seen, "certificate", Direction.SERVER_TO_CLIENT)
    chain = certs["certificates"]
    assert [c["subject"] for c in chain] == ["CN=localhost", "CN=tlskit Test Intermediate CA"]
    assert [c["issuer"] for c in chain] == ["CN=tlskit Test Intermediate CA", "CN=tlskit Test Root CA"]
    assert chain[0]["dns_names"] == ["localhost"]
    (ske,) = named(seen, "server_key_exchange")
    assert ske["group"] in ("x25519", "secp256r1", "x448", "secp384r1")
    assert [o["meaning"] for o in named(seen, "change_cipher_spec")] == ["from here on this direction is encrypted"] * 2
    assert_not_seen(SECRET, dump(seen))
    text = verdict_of(seen)
    assert text.startswith("TLS 1.2: contents encrypted; visible: server name localhost")
    assert "certificate chain (CN=localhost; CN=tlskit Test Intermediate CA)" in text


@requires("openssl")
def test_failed_handshake_shows_the_plaintext_alert_and_says_so(pki: PKI) -> None:
    async def scenario(port: int) -> list[Observation]:
        ctx = ssl.create_default_context(cafile=str(pki.root_pem))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # the server below speaks TLS 1.2 only
        async with tap_to(port) as (tap, seen):
            with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
                await asyncio.open_connection(LOCAL, tap.listen.port, ssl=ctx, server_hostname="localhost")
        return seen

    with openssl_server("-cert", str(pki.server_pem), "-key", str(pki.server_key), "-tls1_2") as peer:
        seen = run(scenario(peer.port))
    (alert,) = named(seen, "alert", Direction.SERVER_TO_CLIENT)
    assert alert == {**alert, "encrypted": False, "level": "fatal", "description": "protocol_version"}
    assert not named(seen, "server_hello")
    assert verdict_of(seen) == (
        "TLS handshake failed (protocol_version alert from the server); "
        "visible: server name localhost, sizes and timing"
    )


# -- relay transparency ------------------------------------------------------------------------------------


def test_half_close_is_propagated_in_both_directions() -> None:
    events: list[str] = []

    async def client_closes_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await read_all(reader)  # returns only once the client's FIN came through the tap
        events.append("server saw EOF")
        writer.write(b"got %d bytes" % len(data))  # and the way back must still be open
        await writer.drain()
        writer.close()

    async def server_closes_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"banner, then FIN")
        writer.write_eof()
        events.append("server got " + (await read_all(reader)).decode())
        writer.close()

    async def scenario() -> list[Observation]:
        async with server(client_closes_first) as port, tap_to(port) as (tap, seen):
            reader, writer = await asyncio.open_connection(LOCAL, tap.listen.port)
            writer.write(b"x" * 100_000)
            writer.write_eof()
            assert await read_all(reader) == b"got 100000 bytes"
            writer.close()
        async with server(server_closes_first) as port, tap_to(port) as (tap, seen2):
            reader, writer = await asyncio.open_connection(LOCAL, tap.listen.port)
            assert await read_all(reader) == b"banner, then FIN"  # EOF arrived while we may still write
            writer.write(b"bye after your FIN")
            writer.write_eof()
            await read_all(reader)
            writer.close()
        return seen + seen2

    seen = run(scenario())
    assert events == ["server saw EOF", "server got bye after your FIN"]
    ends = named(seen, "end")
    assert len(ends) == 4 and all(o["error"] is None for o in ends)


def pattern(total: int, block: bytes) -> Iterator[bytes]:
    """``total`` bytes of varied data: each MiB is the random block rotated differently (catches reordering)."""
    for i in range(total // len(block)):
        k = (i * 4099) % len(block)
        yield block[k:] + block[:k]


def digest(chunks: Iterator[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def cli_tap(target_port: int, *args: str, stdout: Path, env: dict[str, str]) -> Iterator[tuple[int, str]]:
    """``tlskit tap --listen 127.0.0.1:0 --to 127.0.0.1:PORT ARGS`` as a subprocess; yields (port, startup line)."""
    with stdout.open("wb") as out:
        proc = subprocess.Popen(
            [str(TLSKIT), "tap", "--listen", f"{LOCAL}:0", "--to", f"{LOCAL}:{target_port}", *args],
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline().decode()
            m = re.fullmatch(rf"tap: listening on {LOCAL}:(\d+) -> {LOCAL}:{target_port}\n", line)
            assert m, f"unexpected startup line {line!r}"
            yield int(m.group(1)), line
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                assert proc.wait(15) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)


def wait_for_line(path: Path, needle: str, timeout: float = 15.0) -> str:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text()
        if needle in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared in the tap output:\n{path.read_text()[-3000:]}")


def test_100_mb_each_way_through_the_cli_arrive_byte_exact(tmp_path: Path, tlskit_env: dict[str, str]) -> None:
    size, block = 100 * 2**20, os.urandom(2**20)
    expected = digest(pattern(size, block))
    server_got: dict[str, Any] = {}

    async def hash_stream(reader: asyncio.StreamReader) -> tuple[int, str]:
        h, n = hashlib.sha256(), 0
        while data := await reader.read(1 << 18):
            h.update(data)
            n += len(data)
        return n, h.hexdigest()

    async def send(writer: asyncio.StreamWriter) -> None:
        for chunk in pattern(size, block):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()

    server_done = asyncio.Event()

    async def bulk_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_got["result"], _ = await asyncio.gather(hash_stream(reader), send(writer))
        writer.close()
        server_done.set()

    async def client(port: int) -> tuple[int, str]:
        reader, writer = await asyncio.open_connection(LOCAL, port)
        got, _ = await asyncio.gather(hash_stream(reader), send(writer))
        writer.close()
        return got

    async def scenario(out: Path) -> tuple[int, str]:
        async with server(bulk_server) as port:
            with cli_tap(port, "--json", stdout=out, env=tlskit_env) as (tap_port, _):
                got = await client(tap_port)
                # The client may finish first; leaving the server's block now would cancel its last reads.
                await asyncio.wait_for(server_done.wait(), 60)
                await asyncio.to_thread(wait_for_line, out, '"event": "verdict"')
        return got

    out = tmp_path / "tap.jsonl"
    assert run(scenario(out), timeout=120) == (size, expected)
    assert server_got["result"] == (size, expected)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    (close,) = [o for o in lines if o["event"] == "close"]
    assert close["bytes"] == {"client->server": size, "server->client": size}
    assert [o["text"] for o in lines if o["event"] == "verdict"] == [READABLE]
    for direction in ("client->server", "server->client"):
        shown = sum(o["bytes"] for o in lines if o["event"] == "plaintext" and o["dir"] == direction)
        counted = sum(o["bytes"] for o in lines if o["event"] == "plaintext_more" and o["dir"] == direction)
        assert shown == 16384 and shown + counted == size
    assert len(lines) < 500  # aggregated: 100 MB of reads is not thousands of lines
    assert all({"conn", "dir", "time", "elapsed", "event"} <= o.keys() for o in lines)


MALFORMED_PAYLOADS = [
    b"\x16\x03\x01\x02\x00" + b"\x01" * 100,  # a record promising 512 bytes, cut after 100
    b"\x16\x03\x01\xff\xff" + b"A" * 100,  # record longer than TLS allows
    b"\x16\x03\x03\x00\x04\x0e\x00\x00\x00" + b"\x63\x03\x03\x00\x01x" + os.urandom(5000),  # junk after a record
    b"\x16\x03\x03\x00\x04\x01\xff\xff\xff",  # handshake message claiming 16 MiB
    b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",  # a ClientHello of one byte
    b"\x15\x03",  # two bytes of an alert header, then EOF
    b"\x17\x03\x03\x00\x10" + b"\x00" * 8,  # application data record cut short
]


def test_malformed_records_are_reported_and_relayed_byte_exact() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def scenario() -> list[Observation]:
        async with server(echo) as port, tap_to(port) as (tap, seen):
            for payload in [*MALFORMED_PAYLOADS, b"GET / HTTP/1.0\r\n\r\n"]:
                reader, writer = await asyncio.open_connection(LOCAL, tap.listen.port)
                for i in range(0, len(payload), 7):  # in small writes: the parser sees many partial records
                    writer.write(payload[i : i + 7])
                    await writer.drain()
                writer.write_eof()
                assert await read_all(reader) == payload
                writer.close()
        return seen

    seen = run(scenario())
    malformed = named(seen, "malformed", Direction.CLIENT_TO_SERVER)
    assert [(o["conn"], o["reason"]) for o in malformed] == [
        (2, "record length 65535 exceeds the TLS maximum 18432"),
        (3, "unknown record type 99: not TLS (or out of sync)"),
        (4, "ClientHello of 16777215 bytes exceeds 262144"),
        (5, "ClientHello is truncated"),
    ]
    ends = named(seen, "end", Direction.CLIENT_TO_SERVER)
    assert [o["bytes"] for o in ends] == [len(p) for p in MALFORMED_PAYLOADS] + [18]
    # Unfinished records are counted, not lost: 5+100 of the first, 2 header bytes, 8 body bytes still owed.
    assert [o["incomplete"] for o in ends] == [105, 0, 0, 0, 0, 2, 8, 0]
    assert len(named(seen, "verdict")) == len(MALFORMED_PAYLOADS) + 1
    assert verdict_of([o for o in seen if o.conn == len(MALFORMED_PAYLOADS) + 1]) == READABLE


def test_unreachable_server_is_reported_and_the_client_closed() -> None:
    with socket.socket() as s:  # a port that was just free: nothing listens there now
        s.bind((LOCAL, 0))
        dead_port = s.getsockname()[1]

    async def scenario() -> list[Observation]:
        async with tap_to(dead_port) as (tap, seen):
            reader, writer = await asyncio.open_connection(LOCAL, tap.listen.port)
            with contextlib.suppress(ConnectionResetError):
                assert await read_all(reader) == b""
            writer.close()
        return seen

    seen = run(scenario())
    (failed,) = named(seen, "connect_failed")
    assert failed["error"] == f"cannot connect to {LOCAL}:{dead_port}: Connection refused"
    assert verdict_of(seen).startswith("nothing relayed: cannot connect")


# -- the CLI -----------------------------------------------------------------------------------------------------


def test_cli_text_output_shows_the_login_form_and_the_verdict(tmp_path: Path, tlskit_env: dict[str, str]) -> None:
    async def scenario(out: Path) -> bytes:
        async with server(login_handler) as port:
            with cli_tap(port, stdout=out, env=tlskit_env) as (tap_port, _):
                reader, writer = await asyncio.open_connection(LOCAL, tap_port)
                writer.write(login_post("shop.example"))
                response = await read_all(reader)
                writer.close()
                await asyncio.to_thread(wait_for_line, out, "verdict:")
        return response

    out = tmp_path / "tap.txt"
    assert run(scenario(out)).endswith(b"welcome alice")
    text = out.read_text()
    assert f"client->server plaintext, {len(login_post('shop.example'))} bytes:" in text
    assert "    username=alice&password=hunter2" in text
    assert f"verdict: {READABLE}" in text
    assert "\x1b[" not in text  # not a terminal: no colour codes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "0", "--to", "nohostport"], "--to 'nohostport' is not HOST:PORT"),
        (["--listen", "0", "--to", "127.0.0.1:0"], "has port 0"),
        (["--listen", "0", "--to", "::1:443"], "put an IPv6 address in brackets"),
        (["--listen", "0", "--to", "no-such-host.invalid:443"], "cannot resolve the host name"),
        (["--listen", "127.0.0.1:70000", "--to", "127.0.0.1:1"], "has no valid port"),
        (["--listen", "0", "--to", "127.0.0.1:70000"], "give a port number from 1 to 65535"),
    ],
)
def test_cli_rejects_bad_addresses_with_one_line(args: list[str], message: str, tlskit_env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(TLSKIT), "tap", *args], check=False, capture_output=True, text=True, env=tlskit_env, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.startswith("tlskit: error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_reports_a_busy_listen_port(tlskit_env: dict[str, str]) -> None:
    with socket.create_server((LOCAL, 0)) as busy:
        port = busy.getsockname()[1]
        result = subprocess.run(
            [str(TLSKIT), "tap", "--listen", f"{LOCAL}:{port}", "--to", f"{LOCAL}:1"],
            check=False,
            capture_output=True,
            text=True,
            env=tlskit_env,
            timeout=30,
        )
    assert result.returncode == 2
    assert f"cannot listen on {LOCAL}:{port}" in result.stderr and "choose another port" in result.stderr


def test_parse_endpoint_forms() -> None:
    assert parse_endpoint("8443", default_host=LOCAL) == Endpoint(LOCAL, 8443)
    assert parse_endpoint("[::1]:443") == Endpoint("::1", 443)
    assert str(Endpoint("::1", 443)) == "[::1]:443"
    with pytest.raises(InputError, match="is not \\[IPv6\\]:PORT"):
        parse_endpoint("[::1]443")


# -- the demo scene --------------------------------------------------------------------------------------------------


def test_demo_scene_shows_the_password_over_plaintext_only() -> None:
    scene = run(run_tap_scene(password="s3cret-demo-pass"))
    assert scene.plaintext.leaked and not scene.tls.leaked
    assert scene.plaintext.response.endswith(b"Welcome back, alice.")
    assert scene.tls.response.endswith(b"Welcome back, alice.")
    assert scene.plaintext.verdict == READABLE
    assert scene.tls.verdict.startswith("TLS 1.3: contents encrypted; visible: server name login.example")
    assert_not_seen(b"s3cret-demo-pass", dump(list(scene.tls.observations)))
