"""A secure WebSocket client: the websockets library with a tlskit context, mutual TLS, tlskit's words on failure.

    python examples/wss_client.py wss://localhost:8765/chat --send "hello everyone"
    python examples/wss_client.py wss://localhost:8765/news --receive 1

Connects with ``tlskit.client_context(ca=..., cert=..., key=...)`` as ``ssl=``, sends each --send message, then
prints what the server sends: --receive N messages, or until the server closes the connection (or Ctrl-C).  A
connection that fails, for instance because the server does not accept this client's certificate, is explained
with ``tlskit.tls_error`` (code, sentence, fix) and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK, InvalidHandshake, InvalidStatus

import tlskit


async def run(args: argparse.Namespace) -> int:
    identity = {} if args.no_cert else {"cert": args.cert, "key": args.key}
    context = tlskit.client_context(ca=args.ca, **identity)
    try:
        async with connect(args.url, ssl=context, open_timeout=10) as websocket:
            server = tlskit.peer_info(websocket)
            print(f"connected to {urlsplit(args.url).path} on {server.peer_cn} ({server.protocol})", flush=True)
            for message in args.send:
                await websocket.send(message)
            received = 0
            while args.receive is None or received < args.receive:
                print(await websocket.recv(), flush=True)
                received += 1
    except ConnectionClosedOK:
        return 0
    except InvalidStatus as exc:  # the server answered over TLS, but with an HTTP error
        print(f"wss_client: the server refused the WebSocket: {exc}", file=sys.stderr)
        return 1
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        error = tlskit.tls_error(exc, host=urlsplit(args.url).hostname, sent_cert=not args.no_cert)
        print(f"wss_client: {error.message}\n  code: {error.code}\n  fix: {error.fix}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", default="wss://localhost:8765/chat", help="wss://HOST:PORT/chat or /news")
    parser.add_argument("--ca", default="pki/ca/ca.pem", help="CA to trust for the server (default pki/ca/ca.pem)")
    parser.add_argument("--cert", default="pki/alice.pem", help="client certificate (default pki/alice.pem)")
    parser.add_argument("--key", default="pki/alice-key.pem", help="its key (default pki/alice-key.pem)")
    parser.add_argument("--no-cert", action="store_true", help="send no client certificate")
    parser.add_argument("--send", action="append", default=[], metavar="TEXT", help="a message to send (repeatable)")
    parser.add_argument("--receive", type=int, default=None, metavar="N", help="exit after N messages")
    try:
        sys.exit(asyncio.run(run(parser.parse_args())))
    except KeyboardInterrupt:
        sys.exit(130)
