"""``tlskit demo``: mutual TLS end to end in a few seconds, using only tlskit's public pieces.

Scenes: (1) a CA hierarchy and two leaf certificates written to a temporary directory; (2) a mutual-TLS server
pushing JSON messages with sequence numbers every 100 ms to a reconnecting client, which answers and checks
the sequence; the server drops the first connection once so the client reconnects and resumes its session;
(3) a client whose certificate comes from another CA, refused, with the reason as both sides see it; (4) the
same login over plaintext and over TLS, as an eavesdropper on the path sees it.

:func:`run_demo` prints with rich and returns an exit code; :func:`run_scenes` returns a :class:`DemoReport`
for programs (and tests) that want the facts rather than the show.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from .._text import printable
from ..errors import FrameError, NetworkError, TLSError
from ..net.client import ReconnectingClient, connect
from ..net.context import ClientAuth, client_context, server_context
from ..net.explain import network_error
from ..net.framing import DelimitedFramer, JsonCodec
from ..net.server import format_peer, start_server
from ..pki.ca import CertificateAuthority
from ..pki.certs import Profile
from .common import to_flags

if TYPE_CHECKING:
    from ..net.connection import TLSConnection

__all__ = ["DemoReport", "run_demo", "run_scenes"]

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
CLIENT_NAME = "demo-client"
INTERVAL = 0.1  # seconds between pushed messages
TOTAL = 10  # messages the client waits for
DROP_AFTER = 4  # the server drops the first connection after this many messages, to show a reconnect
TIMEOUT = 10.0  # generous bound on every wait: the demo must end by itself

_STYLES = {"server": "bold magenta", "client": "bold cyan", "tap": "bold yellow"}


@dataclass
class DemoReport:
    """What happened, scene by scene (filled in as the demo runs)."""

    directory: str = ""
    sequence: list[int] = field(default_factory=list)
    """Sequence numbers the client received, in arrival order."""
    in_order: bool = True
    connections: int = 0
    resumed: list[bool] = field(default_factory=list)
    """Per client connection: was the TLS session resumed?"""
    server_saw_authorized: list[bool] = field(default_factory=list)
    client_messages_received: int = 0
    refused: bool = False
    refusal_client: str = ""
    refusal_server: str = ""
    tap_leaked_plaintext: bool | None = None
    tap_leaked_tls: bool | None = None

    @property
    def ok(self) -> bool:
        """The scenes showed what they are meant to show."""
        return (
            self.in_order
            and self.sequence == list(range(TOTAL))
            and self.connections >= 2
            and all(self.server_saw_authorized)
            and self.refused
            and self.tap_leaked_tls is not True
        )


class _Show:
    """Narration: numbered scene titles and ``side  text`` lines (wrapped text stays in its column).

    Lines quote peers (subjects, errors, what the tap saw): they are shown with control characters escaped.
    """

    def __init__(self, console: Console) -> None:
        self.console = console

    def title(self, text: str) -> None:
        self.console.print()
        self.console.print(Text(text, style="bold underline"))

    def line(self, side: str, text: str, style: str = "") -> None:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=8, no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row(Text(f"  {side}", style=_STYLES.get(side, "bold")), Text(printable(text), style=style))
        self.console.print(grid)


def _who(conn: TLSConnection) -> str:
    cert = conn.peer_certificate
    peer = cert.subject.rfc4514_string() if cert else "no certificate"
    auth = "authorized" if conn.authorized else f"NOT authorized ({conn.authorization_error})"
    cipher = conn.cipher.standard_name if conn.cipher else "-"
    session = "resumed session" if conn.session_reused else "new session"
    return f"{auth}, peer {peer}, {conn.protocol}, {cipher}, {session}"


# --- scene 1 ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Files:
    root: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]


def _make_pki(directory: Path, show: _Show) -> _Files:
    show.title(f"1. A CA hierarchy and two certificates, made in {directory}")
    root = CertificateAuthority.create_root(directory / "root", name="tlskit demo Root CA")
    intermediate = root.create_intermediate(directory / "intermediate", name="tlskit demo Intermediate CA")
    server = intermediate.issue([SERVER_NAME, HOST]).write(directory / "server")
    client = intermediate.issue([CLIENT_NAME], profile=Profile.CLIENT).write(directory / "client")
    tree = Tree(Text("tlskit demo Root CA", style="bold"), guide_style="dim")
    branch = tree.add(Text("tlskit demo Intermediate CA", style="bold"))
    branch.add(f"server: {SERVER_NAME}, {HOST} (serverAuth)  {server[0].name} + {server[1].name}")
    branch.add(f"client: {CLIENT_NAME} (clientAuth)  {client[0].name} + {client[1].name}")
    show.console.print(tree)
    return _Files(root=directory / "root" / "ca.pem", server=server, client=client)


# --- scene 2 ---------------------------------------------------------------------------------------------


class _PushServer:
    """The server side of scene 2: pushes ``{"seq": n}`` every 100 ms, prints what clients send."""

    def __init__(self, show: _Show, report: DemoReport) -> None:
        self.show = show
        self.report = report
        self.seq = 0  # continues across connections, so the client can check nothing was lost
        self.connections = 0
        self.tls_errors: list[TLSError] = []
        self.tls_error_seen = asyncio.Event()

    async def handle(self, conn: TLSConnection) -> None:
        self.connections += 1
        self.report.server_saw_authorized.append(conn.authorized)
        self.show.line("server", f"connection from {format_peer(conn.remote_address)}: {_who(conn)}")
        codec = JsonCodec(DelimitedFramer())
        reader = asyncio.create_task(self._read(conn, codec))
        try:
            sent = 0
            while True:
                await conn.send({"seq": self.seq}, codec)
                self.seq += 1
                sent += 1
                if self.connections == 1 and sent == DROP_AFTER:
                    self.show.line("server", "drops this connection once, to show a reconnect", "yellow")
                    return  # returning closes the connection with close_notify
                await asyncio.sleep(INTERVAL)
        except (ConnectionError, TLSError):
            return  # the client went away: nothing to push to
        finally:
            reader.cancel()

    async def _read(self, conn: TLSConnection, codec: JsonCodec) -> None:
        with contextlib.suppress(ConnectionError, TLSError, FrameError):
            async for message in conn.messages(codec):
                self.show.line("server", f"<- {json.dumps(message)}", "dim")

    def on_tls_error(self, error: TLSError, address: Any) -> None:
        self.tls_errors.append(error)
        self.tls_error_seen.set()


async def _push_and_reconnect(files: _Files, server: _PushServer, port: int, show: _Show, report: DemoReport) -> None:
    show.title(f"2. Mutual TLS: JSON pushed every {INTERVAL * 1000:.0f} ms to a reconnecting client")
    show.line("server", f"listening on {HOST}:{port}, client certificates required")
    context = client_context(ca=files.root, cert=files.client[0], key=files.client[1])
    client = ReconnectingClient(HOST, port, context=context, server_name=SERVER_NAME, initial_backoff=0.05)
    async for conn in client:
        report.connections += 1
        report.resumed.append(conn.session_reused)
        show.line("client", f"connected: {_who(conn)}")
        codec = JsonCodec(DelimitedFramer())  # one per connection: a framer buffers a partial message
        try:
            async for message in conn.messages(codec):
                seq = message.get("seq") if isinstance(message, dict) else None
                expected = report.sequence[-1] + 1 if report.sequence else 0
                report.in_order &= seq == expected
                report.sequence.append(seq if isinstance(seq, int) else -1)
                mark = "in order" if seq == expected else f"OUT OF ORDER (expected {expected})"
                show.line("client", f"<- {json.dumps(message)}  {mark}", "" if seq == expected else "bold red")
                if isinstance(seq, int) and seq % 3 == 0:
                    await conn.send({"from": CLIENT_NAME, "ack": seq}, codec)
                if len(report.sequence) >= TOTAL:
                    break
        except (ConnectionError, TLSError, FrameError) as exc:
            show.line("client", f"connection failed: {exc}", "yellow")
        await conn.close(timeout=1.0)  # our side too: the client reconnects once this connection is closed
        if len(report.sequence) >= TOTAL:
            await client.stop()
            break
        show.line("client", "the server closed the connection; reconnecting (offering the saved session)", "yellow")
    report.client_messages_received = len(report.sequence)
    verdict = "in order, none missing" if report.in_order else "NOT in order"
    style = "bold green" if report.in_order else "bold red"
    show.line("client", f"received seq {report.sequence[0]}..{report.sequence[-1]} {verdict}, over "
              f"{report.connections} connections", style)  # fmt: skip
    if len(report.resumed) > 1:
        again = "resumed (no full handshake)" if report.resumed[1] else "NOT resumed (a full handshake)"
        show.line("client", f"the reconnect {again}", "green" if report.resumed[1] else "yellow")


# --- scene 3 ---------------------------------------------------------------------------------------------


def _explain(exc: TLSError) -> str:
    return f"({exc.code}) {exc.message}" + (f"; fix: {to_flags(exc.fix)}" if exc.fix else "")


async def _refused_client(files: _Files, server: _PushServer, port: int, show: _Show, report: DemoReport) -> None:
    show.title("3. A client whose certificate comes from another CA")
    other = CertificateAuthority.create_root(None, name="tlskit demo Other CA")
    intruder = other.issue(["intruder"], profile=Profile.CLIENT)
    show.line("client", "certificate CN=intruder, issued by CN=tlskit demo Other CA")
    context = client_context(ca=files.root, cert=list(intruder.chain), key=intruder.key)
    client_error: TLSError | None = None
    try:
        conn = await connect(HOST, port, context=context, server_name=SERVER_NAME, handshake_timeout=TIMEOUT)
        # TLS 1.3: the client finishes its side first; the server's refusal arrives with the first read.
        try:
            data = await asyncio.wait_for(conn.read(), TIMEOUT)
            if data:
                show.line("client", "the server accepted the certificate (unexpected!)", "bold red")
        finally:
            await conn.close(timeout=1.0)
    except TLSError as exc:
        client_error = exc
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.tls_error_seen.wait(), TIMEOUT)
    if server.tls_errors:
        report.refusal_server = _explain(server.tls_errors[-1])
        show.line("server", f"refused the handshake: {report.refusal_server}", "red")
    if client_error is not None:
        report.refusal_client = _explain(client_error)
        show.line("client", f"refused: {report.refusal_client}", "red")
    report.refused = bool(server.tls_errors) or client_error is not None


# --- scene 4 ---------------------------------------------------------------------------------------------


# What the tap scene shows: the plaintext itself, the handshake headlines and the encrypted sizes, the verdict.
_TAP_EVENTS = frozenset({"plaintext", "client_hello", "server_hello", "certificate", "application_data", "verdict"})


def _tap_sink(show: _Show) -> Callable[[Any], None]:
    from .tap_render import describe

    def sink(obs: Any) -> None:
        if obs.event not in _TAP_EVENTS:
            return
        head, _ = describe(obs)
        where = f"{obs.direction.value}: " if obs.direction else ""
        style = "bold red" if obs.fields.get("readable") or obs.event == "plaintext" else ""
        show.line("tap", where + head, style or ("bold green" if obs.event == "verdict" else ""))
        text = obs.fields.get("text") if obs.event == "plaintext" else None
        for line in (text or "").splitlines():
            show.line("", line, "red" if "password" in line else "dim")

    return sink


async def _tap_scenes(show: _Show, report: DemoReport) -> None:
    from .demo_tap import run_tap_scene

    steps = iter("ab")

    def step(title: str) -> None:
        # The scene numbers its two halves itself ("1. ..."); shown here as 4a and 4b.
        show.title(f"4{next(steps, '')}. {title.split('. ', 1)[-1]}")

    scene = await run_tap_scene(sink=_tap_sink(show), on_step=step)
    for run in (scene.plaintext, scene.tls):
        found = "SAW the password" if run.leaked else "did not see the password"
        show.line("tap", f"{run.transport}: the eavesdropper {found}", "bold red" if run.leaked else "bold green")
    report.tap_leaked_plaintext = scene.plaintext.leaked
    report.tap_leaked_tls = scene.tls.leaked


# --- running ---------------------------------------------------------------------------------------------


async def _check_loopback(port: int) -> None:
    """One plain TCP connection to the demo's own server: a machine without a working loopback (or out of file
    descriptors) is said in one line, instead of the reconnecting client retrying until the demo times out."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), TIMEOUT)
    except OSError as exc:
        raise network_error(exc, action="connect", host=HOST, port=port) from exc
    writer.close()


async def _network_scenes(directory: Path, show: _Show, report: DemoReport, *, tap: bool) -> None:
    files = _make_pki(directory, show)
    push = _PushServer(show, report)
    context = server_context(cert=files.server[0], key=files.server[1], ca=files.root, client_auth=ClientAuth.REQUIRED)
    server = await start_server(push.handle, HOST, 0, context=context, on_tls_error=push.on_tls_error)
    try:
        await _check_loopback(server.port)
        async with asyncio.timeout(TIMEOUT * 2):
            await _push_and_reconnect(files, push, server.port, show, report)
            await _refused_client(files, push, server.port, show, report)
    finally:
        await server.close(deadline=1.0)
    if tap:
        async with asyncio.timeout(TIMEOUT):
            await _tap_scenes(show, report)


def run_scenes(console: Console, *, tap: bool = True) -> DemoReport:
    """Run every scene, narrating to ``console``; return what happened.  Must not be called from a running loop."""
    from ..net.server import run

    report = DemoReport()
    show = _Show(console)
    with tempfile.TemporaryDirectory(prefix="tlskit-demo-") as tmp:
        report.directory = tmp
        run(_network_scenes(Path(tmp), show, report, tap=tap))
    return report


def run_demo(*, console: Console | None = None, tap: bool = True) -> int:
    """``tlskit demo``: run the scenes, print a verdict; 0 if every scene showed what it should, else 1."""
    console = console or Console(highlight=False)
    started = time.monotonic()
    console.print(Text("tlskit demo: a CA, mutual TLS, JSON messages, a reconnect, a refused client", style="bold"))
    try:
        report = run_scenes(console, tap=tap)
    except NetworkError:
        raise  # the machine, not the demo: no loopback to listen on, no descriptors left (one line, exit 2)
    except (TLSError, OSError, ssl.SSLError, TimeoutError) as exc:
        console.print(Text(printable(f"demo failed: {exc or type(exc).__name__}"), style="bold red"))
        return 1
    console.print()
    elapsed = time.monotonic() - started
    if report.ok:
        console.print(Text(f"Done in {elapsed:.1f} s: every scene showed what it should.", style="bold green"))
        return 0
    console.print(
        Text(printable(f"Done in {elapsed:.1f} s, but something did not go as expected: {report}"), style="bold red")
    )
    return 1
