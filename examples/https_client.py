"""An HTTPS client: httpx with a tlskit context, mutual TLS, and tlskit's words when the connection fails.

    python examples/https_client.py https://localhost:8443/ --cert pki/alice.pem --key pki/alice-key.pem
    python examples/https_client.py https://localhost:8443/ --no-cert

``tlskit.client_context(ca=..., cert=..., key=...)`` is a plain ``ssl.SSLContext``: httpx takes it as
``verify=``.  The program prints the status, the server's certificate name, protocol and cipher
(``tlskit.peer_info(response)``) and the page; a failed connection is explained with ``tlskit.tls_error``
(code, sentence, fix).  Exit status: 0 for a 2xx answer, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit

import httpx

import tlskit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", default="https://localhost:8443/", help="default https://localhost:8443/")
    parser.add_argument("--ca", default="pki/ca/ca.pem", help="CA to trust for the server (default pki/ca/ca.pem)")
    parser.add_argument("--cert", default="pki/alice.pem", help="client certificate (default pki/alice.pem)")
    parser.add_argument("--key", default="pki/alice-key.pem", help="its key (default pki/alice-key.pem)")
    parser.add_argument("--no-cert", action="store_true", help="send no client certificate")
    args = parser.parse_args()

    identity = {} if args.no_cert else {"cert": args.cert, "key": args.key}
    context = tlskit.client_context(ca=args.ca, **identity)
    try:
        with httpx.Client(verify=context, timeout=10) as client:
            response = client.get(args.url)
            server = tlskit.peer_info(response)  # while the connection is open
    except httpx.TransportError as exc:
        # httpx says "Server disconnected without sending a response" where the stream ended: an EOF to tlskit.
        failure = EOFError(str(exc)) if isinstance(exc, httpx.RemoteProtocolError) else exc
        error = tlskit.tls_error(failure, host=urlsplit(args.url).hostname, sent_cert=not args.no_cert)
        print(f"https_client: {error.message}\n  code: {error.code}\n  fix: {error.fix}", file=sys.stderr)
        return 1
    cipher = server.cipher.name if server.cipher else "?"
    print(f"{response.status_code} {response.reason_phrase} from {server.peer_cn} ({server.protocol}, {cipher})")
    print(response.text, end="")
    return 0 if response.is_success else 1


if __name__ == "__main__":
    sys.exit(main())
