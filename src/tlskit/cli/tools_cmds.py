"""Tools that show TLS at work: ``tlskit tap`` (what an eavesdropper on the path sees)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .common import handle_errors

if TYPE_CHECKING:
    from ..tools.tap import TapServer


@click.command("tap")
@click.option(
    "--listen",
    required=True,
    metavar="[HOST:]PORT",
    help="Where clients connect (host defaults to 127.0.0.1; port 0 picks a free one, printed on stderr).",
)
@click.option("--to", "target", required=True, metavar="HOST:PORT", help="The real server to relay to.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line instead of text.")
@click.option("--hex", "as_hex", is_flag=True, help="Show plaintext payloads as hex dumps, even when printable.")
@click.option(
    "--max-bytes",
    type=click.IntRange(min=0),
    default=16384,
    show_default=True,
    help="Plaintext bytes shown per direction and connection; the rest is only counted.",
)
@handle_errors
def tap_cmd(listen: str, target: str, as_json: bool, as_hex: bool, max_bytes: int) -> None:
    """Relay TCP connections and show what anyone on the path sees.

    Point a client at --listen instead of the server.  Plaintext traffic is shown as it travels (an HTTP
    login form, password included); TLS shows only what it leaves in clear: the ClientHello (server name,
    ALPN, offered versions and cipher suites), the ServerHello, under TLS 1.2 the certificate chain, then
    sizes and timing of encrypted records.  Each connection ends with a one-line verdict.  Stop with Ctrl-C.
    """
    from rich.console import Console

    from ..errors import InputError
    from ..tools.tap import PayloadView, TapOptions, parse_endpoint, run_tap
    from .tap_render import JsonRenderer, TextRenderer

    listen_at = parse_endpoint(listen, default_host="127.0.0.1", what="--listen")
    upstream = parse_endpoint(target, what="--to")
    if upstream.port == 0:
        raise InputError(f"--to {target!r} has port 0", fix="give the port the real server listens on")
    options = TapOptions(view=PayloadView.HEX if as_hex else PayloadView.AUTO, max_shown=max_bytes)
    sink = JsonRenderer(sys.stdout) if as_json else TextRenderer(Console(highlight=False, soft_wrap=True))

    def ready(tap: TapServer) -> None:
        click.echo(f"tap: listening on {tap.listen} -> {tap.target}", err=True)

    run_tap(listen=listen_at, target=upstream, sink=sink, options=options, on_ready=ready)


commands: list[click.Command] = [tap_cmd]
