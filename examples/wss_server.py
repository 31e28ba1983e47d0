"""Secure WebSockets with the websockets library: mutual TLS, a /chat channel and a /news channel.

Every client must present a certificate from --ca (client_auth=REQUIRED): a client without one, or with one
from another CA, never gets a WebSocket.  The name each client goes by is its certificate's common name, read
with ``tlskit.peer_info(connection)``.

- ``/chat`` broadcasts what any client sends to every client on /chat (``alice: hello``), and announces who
  joins and leaves (``* alice joined``).
- ``/news`` greets each client by name, then sends a headline every --news-every seconds.

    python examples/make_pki.py
    python examples/wss_server.py --port 8765
    python examples/wss_client.py wss://localhost:8765/chat --cert pki/alice.pem --key pki/alice-key.pem
    python examples/wss_client.py wss://localhost:8765/chat --cert pki/bob.pem --key pki/bob-key.pem --send hi
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

import tlskit

CHANNELS = ("/chat", "/news")
chat: set[ServerConnection] = set()


def only_known_channels(connection: ServerConnection, request: Request) -> Response | None:
    if request.path not in CHANNELS:
        return connection.respond(HTTPStatus.NOT_FOUND, f"no channel {request.path}; try {' or '.join(CHANNELS)}\n")
    return None


async def handler(connection: ServerConnection, news_every: float) -> None:
    peer = tlskit.peer_info(connection)
    name = peer.peer_cn or "(no name)"
    path = connection.request.path if connection.request else "?"
    print(f"{name!r} joined {path} ({peer.protocol})", flush=True)
    if path == "/chat":
        chat.add(connection)
        broadcast(chat, f"* {name} joined")
        try:
            async for message in connection:
                text = message if isinstance(message, str) else message.decode(errors="replace")
                broadcast(chat, f"{name}: {text}")
        finally:
            chat.discard(connection)
            broadcast(chat, f"* {name} left")
    else:
        try:
            await connection.send(f"hello {name}, welcome to the news")
            for n in itertools.count(1):
                await asyncio.sleep(news_every)
                await connection.send(f"headline {n}: TLS still works")
        except ConnectionClosed:
            print(f"{name!r} left /news", flush=True)


async def main(args: argparse.Namespace) -> None:
    context = tlskit.server_context(cert=args.cert, key=args.key, ca=args.ca, client_auth=tlskit.ClientAuth.REQUIRED)
    async with serve(
        lambda connection: handler(connection, args.news_every),
        args.host,
        args.port,
        ssl=context,
        process_request=only_known_channels,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"listening on wss://{args.host}:{port}/chat and /news", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    parser.add_argument("--cert", default="pki/server.pem", help="server certificate chain (default pki/server.pem)")
    parser.add_argument("--key", default="pki/server-key.pem", help="its key (default pki/server-key.pem)")
    parser.add_argument("--ca", default="pki/ca/ca.pem", help="CA that issues client certificates")
    parser.add_argument("--news-every", type=float, default=5.0, help="seconds between headlines (default 5)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
