"""Result records of one bench run (frozen dataclasses), with the derived figures the report shows.

A run is saved as JSON (:func:`to_json`, ``docs/benchmarks.json``) and the report is rendered from what
:func:`from_json` reads back, so the committed document can be regenerated from the committed data.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness import Memory

GIB = 1024**3


@dataclass(frozen=True)
class ServerKind:
    """One server under test: a key, a label for tables, and how to start it (before pinning).

    ``ready``: where it says its port: ``stdout`` (a ``READY <port>`` line) or ``log`` (``tlskit serve``'s
    ``listening on`` line in its log file).  ``collects``: it runs a full garbage collection when sent ``gc``.
    ``stdin_stops``: it exits at the end of its stdin (else it is sent SIGTERM).
    """

    key: str
    label: str
    argv: tuple[str, ...]
    ready: str = "stdout"
    collects: bool = True
    stdin_stops: bool = True


@dataclass(frozen=True)
class Probe:
    """One full handshake with a server by ``openssl s_client -msg -brief``: what it negotiated and sent.

    ``tickets`` counts the NewSessionTicket messages the server sent after the handshake (read before the
    echo of a first line of data, so every ticket of the handshake is in); ``libssl`` is the libssl file mapped
    in the server process (``/proc/PID/maps``), empty when none is (OpenSSL built into the executable).
    """

    kind: str
    protocol: str
    cipher: str
    temp_key: str
    tickets: int
    libssl: str
    ticket_setting: str  # how the bench set the server's ticket count


@dataclass(frozen=True)
class SplitResult:
    """In-process server-side µs per handshake of one ``bench/handshake_micro.py`` variant, one per round.

    ``num_tickets`` is the variant's ``SSLContext.num_tickets``; ``tickets_sent`` the records its server wrote
    after the client's Finished, counted with tlskit's record parser.
    """

    variant: str
    num_tickets: int
    tickets_sent: int
    rounds_us: tuple[float, ...]

    @property
    def median_us(self) -> float:
        return statistics.median(self.rounds_us)

    @property
    def spread_us(self) -> float:
        """Highest minus lowest round: how far apart repeated measurements of the same thing landed."""
        return max(self.rounds_us) - min(self.rounds_us)


@dataclass(frozen=True)
class MemoryResult:
    """Server memory before and after ``opened`` idle TLS connections."""

    kind: str
    opened: int
    failed: int
    open_seconds: float
    before: Memory
    after: Memory

    @property
    def rss_per_conn_kib(self) -> float:
        return (self.after.rss_kib - self.before.rss_kib) / self.opened

    @property
    def pss_per_conn_kib(self) -> float:
        return (self.after.pss_kib - self.before.pss_kib) / self.opened


@dataclass(frozen=True)
class HandshakeResult:
    """TLS 1.3 handshakes by a load generator, and the server CPU time they cost.

    ``processes`` is the load generator's parallelism: ``tlskit bench --concurrency`` (connections at a time, one
    process), or the number of client processes (the tunnel phase).  ``resumed`` counts the handshakes the load
    generator saw resume (-1 where it cannot tell).  ``per_process_cpu``, ``per_process_wakeups`` (voluntary
    context switches: the process slept, in epoll mostly, and was woken) and ``per_process_preempted`` (involuntary
    ones: the scheduler gave its CPU to another process) are per server process, the parent first.
    """

    kind: str
    processes: int
    handshakes: int
    wall_seconds: float
    server_user_seconds: float
    server_sys_seconds: float
    client_cpu_seconds: float
    per_process_cpu: tuple[float, ...] = ()
    resumed: int = -1
    per_process_wakeups: tuple[int, ...] = ()
    per_process_preempted: tuple[int, ...] = ()

    @property
    def server_cpu_seconds(self) -> float:
        return self.server_user_seconds + self.server_sys_seconds

    @property
    def cpu_per_handshake_us(self) -> float:
        return self.server_cpu_seconds / self.handshakes * 1e6

    @property
    def user_per_handshake_us(self) -> float:
        return self.server_user_seconds / self.handshakes * 1e6

    @property
    def sys_per_handshake_us(self) -> float:
        return self.server_sys_seconds / self.handshakes * 1e6

    def __add__(self, other: HandshakeResult) -> HandshakeResult:
        """Two rounds of the same server, counted together."""
        return HandshakeResult(
            self.kind,
            self.processes,
            self.handshakes + other.handshakes,
            self.wall_seconds + other.wall_seconds,
            self.server_user_seconds + other.server_user_seconds,
            self.server_sys_seconds + other.server_sys_seconds,
            self.client_cpu_seconds + other.client_cpu_seconds,
            tuple(a + b for a, b in zip(self.per_process_cpu, other.per_process_cpu, strict=False)),
            -1 if min(self.resumed, other.resumed) < 0 else self.resumed + other.resumed,
            tuple(a + b for a, b in zip(self.per_process_wakeups, other.per_process_wakeups, strict=False)),
            tuple(a + b for a, b in zip(self.per_process_preempted, other.per_process_preempted, strict=False)),
        )

    @property
    def rate(self) -> float:
        return self.handshakes / self.wall_seconds

    @property
    def all_resumed(self) -> bool:
        """Every handshake resumed, as the load generator saw it."""
        return self.resumed == self.handshakes > 0

    @property
    def wakeups_per_handshake(self) -> float:
        return sum(self.per_process_wakeups) / self.handshakes

    @property
    def preempted_per_handshake(self) -> float:
        return sum(self.per_process_preempted) / self.handshakes

    @property
    def server_utilization(self) -> float:
        """Server CPU seconds per wall second (1.0 = one core saturated)."""
        return self.server_cpu_seconds / self.wall_seconds


@dataclass(frozen=True)
class ClientResult:
    """A load generator alone on the load CPU: handshakes it completed and the CPU time it used for them.

    ``cpu_seconds`` is what the comparison uses: for ``tlskit bench`` the CPU time of its handshake phase (its own
    report, ``time.process_time``: user + system, the interpreter's start-up excluded), for ``openssl s_time`` its
    rusage (user + system of the whole process).  ``rusage_cpu_seconds`` is the whole process's rusage for both.
    """

    kind: str
    handshakes: int
    wall_seconds: float
    cpu_seconds: float
    rusage_cpu_seconds: float

    @property
    def per_cpu_second(self) -> float:
        return self.handshakes / self.cpu_seconds

    @property
    def cpu_per_handshake_us(self) -> float:
        return self.cpu_seconds / self.handshakes * 1e6

    def __add__(self, other: ClientResult) -> ClientResult:
        return ClientResult(
            self.kind,
            self.handshakes + other.handshakes,
            self.wall_seconds + other.wall_seconds,
            self.cpu_seconds + other.cpu_seconds,
            self.rusage_cpu_seconds + other.rusage_cpu_seconds,
        )


@dataclass(frozen=True)
class Breakdown:
    """Instructions a server executed per handshake (valgrind callgrind), by where they ran.

    ``by_group`` maps a group (a shared object, or for a binary with OpenSSL linked in, the part of it: see
    bench/breakdown.py) to instructions per handshake; ``handshakes`` is the batch the figures are divided by.
    """

    kind: str  # "tlskit full", "node resumed", ...
    handshakes: int
    by_group: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.by_group.values())


@dataclass(frozen=True)
class SyscallResult:
    """System calls a server made per handshake (``strace -c -f``, attached after a warm-up), by name."""

    kind: str
    handshakes: int
    per_handshake: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.per_handshake.values())


@dataclass(frozen=True)
class StreamResult:
    """Bytes echoed through one connection, and the server CPU time it cost."""

    kind: str
    echoed: int
    seconds: float
    server_cpu_seconds: float
    client_cpu_seconds: float
    negotiated: str

    @property
    def cpu_per_gib(self) -> float:
        return self.server_cpu_seconds / (self.echoed / GIB)

    def __add__(self, other: StreamResult) -> StreamResult:
        """Two rounds of the same server, counted together."""
        return StreamResult(
            self.kind,
            self.echoed + other.echoed,
            self.seconds + other.seconds,
            self.server_cpu_seconds + other.server_cpu_seconds,
            self.client_cpu_seconds + other.client_cpu_seconds,
            self.negotiated,
        )

    @property
    def mib_per_s(self) -> float:
        return self.echoed / self.seconds / 2**20


@dataclass(frozen=True)
class ScaleResult:
    """One server process holding ``target`` idle connections, then serving fresh ones."""

    kind: str
    target: int
    opened: int
    failed: int
    open_seconds: float
    before: Memory
    after: Memory
    fresh_ok: int
    fresh_tried: int
    fresh_seconds: tuple[float, ...]

    @property
    def passed(self) -> bool:
        return self.opened >= self.target and self.fresh_ok == self.fresh_tried > 0

    @property
    def rss_per_conn_kib(self) -> float:
        return (self.after.rss_kib - self.before.rss_kib) / max(1, self.opened)


@dataclass(frozen=True)
class Settings:
    """How the run was made: every count, duration, CPU and threshold the report mentions."""

    date: str = "?"
    command: str = "bench/run.py"
    data_file: str = "benchmarks.json"
    cpus: int = 0
    server_cpu: str = "0"
    load_cpu: str = "1"
    idle: int = 0
    idle_procs: int = 0
    scale: int = 0
    scale_procs: int = 0
    fresh: int = 0
    warmup_conns: int = 0
    handshake_seconds: int = 0  # tlskit bench --duration: seconds of full, then of resumed handshakes
    bench_concurrency: int = 0  # tlskit bench --concurrency in the handshake and load generator phases
    rounds: int = 0
    client_seconds: int = 0  # seconds per load generator and round, alone on the load CPU
    client_rounds: int = 0
    workers_seconds: int = 0  # per configuration and round
    workers_rounds: int = 0
    workers_concurrency: int = 0
    workers_load: float = 0.0  # the offered load as a share of one core's capacity
    breakdown_handshakes: int = 0  # handshakes per counted batch under callgrind and strace
    breakdown_warmup: int = 0
    scaling_cores: tuple[int, ...] = ()  # the core counts the scaling model is computed for
    sample_ms: float = 0.0  # how often the server's CPU times are read while a load generator runs
    stream_mib: int = 0  # per server and round
    stream_rounds: int = 0
    stream_warmup_mib: int = 0
    stream_chunk_kib: int = 0
    split_rounds: int = 0
    split_count: int = 0
    quiet_wait: float = 0.0
    quiet_phase_max: float = 0.0
    quiet_threshold: float = 0.0
    saturated: float = 0.0  # server CPU seconds per wall second and worker from which a server counts as saturated
    noisy_phase: float = 0.0  # other load (CPU per wall second) above which a phase is flagged noisy
    certificate: str = "?"
    node_config: str = ""  # the OpenSSL config file given to Node (NODE_CNF), as written
    tlskit_loop: str = "?"  # tlskit's default event loop (tlskit.net.server.loop_factory) in this install
    stdlib_read_buffer: int = 0  # asyncio.sslproto.SSLProtocol.max_size of this Python
    tunnel_idle: int = 0  # idle tunnelled connections per tunnel (tunnel phase)
    churn_procs: int = 0  # handshake client processes per tunnel (tunnel phase)


@dataclass
class Results:
    """Everything one run measured, plus the exact commands and any phase that failed."""

    facts: dict[str, str] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    targets: dict[str, float] = field(default_factory=dict)
    """tlskit/Node ratio limits by metric (``memory``, ``handshake``, ``gib``; ``workers``: a minimum)."""
    tickets_configured: int = -1
    """``num_tickets`` of tlskit's ``server_context``: the count Node and ``openssl s_server`` are given too."""
    openssl: dict[str, str] = field(default_factory=dict)
    """OpenSSL version strings read at run time: ``python`` (ssl.OPENSSL_VERSION), ``node``
    (process.versions.openssl), ``openssl`` (``openssl version``)."""
    commands: list[tuple[str, str]] = field(default_factory=list)  # (what, command line), each variant once
    probes: dict[str, Probe] = field(default_factory=dict)
    memory: dict[str, MemoryResult] = field(default_factory=dict)
    handshakes: dict[str, HandshakeResult] = field(default_factory=dict)
    streams: dict[str, StreamResult] = field(default_factory=dict)
    scale: dict[str, ScaleResult] = field(default_factory=dict)
    resumed: dict[str, HandshakeResult] = field(default_factory=dict)
    """Resumed TLS 1.3 handshakes, measured in the same ``tlskit bench --resume`` runs as ``handshakes``."""
    clients: dict[str, ClientResult] = field(default_factory=dict)
    """The load generators' own ceiling: ``tlskit bench`` and ``openssl s_time`` alone on the load CPU."""
    breakdown: dict[str, Breakdown] = field(default_factory=dict)
    syscalls: dict[str, SyscallResult] = field(default_factory=dict)
    workers: dict[str, HandshakeResult] = field(default_factory=dict)
    """Server CPU per handshake at a fixed offered load, by configuration (workers and CPUs)."""
    workers_rate: float = 0.0
    """The offered load of the workers phase, handshakes per second."""
    example: str = ""
    """The text report of one ``tlskit bench`` run (the README shows it)."""
    example_command: str = ""
    skipped: dict[str, str] = field(default_factory=dict)
    """Phases not run, and why (a missing tool)."""
    tunnel_memory: dict[str, MemoryResult] = field(default_factory=dict)
    """``tlskit tunnel`` and stunnel4: tunnel memory per idle tunnelled connection (bench/tunnel_bench.py)."""
    tunnel_handshakes: dict[str, HandshakeResult] = field(default_factory=dict)
    tunnel_streams: dict[str, StreamResult] = field(default_factory=dict)
    split: dict[str, SplitResult] = field(default_factory=dict)
    """In-process server-side handshakes by bench/handshake_micro.py variant."""
    errors: dict[str, str] = field(default_factory=dict)
    foreign: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per phase: (wall seconds, CPU seconds used on the machine by processes the bench did not start)."""
    total_seconds: float = 0.0

    def mismatches(self, expected: Sequence[str]) -> list[str]:
        """Why the servers ``expected`` did not all run with the same settings (empty: they did).

        Same protocol, cipher suite, key exchange group and session tickets per handshake, the ticket count
        being the one tlskit's ``server_context`` sets; and the same protocol and suite in the stream phase.
        """
        problems = [f"{key}: not probed" for key in expected if key not in self.probes]
        probes = [self.probes[key] for key in expected if key in self.probes]
        for name in ("protocol", "cipher", "temp_key", "tickets"):
            seen = {getattr(p, name) for p in probes}
            if len(seen) > 1:
                problems.append(f"{name} differs: " + ", ".join(f"{p.kind} {getattr(p, name)}" for p in probes))
        problems += [
            f"{p.kind} sent {p.tickets} session tickets, tlskit's server_context sets {self.tickets_configured}"
            for p in probes
            if p.tickets != self.tickets_configured
        ]
        streams = {s.negotiated for key, s in self.streams.items() if key in expected}
        if len(streams) > 1:
            problems.append(
                "the stream client negotiated " + ", ".join(f"{k} {s.negotiated}" for k, s in self.streams.items())
            )
        return problems


# -- JSON ------------------------------------------------------------------------------------------------------


def to_json(results: Results) -> str:
    """The run as JSON text (dataclasses as objects, tuples as lists, int keys as strings)."""
    return json.dumps(dataclasses.asdict(results), indent=1, ensure_ascii=False) + "\n"


def from_json(text: str) -> Results:
    """The :class:`Results` that :func:`to_json` wrote."""
    decoded = _decode(Results, json.loads(text))
    assert isinstance(decoded, Results)
    return decoded


def _decode(kind: Any, value: Any) -> Any:
    """``value`` (parsed JSON) as an instance of the type annotation ``kind``."""
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        return kind(
            **{f.name: _decode(hints[f.name], value[f.name]) for f in dataclasses.fields(kind) if f.name in value}
        )
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is dict:
        return {_decode(args[0], k): _decode(args[1], v) for k, v in value.items()}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value, strict=True))
    if origin is list:
        return [_decode(args[0], v) for v in value]
    if origin in (typing.Union, types.UnionType):
        return None if value is None else _decode(next(a for a in args if a is not type(None)), value)
    if kind is float:
        return float(value)
    return kind(value)
