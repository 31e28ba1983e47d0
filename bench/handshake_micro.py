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
(tlskit's SNI-capture callback; ``engine`` has it unless ``nosni``), ``resume`` (the client offers the ticket it
got from the previous handshake, so every timed handshake is a TLS 1.3 resumption; checked).  For each variant
the session tickets its server really sends are counted once (records after the client's Finished, with tlskit's
record parser).

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


def server_seconds(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, count: int, *, engine: bool, resume: bool = False
) -> float:
    """Server CPU seconds for ``count`` handshakes (ClientHello -> flight, client Finished -> tickets).

    With ``resume`` the client offers the session of the previous handshake (its ticket), and each one must resume.
    """
    clock = time.process_time
    total = 0.0
    session = _first_session(server_ctx, client_ctx) if resume else None
    for _ in range(count):
        c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost", session=session)
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
            tickets = server.data_to_send()
        else:
            s_in.write(finished)
            server.do_handshake()
            tickets = s_out.read()
        total += clock() - start
        if resume:
            if not client.session_reused:
                raise SystemExit("resume: the server did not resume the session")
            session = _take_tickets(client, c_in, tickets)
    return total


def _take_tickets(client: ssl.SSLObject, c_in: ssl.MemoryBIO, tickets: bytes) -> ssl.SSLSession:
    """Let the client read the server's tickets (TLS 1.3 sends them after the handshake); its newest session."""
    c_in.write(tickets)
    with contextlib.suppress(ssl.SSLWantReadError):
        client.read(1)
    session = client.session
    if session is None:
        raise SystemExit("resume: the server sent no ticket")
    return session


def _first_session(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> ssl.SSLSession:
    """One full handshake, untimed, for the ticket the first resumption offers."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(3):
        with contextlib.suppress(ssl.SSLWantReadError):
            client.do_handshake()
        s_in.write(c_out.read())
        with contextlib.suppress(ssl.SSLWantReadError):
            server.do_handshake()
        if client.version() is not None and server.version() is not None:
            break
        c_in.write(s_out.read())
    return _take_tickets(client, c_in, s_out.read())


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
        resumed = set()
        for variant in args.variants:
            kind, _, knobs = variant.partition(":")
            engine = kind == "engine"
            contexts[variant] = (make_context(cert, key, set(knobs.split(",")), engine=engine), engine)
            if "resume" in knobs.split(","):
                resumed.add(variant)
        rounds: dict[str, list[float]] = {v: [] for v in args.variants}
        for _ in range(args.rounds):
            for variant, (ctx, engine) in contexts.items():
                seconds = server_seconds(ctx, client_ctx, args.count, engine=engine, resume=variant in resumed)
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
