"""Benchmark tlskit's TLS transport against Node's ``tls`` in one run, side by side; write docs/benchmarks.md.

Run with ``make bench`` (the same as ``.venv/bin/python bench/run.py``); ``--quick`` is a short smoke run that
writes to a scratch file unless ``--out`` is given.  Servers (same certificate and key, TLS 1.3, same cipher and
group, checked with ``openssl s_client``):

- ``tlskit``: ``tlskit.start_server`` echo on uvloop (the default when the ``fast`` extra is installed);
- ``tlskit-asyncio``: the same on the stdlib asyncio event loop;
- ``stdlib``: ``asyncio.start_server(ssl=ctx)``, the stdlib TLS transport (the design tlskit replaces);
- ``node``: ``tls.createServer`` with ``socket.pipe(socket)``.

Each server is pinned to CPU 0 (``taskset -c 0``) and every load generator to CPU 1; the ``workers`` phase pins
nothing (see the caveat in the report).  Every loop is bounded in count and time, only 127.0.0.1 is used, and
every process started is stopped in a ``finally``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import tunnel_bench
from harness import (
    BENCH_DIR,
    HOST,
    PYTHON,
    ROOT,
    Proc,
    ProcessSet,
    children_cpu_seconds,
    cpu_seconds,
    cpu_times,
    descendants,
    machine_busy_seconds,
    machine_facts,
    memory,
    own_cpu_seconds,
    parse_ready,
    parse_s_time,
    pinned,
    raise_nofile,
    wait_all,
    wait_until_quiet,
)
from idle_clients import open_one
from report import render, summary_lines
from results import HandshakeResult, MemoryResult, Probe, Results, ScaleResult, ServerKind, StreamResult

SERVER_CPU = "0"
LOAD_CPU = "1"
ALL_CPUS = "0,1"
TLS13_SUITE = "TLS_AES_256_GCM_SHA384"  # what every client here negotiates: OpenSSL's and Node's first choice
MIB = 1024 * 1024
# s_time does not verify the server (no -verify) but would still look the issuer up in the system CA directory on
# every handshake (OpenSSL 3's CA store lists the whole directory: a third of the client's CPU); skip that.
S_TIME_NO_TRUST = ("-no-CAfile", "-no-CApath", "-no-CAstore")
SERVERS = ("tlskit", "tlskit-asyncio", "stdlib", "node")
OPENSSL = "openssl"  # openssl s_server: a C reference for handshake CPU only


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A root CA and an EC P-256 server certificate for localhost/127.0.0.1, made with tlskit's own PKI."""
    from tlskit.pki.ca import CertificateAuthority
    from tlskit.pki.files import certs_to_pem

    ca = CertificateAuthority.create_root(None, name="tlskit bench root")
    cert, key = ca.issue(["localhost", "127.0.0.1"]).write(directory / "server")
    root = directory / "root.pem"
    root.write_bytes(certs_to_pem([ca.cert]))
    return cert, key, root


def server_kinds(cert: Path, key: Path) -> dict[str, ServerKind]:
    echo = [PYTHON, str(BENCH_DIR / "tlskit_echo.py"), str(cert), str(key)]
    node = ["node", "--expose-gc", str(BENCH_DIR / "node_echo.js"), str(cert), str(key)]
    kinds = [
        ServerKind("tlskit", "tlskit (uvloop)", (*echo, "--loop", "uvloop")),
        ServerKind("tlskit-asyncio", "tlskit (asyncio loop)", (*echo, "--loop", "asyncio")),
        ServerKind("stdlib", "stdlib asyncio TLS", (*echo, "--impl", "stdlib", "--loop", "asyncio")),
        ServerKind("node", "Node tls", tuple(node)),
    ]
    return {k.key: k for k in kinds}


def relative(argv: Sequence[str]) -> str:
    """A command line with paths shown relative to the repository (temp paths as CERT/KEY/CA)."""
    text = " ".join(argv)
    return text.replace(str(ROOT) + "/", "")


class Bench:
    """Runs the phases; each one starts its own fresh server processes and stops them before returning."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.procs = ProcessSet(work)
        self.cert, self.key, self.root = make_certificates(work)
        self.kinds = server_kinds(self.cert, self.key)
        self.results = Results()
        self.client_ctx = ssl.create_default_context(cafile=str(self.root))
        self.quiet_budget = args.quiet_wait
        self.server_cpu, self.load_cpu = SERVER_CPU, LOAD_CPU

    def note_command(self, label: str, argv: Sequence[str], port: int | None = None) -> None:
        """Remember a command line for the report (temp paths and ports replaced by names), once per variant."""
        text = relative(argv)
        for path, name in ((self.cert, "CERT"), (self.key, "KEY"), (self.root, "CA")):
            text = text.replace(str(path), name)
        text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
        if port is not None:
            text = re.sub(rf"(?<= ){port}(?= )", "PORT", text)
        if all(text != seen for _, seen in self.results.commands):
            self.results.commands.append((label, text))

    # -- servers ---------------------------------------------------------------------------------------------

    def start_server(self, key: str, cpus: str, extra: Sequence[str] = ()) -> tuple[Proc, int]:
        if key == OPENSSL:
            return self.start_s_server(cpus)
        kind = self.kinds[key]
        argv = pinned([*kind.argv, *extra], cpus)
        self.note_command(f"server {key}{' ' + ' '.join(extra) if extra else ''}", argv)
        proc = self.procs.spawn(key, argv)
        port = parse_ready(proc.expect("READY", timeout=20))
        return proc, port

    def start_s_server(self, cpus: str) -> tuple[Proc, int]:
        """``openssl s_server`` (C, the system libssl that Python uses): a reference for handshake CPU only."""
        with socket.socket() as probe:  # s_server cannot report an OS-picked port; take a free one
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        argv = pinned(
            ["openssl", "s_server", "-accept", f"{HOST}:{port}", "-cert", str(self.cert), "-key", str(self.key),
             "-tls1_3", "-quiet"],
            cpus,
        )  # fmt: skip
        self.note_command("server openssl", argv)
        proc = self.procs.spawn(OPENSSL, argv, stdin_stops=False)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                return proc, port
            except OSError:
                if time.monotonic() > deadline or proc.popen.poll() is not None:
                    raise RuntimeError(f"openssl s_server did not start: {proc.stderr_tail()}") from None
                time.sleep(0.05)

    def gc(self, server: Proc) -> None:
        """Full collection in the server (Python ``gc.collect()``, V8 ``gc()``), then let it settle."""
        server.send("gc")
        server.expect("OK", timeout=10)
        time.sleep(0.3)

    def probe(self, key: str, port: int) -> None:
        """Record what ``openssl s_client -brief`` negotiates (protocol, cipher, key exchange group)."""
        argv = pinned(
            ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-brief", "-CAfile", str(self.root),
             "-servername", "localhost", "-verify_return_error"],
            LOAD_CPU,
        )  # fmt: skip
        self.note_command("probe: what each server negotiates", argv)
        out = subprocess.run(argv, input="", capture_output=True, text=True, timeout=15, check=False)
        text = out.stdout + out.stderr

        def field(name: str) -> str:
            match = re.search(rf"^{name}:\s*(.+)$", text, re.MULTILINE)
            return match.group(1).strip() if match else "?"

        if "Verification: OK" not in text:
            raise RuntimeError(f"s_client could not verify the {key} server: {text[-400:]}")
        self.results.probes[key] = Probe(key, field("Protocol version"), field("Ciphersuite"), field("Server Temp Key"))

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
            what = "warm-up" if total <= 50 else f"{processes} processes"
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
        clients, *_ = self.idle_clients(port, 50, 1, 30)
        self.close_clients(clients)

    # -- phases ----------------------------------------------------------------------------------------------

    def phase_memory(self, key: str) -> None:
        server, port = self.start_server(key, SERVER_CPU)
        try:
            self.probe(key, port)
            self.warm_up(port)
            self.gc(server)
            before = memory(server.pid)
            clients, opened, failed, secs = self.idle_clients(port, self.args.idle, 2, 120)
            time.sleep(1.0)  # let the servers finish anything they deferred
            self.gc(server)
            after = memory(server.pid)
            self.close_clients(clients)
            if opened == 0:
                raise RuntimeError(f"no idle connection could be opened to {key}")
            self.results.memory[key] = MemoryResult(key, opened, failed, secs, before, after)
        finally:
            self.procs.stop(server)

    def s_time(self, port: int, cpus: str, seconds: int, processes: int) -> tuple[int, float, float]:
        """Run ``processes`` ``openssl s_time -new`` for ``seconds``; return (handshakes, wall s, client CPU s)."""
        argv = pinned(
            ["openssl", "s_time", "-connect", f"{HOST}:{port}", "-new", "-time", str(seconds), "-tls1_3",
             "-ciphersuites", TLS13_SUITE, *S_TIME_NO_TRUST],
            cpus,
        )  # fmt: skip
        what = "warm-up" if seconds <= 1 else f"{processes} processes"
        self.note_command(f"load: s_time on CPU {cpus} ({what})", argv)
        client0 = children_cpu_seconds()
        start = time.perf_counter()
        procs = [self.procs.spawn("s_time", argv) for _ in range(processes)]
        outputs = wait_all(procs, seconds + 30)
        wall = time.perf_counter() - start
        client_cpu = children_cpu_seconds() - client0
        for proc in procs:
            self.procs.stop(proc)
        return sum(parse_s_time(out) for out in outputs), wall, client_cpu

    def measure_handshakes(self, label: str, server: Proc, port: int, cpus: str) -> HandshakeResult:
        self.s_time(port, cpus, 1, 2)  # warm-up (Node's JIT, Python's caches), not counted
        pids = descendants(server.pid)
        before = {pid: cpu_times(pid) for pid in pids}
        handshakes, wall, client_cpu = self.s_time(port, cpus, self.args.seconds, self.args.s_time_procs)
        after = {pid: cpu_times(pid) for pid in pids}
        user = sum(after[pid][0] - before[pid][0] for pid in pids)
        system = sum(after[pid][1] - before[pid][1] for pid in pids)
        per_process = tuple(sum(after[pid]) - sum(before[pid]) for pid in pids)
        if handshakes == 0:
            raise RuntimeError(f"{label}: s_time completed no handshake")
        return HandshakeResult(label, self.args.s_time_procs, handshakes, wall, user, system, client_cpu, per_process)

    def phase_handshakes(self, key: str) -> None:
        """One round for one server; rounds are interleaved across servers and added up (machine drift)."""
        server, port = self.start_server(key, SERVER_CPU)
        try:
            result = self.measure_handshakes(key, server, port, LOAD_CPU)
        finally:
            self.procs.stop(server)
        previous = self.results.handshakes.get(key)
        self.results.handshakes[key] = result if previous is None else previous + result

    def stream(self, port: int, size: int) -> tuple[int, float, str]:
        argv = pinned(
            [PYTHON, str(BENCH_DIR / "stream_client.py"), str(port), str(self.root), "--bytes", str(size),
             "--deadline", "30"],
            LOAD_CPU,
        )  # fmt: skip
        self.note_command("stream client" + (" (warm-up)" if size <= 16 * MIB else ""), argv, port)
        client = self.procs.spawn("stream", argv)
        try:
            _, sent, received, seconds, *negotiated = client.expect("DONE", timeout=90).split()
        finally:
            self.procs.stop(client)
        if int(sent) != size or int(received) != size:
            raise RuntimeError(f"stream: sent {sent}, received {received} of {size} bytes")
        return int(received), float(seconds), " ".join(negotiated)

    def phase_stream(self, key: str) -> None:
        server, port = self.start_server(key, SERVER_CPU)
        try:
            self.stream(port, 16 * MIB)  # warm-up
            cpu0, client0 = cpu_seconds([server.pid]), children_cpu_seconds()
            echoed, seconds, negotiated = self.stream(port, self.args.stream_mib * MIB)
            cpu1, client1 = cpu_seconds([server.pid]), children_cpu_seconds()
            self.results.streams[key] = StreamResult(key, echoed, seconds, cpu1 - cpu0, client1 - client0, negotiated)
        finally:
            self.procs.stop(server)

    def phase_scale(self, key: str) -> None:
        """Hold ``--scale`` idle connections in one server process, then time fresh handshake + echo."""
        server, port = self.start_server(key, SERVER_CPU)
        try:
            self.warm_up(port)
            self.gc(server)
            before = memory(server.pid)
            clients, opened, failed, secs = self.idle_clients(port, self.args.scale, 4, 150)
            self.gc(server)
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
            ],
            SERVER_CPU,
        )
        self.note_command("in-process handshakes", argv)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True, cwd=ROOT).stdout
        for line in out.splitlines():
            variant, median, _minimum = line.split("\t")
            self.results.split[variant] = float(median)

    def phase_workers(self, workers: int) -> None:
        server, port = self.start_server("tlskit", ALL_CPUS, ["--workers", str(workers)])
        try:
            time.sleep(0.5)  # workers are up once the parent printed READY; give them a moment anyway
            result = self.measure_handshakes(f"workers={workers}", server, port, ALL_CPUS)
            self.results.workers[workers] = result
        finally:
            self.procs.stop(server)

    # -- running ---------------------------------------------------------------------------------------------

    def run_phase(self, name: str, fn: Callable[[], None]) -> None:
        """Run one phase; record its error instead of stopping, and how busy the rest of the machine was."""
        if self.quiet_budget > 0:  # a shared machine: let someone else's burst pass first (bounded)
            self.quiet_budget -= wait_until_quiet(max_wait=min(10.0, self.quiet_budget))
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
        order = [k for k in SERVERS if k in self.args.servers]
        try:
            if "memory" in phases:
                for key in order:
                    self.run_phase(f"memory {key}", lambda key=key: self.phase_memory(key))  # type: ignore[misc]
            if "handshake" in phases:
                for round_ in range(1, self.args.rounds + 1):
                    for key in [*order, OPENSSL]:
                        self.run_phase(
                            f"handshakes {key} (round {round_})",
                            lambda key=key: self.phase_handshakes(key),  # type: ignore[misc]
                        )
            if "split" in phases:
                self.run_phase("in-process handshakes", self.phase_split)
            if "stream" in phases:
                for key in order:
                    self.run_phase(f"stream {key}", lambda key=key: self.phase_stream(key))  # type: ignore[misc]
            if "scale" in phases:
                for key in ("tlskit", "node"):
                    if key in self.args.servers:
                        self.run_phase(f"scale {key}", lambda key=key: self.phase_scale(key))  # type: ignore[misc]
            if "workers" in phases:
                for n in (1, 2):
                    self.run_phase(f"workers={n}", lambda n=n: self.phase_workers(n))  # type: ignore[misc]
            if "tunnel" in phases:
                tunnel_bench.run_phases(self)
        finally:
            self.procs.stop_all()
        self.results.total_seconds = time.perf_counter() - self.started
        return self.results


PHASES = ("memory", "handshake", "split", "stream", "scale", "workers", "tunnel")
# handshake_micro.py variants: bare OpenSSL, one session ticket instead of two, none, and tlskit's engine.
SPLIT_VARIANTS = ("raw", "raw:tickets1", "raw:tickets0", "engine")
QUICK = {
    "idle": 200,
    "scale": 1000,
    "fresh": 2,
    "seconds": 2,
    "rounds": 1,
    "split_rounds": 2,
    "stream_mib": 64,
    "tunnel_idle": 200,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="tlskit vs Node tls transport benchmark")
    parser.add_argument("--out", type=Path, help="report path (default docs/benchmarks.md; --quick: a temp file)")
    parser.add_argument("--quick", action="store_true", help="small counts and short runs, to check the harness")
    parser.add_argument("--idle", type=int, default=2000, help="idle connections for the memory phase")
    parser.add_argument("--scale", type=int, default=10_000, help="concurrent connections for the scale phase")
    parser.add_argument("--fresh", type=int, default=5, help="fresh handshakes timed at full scale")
    parser.add_argument("--seconds", type=int, default=5, help="s_time duration per server and round")
    parser.add_argument("--rounds", type=int, default=2, help="handshake rounds, interleaved across servers")
    parser.add_argument("--s-time-procs", type=int, default=4, help="concurrent s_time processes")
    parser.add_argument("--stream-mib", type=int, default=1024, help="MiB echoed per server")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM/SIGHUP unwind through the finally blocks, so every process started is stopped.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    out: Path = args.out or (
        Path(tempfile.gettempdir()) / "tlskit-bench-quick.md" if args.quick else ROOT / "docs" / "benchmarks.md"
    )
    raise_nofile()
    # The orchestrator itself stays off the server CPU; taskset re-pins every child explicitly.
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    with tempfile.TemporaryDirectory(prefix="tlskit-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        bench.results.facts = machine_facts({"uvloop": _uvloop_version(), "tlskit": _tlskit_version()})
        bench.results.settings = {
            "idle connections (memory)": str(args.idle),
            "concurrent connections (scale)": str(args.scale),
            "handshakes": f"{args.s_time_procs} s_time processes x {args.seconds} s x {args.rounds} rounds per server",
            "bytes echoed per server": f"{args.stream_mib} MiB",
            "tunnels (tlskit tunnel, stunnel4)": f"{args.tunnel_idle} idle connections; {args.churn_procs} handshake "
            f"clients x {args.seconds} s x {args.rounds} rounds; {args.stream_mib} MiB echoed",
            "wait for other load to pass": f"up to {args.quiet_wait:g} s per run",
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command_line(argv),
        }
        results = bench.run()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results))
    print()
    print("\n".join(summary_lines(results)))
    print(f"\nwrote {out} ({results.total_seconds:.0f} s)")
    return 1 if results.errors else 0


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
