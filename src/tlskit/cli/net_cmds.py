"""``tlskit serve``, ``tlskit connect`` and ``tlskit demo``: thin layers over :mod:`tlskit.net` and the demo.

``serve`` writes its log (listening address, one line per connection, one per failed handshake) on stderr and
received data on stdout; ``connect`` writes the handshake summary on stderr and the peer's data on stdout, so
both compose with pipes like ``openssl s_client -quiet`` and ``ncat --ssl``.  With ``--frames``, data on
stdin/stdout is one message per line (one JSON value per line with ``--json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import re
import ssl
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from ..errors import FrameError, InputError, TLSError
from .common import EXIT_FAILED, EXIT_OK, PASSPHRASE_ENV, fail, handle_errors, read_passphrase
from .net_io import CHUNK, Framing, StdinReader, describe, echo, failure, pump_in, pump_out, summary_lines, write_stdout

if TYPE_CHECKING:
    from cryptography import x509

    from ..net.connection import MessageCodec, TLSConnection
    from ..net.context import ClientAuth, TLSProfile
    from ..net.policy import PeerCheck, PeerPolicy
    from ..net.revocation import RevocationRefresher

__all__ = ["client_options", "commands", "connect_cmd", "demo_cmd", "parse_address", "serve_cmd"]

_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\]:(?P<port>[^:]*)$")


def parse_address(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into ``(host, port)``; ``PORT`` alone when ``default_host`` is set.

    Port 0 is accepted only for listening (``default_host`` given), where it means "let the OS pick".
    """
    listening = default_host is not None
    form = "[HOST:]PORT" if listening else "HOST:PORT"
    if m := _BRACKETED.match(text):
        host, port_text = m["host"], m["port"]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif listening and ":" not in text:
        host, port_text = default_host or "", text
    else:
        raise InputError(f"{text!r} is not {form}", fix="write it like localhost:8443 or [::1]:8443")
    if not host:
        raise InputError(f"{text!r} has no host", fix=f"write {form}, e.g. localhost:8443")
    low = 0 if listening else 1
    if not port_text.isdigit() or not low <= int(port_text) <= 65535:
        raise InputError(f"{text!r}: bad port {port_text!r}", fix=f"use a port number from {low} to 65535")
    return host, int(port_text)


# --- serve -------------------------------------------------------------------------------------------------


class Mode(enum.Enum):
    """What ``serve`` does with each connection."""

    PRINT = "print"  # received data to stdout
    ECHO = "echo"  # send it back
    EXEC = "exec"  # connect it to a process's stdin/stdout


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """Everything ``serve`` was asked for, validated; :meth:`context` is called again on SIGHUP."""

    host: str
    port: int
    cert: str
    key: str
    ca: tuple[str, ...]
    client_auth: ClientAuth
    profile: TLSProfile
    alpn: tuple[str, ...]
    sni: tuple[tuple[str, str, str], ...]
    peers: PeerOptions
    revocation: RevocationOptions | None
    keylog: str | None
    mode: Mode
    command: str | None
    framing: Framing
    workers: int
    handshake_timeout: float
    max_connections: int | None

    def context(self) -> ssl.SSLContext:
        """A fresh server context from the files (so a reload picks up renewed certificates)."""
        from ..net.context import server_context

        passphrase = read_passphrase(None)
        return server_context(
            cert=self.cert,
            key=self.key,
            passphrase=passphrase,
            ca=list(self.ca) or None,
            client_auth=self.client_auth,
            profile=self.profile,
            alpn=self.alpn,
            sni={name: (cert, key) for name, cert, key in self.sni} or None,
            keylog=self.keylog,
        )


@dataclass(frozen=True, kw_only=True)
class PeerOptions:
    """``--allow-cn/--allow-dns/--allow-ip/--allow-uri/--pin``: the peer policy, built by the library."""

    allow_cn: tuple[str, ...] = ()
    allow_dns: tuple[str, ...] = ()
    allow_ip: tuple[str, ...] = ()
    allow_uri: tuple[str, ...] = ()
    pins: tuple[str, ...] = ()

    def policy(self, *, check: PeerCheck | None = None) -> PeerPolicy | None:
        from ..net.policy import PeerPolicy

        policy = PeerPolicy(
            allow_cn=self.allow_cn,
            allow_dns=self.allow_dns,
            allow_ip=self.allow_ip,
            allow_uri=self.allow_uri,
            pins=self.pins,
            check=check,
        )
        return policy or None


@dataclass(frozen=True, kw_only=True)
class RevocationOptions:
    """``--crl-url/--ocsp/--fail-open/--revocation-interval``: client certificates checked against fresh data."""

    crl_urls: tuple[str, ...]
    ocsp: bool
    fail_open: bool
    interval: float

    def refresher(self, issuers: list[x509.Certificate]) -> RevocationRefresher:
        """A background refresher (not started yet) for these options; ``issuers`` are the client CAs."""
        from ..net.revocation import Revocation, RevocationRefresher

        mode = "any" if self.ocsp and self.crl_urls else "ocsp" if self.ocsp else "crl"
        spec = Revocation(mode, "open" if self.fail_open else "closed", crl_urls=self.crl_urls)
        return RevocationRefresher(spec, issuers=issuers, interval=self.interval)


def _parse_sni(entry: str) -> tuple[str, str, str]:
    name, sep, files = entry.partition("=")
    cert, comma, key = files.partition(",")
    if not (sep and comma and name and cert and key):
        raise InputError(f"--sni {entry!r} is not NAME=CERT,KEY", fix="e.g. --sni api.example.com=api.pem,api-key.pem")
    return name, cert, key


# Inherited variables an --exec child must not see: secrets (a key's passphrase, where session keys go) and
# every TLSKIT_* variable, so the only TLSKIT_* a child sees are the facts about its peer set below.
_SECRET_ENV = ("SSLKEYLOGFILE",)


def _peer_env(conn: TLSConnection) -> dict[str, str]:
    """Environment for ``--exec``: who is on the other end (like stunnel's and ncat's variables), and no secrets."""
    from cryptography.x509.oid import NameOID

    from ..net.server import format_peer

    cert = conn.peer_certificate
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) if cert else []
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TLSKIT_") and k not in _SECRET_ENV}
    return {
        **inherited,
        "TLSKIT_PEER_ADDR": format_peer(conn.remote_address),
        "TLSKIT_PEER_CN": str(cns[0].value) if cns else "",
        "TLSKIT_PEER_SUBJECT": cert.subject.rfc4514_string() if cert else "",
        "TLSKIT_PEER_AUTHORIZED": "1" if conn.authorized else "0",
        "TLSKIT_PROTOCOL": conn.protocol or "",
        "TLSKIT_CIPHER": conn.cipher.standard_name if conn.cipher else "",
        "TLSKIT_SNI": conn.server_name or "",
        "TLSKIT_ALPN": conn.alpn_protocol or "",
    }


async def _echo_back(conn: TLSConnection, codec: MessageCodec | None) -> None:
    if codec is None:
        from ..net.server import echo

        await echo(conn)
        return
    async for message in conn.messages(codec):
        await conn.send(message, codec)


async def _exec(
    conn: TLSConnection, opts: ServeOptions, codec: MessageCodec | None, warn: Callable[[str], None]
) -> None:
    """Run ``--exec CMD`` for one connection: peer -> its stdin, its stdout -> peer, until it closes stdout."""
    assert opts.command is not None
    proc = await asyncio.create_subprocess_shell(
        opts.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=_peer_env(conn)
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def to_process(data: bytes) -> None:
        stdin.write(data)
        await stdin.drain()

    async def inbound() -> None:
        with contextlib.suppress(ConnectionError):
            try:
                await pump_in(conn, opts.framing, codec, to_process)
            finally:
                stdin.close()  # the peer finished (or failed): the process reads EOF

    async def from_process() -> bytes:
        return await stdout.read(CHUNK)

    task = asyncio.create_task(inbound())
    try:
        await pump_out(from_process, conn, opts.framing, codec, warn=warn)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TLSError, FrameError):
            await task
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        await proc.wait()


class _DropHandshakeRecords(logging.Filter):
    """The server logs each failed or refused handshake; ``serve`` prints its own line (code and fix) instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not hasattr(record, "tls_error")


def log_to_stderr(prefix: str, *loggers: str) -> None:
    """The library's log lines on stderr as ``PREFIX: message`` (handshake failures are printed by the caller)."""
    from .net_io import PrintableFormatter  # the library's lines quote peers: control characters escaped

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter(f"{prefix}: %(message)s"))
    handler.addFilter(_DropHandshakeRecords())
    for name in loggers:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


async def serve_async(opts: ServeOptions) -> int:
    """Run ``tlskit serve`` until SIGTERM/SIGINT."""
    from ..net.policy import REFUSAL_CODES
    from ..net.server import format_peer

    def log(text: str) -> None:
        echo("serve", text)

    async def handler(conn: TLSConnection) -> None:
        peer = format_peer(conn.remote_address)
        log(f"{peer} connected: {describe(conn)}")
        codec = opts.framing.codec()
        try:
            if opts.mode is Mode.ECHO:
                await _echo_back(conn, codec)
            elif opts.mode is Mode.EXEC:
                await _exec(conn, opts, codec, lambda text: log(f"{peer} {text}"))
            else:
                await pump_in(conn, opts.framing, codec, write_stdout)
        except TLSError as exc:  # on an established connection: a bad record, a refused renegotiation
            log(failure(exc, f"{peer} closed"))
            return
        except (FrameError, ConnectionError) as exc:
            log(f"{peer} closed: {exc}")
            return
        log(f"{peer} closed")

    def on_tls_error(error: TLSError, address: Any) -> None:
        refused = error.code in REFUSAL_CODES
        log(failure(error, f"{format_peer(address)} {'refused' if refused else 'handshake failed'}"))

    log_to_stderr("serve", "tlskit.server", "tlskit.policy", "tlskit.revocation")
    context = opts.context()
    refresher = None
    if opts.revocation is not None:
        from ..pki.files import load_certificates

        refresher = opts.revocation.refresher([c for path in opts.ca for c in load_certificates(path)])
        await asyncio.get_running_loop().run_in_executor(None, refresher.start)
    try:
        return await _serve_until_stopped(opts, context, handler, on_tls_error, refresher)
    finally:
        if refresher is not None:
            refresher.close()


async def _serve_until_stopped(
    opts: ServeOptions,
    context: ssl.SSLContext,
    handler: Callable[[TLSConnection], Coroutine[Any, Any, None]],
    on_tls_error: Callable[[TLSError, Any], None],
    refresher: RevocationRefresher | None,
) -> int:
    from ..net.server import format_peer, start_server

    def log(text: str) -> None:
        echo("serve", text)

    server = await start_server(
        handler,
        opts.host,
        opts.port,
        context=context,
        policy=opts.peers.policy(check=refresher.peer_check if refresher is not None else None),
        handshake_timeout=opts.handshake_timeout,
        max_connections=opts.max_connections,
        on_tls_error=on_tls_error,
        workers=opts.workers,
    )
    for address in server.addresses:
        log(f"listening on {format_peer(address)}")
    server.install_signal_handlers(reload=opts.context)
    await server.serve_forever()
    log("stopped")
    return EXIT_OK


# --- connect -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ConnectOptions:
    """Everything ``connect`` was asked for, validated."""

    host: str
    port: int
    server_name: str | None
    insecure: bool
    policy: PeerPolicy | None
    framing: Framing
    reconnect: bool


async def _session(conn: TLSConnection, stdin: StdinReader, framing: Framing, *, half_close: bool) -> None:
    """stdin -> peer and peer -> stdout until the peer closes; on stdin EOF send close_notify if ``half_close``."""
    codec = framing.codec()

    async def outbound() -> None:
        await pump_out(stdin.read, conn, framing, codec, warn=lambda text: echo("connect", text))
        if half_close:
            conn.write_eof()

    task = asyncio.create_task(outbound())
    try:
        await pump_in(conn, framing, codec, write_stdout)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, TLSError):
            await task


async def connect_async(opts: ConnectOptions, context: ssl.SSLContext) -> int:
    """Run ``tlskit connect``: 0 when the peer closed normally, 1 when the handshake or the connection failed."""
    from ..net.client import ReconnectingClient, connect

    where = f"{opts.host}:{opts.port}"
    stdin = StdinReader(asyncio.get_running_loop())

    def show(conn: TLSConnection) -> None:
        for line in summary_lines(conn, verified=not opts.insecure):
            echo("connect", line)

    if opts.reconnect:
        log_to_stderr("connect", "tlskit.client")
        client = ReconnectingClient(
            opts.host, opts.port, context=context, policy=opts.policy, server_name=opts.server_name
        )
        async for conn in client:
            show(conn)
            try:
                await _session(conn, stdin, opts.framing, half_close=False)
            except (TLSError, FrameError, ConnectionError) as exc:
                echo("connect", f"connection lost: {exc}")
            await conn.close(timeout=2.0)  # the client reconnects once this one is closed on our side too
            echo("connect", "disconnected; reconnecting")
        return EXIT_OK

    try:
        conn = await connect(opts.host, opts.port, context=context, policy=opts.policy, server_name=opts.server_name)
    except TLSError as exc:
        raise fail(failure(exc, f"handshake with {where} failed"), code=EXIT_FAILED) from None
    # A NetworkError (refused, unreachable, unknown host) is the environment, not the peer's answer: exit 2.
    show(conn)
    try:
        await _session(conn, stdin, opts.framing, half_close=True)
    except TLSError as exc:
        # e.g. TLS 1.3: a server that rejects our certificate says so only after the handshake.
        raise fail(failure(exc, f"connection to {where} failed"), code=EXIT_FAILED) from None
    except (FrameError, ConnectionError) as exc:
        raise fail(f"connection to {where} failed: {exc}", code=EXIT_FAILED) from None
    finally:
        await conn.close(timeout=2.0)
    return EXIT_OK


# --- click commands ----------------------------------------------------------------------------------------

_frames_option = click.option(
    "--frames",
    metavar="raw|lines|length|delim:HEX",
    default=None,
    help="Message framing: raw bytes (default), lines, 4-byte length prefix, or a delimiter in hex (efbfbd: U+FFFD).",
)
_keylog_option = click.option(
    "--keylog",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Append the TLS session keys to FILE (created 0600) so Wireshark can decrypt this traffic.",
)


def _peer_options(who: str) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """--allow-cn/--allow-dns/--allow-ip/--allow-uri/--pin: only listed or pinned peers may talk."""
    options = [
        click.option("--allow-cn", multiple=True, metavar="NAME", help=f"Accept only {who} with this CN (repeatable)."),
        click.option("--allow-dns", multiple=True, metavar="NAME", help="... or this DNS name SAN (repeatable)."),
        click.option("--allow-ip", multiple=True, metavar="ADDR", help="... or this IP address SAN (repeatable)."),
        click.option("--allow-uri", multiple=True, metavar="URI", help="... or this URI SAN, e.g. a SPIFFE ID."),
        click.option(
            "--pin", multiple=True, metavar="sha256:B64", help=f"Accept only {who} with this public key (repeatable)."
        ),
    ]

    def apply(func: click.decorators.FC) -> click.decorators.FC:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


_json_option = click.option("--json", "as_json", is_flag=True, help="Messages are JSON values, one per line on stdio.")


def _run(main: Coroutine[Any, Any, int]) -> None:
    from ..net.server import run

    code = run(main)
    if code:
        raise click.exceptions.Exit(code)


@click.command("serve")
@click.argument("address", metavar="[HOST:]PORT")
@click.option("--cert", required=True, metavar="FILE", help="Certificate chain (leaf first), PEM.")
@click.option("--key", required=True, metavar="FILE", help=f"Private key (encrypted: set {PASSPHRASE_ENV}).")
@click.option("--ca", multiple=True, metavar="FILE", help="Trust anchors for client certificates (repeatable).")
@click.option(
    "--client-auth",
    type=click.Choice(["none", "optional", "required"]),
    default=None,
    help="Ask for client certificates (default: required with --ca, else none).",
)
@click.option(
    "--profile",
    type=click.Choice(["intermediate", "modern"]),
    default="intermediate",
    show_default=True,
    help="Mozilla's server configuration: intermediate (TLS 1.2 and 1.3) or modern (TLS 1.3 only).",
)
@click.option("--alpn", multiple=True, help="ALPN protocols to accept, in preference order (repeatable).")
@click.option("--sni", multiple=True, metavar="NAME=CERT,KEY", help="Another certificate for a server name.")
@_peer_options("clients")
@_keylog_option
@click.option("--echo", is_flag=True, help="Send back what arrives (messages, with --frames).")
@click.option("--exec", "command", metavar="CMD", help="Connect each connection to CMD's stdin/stdout.")
@_frames_option
@_json_option
@click.option(
    "--workers", type=click.IntRange(1, 256), default=1, show_default=True, help="Processes sharing the port."
)
@click.option(
    "--handshake-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="S",
    help="Drop connections that have not finished the handshake after S seconds.",
)
@click.option("--max-connections", type=click.IntRange(1), default=None, help="Refuse connections beyond this.")
@click.option(
    "--crl-url", "crl_urls", multiple=True, metavar="URL",
    help="Refuse client certificates this CRL lists; fetched again in the background (repeatable).",
)  # fmt: skip
@click.option("--ocsp", is_flag=True, help="Refuse client certificates their OCSP responder says are revoked.")
@click.option("--fail-open", is_flag=True, help="With --crl-url/--ocsp: accept clients whose status is unknown.")
@click.option(
    "--revocation-interval", type=click.FloatRange(min=0.05), default=None, metavar="S",
    help="Fetch CRLs and OCSP answers again every S seconds: a revoked client is refused within S.  [default: 60]",
)  # fmt: skip
@handle_errors
def serve_cmd(
    *,
    address: str,
    cert: str,
    key: str,
    ca: tuple[str, ...],
    client_auth: str | None,
    profile: str,
    alpn: tuple[str, ...],
    sni: tuple[str, ...],
    allow_cn: tuple[str, ...],
    allow_dns: tuple[str, ...],
    allow_ip: tuple[str, ...],
    allow_uri: tuple[str, ...],
    pin: tuple[str, ...],
    keylog: str | None,
    echo: bool,
    command: str | None,
    frames: str | None,
    as_json: bool,
    workers: int,
    handshake_timeout: float,
    max_connections: int | None,
    crl_urls: tuple[str, ...],
    ocsp: bool,
    fail_open: bool,
    revocation_interval: float | None,
) -> None:
    """A TLS server: logs each connection on stderr; prints what arrives on stdout (or --echo, or --exec).

    HOST defaults to 127.0.0.1 (loopback only: say 0.0.0.0 or [::] to accept other machines); PORT 0 picks a free
    port and prints it.  SIGHUP reloads the certificates, SIGTERM shuts down gracefully.
    """
    from ..net.context import ClientAuth, TLSProfile

    if echo and command:
        raise InputError("--echo and --exec exclude each other", fix="choose one")
    host, port = parse_address(address, default_host="127.0.0.1")
    auth = ClientAuth.parse(client_auth or ("required" if ca else "none"))
    revocation = None
    if crl_urls or ocsp:
        if auth is ClientAuth.NONE:
            raise InputError(
                "--crl-url and --ocsp check client certificates, and this server does not ask for any",
                fix="give --ca with the client CA (and --client-auth required or optional)",
            )
        interval = 60.0 if revocation_interval is None else revocation_interval
        revocation = RevocationOptions(crl_urls=crl_urls, ocsp=ocsp, fail_open=fail_open, interval=interval)
    elif fail_open or revocation_interval is not None:
        flag = "--fail-open" if fail_open else "--revocation-interval"
        raise InputError(f"{flag} goes with --crl-url or --ocsp", fix=f"add one, or drop {flag}")
    opts = ServeOptions(
        host=host,
        port=port,
        cert=cert,
        key=key,
        ca=ca,
        client_auth=auth,
        profile=TLSProfile(profile),
        alpn=alpn,
        sni=tuple(_parse_sni(entry) for entry in sni),
        peers=PeerOptions(allow_cn=allow_cn, allow_dns=allow_dns, allow_ip=allow_ip, allow_uri=allow_uri, pins=pin),
        revocation=revocation,
        keylog=keylog,
        mode=Mode.EXEC if command else Mode.ECHO if echo else Mode.PRINT,
        command=command,
        framing=Framing.from_options(frames, as_json),
        workers=workers,
        handshake_timeout=handshake_timeout,
        max_connections=max_connections,
    )
    from ..net.policy import validate_policy

    validate_policy(opts.peers.policy(), opts.context())  # bad files or options: exit 2 before anything listens
    if revocation is not None:
        revocation.refresher([])  # bad URLs: exit 2 before anything listens
    _run(serve_async(opts))


def client_options(func: click.decorators.FC) -> click.decorators.FC:
    """--ca/--cert/--key/--servername/--alpn: what a TLS client trusts, presents and asks for."""
    options = [
        click.option(
            "--ca", multiple=True, metavar="FILE", help="Trust anchors (repeatable; default: the system store)."
        ),
        click.option("--cert", metavar="FILE", help="Client certificate chain, for mutual TLS."),
        click.option("--key", metavar="FILE", help=f"Client private key (encrypted: set {PASSPHRASE_ENV})."),
        click.option("--servername", help="Name to send as SNI and to verify (default: HOST)."),
        click.option("--alpn", multiple=True, help="ALPN protocols to offer (repeatable)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("connect")
@click.argument("address", metavar="HOST:PORT")
@client_options
@click.option("--insecure", is_flag=True, help="Do not verify the server (still report what verification says).")
@_peer_options("servers")
@_keylog_option
@click.option(
    "--crl", multiple=True, metavar="FILE", help="Refuse a server certificate revoked by this CRL (repeatable)."
)
@_frames_option
@_json_option
@click.option(
    "--reconnect",
    is_flag=True,
    help="Reconnect with backoff whenever the connection ends, resuming the session; runs until interrupted.",
)
@handle_errors
def connect_cmd(
    *,
    address: str,
    ca: tuple[str, ...],
    cert: str | None,
    key: str | None,
    servername: str | None,
    alpn: tuple[str, ...],
    insecure: bool,
    allow_cn: tuple[str, ...],
    allow_dns: tuple[str, ...],
    allow_ip: tuple[str, ...],
    allow_uri: tuple[str, ...],
    pin: tuple[str, ...],
    keylog: str | None,
    crl: tuple[str, ...],
    frames: str | None,
    as_json: bool,
    reconnect: bool,
) -> None:
    """A TLS client: handshake summary on stderr, then stdin to the peer and the peer to stdout.

    On EOF of stdin it sends close_notify and waits for the peer to finish.  Exits 1 with the reason (code,
    sentence, fix) when the handshake fails.
    """
    from ..net.context import client_context

    host, port = parse_address(address)
    if (cert is None) != (key is None):
        raise InputError("--cert and --key go together", fix="give both, or neither")
    context = client_context(
        ca=list(ca) or None,
        cert=cert,
        key=key,
        passphrase=read_passphrase(None),
        alpn=alpn,
        verify=not insecure,
        crls=crl,
        keylog=keylog,
    )
    peers = PeerOptions(allow_cn=allow_cn, allow_dns=allow_dns, allow_ip=allow_ip, allow_uri=allow_uri, pins=pin)
    from ..net.policy import validate_policy

    opts = ConnectOptions(
        host=host,
        port=port,
        server_name=servername,
        insecure=insecure,
        policy=validate_policy(peers.policy(), context),
        framing=Framing.from_options(frames, as_json),
        reconnect=reconnect,
    )
    _run(connect_async(opts, context))


@click.command("demo")
@handle_errors
def demo_cmd() -> None:
    """Mutual TLS in a few seconds: a CA, a server pushing JSON, a reconnecting client, a refused client, a tap."""
    from .demo import run_demo

    code = run_demo()
    if code:
        raise click.exceptions.Exit(code)


commands: list[click.Command] = [serve_cmd, connect_cmd, demo_cmd]
