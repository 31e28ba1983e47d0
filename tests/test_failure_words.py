"""Words for every failure (issue 12, item 3): what a server logs, what a client is told, what the environment did.

- Hostile or broken ClientHellos (truncated, malformed lengths, oversized, SSL 2.0, plain HTTP, random bytes) each
  get a precise problem code from the sans-IO engine's errors, never ``unknown``.
- A client without a certificate is never told its certificate was rejected, whatever alert the server picks:
  ``openssl s_server -Verify`` (handshake_failure / certificate_required), ``gnutls-serv --require-client-cert``
  (decode_error in TLS 1.2, certificate_required in 1.3) and a Go-like server answering bad_certificate.
- Every command that listens or connects (serve, connect, probe, tap, demo, tunnel) turns a busy port, a privileged
  port, an unreachable host or unresolvable name, and an unreadable file into one line and exit 2, on both event
  loops (``TLSKIT_EVENT_LOOP``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from conftest import PKI, TLSKIT
from peers import gnutls_server, missing, openssl_server, require_network_namespaces, requires, tool
from tlskit.errors import NetworkError, TLSError
from tlskit.net.client import connect
from tlskit.net.context import client_context, server_context
from tlskit.net.explain import tls_error
from tlskit.net.server import run, start_server
from tlskit.pki.problems import Code

LOOPS = ["asyncio", "uvloop"]


# --- hostile ClientHellos, sans-IO ----------------------------------------------------------------------------


def client_hello(pki: PKI) -> bytes:
    out = ssl.MemoryBIO()
    sslobj = client_context(ca=pki.root_pem).wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        sslobj.do_handshake()
    return out.read()


def hostile(pki: PKI) -> dict[str, bytes]:
    hello = client_hello(pki)
    body = bytearray(hello[5:])
    short = bytearray(body)
    short[1:4] = (len(body) - 14).to_bytes(3, "big")  # the handshake length ends inside the record
    huge = b"\x01" + (200_000).to_bytes(3, "big") + b"\x03\x03" + bytes(1000)
    records = b"".join(
        b"\x16\x03\x01" + struct.pack(">H", len(huge[i : i + 16384])) + huge[i : i + 16384]
        for i in range(0, len(huge), 16384)
    )
    return {
        "length-mismatch": hello[:5] + bytes(short),
        "oversized-record": b"\x16\x03\x01\xff\xff" + bytes(64),
        "oversized-hello": records,
        "sslv2-hello": b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + b"\x07\x00\xc0" * 7 + bytes(16),
        "plain-http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "http-proxy": b"CONNECT localhost:443 HTTP/1.1\r\n\r\n",
        "random-bytes": b"\x8f\x13" + os.urandom(200),
        "app-data-first": b"\x17\x03\x03\x00\x05hello",
        "too-short": b"\x16\x03\x00\x00\x05\x01\x00\x00\x01\x00",
    }


EXPECTED = {
    "length-mismatch": Code.MALFORMED_HANDSHAKE,
    "oversized-record": Code.OVERSIZED_MESSAGE,
    "oversized-hello": Code.OVERSIZED_MESSAGE,
    "sslv2-hello": Code.PROTOCOL_TOO_OLD,
    "plain-http": Code.PLAINTEXT_HTTP,
    "http-proxy": Code.PLAINTEXT_HTTP,
    "random-bytes": Code.NOT_TLS,
    "app-data-first": Code.PROTOCOL_VIOLATION,
    "too-short": Code.MALFORMED_HANDSHAKE,
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_a_hostile_client_hello_gets_a_precise_code(pki: PKI, case: str) -> None:
    server = server_context(cert=pki.server_pem, key=pki.server_key)
    incoming = ssl.MemoryBIO()
    sslobj = server.wrap_bio(incoming, ssl.MemoryBIO(), server_side=True)
    incoming.write(hostile(pki)[case])
    with pytest.raises(ssl.SSLError) as info:
        sslobj.do_handshake()
    error = tls_error(info.value, server_side=True)
    assert error.code == EXPECTED[case], error
    assert "unknown" not in error.message.lower() and error.fix


def test_plain_http_is_told_to_use_https(pki: PKI) -> None:
    server = server_context(cert=pki.server_pem, key=pki.server_key)
    incoming = ssl.MemoryBIO()
    sslobj = server.wrap_bio(incoming, ssl.MemoryBIO(), server_side=True)
    incoming.write(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ssl.SSLError) as info:
        sslobj.do_handshake()
    error = tls_error(info.value, server_side=True)
    assert (error.message, error.fix.split(" ")[0]) == ("the client spoke plain HTTP to a TLS port", "use")
    assert "https://" in error.fix


# --- a client without a certificate is never told it was rejected ------------------------------------------------


async def handshake_without_certificate(pki: PKI, port: int, version: str) -> TLSError:
    ctx = client_context(ca=pki.root_pem, max_version=version)
    with pytest.raises(TLSError) as info:
        conn = await connect("127.0.0.1", port, context=ctx, server_name="localhost", handshake_timeout=20)
        await conn.write(b"hi\n")
        await asyncio.wait_for(conn.read(), 20)  # TLS 1.3: the refusal arrives after the handshake
    return info.value


def assert_not_rejected(error: TLSError, *, code: str) -> None:
    assert error.code == code, error
    assert error.code != Code.CLIENT_CERT_REJECTED and "rejected the client certificate" not in error.message


class GoLikeServer:
    """Answers every ClientHello with a fatal bad_certificate alert, as Go's server answers a missing certificate."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(5)
            writer.write(b"\x15\x03\x03\x00\x02\x02\x2a")  # alert, fatal, bad_certificate
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(answer, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def test_bad_certificate_for_a_client_without_one_means_required(pki: PKI) -> None:
    async def main() -> tuple[TLSError, TLSError]:
        async with GoLikeServer() as port:
            without = await handshake_without_certificate(pki, port, "1.3")
            ctx = client_context(ca=pki.root_pem, cert=pki.client_pem, key=pki.client_key)
            with pytest.raises(TLSError) as info:
                await connect("127.0.0.1", port, context=ctx, server_name="localhost")
            return without, info.value

    without, with_cert = asyncio.run(main())
    assert_not_rejected(without, code=Code.CLIENT_CERT_REQUIRED)
    assert with_cert.code == Code.CLIENT_CERT_REJECTED  # the same alert to a client that sent one: rejected


@requires("openssl")
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_openssl_server_requiring_a_certificate(pki: PKI, version: str) -> None:
    args = ["-cert", str(pki.server_pem), "-cert_chain", str(pki.intermediates_pem), "-key", str(pki.server_key)]
    args += ["-CAfile", str(pki.root_pem), "-Verify", "1"]
    with openssl_server(*args) as peer:
        error = asyncio.run(handshake_without_certificate(pki, peer.port, version))
    assert_not_rejected(error, code=Code.CLIENT_CERT_REQUIRED)  # handshake_failure (1.2), certificate_required (1.3)


@requires("gnutls-serv")
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_gnutls_server_requiring_a_certificate(pki: PKI, version: str) -> None:
    args = ["--echo", "--x509certfile", pki.server_pem, "--x509keyfile", pki.server_key]
    args += ["--x509cafile", pki.root_pem, "--require-client-cert", "--verify-client-cert"]
    with gnutls_server(*args) as peer:
        error = asyncio.run(handshake_without_certificate(pki, peer.port, version))
    if version == "1.3":
        assert_not_rejected(error, code=Code.CLIENT_CERT_REQUIRED)
    else:  # GnuTLS says decode_error: ambiguous, so the sentence names the likely cause and the fix covers it
        assert_not_rejected(error, code=Code.PROTOCOL_VIOLATION)
        assert "missing client certificate" in error.message and "cert=" in error.fix


# --- renegotiation ------------------------------------------------------------------------------------------------


@requires("openssl")
def test_client_initiated_renegotiation_is_refused_in_words(pki: PKI) -> None:
    errors: list[BaseException] = []

    async def echo(conn: Any) -> None:
        try:
            while data := await conn.read():
                await conn.write(data)
        except TLSError as exc:
            errors.append(exc)

    async def main() -> bytes:
        ctx = server_context(cert=pki.server_pem, key=pki.server_key)
        async with await start_server(echo, "127.0.0.1", 0, context=ctx) as server:
            argv = [tool("openssl"), "s_client", "-tls1_2", "-connect", f"127.0.0.1:{server.port}"]
            argv += ["-CAfile", str(pki.root_pem), "-servername", "localhost"]
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"before\n")
            await proc.stdin.drain()
            seen = b""
            while b"before" not in seen.split(b"\n---\n")[-1]:
                chunk = await asyncio.wait_for(proc.stdout.read(4096), 20)
                assert chunk, seen
                seen += chunk
            proc.stdin.write(b"R\n")  # s_client: renegotiate
            await proc.stdin.drain()
            out, _ = await asyncio.wait_for(proc.communicate(), 20)
            for _ in range(100):
                if errors:
                    break
                await asyncio.sleep(0.05)
            return seen + out

    output = asyncio.run(main())
    assert b"RENEGOTIATING" in output and b"no renegotiation" in output  # the client was told no
    assert len(errors) == 1 and isinstance(errors[0], TLSError)
    assert errors[0].code == Code.RENEGOTIATION_REFUSED, errors[0]


# --- the environment: one line, exit 2, both event loops --------------------------------------------------------


class Cli(Protocol):
    def __call__(self, args: Sequence[Any], *, loop: str, prefix: Sequence[str] = (), timeout: float = 60) -> str: ...


@pytest.fixture
def cli(tlskit_env: dict[str, str]) -> Cli:
    """Run the CLI (in conftest's ``tlskit_env``, on event loop ``loop``); assert exit 2 with one ``tlskit: error:``
    line on stderr (no traceback); return the line."""

    def run_cli(args: Sequence[Any], *, loop: str, prefix: Sequence[str] = (), timeout: float = 60) -> str:
        done = subprocess.run(
            [*prefix, str(TLSKIT), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=tlskit_env | {"TLSKIT_EVENT_LOOP": loop},
            stdin=subprocess.DEVNULL,
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, done.stdout + done.stderr
        assert len(lines) == 1 and lines[0].startswith("tlskit: error: "), done.stderr
        return lines[0]

    return run_cli


def without_capabilities(*names: str) -> list[str]:
    """A prefix that runs a command without these capabilities (root has them all); nothing when not root."""
    if os.geteuid() != 0:
        return []
    return [tool("setpriv"), "--bounding-set", ",".join(f"-{name}" for name in names), "--"]


@pytest.fixture
def busy_port() -> Any:
    with socket.create_server(("127.0.0.1", 0)) as held:
        yield held.getsockname()[1]


@pytest.mark.parametrize("loop", LOOPS)
def test_busy_port(pki: PKI, busy_port: int, loop: str, cli: Cli) -> None:
    serve = cli(["serve", busy_port, "--cert", pki.server_pem, "--key", pki.server_key], loop=loop)
    tap = cli(["tap", "--listen", busy_port, "--to", "127.0.0.1:9"], loop=loop)
    tunnel = ["tunnel", "--listen", f"127.0.0.1:{busy_port}", "--target", "127.0.0.1:9", "--ca", pki.root_pem]
    server = cli([tunnel[0], "server", *tunnel[1:], "--cert", pki.server_pem, "--key", pki.server_key], loop=loop)
    client = cli([tunnel[0], "client", *tunnel[1:]], loop=loop)
    metrics = ["--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--metrics", f"127.0.0.1:{busy_port}"]
    metrics_line = cli(["tunnel", "client", *metrics], loop=loop)  # the tunnel listens; its metrics cannot
    for line in (serve, tap, server, client, metrics_line):
        assert f"cannot listen on 127.0.0.1:{busy_port}: the port is already in use" in line
    assert "--metrics" in metrics_line, metrics_line


def privileged_port() -> int:
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start <= 443:
        missing(f"ports from {start} up need no privilege here", "set net.ipv4.ip_unprivileged_port_start=1024")
    return 443


@pytest.mark.parametrize("loop", LOOPS)
def test_privileged_port(pki: PKI, loop: str, cli: Cli) -> None:
    port, prefix = privileged_port(), without_capabilities("net_bind_service")
    serve = cli(["serve", port, "--cert", pki.server_pem, "--key", pki.server_key], loop=loop, prefix=prefix)
    tap = cli(["tap", "--listen", port, "--to", "127.0.0.1:9"], loop=loop, prefix=prefix)
    for line in (serve, tap):
        assert f"cannot listen on 127.0.0.1:{port}: ports below 1024 are privileged (Permission denied)" in line


@pytest.mark.parametrize("loop", LOOPS)
def test_unreachable_host_and_unknown_name(loop: str, cli: Cli) -> None:
    """In a network namespace of our own, loopback is down: no packet leaves, every connection is unreachable."""
    netns = [*require_network_namespaces(), "--"]
    for command in (["connect", "127.0.0.1:8443"], ["probe", "127.0.0.1:8443"]):
        line = cli(command, loop=loop, prefix=netns)
        assert "cannot connect to 127.0.0.1:8443: the host is unreachable (Network is unreachable)" in line
    line = cli(["connect", "no-such-host.invalid:443"], loop=loop, prefix=netns)
    assert "cannot resolve the host name 'no-such-host.invalid'" in line
    line = cli(["demo"], loop=loop, prefix=netns)
    assert "the host is unreachable" in line


@pytest.mark.parametrize("loop", LOOPS)
def test_unreadable_file(pki: PKI, tmp_path: Path, loop: str, cli: Cli) -> None:
    secret = tmp_path / "unreadable.pem"
    secret.write_bytes(pki.server_pem.read_bytes())
    secret.chmod(0)
    prefix = without_capabilities("dac_override", "dac_read_search")
    for command in (
        ["serve", "0", "--cert", secret, "--key", pki.server_key],
        ["connect", "127.0.0.1:8443", "--ca", secret],
        ["probe", "127.0.0.1:8443", "--ca", secret],
    ):
        line = cli(command, loop=loop, prefix=prefix)
        assert str(secret) in line and ("permission denied" in line or "is not readable" in line), line


@pytest.mark.parametrize("use_uvloop", [False, True], ids=LOOPS)
def test_library_network_errors_are_oserrors_in_words(pki: PKI, busy_port: int, use_uvloop: bool) -> None:
    async def main() -> tuple[NetworkError, NetworkError]:
        ctx = server_context(cert=pki.server_pem, key=pki.server_key)
        with pytest.raises(NetworkError) as busy:
            await start_server(lambda conn: asyncio.sleep(0), "127.0.0.1", busy_port, context=ctx)
        with socket.socket() as bound:
            bound.bind(("127.0.0.1", 0))  # bound, not listening: refused
            with pytest.raises(ConnectionRefusedError) as refused:  # still the OSError it always was
                await connect("127.0.0.1", bound.getsockname()[1], context=client_context(ca=pki.root_pem))
        assert isinstance(refused.value, NetworkError)
        return busy.value, refused.value

    busy, refused = run(main(), use_uvloop=use_uvloop)
    assert (busy.code, busy.errno) == (Code.ADDRESS_IN_USE, errno.EADDRINUSE) and isinstance(busy, OSError)
    assert (refused.code, refused.errno) == (Code.CONNECTION_REFUSED, errno.ECONNREFUSED)
    assert busy.fix and refused.fix
