"""Stream bytes through a TLS echo server and read them back, as fast as one process can.

Usage: ``stream_client.py PORT CAFILE --bytes N [--chunk 65536] [--deadline S]``

One stdlib ``ssl`` socket in non-blocking mode, sending and receiving in the same loop (``selectors``), so the
pipe stays full both ways without two threads touching one SSL object.  Writes of ``--chunk`` bytes (four
16 KiB records) and reads into one large buffer keep per-call overhead low.  Prints one line:
``DONE <sent> <received> <seconds> <protocol> <cipher>``.  Bounded by ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import ssl
import sys
import time

from harness import HOST


def stream(port: int, cafile: str, total: int, chunk_size: int, deadline: float) -> tuple[int, int, float, str]:
    ctx = ssl.create_default_context(cafile=cafile)
    tls = ctx.wrap_socket(socket.create_connection((HOST, port), timeout=10), server_hostname="localhost")
    tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls.setblocking(False)
    chunk = bytes(range(256)) * (chunk_size // 256)
    buf = bytearray(1024 * 1024)
    sent = received = 0
    sel = selectors.DefaultSelector()
    sel.register(tls, selectors.EVENT_READ | selectors.EVENT_WRITE)
    start = time.perf_counter()
    writing = True
    try:
        while received < total:
            if time.perf_counter() - start > deadline:
                raise TimeoutError(f"only {received} of {total} bytes echoed within {deadline:g} s")
            if writing and sent >= total:
                sel.modify(tls, selectors.EVENT_READ)
                writing = False
            for _key, events in sel.select(5.0):
                if events & selectors.EVENT_WRITE and sent < total:
                    # Same buffer on a retry after SSLWantWriteError, as OpenSSL requires.
                    with contextlib.suppress(ssl.SSLWantWriteError, ssl.SSLWantReadError):
                        sent += tls.send(chunk if total - sent >= len(chunk) else chunk[: total - sent])
                if events & selectors.EVENT_READ:
                    while True:
                        try:
                            n = tls.recv_into(buf)
                        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                            break
                        if n == 0:
                            raise ConnectionError("server closed the connection")
                        received += n
        elapsed = time.perf_counter() - start
        cipher = tls.cipher()
        protocol = f"{tls.version()} {cipher[0] if cipher else '?'}"
    finally:
        sel.close()
        tls.close()
    return sent, received, elapsed, protocol


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("cafile")
    parser.add_argument("--bytes", type=int, required=True)
    parser.add_argument("--chunk", type=int, default=64 * 1024)
    parser.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args()
    sent, received, elapsed, protocol = stream(args.port, args.cafile, args.bytes, args.chunk, args.deadline)
    print(f"DONE {sent} {received} {elapsed:.4f} {protocol}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
