"""The stdlib asyncio TLS echo server for bench/run.py (tlskit itself is measured as users run it, ``tlskit serve
--echo``, on either loop through ``TLSKIT_EVENT_LOOP``).

Usage: ``tlskit_echo.py CERT KEY [--loop uvloop|asyncio]``

It uses the same ``tlskit.server_context`` (TLS 1.3 only) as ``tlskit serve``, so the difference is the
transport.  Prints ``READY <port>`` once listening on 127.0.0.1 (OS-picked port).  Commands on stdin, one per
line: ``gc`` runs ``gc.collect()`` and answers ``OK`` (as ``node_echo.js`` does with V8's collector); end of
stdin exits.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import ssl
import sys

from tlskit.net.context import server_context
from tlskit.net.server import run


async def stdlib_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def control(on_stdin_closed: asyncio.Event) -> None:
    """Serve the stdin commands (``gc``) until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"gc":
            gc.collect()
        sys.stdout.write("OK\n")
        sys.stdout.flush()
    on_stdin_closed.set()


async def main(args: argparse.Namespace) -> None:
    context = server_context(cert=args.cert, key=args.key, min_version="1.3")
    stop = asyncio.Event()
    # The stdlib transport logs every abrupt peer (s_time closes without close_notify); Node is configured to
    # stay quiet for those too.
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: None)
    server = await asyncio.start_server(stdlib_echo, "127.0.0.1", 0, ssl=context, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    await control(stop)
    server.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cert")
    parser.add_argument("key")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    # Per-connection log lines for peers that vanish mid-handshake (s_time) would be measured as server CPU;
    # the bench measures the transport, so only errors are logged.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    run(main(arguments), use_uvloop=arguments.loop == "uvloop")
