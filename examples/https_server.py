"""HTTPS with aiohttp: client certificates requested, not required; tlskit says who is authorized.

Node's https example, in Python: the server asks every client for a certificate (``requestCert: true``) but lets
clients without one in (``rejectUnauthorized: false``).  An authorized client (its certificate verified against
--ca) gets 200 and a page naming its certificate's common name; any other client gets 401 with the reason tlskit
gives, what Node calls ``req.client.authorizationError``.  ``tlskit.peer_info(request)`` reads those facts from
the TLS connection under the aiohttp request.

    python examples/make_pki.py
    python examples/https_server.py --port 8443
    python examples/https_client.py https://localhost:8443/ --cert pki/alice.pem --key pki/alice-key.pem  # 200
    python examples/https_client.py https://localhost:8443/ --no-cert                                       # 401

A client certificate from a CA the server does not trust is refused during the handshake (Python's ssl module
verifies a certificate that is sent, even when certificates are optional).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html

from aiohttp import web

import tlskit


async def hello(request: web.Request) -> web.Response:
    peer = tlskit.peer_info(request)
    if not peer.authorized:
        print(f"GET {request.path}: 401 ({peer.authorization_error})", flush=True)
        page = f"<h1>401 Unauthorized</h1><p>{html.escape(peer.authorization_error or '')}</p>\n"
        return web.Response(status=401, text=page, content_type="text/html")
    name = peer.peer_cn or "(no common name)"
    print(f"GET {request.path}: 200 for {name!r}", flush=True)
    cipher = peer.cipher.name if peer.cipher else "?"
    page = f"<h1>Hello {html.escape(name)}</h1><p>{peer.protocol}, {cipher}</p>\n"
    return web.Response(text=page, content_type="text/html")


async def serve(args: argparse.Namespace) -> None:
    context = tlskit.server_context(
        cert=args.cert, key=args.key, ca=args.ca, client_auth=tlskit.ClientAuth.OPTIONAL, alpn=["http/1.1"]
    )
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    print(f"listening on https://{args.host}:{port}/", flush=True)
    try:
        await asyncio.Event().wait()  # until Ctrl-C or SIGTERM
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443, help="port (default 8443; 0: any free port)")
    parser.add_argument("--cert", default="pki/server.pem", help="server certificate chain (default pki/server.pem)")
    parser.add_argument("--key", default="pki/server-key.pem", help="its key (default pki/server-key.pem)")
    parser.add_argument("--ca", default="pki/ca/ca.pem", help="CA that issues client certificates")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
