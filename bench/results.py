"""Result records of one bench run (frozen dataclasses), with the derived figures the report shows."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness import Memory

GIB = 1024**3


@dataclass(frozen=True)
class ServerKind:
    """One server under test: a key, a label for tables, and how to start it (before pinning)."""

    key: str
    label: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Probe:
    """What ``openssl s_client -brief`` negotiated with a server."""

    kind: str
    protocol: str
    cipher: str
    temp_key: str


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
    """Full TLS 1.3 handshakes by ``openssl s_time -new`` processes, and the server CPU time they cost."""

    kind: str
    processes: int
    handshakes: int
    wall_seconds: float
    server_user_seconds: float
    server_sys_seconds: float
    client_cpu_seconds: float
    per_process_cpu: tuple[float, ...] = ()  # with workers: CPU seconds of each server process

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
        )

    @property
    def rate(self) -> float:
        return self.handshakes / self.wall_seconds

    @property
    def server_utilization(self) -> float:
        """Server CPU seconds per wall second (1.0 = one core saturated)."""
        return self.server_cpu_seconds / self.wall_seconds


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


@dataclass
class Results:
    """Everything one run measured, plus the exact commands and any phase that failed."""

    facts: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (what, command line), each variant once
    probes: dict[str, Probe] = field(default_factory=dict)
    memory: dict[str, MemoryResult] = field(default_factory=dict)
    handshakes: dict[str, HandshakeResult] = field(default_factory=dict)
    streams: dict[str, StreamResult] = field(default_factory=dict)
    scale: dict[str, ScaleResult] = field(default_factory=dict)
    workers: dict[int, HandshakeResult] = field(default_factory=dict)
    tunnel_memory: dict[str, MemoryResult] = field(default_factory=dict)
    """``tlskit tunnel`` and stunnel4: tunnel memory per idle tunnelled connection (bench/tunnel_bench.py)."""
    tunnel_handshakes: dict[str, HandshakeResult] = field(default_factory=dict)
    tunnel_streams: dict[str, StreamResult] = field(default_factory=dict)
    split: dict[str, float] = field(default_factory=dict)
    """In-process server-side µs per handshake by bench/handshake_micro.py variant (median of its rounds)."""
    errors: dict[str, str] = field(default_factory=dict)
    foreign: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per phase: (wall seconds, CPU seconds used on the machine by processes the bench did not start)."""
    total_seconds: float = 0.0
