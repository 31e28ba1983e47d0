"""Process and measurement helpers for bench/run.py: spawning pinned processes, reading /proc, parsing output.

Everything here is plain functions over text or pids so the parsing can be smoke-tested
(tests/test_bench_smoke.py) without running a benchmark.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import re
import resource
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PYTHON = sys.executable
TLSKIT = str(Path(PYTHON).with_name("tlskit"))  # the console script of this install: what users run
CLK_TCK = os.sysconf("SC_CLK_TCK")

# -- parsing -------------------------------------------------------------------------------------------------

_S_TIME_RE = re.compile(r"^(\d+) connections in ([\d.]+)s;", re.MULTILINE)
_READY_RE = re.compile(r"^READY (\d+)$")
_LISTENING_RE = re.compile(r"^serve: listening on 127\.0\.0\.1:(\d+)$", re.MULTILINE)
# ``openssl s_client -msg``: one line per handshake message received ("<<<") or sent (">>>").
_TICKET_RE = re.compile(r"^<<< TLS 1\.3, Handshake \[length [0-9a-f]+\], NewSessionTicket$", re.MULTILINE)
_VERSION_RE = re.compile(r"\b(\d+\.\d+\.\d+[a-z]?)\b")


def parse_s_time(text: str) -> int:
    """Handshakes counted by ``openssl s_time``: the N of its "N connections in X.XXs; ..." summary line.

    Raises ValueError when the summary is missing (s_time failed to connect at all).
    """
    match = _S_TIME_RE.search(text)
    if match is None:
        raise ValueError(f"no s_time summary in output: {text[-300:]!r}")
    return int(match.group(1))


def parse_ticket_count(msg_output: str) -> int:
    """NewSessionTicket messages received, from the ``-msg`` trace of ``openssl s_client`` (decrypted records)."""
    return len(_TICKET_RE.findall(msg_output))


def parse_brief(text: str, name: str) -> str:
    """The value of a ``Name: value`` line of ``openssl s_client -brief`` (``?`` when missing)."""
    match = re.search(rf"^{re.escape(name)}:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "?"


def openssl_number(version: str) -> str:
    """``3.0.19`` from ``OpenSSL 3.0.19 27 Jan 2026`` or ``3.0.19+quic``; the text itself if it has none."""
    match = _VERSION_RE.search(version)
    return match.group(1) if match else version


def parse_libssl(maps: str) -> str:
    """The libssl file mapped in a process (from ``/proc/PID/maps``); empty when none is."""
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
        if re.search(r"/libssl[^/]*\.so", path):
            return path.strip()
    return ""


def parse_ready(line: str) -> int:
    """The port of a server's ``READY <port>`` line."""
    match = _READY_RE.match(line.strip())
    if match is None:
        raise ValueError(f"expected 'READY <port>', got {line!r}")
    return int(match.group(1))


def parse_listening(log: str) -> int | None:
    """The port of ``tlskit serve``'s ``serve: listening on 127.0.0.1:PORT`` log line (None before it is written)."""
    match = _LISTENING_RE.search(log)
    return int(match.group(1)) if match else None


def parse_strace_summary(text: str) -> dict[str, int]:
    """Calls per system call from the table ``strace -c`` writes (``% time  seconds  usecs/call  calls  errors
    syscall``; the errors column may be empty)."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) in (5, 6) and re.fullmatch(r"[\d.]+", fields[0]) and fields[-1] != "total":
            calls[fields[-1]] = calls.get(fields[-1], 0) + int(fields[3])
    return calls


def parse_context_switches(status: str) -> tuple[int, int]:
    """(voluntary, involuntary) context switches from a /proc/PID/status text: times the process slept and was
    woken, and times the scheduler took the CPU from it for another process."""
    counts = []
    for name in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
        match = re.search(rf"^{name}:\s+(\d+)$", status, re.MULTILINE)
        counts.append(int(match.group(1)) if match else 0)
    return counts[0], counts[1]


def parse_stat_times(stat: str) -> tuple[float, float]:
    """(utime, stime) in seconds from a ``/proc/PID/stat`` line.

    The command name (field 2) is in parentheses and may contain spaces or parentheses, so fields are counted
    from the last ``)``: utime and stime are fields 14 and 15 of the line.
    """
    rest = stat[stat.rindex(")") + 2 :].split()
    return int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK


def parse_stat_cpu(stat: str) -> float:
    """utime + stime in seconds from a ``/proc/PID/stat`` line."""
    return sum(parse_stat_times(stat))


def parse_stat_ppid(stat: str) -> int:
    """The parent pid (field 4) of a ``/proc/PID/stat`` line."""
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def parse_kib(text: str, key: str) -> int:
    """The ``key:  N kB`` value of /proc/PID/status or smaps_rollup, in KiB."""
    match = re.search(rf"^{re.escape(key)}:\s+(\d+) kB$", text, re.MULTILINE)
    if match is None:
        raise ValueError(f"{key} not found")
    return int(match.group(1))


# -- /proc ---------------------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and all its live descendants (worker processes included)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        children.setdefault(parse_stat_ppid(stat), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def mapped_libssl(pid: int) -> str:
    """The libssl file a live process has mapped; empty when it has none (OpenSSL linked into the binary)."""
    return parse_libssl(Path(f"/proc/{pid}/maps").read_text())


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a live process; (0, 0) if it is gone."""
    try:
        return parse_stat_times(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return 0.0, 0.0


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a live process so far ((0, 0) if it is gone)."""
    try:
        return parse_context_switches(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return 0, 0


Times = dict[int, tuple[float, float]]
"""(user, system) CPU seconds by process."""
Switches = dict[int, tuple[int, int]]
"""(voluntary, involuntary) context switches by process."""


@dataclass(frozen=True)
class Sample:
    """CPU times and context switches of some processes, each, at one moment (``time.time()``)."""

    at: float
    times: Times
    switches: Switches


def interpolate(samples: Sequence[Sample], at: float) -> tuple[Times, Switches]:
    """Each process's CPU seconds and context switches at ``at``, linearly between the samples around it.

    Before the first sample or after the last, the nearest one.  Context switches are those of the nearest sample.
    """
    if not samples:
        return {}, {}
    if at <= samples[0].at:
        return dict(samples[0].times), dict(samples[0].switches)
    for before, after in itertools.pairwise(samples):
        if before.at <= at <= after.at:
            share = (at - before.at) / (after.at - before.at) if after.at > before.at else 0.0
            times = {
                pid: (u + (after.times[pid][0] - u) * share, s + (after.times[pid][1] - s) * share)
                for pid, (u, s) in before.times.items()
                if pid in after.times
            }
            nearest = before if share < 0.5 else after
            return times, dict(nearest.switches)
    return dict(samples[-1].times), dict(samples[-1].switches)


class CpuSampler:
    """Samples the CPU times and context switches of ``pids`` every ``interval`` seconds in a thread (in ``with``).

    So the CPU a server used during one phase of a load generator's run can be read afterwards from the phase's
    start and end times (:meth:`between`).
    """

    def __init__(self, pids: Sequence[int], interval: float = 0.02) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        pids = self.pids
        self.samples.append(
            Sample(time.time(), {p: cpu_times(p) for p in pids}, {p: context_switches(p) for p in pids})
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> CpuSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def between(self, start: float, end: float) -> tuple[Times, Switches]:
        """Per process: CPU seconds and context switches from ``start`` to ``end``."""
        t0, w0 = interpolate(self.samples, start)
        t1, w1 = interpolate(self.samples, end)
        times = {pid: (t1[pid][0] - u, t1[pid][1] - s) for pid, (u, s) in t0.items() if pid in t1}
        return times, {pid: (w1[pid][0] - v, w1[pid][1] - i) for pid, (v, i) in w0.items() if pid in w1}


def cpu_seconds(pids: Sequence[int]) -> float:
    """Total user + system CPU time of live processes ``pids``."""
    return sum(sum(cpu_times(pid)) for pid in pids)


def parse_proc_stat_busy(stat: str) -> float:
    """Busy CPU seconds of the whole machine from /proc/stat: everything but idle and iowait (steal included)."""
    fields = [int(x) for x in stat.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def machine_busy_seconds() -> float:
    return parse_proc_stat_busy(Path("/proc/stat").read_text())


def wait_until_quiet(*, max_wait: float, window: float = 0.5, threshold: float = 0.1) -> float:
    """Wait (at most ``max_wait`` s) until the machine's busy CPU over ``window`` s is below ``threshold`` cores.

    Call it when the bench has no process of its own running, so all the load seen is someone else's.
    Returns the seconds waited.
    """
    start = time.monotonic()
    while True:
        before = machine_busy_seconds()
        time.sleep(window)
        if machine_busy_seconds() - before < threshold * window or time.monotonic() - start >= max_wait:
            return time.monotonic() - start


def children_cpu_seconds() -> float:
    """CPU seconds of every child this process has reaped so far (their descendants included)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of every child it has reaped (their descendants included)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass(frozen=True)
class Memory:
    """Resident memory of a process in KiB: VmRSS (status) and Pss (smaps_rollup)."""

    rss_kib: int
    pss_kib: int


def memory(pid: int) -> Memory:
    return Memory(
        rss_kib=parse_kib(Path(f"/proc/{pid}/status").read_text(), "VmRSS"),
        pss_kib=parse_kib(Path(f"/proc/{pid}/smaps_rollup").read_text(), "Pss"),
    )


# -- processes -----------------------------------------------------------------------------------------------


def raise_nofile() -> None:
    """Raise RLIMIT_NOFILE to the hard limit (``ulimit -n $(ulimit -Hn)``); used as ``preexec_fn`` too."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def nofile_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def pinned(argv: Sequence[str], cpus: str) -> list[str]:
    """``taskset -c CPUS argv...``."""
    return ["taskset", "-c", cpus, *argv]


@dataclass
class Proc:
    """A child process in its own session (so its workers are stopped with it), with line-based stdout."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[str] = field(repr=False)
    stderr_path: Path | None = None
    stdin_stops: bool = True  # False: the program ignores end of stdin (openssl s_server), so SIGTERM at once

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def readline(self, timeout: float) -> str:
        """One stdout line, or TimeoutError / RuntimeError (exited) after ``timeout`` seconds."""
        stdout = self.popen.stdout
        assert stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise TimeoutError(f"{self.name}: no output within {timeout:g} s")
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} exited (code {self.popen.wait(5)}): {self.stderr_tail()}")
        return line

    def expect(self, prefix: str, timeout: float) -> str:
        """Read lines until one starts with ``prefix`` (bounded by ``timeout`` overall)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line.strip()

    def read_until(self, marker: str, timeout: float) -> str:
        """Raw stdout until ``marker`` appears (TimeoutError / RuntimeError otherwise), read with ``os.read``.

        For a program that prints much at once (``s_client -msg``): the buffered :meth:`readline` would wait
        on the pipe while the lines are already in Python's buffer.  Do not mix both on one process.
        """
        stdout = self.popen.stdout
        assert stdout is not None
        data = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(stdout.fileno(), selectors.EVENT_READ)
            while marker.encode() not in data:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"{self.name}: no {marker!r} within {timeout:g} s: {data[-300:]!r}")
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited before {marker!r}: {self.stderr_tail()}")
                data += chunk
        return data.decode(errors="replace")

    def send(self, line: str) -> None:
        stdin = self.popen.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def stderr_tail(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")[-800:]

    def stop(self, timeout: float = 5.0) -> None:
        """Close stdin (the servers' and clients' signal to exit), then SIGTERM, then SIGKILL the session."""
        if self.popen.poll() is None:
            try:
                if self.popen.stdin is not None:
                    self.popen.stdin.close()
            except OSError:
                pass
            try:
                self.popen.wait(timeout if self.stdin_stops else 0.01)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self.popen.wait(timeout)
        self._signal(signal.SIGKILL)  # leftover workers of this session, if any

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)


class ProcessSet:
    """Every process the bench starts; :meth:`stop_all` runs in a ``finally`` so nothing outlives the bench."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def spawn(
        self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None, stdin_stops: bool = True
    ) -> Proc:
        err_path = self.log_dir / f"{name}-{len(self.procs)}.err"
        with err_path.open("w") as err:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
                preexec_fn=raise_nofile,  # noqa: PLW1509 - only setrlimit, before exec
                cwd=ROOT,
                env=env,
            )
        proc = Proc(name, list(argv), popen, err_path, stdin_stops)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=2.0)
        self.procs.clear()


def free_port() -> int:
    """A port on HOST the OS picked and nothing listens on, for servers that cannot report one (s_server, stunnel)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_for_port(proc: Proc, port: int, what: str, timeout: float = 10.0) -> None:
    """Wait until ``proc`` (a program that cannot report its port) accepts on ``port``; RuntimeError if it exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.popen.poll() is not None:
                raise RuntimeError(f"{what} did not start: {proc.stderr_tail()}") from None
            time.sleep(0.05)


def wait_for_log_port(proc: Proc, what: str, timeout: float = 20.0) -> int:
    """Wait until ``tlskit serve`` (``proc``, its log in ``proc.stderr_path``) says where it listens; its port."""
    deadline = time.monotonic() + timeout
    while True:
        text = proc.stderr_path.read_text(errors="replace") if proc.stderr_path else ""
        port = parse_listening(text)
        if port is not None:
            return port
        if time.monotonic() > deadline or proc.popen.poll() is not None:
            raise RuntimeError(f"{what} did not start: {proc.stderr_tail()}")
        time.sleep(0.05)


def wait_all(procs: Sequence[Proc], timeout: float) -> list[str]:
    """Wait for ``procs`` to exit (bounded); return their stdout texts."""
    deadline = time.monotonic() + timeout
    outputs = []
    for proc in procs:
        try:
            out, _ = proc.popen.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"{proc.name} still running after {timeout:g} s") from exc
        outputs.append(out)
    return outputs


# -- machine facts -------------------------------------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


def _compiler_flags() -> str:
    """The optimisation and hardening flags the system libcrypto was built with (``openssl version -a``)."""
    try:
        out = subprocess.run(["openssl", "version", "-a"], capture_output=True, text=True, timeout=10, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    match = re.search(r"^compiler: (.+)$", out.stdout, re.MULTILINE)
    if match is None:
        return "?"
    flags = [f for f in match.group(1).split() if re.match(r"-O\d|-f(zero-call|stack-protector|cf-)|-D_FORTIFY", f)]
    return " ".join(flags) or "?"


def machine_facts(extra: dict[str, str] | None = None) -> dict[str, str]:
    """CPU, memory, kernel and tool versions, for the report."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    import ssl

    facts = {
        "CPU": f"{model.group(1) if model else '?'} x {os.cpu_count()}",
        "Memory": f"{parse_kib(meminfo, 'MemTotal') // 1024} MiB",
        "Kernel": platform.release(),
        "Python": f"{platform.python_version()} ({ssl.OPENSSL_VERSION})",
        "Node": _first_line(["node", "-p", "process.version + ' (OpenSSL ' + process.versions.openssl + ')'"]),
        "openssl CLI": _first_line(["openssl", "version"]),
        "system OpenSSL build": _compiler_flags(),
        "RLIMIT_NOFILE (hard)": str(nofile_limit()),
    }
    facts.update(extra or {})
    return facts


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
