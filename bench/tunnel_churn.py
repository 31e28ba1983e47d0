"""Full TLS handshakes through a tunnel, one connection each: handshake, a 16-byte echo, close.

Usage: ``tunnel_churn.py PORT CAFILE --seconds S`` — prints ``DONE <handshakes> <failures> <seconds>``.

The echo makes every handshake include the tunnel's connection to its target (a client that closes right after
the handshake could be gone before the tunnel connects).  Stdlib ``ssl``, no session reuse: every handshake is
a full TLS 1.3 one.  Bounded by ``--seconds``, and by a few failures.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import time

from idle_clients import open_one

MAX_FAILURES = 5


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("cafile")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    ctx = ssl.create_default_context(cafile=args.cafile)
    done = failed = 0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds and failed < MAX_FAILURES:
        try:
            open_one(ctx, args.port).close()
            done += 1
        except (OSError, ssl.SSLError) as exc:
            failed += 1
            print(f"handshake failed: {exc}", file=sys.stderr)
    print(f"DONE {done} {failed} {time.monotonic() - start:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
