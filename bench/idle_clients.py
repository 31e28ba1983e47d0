"""Open N TLS connections, echo a few bytes on each, then keep them idle until told to close.

Usage: ``idle_clients.py PORT COUNT CAFILE [--deadline S]``

Blocking stdlib ``ssl`` sockets opened one after another (several of these processes run side by side), each
verified against CAFILE with server name ``localhost``.  Every connection completes the handshake and one
16-byte echo round trip, so the server has finished all its work on it.  Prints ``OPEN <ok> <failed>
<seconds>``, then waits: any line or end of stdin closes everything and prints ``CLOSED``.  Bounded: stops
opening at ``--deadline`` seconds or after a few failures, and reports what it has.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import time

from harness import HOST, raise_nofile

PING = b"0123456789abcdef"
MAX_FAILURES = 5  # a healthy server fails none; a broken one should not cost minutes of timeouts


def open_one(ctx: ssl.SSLContext, port: int) -> ssl.SSLSocket:
    sock = socket.create_connection((HOST, port), timeout=5)
    tls = ctx.wrap_socket(sock, server_hostname="localhost")
    try:
        tls.sendall(PING)
        got = b""
        while len(got) < len(PING):
            chunk = tls.recv(len(PING) - len(got))
            if not chunk:
                raise ConnectionError("server closed before echoing")
            got += chunk
        if got != PING:
            raise ConnectionError("echo mismatch")
    except BaseException:
        tls.close()
        raise
    return tls


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("cafile")
    parser.add_argument("--deadline", type=float, default=120.0)
    args = parser.parse_args()
    raise_nofile()
    ctx = ssl.create_default_context(cafile=args.cafile)
    conns: list[ssl.SSLSocket] = []
    failed = 0
    start = time.monotonic()
    while len(conns) < args.count and time.monotonic() - start < args.deadline and failed < MAX_FAILURES:
        try:
            conns.append(open_one(ctx, args.port))
        except (OSError, ssl.SSLError) as exc:
            failed += 1
            print(f"connection {len(conns)} failed: {exc}", file=sys.stderr)
    print(f"OPEN {len(conns)} {failed} {time.monotonic() - start:.3f}", flush=True)
    sys.stdin.readline()
    for conn in conns:
        conn.close()
    print("CLOSED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
