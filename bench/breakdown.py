"""The breakdown phase of bench/run.py: where a server's handshakes go, counted rather than timed.

- Instructions (valgrind ``callgrind``): the server runs under callgrind; ``tlskit bench`` (not under valgrind)
  makes a warm-up batch, then ``N`` full handshakes, then ``N`` full and ``N`` resumed ones (``--resume``); the
  bench dumps callgrind's counters after each batch (``callgrind_control --dump``), so start-up and warm-up stay
  in the first dump.  Full = second dump / N, resumed = (third - second dump) / N, both by group (:func:`group`).
- System calls (``strace -c -f``, attached to the running server after a warm-up): ``N`` full handshakes, then
  detached; calls per handshake by name.

Both are deterministic counts, so this phase is not disturbed by other load on the machine (but it is slow: the
server runs some fifty times slower under callgrind).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import callgrind
from harness import Proc, descendants, parse_strace_summary, pinned
from results import Breakdown, SyscallResult

if TYPE_CHECKING:
    from run import Bench

KINDS = ("tlskit", "node")
WARMUP = 20  # handshakes (and as many resumed) before the first counted batch
_DUMP_WAIT = 120.0  # seconds for callgrind to write a dump
_SETTLE = 1.0  # seconds for the server to finish the last connections of a batch (closing, logging)


# C code linked into Node's executable that is not OpenSSL, by function name prefix.
_NODE_C_OTHERS = ("uv_", "uv__", "ares_", "nghttp2_", "nghttp3_", "ngtcp2_", "llhttp_", "uvwasi_", "icu", "uprv_",
                  "u_", "deflate", "inflate", "crc32", "adler32", "Brotli", "simdutf", "ada::")  # fmt: skip
_C_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:'\d+)?$")  # a C function (callgrind marks recursion as name'2)


def group(obj: str, source: str, function: str = "???") -> str:
    """The part of a server an instruction ran in: a shared object, or the part of Node's executable.

    Node links OpenSSL, libuv and V8 into its executable.  Its debug information is not readable by this
    valgrind, but its symbols are: C++ names tell V8 (``v8::``, ``Builtins_``) and Node's own code (``node::``)
    apart, libuv's start with ``uv_``, and the remaining plain C functions of a TLS server are OpenSSL's (the
    other C libraries linked in are listed in ``_NODE_C_OTHERS``).  Code outside every object (``???``) is
    Node's JIT-compiled JavaScript.
    """
    name = Path(obj).name
    if obj in ("???", "?"):
        return "JIT-compiled code (no object)"
    if name.startswith("node"):
        return "node: " + _node_part(source, function)
    for pattern, label in (
        (r"^libcrypto", "libcrypto (OpenSSL)"),
        (r"^libssl", "libssl (OpenSSL)"),
        (r"^(libc|libm|libpthread|ld-linux)[.-]", "libc"),
        (r"^libpython", "libpython (the interpreter)"),
        (r"^loop\.cpython", "uvloop (libuv)"),
        (r"^_rust\.abi3", "cryptography's _rust (statically linked OpenSSL helpers)"),
        (r"^_ssl\.", "_ssl (CPython's ssl module)"),
        (r"^_asyncio\.", "_asyncio (CPython)"),
        (r"^libstdc\+\+", "libstdc++"),
    ):
        if re.match(pattern, name):
            return label
    return "other objects"


def _node_part(source: str, function: str) -> str:
    for part, label in (("deps/openssl", "OpenSSL"), ("deps/uv", "libuv"), ("deps/v8", "V8")):
        if part in source:
            return label
    if "v8::" in function or function.startswith("Builtins_"):
        return "V8"
    if "node::" in function or "::" in function:
        return "its own C++"
    if function.startswith(("uv_", "uv__")):
        return "libuv"
    if function.startswith(_NODE_C_OTHERS) or not _C_NAME.match(function):
        return "other code"
    return "OpenSSL"


def grouped(costs: Counter[tuple[str, str, str]], handshakes: int) -> dict[str, float]:
    """Instructions per handshake by :func:`group`, largest first, for the groups with any."""
    by: Counter[str] = Counter()
    for (obj, source, function), cost in costs.items():
        by[group(obj, source, function)] += cost
    return {name: cost / handshakes for name, cost in by.most_common() if cost > 0}


class BreakdownPhases:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.count = bench.args.breakdown_handshakes

    def batch(
        self, port: int, count: int, *, resume: bool, timeout: float, rate: float | None = None
    ) -> dict[str, object]:
        """``count`` handshake-only connections (and as many resumed ones) from ``tlskit bench`` on the load CPU;
        two at a time, or at ``rate`` per second (as many at a time as that takes)."""
        args = ["--connections", str(count), "--timeout", str(timeout)]
        args += ["--concurrency", "2"] if rate is None else ["--concurrency", "32", "--rate", f"{rate:g}"]
        report = self.bench.loadgen(port, self.bench.load_cpu, *args, *(["--resume"] if resume else []),
                                    timeout=timeout * 4 + count * 2, label="breakdown batch")  # fmt: skip
        for name in ("full", *(["resumed"] if resume else [])):
            phase = report[name]
            assert isinstance(phase, dict)
            if phase["completed"] != count:
                raise RuntimeError(f"breakdown: {phase['completed']} of {count} {name} handshakes completed")
            if name == "resumed" and phase["resumed"] != count:
                raise RuntimeError(f"breakdown: {phase['resumed']} of {count} resumption attempts resumed")
        return report

    # -- callgrind -------------------------------------------------------------------------------------------

    def callgrind(self, kind: str) -> None:
        bench = self.bench
        out = bench.work / f"callgrind-{kind}"
        out.mkdir(exist_ok=True)
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", "--dump-instr=no"]
        if kind == "node":
            wrapper.append("--smc-check=all-non-file")  # V8 rewrites the code it generated
        server, port = bench.start_server(kind, bench.server_cpu, wrapper=wrapper, ready_timeout=180)
        try:
            self.batch(port, WARMUP, resume=True, timeout=60)
            self.dump(server, out, 1)
            self.batch(port, self.count, resume=False, timeout=60)
            full = self.dump(server, out, 2)
            self.batch(port, self.count, resume=True, timeout=60)
            both = self.dump(server, out, 3)
        finally:
            bench.procs.stop(server)
        bench.results.breakdown[f"{kind} full"] = Breakdown(f"{kind} full", self.count, grouped(full, self.count))
        resumed: Counter[tuple[str, str, str]] = Counter(both)
        resumed.subtract(full)
        bench.results.breakdown[f"{kind} resumed"] = Breakdown(
            f"{kind} resumed", self.count, grouped(resumed, self.count)
        )

    def dump(self, server: Proc, out: Path, number: int) -> Counter[tuple[str, str, str]]:
        """Have callgrind write its counters (and zero them); the counts since the previous dump."""
        time.sleep(_SETTLE)
        subprocess.run(
            ["callgrind_control", f"--dump=batch{number}", str(server.pid)],
            capture_output=True, text=True, timeout=_DUMP_WAIT, check=True,
        )  # fmt: skip
        path = out / f"cg.{server.pid}.{number}"
        deadline = time.monotonic() + _DUMP_WAIT
        while not (path.exists() and _complete(path.read_text(errors="replace"))):
            if time.monotonic() > deadline:
                raise RuntimeError(f"callgrind wrote no dump {path.name}")
            time.sleep(0.2)
        return callgrind.read(path)

    # -- strace ----------------------------------------------------------------------------------------------

    def syscalls(self, kind: str, workers: int = 0) -> None:
        """System calls per handshake of server ``kind`` (all its processes); with ``workers``, ``tlskit serve
        --workers N`` at the workers phase's offered load, so one and two workers see the same traffic."""
        bench = self.bench
        extra = ["--workers", str(workers)] if workers else []
        rate = bench.results.workers_rate if workers else None
        name = f"{kind} --workers {workers}" if workers else kind
        server, port = bench.start_server(kind, bench.server_cpu, extra)
        log = bench.work / f"strace-{kind}-{workers}.txt"
        try:
            self.batch(port, WARMUP * 5, resume=False, timeout=30, rate=rate)
            attach = [arg for pid in descendants(server.pid) for arg in ("-p", str(pid))]
            argv = pinned(["strace", "-c", "-f", "-o", str(log), *attach], bench.load_cpu)
            bench.note_command("breakdown: system calls of the server (every process of it)", argv)
            tracer = bench.procs.spawn("strace", argv, stdin_stops=False)
            try:
                self.wait_attached(tracer)
                self.batch(port, self.count, resume=False, timeout=30, rate=rate)
                time.sleep(_SETTLE)
            finally:
                if tracer.popen.poll() is None:
                    os.kill(tracer.pid, signal.SIGINT)  # strace detaches and writes its table
                    tracer.popen.wait(30)
                bench.procs.stop(tracer)
        finally:
            bench.procs.stop(server)
        calls = parse_strace_summary(log.read_text())
        bench.results.syscalls[name] = SyscallResult(
            name, self.count, {call: n / self.count for call, n in sorted(calls.items(), key=lambda kv: -kv[1])}
        )

    @staticmethod
    def wait_attached(tracer: Proc) -> None:
        """strace says ``Process N attached`` on stderr once it traces; the load must not start before."""
        deadline = time.monotonic() + 10
        while "attached" not in tracer.stderr_tail():
            if time.monotonic() > deadline or tracer.popen.poll() is not None:
                raise RuntimeError(f"strace did not attach: {tracer.stderr_tail()}")
            time.sleep(0.05)
        time.sleep(0.3)  # every thread of the process (Node's) is attached


def _complete(text: str) -> bool:
    """A dump is written once its ``totals:`` line is."""
    return "\ntotals:" in text


def run_phases(bench: Bench) -> None:
    phases = BreakdownPhases(bench)
    for what, measure in (("instructions", phases.callgrind), ("system calls", phases.syscalls)):
        for kind in KINDS:
            if kind in bench.servers:
                bench.run_phase(
                    f"breakdown: {what} {kind}",
                    lambda measure=measure, kind=kind: measure(kind),  # type: ignore[misc]
                    timed=False,
                )
    if bench.results.workers_rate:  # one and two workers at the workers phase's offered load
        for workers in (1, 2):
            bench.run_phase(
                f"breakdown: system calls tlskit --workers {workers}",
                lambda workers=workers: phases.syscalls("tlskit", workers),  # type: ignore[misc]
                timed=False,
            )
