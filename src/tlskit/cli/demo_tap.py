"""The tap scene of ``tlskit demo``: one login form, sent over plaintext and over TLS, seen from the path.

A tiny HTTP login server runs on 127.0.0.1 twice (plain, then TLS with a throwaway CA); a client POSTs
``username=alice&password=...`` to it through a tap.  The scene returns what the tap saw and whether the
password was among it: yes for plaintext, no for TLS, where only the server name, ALPN, sizes and timing
are left for the eavesdropper.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from ..net.server import run
from ..tools.tap import Endpoint, Observation, Sink, TapOptions, start_tap
from .tap_render import TextRenderer

__all__ = ["SceneRun", "TapScene", "run_tap_scene", "tap_scene"]

LOCALHOST = "127.0.0.1"
DEMO_PASSWORD = "correct-horse-battery-staple"  # noqa: S105 - the secret the scene shows leaking
_TIMEOUT = 10.0


@dataclass(frozen=True)
class SceneRun:
    """One transport's run: what the tap saw, what the client got back, and whether the password leaked."""

    transport: str
    observations: tuple[Observation, ...]
    response: bytes
    leaked: bool

    @property
    def verdict(self) -> str:
        """The tap's one-line verdict for the connection."""
        return next((str(o.fields["text"]) for o in self.observations if o.event == "verdict"), "")


@dataclass(frozen=True)
class TapScene:
    """Both runs of the scene."""

    password: str
    plaintext: SceneRun
    tls: SceneRun


def login_request(host: str, password: str) -> bytes:
    """The HTTP POST a browser sends for a login form."""
    body = f"username=alice&password={password}".encode()
    head = (
        f"POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _login_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer one form POST (enough HTTP/1.1 for the scene: headers, Content-Length body, close)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or b"0")
        await reader.readexactly(length)
        body = b"Welcome back, alice."
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(body))
        writer.write(b"Connection: close\r\n\r\n" + body)
        await writer.drain()
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass  # a broken request ends the demo connection, nothing more
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def _leaked(observations: list[Observation], secret: str) -> bool:
    """Did the secret appear in anything the tap reported, as text or as hex?"""
    dump = "\n".join(json.dumps(o.to_json(), ensure_ascii=False) for o in observations)
    return secret in dump or secret.encode().hex() in dump


async def _run(
    transport: str,
    *,
    password: str,
    server_name: str,
    server_ctx: ssl.SSLContext | None,
    client_ctx: ssl.SSLContext | None,
    sink: Sink | None,
) -> SceneRun:
    seen: list[Observation] = []

    def record(obs: Observation) -> None:
        seen.append(obs)
        if sink is not None:
            sink(obs)

    server = await asyncio.start_server(_login_handler, LOCALHOST, 0, ssl=server_ctx)
    try:
        port = server.sockets[0].getsockname()[1]
        tap = await start_tap(
            listen=Endpoint(LOCALHOST, 0), target=Endpoint(LOCALHOST, port), sink=record, options=TapOptions()
        )
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    LOCALHOST, tap.listen.port, ssl=client_ctx, server_hostname=server_name if client_ctx else None
                ),
                _TIMEOUT,
            )
            writer.write(login_request(server_name, password))
            await writer.drain()
            response = await asyncio.wait_for(reader.read(), _TIMEOUT)
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        finally:
            await tap.close(grace=_TIMEOUT)
    finally:
        server.close()
        await server.wait_closed()
    return SceneRun(transport, tuple(seen), response, _leaked(seen, password))


def _contexts(server_name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A throwaway in-memory CA and a server certificate for ``server_name``; nothing is written to disk."""
    from ..net.context import client_context, server_context
    from ..pki.ca import CertificateAuthority

    ca = CertificateAuthority.create_root(None, name="tlskit demo CA")
    issued = ca.issue([server_name])
    server_ctx = server_context(cert=list(issued.chain), key=issued.key, alpn=["http/1.1"])
    client_ctx = client_context(ca=ca.cert, alpn=["http/1.1"])
    return server_ctx, client_ctx


async def run_tap_scene(
    *,
    password: str = DEMO_PASSWORD,
    server_name: str = "login.example",
    server_context: ssl.SSLContext | None = None,
    client_context: ssl.SSLContext | None = None,
    sink: Sink | None = None,
    on_step: Callable[[str], None] | None = None,
) -> TapScene:
    """Run both halves of the scene; ``sink`` receives the tap's observations live.

    Without contexts, a throwaway CA issues a certificate for ``server_name`` (the client connects to
    127.0.0.1 but sends and checks ``server_name``, as a browser would for a real host).
    """
    if server_context is None or client_context is None:
        server_context, client_context = _contexts(server_name)
    if on_step is not None:
        on_step("1. The login form over plain HTTP, as the eavesdropper sees it")
    plain = await _run(
        "plaintext", password=password, server_name=server_name, server_ctx=None, client_ctx=None, sink=sink
    )
    if on_step is not None:
        on_step("2. The same login over HTTPS (TLS), as the eavesdropper sees it")
    tls = await _run(
        "TLS",
        password=password,
        server_name=server_name,
        server_ctx=server_context,
        client_ctx=client_context,
        sink=sink,
    )
    return TapScene(password=password, plaintext=plain, tls=tls)


def tap_scene(*, console: Console | None = None, password: str = DEMO_PASSWORD) -> TapScene:
    """Run the scene in a fresh event loop, printing what the eavesdropper saw to ``console`` if given."""
    sink = TextRenderer(console) if console is not None else None

    def step(title: str) -> None:
        if console is not None:
            console.print()
            console.print(Text(title, style="bold underline"))

    scene = run(run_tap_scene(password=password, sink=sink, on_step=step))
    if console is not None:
        console.print()
        for seen in (scene.plaintext, scene.tls):
            style = "bold red" if seen.leaked else "bold green"
            found = "SAW the password" if seen.leaked else "did not see the password"
            console.print(Text(f"{seen.transport}: the eavesdropper {found}", style=style))
    return scene
