"""Server-side CPU of one TLS 1.3 handshake, in process: no sockets, no event loop, no kernel.

Usage: ``handshake_micro.py [VARIANT ...] [--count N] [--rounds R]``, e.g.
``taskset -c 1 .venv/bin/python bench/handshake_micro.py raw raw:tickets1 engine engine:nosni``

An investigation tool that splits the handshake cost between OpenSSL settings and tlskit's engine;
``make bench`` runs it too (its "in-process handshakes" phase, with ``--tsv``).  A client ``SSLObject`` and the
server under test talk through memory BIOs; only the server's calls are timed (``time.process_time``).  Variants
run interleaved in ``R`` rounds of ``N`` handshakes and the median round is reported, so a burst of other load on
the machine does not pick a winner.

A variant is ``raw`` (a bare ``SSLContext.wrap_bio`` object) or ``engine`` (``tlskit.net.engine.TLSEngine``),
both on a ``tlskit.server_context``, then optional ``:knob,knob``: ``tickets0``/``tickets1``/``tickets2``
(``num_tickets``; without one, server_context's own), ``noautochain`` (``SSL_MODE_NO_AUTO_CHAIN``), ``sni``
(tlskit's SNI-capture callback; ``engine`` has it unless ``nosni``).  For each variant the session tickets its
server really sends are counted once (records after the client's Finished, with tlskit's record parser).

``--tsv`` prints ``variant<TAB>num_tickets<TAB>tickets sent<TAB>µs per handshake of each round, comma-separated``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tlskit.net import _openssl
from tlskit.net.context import server_context
from tlskit.net.engine import TLSEngine, install_sni_capture
from tlskit.pki.ca import CertificateAuthority
from tlskit.tools.records import ContentType, Direction, Record, StreamParser

_SSL_CTRL_MODE = 33  # OpenSSL ssl.h
_SSL_MODE_NO_AUTO_CHAIN = 0x8


def make_context(cert: Path, key: Path, knobs: set[str], *, engine: bool) -> ssl.SSLContext:
    ctx = server_context(cert=cert, key=key, min_version="1.3")
    for count in (0, 1, 2):
        if f"tickets{count}" in knobs:
            ctx.num_tickets = count
    if "noautochain" in knobs:
        lib = _openssl._libssl()
        if lib is None:
            raise SystemExit("noautochain needs CPython's libssl through ctypes")
        pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
        lib.SSL_CTX_ctrl(pointer, _SSL_CTRL_MODE, _SSL_MODE_NO_AUTO_CHAIN, None)
    if "sni" in knobs or (engine and "nosni" not in knobs):
        install_sni_capture(ctx)  # what start_server does
    return ctx


def tickets_sent(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, *, engine: bool) -> int:
    """Records the server writes after the client's Finished (its session tickets), counted by tlskit's parser."""
    parser = StreamParser(Direction.SERVER_TO_CLIENT)
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    server: Any
    if engine:
        server = TLSEngine(server_ctx, server_side=True)
        server.receive(c_out.read())
        flight = server.data_to_send()
    else:
        s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
        s_in.write(c_out.read())
        with contextlib.suppress(ssl.SSLWantReadError):
            server.do_handshake()
        flight = s_out.read()
    parser.feed(flight)
    c_in.write(flight)
    client.do_handshake()
    if engine:
        server.receive(c_out.read())
        after = server.data_to_send()
    else:
        s_in.write(c_out.read())
        server.do_handshake()
        after = s_out.read()
    events = parser.feed(after)
    return sum(1 for e in events if isinstance(e, Record) and e.content_type is ContentType.APPLICATION_DATA)


def server_seconds(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, count: int, *, engine: bool) -> float:
    """Server CPU seconds for ``count`` full handshakes (ClientHello -> flight, client Finished -> tickets)."""
    clock = time.process_time
    total = 0.0
    for _ in range(count):
        c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
        with contextlib.suppress(ssl.SSLWantReadError):
            client.do_handshake()
        hello = c_out.read()
        start = clock()
        server: Any
        if engine:
            server = TLSEngine(server_ctx, server_side=True)
            server.receive(hello)
            flight = server.data_to_send()
        else:
            s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
            s_in.write(hello)
            with contextlib.suppress(ssl.SSLWantReadError):
                server.do_handshake()
            flight = s_out.read()
        total += clock() - start
        c_in.write(flight)
        client.do_handshake()
        finished = c_out.read()
        start = clock()
        if engine:
            server.receive(finished)
            server.data_to_send()
        else:
            s_in.write(finished)
            server.do_handshake()
            s_out.read()
        total += clock() - start
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["raw", "raw:tickets1", "engine", "engine:tickets1"])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--tsv", action="store_true", help="machine-readable lines (for run.py, see above)")
    args = parser.parse_args()
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE  # only the server is timed
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with tempfile.TemporaryDirectory(prefix="tlskit-micro-") as tmp:
        ca = CertificateAuthority.create_root(None, name="micro root")
        cert, key = ca.issue(["localhost"]).write(Path(tmp) / "server")
        contexts = {}
        for variant in args.variants:
            kind, _, knobs = variant.partition(":")
            engine = kind == "engine"
            contexts[variant] = (make_context(cert, key, set(knobs.split(",")), engine=engine), engine)
        rounds: dict[str, list[float]] = {v: [] for v in args.variants}
        for _ in range(args.rounds):
            for variant, (ctx, engine) in contexts.items():
                seconds = server_seconds(ctx, client_ctx, args.count, engine=engine)
                rounds[variant].append(seconds / args.count * 1e6)
        sent = {v: tickets_sent(ctx, client_ctx, engine=engine) for v, (ctx, engine) in contexts.items()}
    for variant, values in rounds.items():
        configured = contexts[variant][0].num_tickets
        if args.tsv:
            print(f"{variant}\t{configured}\t{sent[variant]}\t{','.join(f'{v:.2f}' for v in values)}")
        else:
            print(
                f"{variant:32s} median {statistics.median(values):6.1f} us  min {min(values):6.1f} us  "
                f"tickets {sent[variant]} (num_tickets {configured})  (server side)"
            )


if __name__ == "__main__":
    main()
