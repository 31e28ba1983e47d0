"""A ``tlskit.start_server`` echo server in a process of its own, for the abuse tests (tests/test_abuse.py).

Its memory and file descriptors are measured from outside (``/proc/PID``), away from the load generator.  It
prints ``PORT n`` once listening, then one line per event: ``TLSERR code message`` for each failed handshake
(``on_tls_error``), ``CLOSED code message`` for a connection that ended with a TLS or framing error, and
``RELOADED`` after each reload (``--reload-every S`` rebuilds the context from the files every S seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from tlskit.errors import FrameError, TLSError
from tlskit.net.connection import TLSConnection
from tlskit.net.context import server_context
from tlskit.net.framing import framer_from_spec
from tlskit.net.server import format_peer, run, start_server


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    def context() -> Any:
        return server_context(cert=args.cert, key=args.key)

    async def echo(conn: TLSConnection) -> None:
        try:
            framer = framer_from_spec(args.frames)
            if framer is None:
                while data := await conn.read():
                    await conn.write(data)
            else:
                async for message in conn.messages(framer):
                    await conn.send(message, framer)
        except TLSError as exc:
            say(f"CLOSED {exc.code} {exc.message}")
        except FrameError as exc:
            say(f"CLOSED frame_error {exc.message}")

    def on_tls_error(error: TLSError, peer: Any) -> None:
        say(f"TLSERR {error.code} {format_peer(peer)} {error.message}; fix: {error.fix}")

    server = await start_server(
        echo, "127.0.0.1", 0, context=context(), handshake_timeout=args.handshake_timeout, on_tls_error=on_tls_error
    )
    server.install_signal_handlers()
    say(f"PORT {server.port}")
    if args.reload_every:
        while server.is_serving():
            await asyncio.sleep(args.reload_every)
            server.reload(context())
            say("RELOADED")
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--handshake-timeout", type=float, default=10.0)
    parser.add_argument("--frames", default="raw")
    parser.add_argument("--reload-every", type=float, default=0.0)
    run(main(parser.parse_args()))
