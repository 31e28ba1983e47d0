"""Benchmark tlskit's TLS transport against Node's ``tls`` in one run, side by side; write docs/benchmarks.md.

Run with ``make bench`` (the same as ``.venv/bin/python bench/run.py``); ``--quick`` is a short smoke run that
writes to a scratch file unless ``--out`` is given.  It writes the run's data (``docs/benchmarks.json``), the
report rendered from that data (``docs/benchmarks.md``) and the README's generated figures.  Servers (same
certificate and key, TLS 1.3):

- ``tlskit``: ``tlskit serve --echo``, the command users run (default install: uvloop), its log in a file;
- ``tlskit-asyncio``: the same command on the stdlib asyncio event loop (``TLSKIT_EVENT_LOOP=asyncio``);
- ``stdlib``: ``asyncio.start_server(ssl=ctx)``, the stdlib TLS transport (the design tlskit replaces);
- ``node``: ``tls.createServer`` with ``socket.pipe(socket)``;
- ``openssl``: ``openssl s_server``, a C reference for handshake CPU only.

Same settings on every side: Node and s_server send as many TLS 1.3 session tickets per handshake as tlskit's
``server_context`` (Node through an OpenSSL config file, since its ``tls`` API has no option for it).  Before
measuring anything the bench makes one handshake with every server (``openssl s_client -msg``) and counts the
NewSessionTicket messages it sends and what it negotiated; if any server differs, the run stops with an error.
One load generator for every server's handshakes: ``tlskit bench`` (full and resumed handshakes in one run).

Each server is pinned to CPU 0 (``taskset -c 0``) and every load generator to CPU 1; the workers phase also
runs configurations where server and load share both CPUs.  Every loop is bounded in count and time, only
127.0.0.1 is used, and every process started is stopped in a ``finally``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import breakdown
import tunnel_bench
from harness import (
    BENCH_DIR,
    HOST,
    PYTHON,
    ROOT,
    TLSKIT,
    CpuSampler,
    Proc,
    ProcessSet,
    children_cpu_seconds,
    cpu_seconds,
    descendants,
    free_port,
    machine_busy_seconds,
    machine_facts,
    mapped_libssl,
    memory,
    own_cpu_seconds,
    parse_brief,
    parse_ready,
    parse_s_time,
    parse_ticket_count,
    pinned,
    raise_nofile,
    wait_all,
    wait_for_log_port,
    wait_for_port,
    wait_until_quiet,
)
from idle_clients import open_one
from report import render, replace_readme_block, summary_lines
from results import (
    ClientResult,
    HandshakeResult,
    MemoryResult,
    Probe,
    Results,
    ScaleResult,
    ServerKind,
    Settings,
    SplitResult,
    StreamResult,
    from_json,
    to_json,
)

from tlskit.net.server import EVENT_LOOP_ENV

SERVER_CPU = "0"
LOAD_CPU = "1"
ALL_CPUS = "0,1"
TLS13_SUITE = "TLS_AES_256_GCM_SHA384"  # what every client here negotiates: OpenSSL's and Node's first choice
MIB = 1024 * 1024
# s_time does not verify the server (no -verify) but would still look the issuer up in the system CA directory on
# every handshake (OpenSSL 3's CA store lists the whole directory: a third of the client's CPU); skip that.
S_TIME_NO_TRUST = ("-no-CAfile", "-no-CApath", "-no-CAstore")
SERVERS = ("tlskit", "tlskit-asyncio", "stdlib", "node")
# What each phase needs besides Python; `make bench` stops with one line naming what is missing.
TOOLS = {
    "node": ("node", "nodejs"),
    "openssl": ("openssl", "openssl"),
    "valgrind": ("valgrind", "valgrind"),
    "callgrind_control": ("callgrind_control", "valgrind"),
    "strace": ("strace", "strace"),
    "stunnel4": ("stunnel4", "stunnel4"),
    "taskset": ("taskset", "util-linux"),
}
OPENSSL = "openssl"  # openssl s_server: a C reference for handshake CPU only
# The project's targets (issue 10): tlskit / Node at most; "clients": tlskit bench / openssl s_time handshakes per
# client CPU second, at least; "workers": server CPU per handshake with two workers / one, at most (it must not
# grow; the 5 % allow for noise).
TARGETS = {"memory": 0.5, "handshake": 0.8, "resumed": 0.7, "gib": 0.6, "clients": 1.0, "workers": 1.05}
BENCH_CONCURRENCY = 8  # tlskit bench's connections at a time in the handshake phases (its default)
WORKERS_CONCURRENCY = 32  # enough connections at a time that the offered rate is never held back
WORKERS_LOAD = 0.5  # the workers phase offers this share of one core's capacity (server or load generator)
SCALING_CORES = (1, 2, 4, 8, 16)  # the core counts the report's scaling model is computed for
SAMPLE_SECONDS = 0.02  # how often a server's CPU times are read while a load generator runs
WARMUP_CONNS = 50  # connections opened and closed before measuring memory
IDLE_PROCS = 2  # client processes for the idle connections of the memory phase
SCALE_PROCS = 4  # client processes for the scale phase
STREAM_WARMUP_MIB = 16
STREAM_CHUNK_KIB = 64
SPLIT_COUNT = 300  # in-process handshakes per variant and round
QUIET_PHASE_MAX = 10.0  # at most this long waiting for other load before one phase
QUIET_THRESHOLD = 0.1  # "quiet": other processes use less CPU than this (cores)
SATURATED = 0.9  # a server using this much CPU per wall second and worker is the bottleneck
NOISY_PHASE = 0.2  # the report flags phases where other processes used more CPU than this (cores)
PING = "ping"  # the probe's first line of data; its echo comes after every session ticket


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A root CA and an EC P-256 server certificate for localhost/127.0.0.1, made with tlskit's own PKI."""
    from tlskit.pki.ca import CertificateAuthority
    from tlskit.pki.files import certs_to_pem

    ca = CertificateAuthority.create_root(None, name="tlskit bench root")
    cert, key = ca.issue(["localhost", "127.0.0.1"]).write(directory / "server")
    root = directory / "root.pem"
    root.write_bytes(certs_to_pem([ca.cert]))
    return cert, key, root


def tlskit_num_tickets(cert: Path, key: Path) -> int:
    """The TLS 1.3 session tickets per handshake of tlskit's ``server_context`` (what every tlskit server uses)."""
    from tlskit.net.context import server_context

    return server_context(cert=cert, key=key, min_version="1.3").num_tickets


def write_node_config(path: Path, tickets: int) -> Path:
    """An OpenSSL config for Node (``--openssl-config``): ``NumTickets`` on every SSL_CTX it creates.

    Node reads only the ``nodejs_conf`` section (unless ``--openssl-shared-config``); ``system_default`` is
    the ssl_conf section OpenSSL applies to each new SSL_CTX.
    """
    path.write_text(
        "nodejs_conf = nodejs_init\n\n[nodejs_init]\nssl_conf = ssl_sect\n\n[ssl_sect]\n"
        "system_default = system_default_sect\n\n[system_default_sect]\n"
        f"NumTickets = {tickets}\n"
    )
    return path


def server_kinds(cert: Path, key: Path, node_config: Path) -> dict[str, ServerKind]:
    echo = [PYTHON, str(BENCH_DIR / "tlskit_echo.py"), str(cert), str(key)]
    node = ["node", f"--openssl-config={node_config}", "--expose-gc", str(BENCH_DIR / "node_echo.js"), str(cert),
            str(key)]  # fmt: skip
    serve = [TLSKIT, "serve", f"{HOST}:0", "--cert", str(cert), "--key", str(key), "--echo"]
    kinds = [
        # The command users run; its log (two lines per connection) goes to a file; it has no GC command and
        # stops on SIGTERM.
        ServerKind("tlskit", "tlskit serve (uvloop)", tuple(serve), ready="log", collects=False, stdin_stops=False),
        # The same command and handler on the stdlib loop: the two rows differ by the event loop only.
        ServerKind(
            "tlskit-asyncio",
            "tlskit (asyncio loop)",
            ("env", f"{EVENT_LOOP_ENV}=asyncio", *serve),
            ready="log",
            collects=False,
            stdin_stops=False,
        ),
        ServerKind("stdlib", "stdlib asyncio TLS", (*echo, "--loop", "asyncio")),
        ServerKind("node", "Node tls", tuple(node)),
    ]
    return {k.key: k for k in kinds}


def relative(argv: Sequence[str]) -> str:
    """A command line with paths shown relative to the repository (temp paths as CERT/KEY/CA)."""
    text = shlex.join(argv)
    return text.replace(str(ROOT) + "/", "")


class Bench:
    """Runs the phases; each one starts its own fresh server processes and stops them before returning."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.procs = ProcessSet(work)
        self.cert, self.key, self.root = make_certificates(work)
        self.tickets = tlskit_num_tickets(self.cert, self.key)
        self.node_config = write_node_config(work / "node-openssl.cnf", self.tickets)
        self.kinds = server_kinds(self.cert, self.key, self.node_config)
        self.results = Results(targets=dict(TARGETS), tickets_configured=self.tickets)
        self.ticket_settings = {
            "tlskit": f"server_context: num_tickets = {self.tickets}",
            "tlskit-asyncio": f"server_context: num_tickets = {self.tickets}",
            "stdlib": f"server_context: num_tickets = {self.tickets}",
            "node": f"--openssl-config NODE_CNF: NumTickets = {self.tickets}",
            OPENSSL: f"-num_tickets {self.tickets}",
        }
        self.client_ctx = ssl.create_default_context(cafile=str(self.root))
        self.quiet_budget = args.quiet_wait
        self.server_cpu, self.load_cpu = SERVER_CPU, LOAD_CPU
        self.servers = [k for k in SERVERS if k in args.servers]

    def note_command(self, label: str, argv: Sequence[str], port: int | None = None) -> None:
        """Remember a command line for the report (temp paths and ports replaced by names), once per variant."""
        text = relative(argv)
        for path, name in ((self.cert, "CERT"), (self.key, "KEY"), (self.root, "CA"), (self.node_config, "NODE_CNF")):
            text = text.replace(str(path), name)
        text = text.replace(str(self.work), "WORK")
        text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
        text = re.sub(r"(?<= -p )\d+", "PID", text)
        if port is not None:
            text = re.sub(rf"(?<= ){port}(?= )", "PORT", text)
        if all(text != seen for _, seen in self.results.commands):
            self.results.commands.append((label, text))

    # -- servers ---------------------------------------------------------------------------------------------

    def start_server(
        self, key: str, cpus: str, extra: Sequence[str] = (), *, wrapper: Sequence[str] = (), ready_timeout: float = 20
    ) -> tuple[Proc, int]:
        """Start server ``key`` pinned to ``cpus`` (``wrapper``: a command it runs under, such as valgrind)."""
        if key == OPENSSL:
            return self.start_s_server(cpus)
        kind = self.kinds[key]
        argv = pinned([*wrapper, *kind.argv, *extra], cpus)
        what = " ".join([key, *extra, *(["under", wrapper[0]] if wrapper else [])])
        self.note_command(f"server {what}", argv)
        proc = self.procs.spawn(key, argv, stdin_stops=kind.stdin_stops)
        if kind.ready == "log":
            return proc, wait_for_log_port(proc, key, timeout=ready_timeout)
        return proc, parse_ready(proc.expect("READY", timeout=ready_timeout))

    def start_s_server(self, cpus: str) -> tuple[Proc, int]:
        """``openssl s_server`` (C, the system libssl that Python uses): a reference for handshake CPU only."""
        port = free_port()  # s_server cannot report an OS-picked port
        argv = pinned(
            ["openssl", "s_server", "-accept", f"{HOST}:{port}", "-cert", str(self.cert), "-key", str(self.key),
             "-tls1_3", "-num_tickets", str(self.tickets), "-quiet"],
            cpus,
        )  # fmt: skip
        self.note_command("server openssl", argv)
        proc = self.procs.spawn(OPENSSL, argv, stdin_stops=False)
        wait_for_port(proc, port, "openssl s_server")
        return proc, port

    def gc(self, server: Proc) -> None:
        """Full collection in the server (Python ``gc.collect()``, V8 ``gc()``), then let it settle."""
        server.send("gc")
        server.expect("OK", timeout=10)
        time.sleep(0.3)

    def collect(self, key: str, server: Proc) -> None:
        """:meth:`gc` for a server that has the command; otherwise only let it settle (``tlskit serve``)."""
        if self.kinds[key].collects:
            self.gc(server)
        else:
            time.sleep(0.3)

    def loadgen(self, port: int, cpus: str, *args: str, timeout: float, label: str) -> dict[str, Any]:
        """One ``tlskit bench --insecure --request '' ... --json`` run (handshakes only); its report."""
        argv = pinned([TLSKIT, "bench", f"{HOST}:{port}", "--insecure", "--request", "", *args, "--json"], cpus)
        self.note_command(f"load: {label}", argv, port)
        proc = self.procs.spawn("loadgen", argv)
        try:
            out = wait_all([proc], timeout)[0]
        finally:
            self.procs.stop(proc)
        if not out.strip():
            raise RuntimeError(f"tlskit bench printed no report: {proc.stderr_tail()}")
        report: dict[str, Any] = json.loads(out)
        return report

    def probe(self, key: str, server: Proc, port: int) -> None:
        """One handshake by ``openssl s_client -msg -brief``: protocol, suite, group and session tickets sent.

        The client sends a line and waits for it to come back: the server sends its tickets right after the
        handshake, before it reads any data, so every ticket has arrived when the echo does.  ``openssl
        s_server`` does not echo; it prints what it receives, and the bench sends the line back through it.
        """
        argv = pinned(
            ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-msg", "-brief", "-CAfile", str(self.root),
             "-servername", "localhost", "-verify_return_error"],
            LOAD_CPU,
        )  # fmt: skip
        self.note_command("probe: what each server negotiates and how many session tickets it sends", argv)
        client = self.procs.spawn("probe", argv)
        try:
            client.send(PING)
            if key == OPENSSL:
                server.expect(PING, timeout=15)
                server.send(PING)
            trace = client.read_until(f"\n{PING}\n", timeout=15)
        finally:
            self.procs.stop(client)
        brief = client.stderr_path.read_text(errors="replace") if client.stderr_path else ""
        if "Verification: OK" not in brief:
            raise RuntimeError(f"s_client could not verify the {key} server: {brief[-400:]}")
        self.results.probes[key] = Probe(
            key,
            parse_brief(brief, "Protocol version"),
            parse_brief(brief, "Ciphersuite"),
            parse_brief(brief, "Server Temp Key"),
            parse_ticket_count(trace),
            mapped_libssl(server.pid),
            self.ticket_settings[key],
        )

    def phase_settings(self, key: str) -> None:
        server, port = self.start_server(key, SERVER_CPU)
        try:
            self.probe(key, server, port)
        finally:
            self.procs.stop(server)

    def idle_clients(
        self, port: int, total: int, processes: int, deadline: float
    ) -> tuple[list[Proc], int, int, float]:
        """Open ``total`` idle connections from ``processes`` client processes on the load CPU."""
        share = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
        clients = []
        for count in share:
            argv = pinned(
                [PYTHON, str(BENCH_DIR / "idle_clients.py"), str(port), str(count), str(self.root),
                 "--deadline", f"{deadline:g}"],
                LOAD_CPU,
            )  # fmt: skip
            what = "warm-up" if total <= WARMUP_CONNS else f"{processes} processes"
            self.note_command(f"idle clients ({what})", argv, port)
            clients.append(self.procs.spawn("idle", argv))
        opened = failed = 0
        seconds = 0.0
        for client in clients:
            _, ok, bad, secs = client.expect("OPEN", timeout=deadline + 30).split()
            opened, failed, seconds = opened + int(ok), failed + int(bad), max(seconds, float(secs))
        return clients, opened, failed, seconds

    def close_clients(self, clients: list[Proc]) -> None:
        for client in clients:
            self.procs.stop(client)

    def warm_up(self, port: int) -> None:
        """A few connections first, so one-time allocations are not counted as per-connection memory."""
        clients, *_ = self.idle_clients(port, WARMUP_CONNS, 1, 30)
        self.close_clients(clients)

    # -- phases ----------------------------------------------------------------------------------------------

    def phase_memory(self, key: str) -> None:
        server, port = self.start_server(key, SERVER_CPU)
        try:
            self.results.memory[key] = self.idle_memory(
                key, server, port, self.args.idle, lambda: self.collect(key, server)
            )
        finally:
            self.procs.stop(server)

    def idle_memory(self, key: str, server: Proc, port: int, count: int, collect: Callable[[], None]) -> MemoryResult:
        """Server memory before and after ``count`` idle connections, each reading after ``collect()`` (a GC)."""
        self.warm_up(port)
        collect()
        before = memory(server.pid)
        clients, opened, failed, secs = self.idle_clients(port, count, IDLE_PROCS, 120)
        time.sleep(1.0)  # let the servers finish anything they deferred
        collect()
        after = memory(server.pid)
        self.close_clients(clients)
        if opened == 0:
            raise RuntimeError(f"no idle connection could be opened to {key}")
        return MemoryResult(key, opened, failed, secs, before, after)

    def s_time(self, port: int, cpus: str, seconds: int, processes: int) -> tuple[int, float, float]:
        """Run ``processes`` ``openssl s_time -new`` for ``seconds``; return (handshakes, wall s, client CPU s)."""
        argv = pinned(
            ["openssl", "s_time", "-connect", f"{HOST}:{port}", "-new", "-time", str(seconds), "-tls1_3",
             "-ciphersuites", TLS13_SUITE, *S_TIME_NO_TRUST],
            cpus,
        )  # fmt: skip
        self.note_command(f"load: openssl s_time alone on CPU {cpus}", argv)
        client0 = children_cpu_seconds()
        start = time.perf_counter()
        procs = [self.procs.spawn("s_time", argv) for _ in range(processes)]
        outputs = wait_all(procs, seconds + 30)
        wall = time.perf_counter() - start
        client_cpu = children_cpu_seconds() - client0
        for proc in procs:
            self.procs.stop(proc)
        return sum(parse_s_time(out) for out in outputs), wall, client_cpu

    def measure_handshakes(self, label: str, server: Proc, port: int) -> tuple[HandshakeResult, HandshakeResult]:
        """Full, then resumed handshakes by ``tlskit bench --resume`` on the load CPU; the server's CPU in each.

        The server's CPU times are sampled while the load generator runs; its report stamps when each phase
        began and ended, and the server CPU between those stamps is that phase's.
        """
        seconds = self.args.seconds
        self.loadgen(port, LOAD_CPU, "--resume", "--connections", "100", timeout=60, label="warm-up")
        pids = descendants(server.pid)
        args = ["--resume", "--duration", str(seconds), "--concurrency", str(BENCH_CONCURRENCY)]
        with CpuSampler(pids, SAMPLE_SECONDS) as sampler:
            report = self.loadgen(port, LOAD_CPU, *args, timeout=2 * seconds + 60, label="full and resumed handshakes")
        out = []
        for name in ("full", "resumed"):
            phase = report.get(name)
            if not phase or not phase["completed"]:
                raise RuntimeError(f"{label}: tlskit bench completed no {name} handshake: {report.get('notes')}")
            if phase["failures"]:
                raise RuntimeError(f"{label}: {name} handshakes failed: {phase['failures']}")
            out.append(self.phase_result(label, sampler, phase, BENCH_CONCURRENCY))
        return out[0], out[1]

    @staticmethod
    def phase_result(label: str, sampler: CpuSampler, phase: dict[str, Any], concurrency: int) -> HandshakeResult:
        """A load generator's phase as a :class:`HandshakeResult`, with the server CPU the sampler saw in it."""
        times, switches = sampler.between(phase["started_at"], phase["ended_at"])
        pids = sampler.pids
        return HandshakeResult(
            label,
            concurrency,
            phase["completed"],
            phase["wall_seconds"],
            sum(times[pid][0] for pid in pids),
            sum(times[pid][1] for pid in pids),
            phase["client_cpu_seconds"],
            tuple(sum(times[pid]) for pid in pids),
            phase["resumed"],
            tuple(switches[pid][0] for pid in pids),
            tuple(switches[pid][1] for pid in pids),
        )

    def phase_handshakes(self, key: str) -> None:
        """One round for one server; rounds are interleaved across servers and added up (machine drift)."""
        server, port = self.start_server(key, SERVER_CPU)
        try:
            full, resumed = self.measure_handshakes(key, server, port)
        finally:
            self.procs.stop(server)
        for store, result in ((self.results.handshakes, full), (self.results.resumed, resumed)):
            previous = store.get(key)
            store[key] = result if previous is None else previous + result

    def phase_clients(self) -> None:
        """The load generators' own ceiling: ``tlskit bench`` and ``openssl s_time``, each alone on the load CPU.

        Both make handshake-only connections without verifying the server (no CA), against the same server;
        rounds alternate.  tlskit bench's CPU is its own report's (its handshake phase); s_time's its rusage.
        """
        server, port = self.start_server("tlskit", SERVER_CPU)
        seconds = self.args.client_seconds
        try:
            self.loadgen(port, LOAD_CPU, "--duration", "1", timeout=60, label="warm-up")
            for _ in range(self.args.client_rounds):
                count, wall, cpu = self.s_time(port, LOAD_CPU, seconds, 1)
                self.add_client(ClientResult("s_time", count, wall, cpu, cpu))
                before = children_cpu_seconds()
                args = ["--duration", str(seconds), "--concurrency", str(BENCH_CONCURRENCY)]
                report = self.loadgen(port, LOAD_CPU, *args, timeout=seconds + 60, label="tlskit bench alone")
                rusage = children_cpu_seconds() - before
                full = report["full"]
                if full["failures"] or not full["completed"]:
                    raise RuntimeError(f"tlskit bench: {full['completed']} handshakes, failures {full['failures']}")
                self.add_client(
                    ClientResult("tlskit bench", full["completed"], full["wall_seconds"], full["client_cpu_seconds"],
                                 rusage)
                )  # fmt: skip
        finally:
            self.procs.stop(server)

    def add_client(self, result: ClientResult) -> None:
        previous = self.results.clients.get(result.kind)
        self.results.clients[result.kind] = result if previous is None else previous + result

    def stream(self, port: int, size: int, *, deadline: int = 30) -> tuple[int, float, str]:
        argv = pinned(
            [PYTHON, str(BENCH_DIR / "stream_client.py"), str(port), str(self.root), "--bytes", str(size),
             "--chunk", str(STREAM_CHUNK_KIB * 1024), "--deadline", str(deadline)],
            LOAD_CPU,
        )  # fmt: skip
        self.note_command("stream client" + (" (warm-up)" if size <= STREAM_WARMUP_MIB * MIB else ""), argv, port)
        client = self.procs.spawn("stream", argv)
        try:
            _, sent, received, seconds, *negotiated = client.expect("DONE", timeout=deadline + 60).split()
        finally:
            self.procs.stop(client)
        if int(sent) != size or int(received) != size:
            raise RuntimeError(f"stream: sent {sent}, received {received} of {size} bytes")
        return int(received), float(seconds), " ".join(negotiated)

    def phase_stream(self, key: str) -> None:
        """One round for one server; rounds are interleaved across servers and added up (machine drift)."""
        server, port = self.start_server(key, SERVER_CPU)
        try:
            self.stream(port, STREAM_WARMUP_MIB * MIB)  # warm-up
            cpu0, client0 = cpu_seconds([server.pid]), children_cpu_seconds()
            echoed, seconds, negotiated = self.stream(port, self.args.stream_mib * MIB)
            cpu1, client1 = cpu_seconds([server.pid]), children_cpu_seconds()
            result = StreamResult(key, echoed, seconds, cpu1 - cpu0, client1 - client0, negotiated)
        finally:
            self.procs.stop(server)
        previous = self.results.streams.get(key)
        self.results.streams[key] = result if previous is None else previous + result

    def phase_scale(self, key: str) -> None:
        """Hold ``--scale`` idle connections in one server process, then time fresh handshake + echo."""
        server, port = self.start_server(key, SERVER_CPU)
        try:
            self.warm_up(port)
            self.collect(key, server)
            before = memory(server.pid)
            clients, opened, failed, secs = self.idle_clients(port, self.args.scale, SCALE_PROCS, 150)
            self.collect(key, server)
            after = memory(server.pid)
            fresh: list[float] = []
            for _ in range(self.args.fresh):
                start = time.perf_counter()
                try:
                    open_one(self.client_ctx, port).close()
                except (OSError, ssl.SSLError) as exc:
                    print(f"  fresh connection failed: {exc}", file=sys.stderr)
                    continue
                fresh.append(time.perf_counter() - start)
            self.close_clients(clients)
            self.results.scale[key] = ScaleResult(
                key, self.args.scale, opened, failed, secs, before, after, len(fresh), self.args.fresh, tuple(fresh)
            )
        finally:
            self.procs.stop(server)

    def phase_split(self) -> None:
        """In-process handshakes (bench/handshake_micro.py) on the server CPU: OpenSSL's share, tickets, engine."""
        argv = pinned(
            [
                PYTHON,
                str(BENCH_DIR / "handshake_micro.py"),
                *SPLIT_VARIANTS,
                "--tsv",
                "--rounds",
                str(self.args.split_rounds),
                "--count",
                str(SPLIT_COUNT),
            ],
            SERVER_CPU,
        )
        self.note_command("in-process handshakes", argv)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True, cwd=ROOT).stdout
        for line in out.splitlines():
            variant, configured, sent, rounds = line.split("\t")
            values = tuple(float(v) for v in rounds.split(","))
            self.results.split[variant] = SplitResult(variant, int(configured), int(sent), values)

    def workers_rate(self) -> float:
        """The workers phase's offered load: half of what one core can do, server or load generator, whichever is
        slower (from this run's handshake and load generator phases; 200/s if they did not run)."""
        full = self.results.handshakes.get("tlskit")
        client = self.results.clients.get("tlskit bench")
        slowest = max(full.cpu_per_handshake_us if full else 0.0, client.cpu_per_handshake_us if client else 0.0)
        return round(WORKERS_LOAD * 1e6 / slowest, -1) if slowest else 200.0

    def phase_workers(self, label: str, workers: int, server_cpus: str, load_cpus: str) -> None:
        """``tlskit serve --echo --workers N`` at the phase's fixed offered load: server CPU per handshake.

        One round of one configuration; rounds are interleaved across the configurations and added up, so a slow
        stretch of a shared machine lands on all of them instead of deciding the ratio.
        """
        rate = self.results.workers_rate
        seconds = self.args.workers_seconds
        server, port = self.start_server("tlskit", server_cpus, ["--workers", str(workers)])
        try:
            time.sleep(0.5)  # workers listen once the log says so; let them settle
            warm = ["--rate", f"{rate:g}", "--duration", "1", "--concurrency", str(WORKERS_CONCURRENCY)]
            self.loadgen(port, load_cpus, *warm, timeout=60, label="warm-up")
            pids = descendants(server.pid)
            args = ["--rate", f"{rate:g}", "--duration", str(seconds), "--concurrency", str(WORKERS_CONCURRENCY)]
            with CpuSampler(pids, SAMPLE_SECONDS) as sampler:
                report = self.loadgen(port, load_cpus, *args, timeout=seconds + 60,
                                      label=f"a fixed rate, on CPU {load_cpus}")  # fmt: skip
            full = report["full"]
            if full["failures"] or not full["completed"]:
                raise RuntimeError(f"{label}: {full['completed']} handshakes, failures {full['failures']}")
            result = self.phase_result(label, sampler, full, WORKERS_CONCURRENCY)
        finally:
            self.procs.stop(server)
        previous = self.results.workers.get(label)
        self.results.workers[label] = result if previous is None else previous + result

    def phase_example(self) -> None:
        """One ``tlskit bench --resume --bytes 64M --plain-port`` run against ``tlskit serve --echo``, as text.

        One connection at a time, so the latencies are what a connection costs, not time queued behind others.
        """
        server, port = self.start_server("tlskit", SERVER_CPU)
        plain: Proc | None = None
        try:
            plain = self.procs.spawn("plain-echo", pinned([PYTHON, str(BENCH_DIR / "plain_echo.py")], SERVER_CPU))
            plain_port = parse_ready(plain.expect("READY", timeout=20))
            argv = pinned(
                [TLSKIT, "bench", f"{HOST}:{port}", "--ca", str(self.root), "--servername", "localhost",
                 "--resume", "--bytes", "64M", "--plain-port", str(plain_port), "--connections", "500",
                 "--concurrency", "1"],
                LOAD_CPU,
            )  # fmt: skip
            self.note_command("example: tlskit bench, text report", argv, port)
            proc = self.procs.spawn("example", argv, env={**os.environ, "COLUMNS": "400"})
            try:
                out = wait_all([proc], 120)[0]
            finally:
                self.procs.stop(proc)
            if proc.popen.returncode:
                raise RuntimeError(f"tlskit bench failed: {proc.stderr_tail()}")
            self.results.example_command = "tlskit " + relative(argv[4:]).replace(str(self.root), "root.pem")
            self.results.example = out.rstrip()
        finally:
            if plain is not None:
                self.procs.stop(plain)
            self.procs.stop(server)

    # -- running ---------------------------------------------------------------------------------------------

    def run_phase(self, name: str, fn: Callable[[], None], *, timed: bool = True) -> None:
        """Run one phase; record its error instead of stopping, and how busy the rest of the machine was.

        Before a ``timed`` phase (one that measures time or memory), wait for other load to pass.
        """
        if timed and self.quiet_budget > 0:  # a shared machine: let someone else's burst pass first (bounded)
            self.quiet_budget -= wait_until_quiet(
                max_wait=min(QUIET_PHASE_MAX, self.quiet_budget), threshold=QUIET_THRESHOLD
            )
        start = time.perf_counter()
        busy0, own0 = machine_busy_seconds(), own_cpu_seconds()
        print(f"[{time.perf_counter() - self.started:6.1f}s] {name} ...", flush=True)
        try:
            fn()
        except Exception as exc:
            self.results.errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"  FAILED: {exc}", file=sys.stderr)
            if self.args.verbose:
                traceback.print_exc()
        finally:
            wall = time.perf_counter() - start
            # Every process of a phase is stopped and reaped by its end, so its CPU time is in RUSAGE_CHILDREN.
            foreign = max(0.0, (machine_busy_seconds() - busy0) - (own_cpu_seconds() - own0))
            self.results.foreign[name] = (wall, foreign)
            note = f", other processes on the machine: {foreign:.1f} CPU s" if foreign > 0.1 * wall else ""
            print(f"  ({wall:.1f}s{note})", flush=True)

    def run(self) -> Results:
        self.started = time.perf_counter()
        phases = self.args.phases
        order = self.servers
        handshakers = [*order, OPENSSL]
        try:
            # Same settings on every side, checked before anything is measured.
            for key in handshakers:
                self.run_phase(
                    f"settings {key}",
                    lambda key=key: self.phase_settings(key),  # type: ignore[misc]
                    timed=False,
                )
            problems = self.results.mismatches(handshakers)
            if problems:
                raise SettingsMismatch(problems)
            if "memory" in phases:
                for key in order:
                    self.run_phase(f"memory {key}", lambda key=key: self.phase_memory(key))  # type: ignore[misc]
            if "handshake" in phases:
                for round_ in range(1, self.args.rounds + 1):
                    for key in handshakers:
                        self.run_phase(
                            f"handshakes {key} (round {round_})",
                            lambda key=key: self.phase_handshakes(key),  # type: ignore[misc]
                        )
            if "clients" in phases:
                self.run_phase("load generators alone", self.phase_clients)
            if "split" in phases:
                self.run_phase("in-process handshakes", self.phase_split)
            if "stream" in phases:
                for round_ in range(1, self.args.stream_rounds + 1):
                    for key in order:
                        self.run_phase(
                            f"stream {key} (round {round_})",
                            lambda key=key: self.phase_stream(key),  # type: ignore[misc]
                        )
            if "scale" in phases:
                for key in ("tlskit", "node"):
                    if key in order:
                        self.run_phase(f"scale {key}", lambda key=key: self.phase_scale(key))  # type: ignore[misc]
            if "workers" in phases:
                self.results.workers_rate = self.workers_rate()
                for round_ in range(1, self.args.workers_rounds + 1):
                    for n, server_cpus, load_cpus in WORKER_CONFIGS:
                        label = workers_key(n, server_cpus, load_cpus)
                        self.run_phase(
                            f"workers: {label} (round {round_})",
                            lambda a=(label, n, server_cpus, load_cpus): self.phase_workers(*a),  # type: ignore[misc]
                        )
            if "breakdown" in phases:
                breakdown.run_phases(self)
            if "example" in phases:
                self.run_phase("tlskit bench example", self.phase_example, timed=False)
            if "tunnel" in phases:
                tunnel_bench.run_phases(self)
        finally:
            self.procs.stop_all()
        self.results.total_seconds = time.perf_counter() - self.started
        return self.results


def workers_key(workers: int, server_cpus: str, load_cpus: str) -> str:
    """How a workers configuration is named in the data: ``N|server CPUs|load CPUs``."""
    return f"{workers}|{server_cpus}|{load_cpus}"


# The workers phase: one and two workers with the server alone on CPU 0 (the load generator on CPU 1), then
# with server and load generator sharing both CPUs (where the growth was first seen).
WORKER_CONFIGS = (
    (1, SERVER_CPU, LOAD_CPU),
    (2, SERVER_CPU, LOAD_CPU),
    (1, ALL_CPUS, ALL_CPUS),
    (2, ALL_CPUS, ALL_CPUS),
)


class SettingsMismatch(RuntimeError):
    """The servers did not run with the same TLS settings: nothing measured would compare like with like."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the servers do not run with the same settings:\n  " + "\n  ".join(problems))


PHASES = ("memory", "handshake", "clients", "split", "stream", "scale", "workers", "breakdown", "example", "tunnel")
# handshake_micro.py variants: bare OpenSSL with two, one and no session tickets, and tlskit's engine.
SPLIT_VARIANTS = ("raw:tickets2", "raw:tickets1", "raw:tickets0", "engine", "raw:tickets1,resume", "engine:resume")
QUICK = {
    "idle": 200,
    "scale": 1000,
    "fresh": 2,
    "seconds": 2,
    "rounds": 1,
    "client_seconds": 2,
    "client_rounds": 1,
    "split_rounds": 2,
    "stream_mib": 64,
    "stream_rounds": 1,
    "workers_seconds": 2,
    "workers_rounds": 1,
    "breakdown_handshakes": 20,
    "tunnel_idle": 200,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="tlskit vs Node tls transport benchmark")
    parser.add_argument("--out", type=Path, help="report path (default docs/benchmarks.md; --quick: a temp file)")
    parser.add_argument("--quick", action="store_true", help="small counts and short runs, to check the harness")
    parser.add_argument("--idle", type=int, default=2000, help="idle connections for the memory phase")
    parser.add_argument("--scale", type=int, default=10_000, help="concurrent connections for the scale phase")
    parser.add_argument("--fresh", type=int, default=5, help="fresh handshakes timed at full scale")
    parser.add_argument("--seconds", type=int, default=3, help="seconds of full, then resumed handshakes per round")
    parser.add_argument("--rounds", type=int, default=2, help="handshake rounds, interleaved across servers")
    parser.add_argument("--client-seconds", type=int, default=4, help="seconds per load generator and round, alone")
    parser.add_argument("--client-rounds", type=int, default=2, help="alternating rounds of the two load generators")
    parser.add_argument("--workers-seconds", type=int, default=4, help="seconds per workers configuration and round")
    parser.add_argument(
        "--workers-rounds", type=int, default=3, help="workers rounds, interleaved across the configurations"
    )
    parser.add_argument(
        "--breakdown-handshakes", type=int, default=200, help="handshakes per counted batch under callgrind and strace"
    )
    parser.add_argument(
        "--skip-missing", action="store_true", help="leave out the phases whose tools are missing (default: stop)"
    )
    parser.add_argument("--stream-mib", type=int, default=512, help="MiB echoed per server and round")
    parser.add_argument("--stream-rounds", type=int, default=3, help="stream rounds, interleaved across servers")
    parser.add_argument("--split-rounds", type=int, default=8, help="rounds of 300 in-process handshakes per variant")
    parser.add_argument("--tunnel-idle", type=int, default=2000, help="idle tunnelled connections (tunnel phase)")
    parser.add_argument("--churn-procs", type=int, default=3, help="concurrent handshake clients (tunnel phase)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument(
        "--quiet-wait", type=float, default=60.0, help="total seconds to wait for other load to pass (0: never)"
    )
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:  # smaller defaults; options given explicitly still win
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    return args


def command_line(argv: list[str] | None) -> str:
    """How this run was started, for the report."""
    extra = sys.argv[1:] if argv is None else argv
    return shlex.join([".venv/bin/python", "bench/run.py", *extra])


def settings(args: argparse.Namespace, argv: list[str] | None, bench: Bench, data_file: str) -> Settings:
    return Settings(
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=command_line(argv),
        data_file=data_file,
        cpus=os.cpu_count() or 0,
        server_cpu=SERVER_CPU,
        load_cpu=LOAD_CPU,
        idle=args.idle,
        idle_procs=IDLE_PROCS,
        scale=args.scale,
        scale_procs=SCALE_PROCS,
        fresh=args.fresh,
        warmup_conns=WARMUP_CONNS,
        handshake_seconds=args.seconds,
        bench_concurrency=BENCH_CONCURRENCY,
        rounds=args.rounds,
        client_seconds=args.client_seconds,
        client_rounds=args.client_rounds,
        workers_seconds=args.workers_seconds,
        workers_rounds=args.workers_rounds,
        workers_concurrency=WORKERS_CONCURRENCY,
        workers_load=WORKERS_LOAD,
        breakdown_handshakes=args.breakdown_handshakes,
        breakdown_warmup=breakdown.WARMUP,
        scaling_cores=SCALING_CORES,
        sample_ms=SAMPLE_SECONDS * 1000,
        stream_mib=args.stream_mib,
        stream_rounds=args.stream_rounds,
        stream_warmup_mib=STREAM_WARMUP_MIB,
        stream_chunk_kib=STREAM_CHUNK_KIB,
        split_rounds=args.split_rounds,
        split_count=SPLIT_COUNT,
        quiet_wait=args.quiet_wait,
        quiet_phase_max=QUIET_PHASE_MAX,
        quiet_threshold=QUIET_THRESHOLD,
        saturated=SATURATED,
        noisy_phase=NOISY_PHASE,
        certificate=describe_certificate(bench.cert),
        node_config=bench.node_config.read_text(),
        tlskit_loop=_tlskit_loop(),
        tunnel_idle=args.tunnel_idle,
        churn_procs=args.churn_procs,
        stdlib_read_buffer=_stdlib_read_buffer(),
    )


def openssl_versions() -> dict[str, str]:
    """The OpenSSL each side runs, read now: Python's ssl module, Node, and the openssl command."""

    def first_line(argv: list[str]) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        return (out.stdout.strip().splitlines() or ["?"])[0]

    return {
        "python": ssl.OPENSSL_VERSION,
        "node": first_line(["node", "-p", "process.versions.openssl"]),
        "openssl": first_line(["openssl", "version"]),
    }


def describe_certificate(path: Path) -> str:
    """Key type and names of the server certificate, read from the file the servers load."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    key = cert.public_key()
    kind = f"EC {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = [str(n.value) for n in san]
    return f"{kind} leaf for {', '.join(names)}"


def missing_tools(args: argparse.Namespace) -> dict[str, list[str]]:
    """The tools the chosen phases need and this machine lacks, each with what needs it (a phase, or ``node``)."""
    needs = {"settings": ["openssl", "taskset"]}
    if "node" in args.servers:
        needs["node"] = ["node"]
    if "breakdown" in args.phases:
        needs["breakdown"] = ["valgrind", "callgrind_control", "strace"]
    if "tunnel" in args.phases:
        needs["tunnel"] = ["stunnel4"]
    missing: dict[str, list[str]] = {}
    for what, tools in needs.items():
        for tool in tools:
            found = tunnel_bench.stunnel_binary() if tool == "stunnel4" else shutil.which(TOOLS[tool][0])
            if found is None:
                missing.setdefault(tool, []).append(what)
    return missing


def leave_out_missing(args: argparse.Namespace, missing: dict[str, list[str]]) -> str | None:
    """Stop (a one-line hint) unless ``--skip-missing``; then drop what needs a missing tool, and say why."""
    packages = sorted({TOOLS[tool][1] for tool in missing})
    hint = f"make bench needs {', '.join(missing)}: apt-get install {' '.join(packages)}"
    needed_always = [tool for tool, users in missing.items() if "settings" in users]
    if needed_always or not args.skip_missing:
        return hint + ("" if needed_always else " (or run bench/run.py --skip-missing to leave their phases out)")
    args.skipped = {}
    for tool, users in missing.items():
        for what in users:
            args.skipped[what] = f"{tool} is not installed"
            if what == "node":
                args.servers = [k for k in args.servers if k != "node"]
            else:
                args.phases = [phase for phase in args.phases if phase != what]
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.skipped = {}
    missing = missing_tools(args)
    if missing:
        hint = leave_out_missing(args, missing)
        if hint is not None:
            print(hint, file=sys.stderr)
            return 2
    # SIGTERM/SIGHUP unwind through the finally blocks, so every process started is stopped.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    default_out = ROOT / "docs" / "benchmarks.md"
    out: Path = args.out or (Path(tempfile.gettempdir()) / "tlskit-bench-quick.md" if args.quick else default_out)
    data_path = out.with_suffix(".json")
    raise_nofile()
    # The orchestrator itself stays off the server CPU; taskset re-pins every child explicitly.
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    with tempfile.TemporaryDirectory(prefix="tlskit-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        bench.results.facts = machine_facts({"uvloop": _uvloop_version(), "tlskit": _tlskit_version()})
        bench.results.openssl = openssl_versions()
        bench.results.settings = settings(args, argv, bench, data_path.name)
        bench.results.skipped = dict(args.skipped)
        try:
            results = bench.run()
        except SettingsMismatch as exc:
            print(f"\nBENCH STOPPED: {exc}\nNothing was written.", file=sys.stderr)
            return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    data_path.write_text(to_json(results))
    # The report is rendered from the data as written, so the committed pair always agrees.
    saved = from_json(data_path.read_text())
    out.write_text(render(saved))
    if out == default_out:
        readme = ROOT / "README.md"
        readme.write_text(replace_readme_block(readme.read_text(), saved))
    print()
    print("\n".join(summary_lines(saved)))
    print(f"\nwrote {out} and {data_path.name} ({results.total_seconds:.0f} s)")
    return 1 if results.errors else 0


def _tlskit_loop() -> str:
    """The event loop tlskit runs on by default in this install."""
    from tlskit.net.server import loop_factory

    module = loop_factory().__module__.split(".")[0]
    return f"uvloop {_uvloop_version()}" if module == "uvloop" else "the stdlib asyncio loop"


def _stdlib_read_buffer() -> int:
    """Bytes the stdlib TLS transport reads into per connection (``SSLProtocol.max_size``; 0 if absent)."""
    import asyncio.sslproto

    return int(getattr(asyncio.sslproto.SSLProtocol, "max_size", 0))


def _uvloop_version() -> str:
    try:
        import uvloop
    except ImportError:
        return "not installed"
    return str(getattr(uvloop, "__version__", "?"))


def _tlskit_version() -> str:
    import tlskit

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"{tlskit.__version__} (git {commit or '?'} + working tree)"


if __name__ == "__main__":
    sys.exit(main())
