"""``tlskit bench``: how many milliseconds does TLS cost?  A TLS load generator and latency meter.

For each connection it stamps when the TCP connection was made, when the handshake finished and when the first
byte of the answer to a small request arrived, and it counts the client's own CPU.  Phases, each optional but the
first: full handshakes; resumed handshakes (TLS 1.3 tickets or TLS 1.2 sessions, whichever was negotiated); a
bulk transfer through an echo service; and the same new connections and transfer against a plaintext port of the
same service, so the report can say in one sentence what TLS adds.

The client is tlskit's own transport (:class:`~tlskit.net.connection.TLSConnection`, uvloop), driving up to
``concurrency`` connections at once from one event loop, so one client core goes a long way; each phase reports
handshakes per second and the client CPU it took, which ``make bench`` compares with ``openssl s_time``.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InputError, NetworkError, TLSError
from ..net.connection import TLSConnection
from ..net.explain import network_error
from ..net.policy import PeerPolicy, validate_policy
from ..pki.problems import Code

__all__ = ["BenchReport", "BenchSpec", "Bulk", "Percentiles", "Phase", "Progress", "run_bench"]

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``; ``total`` is 0 when a phase runs for a duration instead of a count."""

_CHUNK = 64 * 1024
_TICKET_WAIT = 1.0  # seconds to wait for a TLS 1.3 session ticket after a handshake-only connection
_TICKET_POLL = 0.001


@dataclass(frozen=True, kw_only=True)
class BenchSpec:
    """What to measure.  Keyword-only, validated when made (bad values raise :class:`InputError`)."""

    host: str
    port: int
    context: ssl.SSLContext
    server_name: str | None = None
    policy: PeerPolicy | None = None
    connections: int = 1000
    """Connections per phase (ignored when ``duration`` is set)."""
    concurrency: int = 8
    duration: float | None = None
    """Seconds per phase instead of a number of connections."""
    rate: float | None = None
    """Start at most this many connections per second (a fixed offered load, as long as ``concurrency`` allows
    it), instead of each new one as soon as one finishes."""
    resume: bool = False
    bulk_bytes: int = 0
    """Bytes sent through the service and expected back (an echo service), 0 for no bulk transfer."""
    plain_port: int | None = None
    request: bytes = b"GET / HTTP/1.0\r\n\r\n"
    """Sent on every connection; the time to the first byte of the answer is measured.  Empty: each connection
    closes right after its handshake (as ``openssl s_time`` does), and no first byte is timed."""
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.context, ssl.SSLContext) or self.context.protocol == ssl.PROTOCOL_TLS_SERVER:
            raise InputError("context must be a client ssl.SSLContext", fix="build it with tlskit.client_context()")
        if not 0 < self.port < 65536 or (self.plain_port is not None and not 0 < self.plain_port < 65536):
            raise InputError("ports must be from 1 to 65535", fix="give the port the service listens on")
        if self.connections < 1 or self.concurrency < 1:
            raise InputError("connections= and concurrency= must be at least 1", fix="give positive numbers")
        if self.duration is not None and self.duration <= 0:
            raise InputError("duration= must be positive", fix="give a number of seconds, such as 10")
        if self.rate is not None and self.rate <= 0:
            raise InputError("rate= must be positive", fix="give connections per second, such as 200")
        if self.bulk_bytes < 0:
            raise InputError("bulk_bytes= must be 0 (no transfer) or more", fix="give a number of bytes")
        if self.timeout <= 0:
            raise InputError("timeout= must be positive", fix="give a number of seconds, such as 10")
        if not self.request and self.bulk_bytes:
            raise InputError("bulk_bytes= needs a service that answers", fix="give request= too")
        validate_policy(self.policy, self.context)


@dataclass(frozen=True)
class Percentiles:
    """A latency distribution in milliseconds (nearest-rank percentiles)."""

    count: int
    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Percentiles | None:
        if not seconds:
            return None
        ms = sorted(s * 1000.0 for s in seconds)

        def rank(p: float) -> float:
            return ms[max(0, math.ceil(p / 100 * len(ms)) - 1)]

        return cls(len(ms), rank(50), rank(90), rank(99), sum(ms) / len(ms), ms[0], ms[-1])


@dataclass(frozen=True)
class Phase:
    """One phase of new connections: latencies, rate, failures and the client's CPU."""

    name: str
    attempted: int
    completed: int
    failures: dict[str, int]
    tcp_connect: Percentiles | None
    handshake: Percentiles | None
    first_byte: Percentiles | None
    """From the start of the connection to the first byte of the answer."""
    resumed: int
    wall_seconds: float
    client_cpu_seconds: float
    started_at: float = 0.0
    """When the phase began and ended (``time.time()``), so measurements taken elsewhere (a server's CPU time)
    can be matched to one phase."""
    ended_at: float = 0.0

    @property
    def per_second(self) -> float:
        """Completed connections (handshakes, for TLS) per second of wall time."""
        return self.completed / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def per_client_cpu_second(self) -> float:
        """Completed connections per second of the client's CPU: its ceiling per core."""
        return self.completed / self.client_cpu_seconds if self.client_cpu_seconds else 0.0


@dataclass(frozen=True)
class Bulk:
    """One transfer of ``bytes`` through an echo service and back."""

    name: str
    bytes: int
    seconds: float
    client_cpu_seconds: float

    @property
    def mib_per_second(self) -> float:
        return self.bytes / 2**20 / self.seconds if self.seconds else 0.0

    @property
    def cpu_seconds_per_gib(self) -> float:
        return self.client_cpu_seconds * 2**30 / self.bytes if self.bytes else 0.0


@dataclass(frozen=True)
class BenchReport:
    """Everything measured, and what TLS adds in one sentence (:meth:`summary`)."""

    target: str
    protocol: str | None
    cipher: str | None
    concurrency: int
    full: Phase
    resumed: Phase | None = None
    bulk: Bulk | None = None
    plain: Phase | None = None
    plain_bulk: Bulk | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """What TLS costs here, computed from this run: p50 times to the first byte of the answer (or, without a
        request, to the end of the handshake), and client CPU per GiB."""
        what = "to its first byte" if self.full.first_byte is not None else "to finish its handshake"
        full = _ready(self.full)
        if full is None:
            return f"no TLS connection to {self.target} completed"
        resumed = _ready(self.resumed) if self.resumed is not None else None
        plain = _ready(self.plain) if self.plain is not None else None
        if plain is not None:
            parts = [f"a new TLS connection costs {full - plain:.2f} ms more than a plaintext one ({what})"]
            if resumed is not None:
                parts.append(f"a resumed one {resumed - plain:.2f} ms")
        else:
            parts = [f"a new TLS connection takes {full:.2f} ms {what}"]
            if resumed is not None:
                parts.append(f"a resumed one {resumed:.2f} ms")
        if self.bulk is not None:
            if self.plain_bulk is not None:
                extra = self.bulk.cpu_seconds_per_gib - self.plain_bulk.cpu_seconds_per_gib
                parts.append(f"1 GiB costs {extra:.2f} s of client CPU more")
            else:
                parts.append(f"1 GiB costs {self.bulk.cpu_seconds_per_gib:.2f} s of client CPU")
        text = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
        return f"{text} (p50, {self.target}, {self.protocol or 'TLS'})."

    def to_json(self) -> dict[str, Any]:
        """The whole report as JSON-able data, with the rates and the sentence."""
        out = asdict(self)
        for key in ("full", "resumed", "plain"):
            phase = getattr(self, key)
            if phase is not None:
                out[key]["per_second"] = phase.per_second
                out[key]["per_client_cpu_second"] = phase.per_client_cpu_second
        for key in ("bulk", "plain_bulk"):
            bulk = getattr(self, key)
            if bulk is not None:
                out[key]["mib_per_second"] = bulk.mib_per_second
                out[key]["cpu_seconds_per_gib"] = bulk.cpu_seconds_per_gib
        out["summary"] = self.summary()
        return out


def _ready(phase: Phase) -> float | None:
    """p50 ms until a connection of ``phase`` was useful: its first byte, else the end of its handshake/connect."""
    if phase.first_byte is not None:
        return phase.first_byte.p50
    if phase.tcp_connect is None:
        return None
    return phase.tcp_connect.p50 + (phase.handshake.p50 if phase.handshake is not None else 0.0)


# --- one connection ----------------------------------------------------------------------------------------


class _Stamps:
    """The listener of one connection: when its TCP connection and its handshake completed."""

    __slots__ = ("connected", "handshaken")

    def __init__(self) -> None:
        self.connected = 0.0
        self.handshaken = 0.0

    def tls_connection_made(self, conn: TLSConnection) -> None:
        self.connected = time.perf_counter()

    def tls_handshake_done(self, conn: TLSConnection) -> None:
        self.handshaken = time.perf_counter()

    def tls_handshake_failed(self, conn: TLSConnection, error: TLSError) -> None:
        pass

    def tls_connection_lost(self, conn: TLSConnection) -> None:
        pass


class _PlainClient(asyncio.Protocol):
    """A plaintext connection: made, first byte, end."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.connected = 0.0
        self.first = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connected = time.perf_counter()
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.first.done():
            self.first.set_result(time.perf_counter())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.first.done():
            self.first.set_exception(exc or ConnectionResetError("the service closed before answering"))


@dataclass
class _Tally:
    """Samples of one phase, filled by the connections as they finish."""

    tcp: list[float] = field(default_factory=list)
    handshake: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    resumed: int = 0
    attempted: int = 0
    completed: int = 0
    protocol: str | None = None
    cipher: str | None = None

    def fail(self, exc: BaseException, deadline: _Deadline) -> None:
        """Count a failed attempt under its problem code; a cancellation that is not our deadline goes on."""
        if isinstance(exc, asyncio.CancelledError):
            if not deadline.expired():
                raise exc
            self.failures["timeout"] += 1
        elif isinstance(exc, TLSError):  # before OSError: a TLSError is an ssl.SSLError, an OSError
            self.failures[exc.code] += 1
        else:
            self.failures[type(exc).__name__] += 1


class _Deadline:
    """One worker's time limit per connection: cancels the worker's task when an attempt runs too long.

    Cheaper than ``asyncio.timeout()`` per connection (a context manager, a task lookup and, on Python 3.11, two
    ``getpid()`` system calls): one timer handle, armed and disarmed.
    """

    __slots__ = ("_fired", "_handle", "_loop", "_task", "_timeout")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._task = asyncio.current_task()
        self._timeout = timeout
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False

    def arm(self) -> None:
        self._handle = self._loop.call_later(self._timeout, self._fire)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self._task is not None:
            self._fired = True
            self._task.cancel()

    def expired(self) -> bool:
        """After a ``CancelledError``: True (and the cancellation withdrawn) if the time limit caused it."""
        if not self._fired:
            return False
        self._fired = False
        if self._task is not None:
            self._task.uncancel()
        return True


class _Runner:
    def __init__(self, spec: BenchSpec, progress: Progress | None) -> None:
        self.spec = spec
        self.progress = progress
        self.loop = asyncio.get_running_loop()
        self.session: ssl.SSLSession | None = None
        self.tickets_expected = True
        self.server_name = spec.server_name or spec.host

    async def tls_once(self, tally: _Tally, deadline: _Deadline, *, resume: bool) -> None:
        spec = self.spec
        stamps = _Stamps()
        session = self.session if resume else None
        conn = TLSConnection(
            spec.context, server_side=False, server_hostname=self.server_name, session=session,
            listener=stamps, policy=spec.policy, loop=self.loop,
        )  # fmt: skip
        start = time.perf_counter()
        keep = spec.resume and (resume or self.session is None)
        deadline.arm()
        try:
            await self.loop.create_connection(lambda: conn, spec.host, spec.port)
            await conn.wait_handshake()
            first = 0.0
            if spec.request:
                conn.write_nowait(spec.request)
                if not await conn.read():
                    raise ConnectionResetError("the service closed without answering")
                first = time.perf_counter()
            kept = await self._session_of(conn) if keep and not conn.session_reused else None
        except (asyncio.CancelledError, OSError) as exc:  # TLSError included
            tally.fail(exc, deadline)
            return
        finally:
            deadline.disarm()
            self._close(conn)
        tally.completed += 1
        tally.tcp.append(stamps.connected - start)
        tally.handshake.append(stamps.handshaken - stamps.connected)
        if first:
            tally.first.append(first - start)
        reused = conn.session_reused
        tally.resumed += reused
        if tally.protocol is None:
            tally.protocol, tally.cipher = conn.protocol, conn.cipher.standard_name if conn.cipher else None
        if kept is not None:
            # A session to resume later: taken from the first full handshakes, and again only when a resumption
            # failed (taking one copies it, certificates included: not free).
            self.session = kept

    async def _session_of(self, conn: TLSConnection) -> ssl.SSLSession | None:
        """The connection's session, once it can resume: TLS 1.3 tickets arrive after the handshake.

        With a request the ticket came before the answer; without one (handshake only) wait for it, briefly: a
        server that sends no ticket is waited for once, not on every connection.
        """
        session = conn.session
        if conn.protocol != "TLSv1.3" or not self.tickets_expected:
            return session
        waited = 0.0
        while (session is None or not session.has_ticket) and not conn.closed and waited < _TICKET_WAIT:
            await asyncio.sleep(_TICKET_POLL)
            waited += _TICKET_POLL
            session = conn.session
        if session is None or not session.has_ticket:
            self.tickets_expected = False
        return session

    @staticmethod
    def _close(conn: TLSConnection) -> None:
        # close_notify and FIN on the next turn of the loop, without waiting for the peer's (as s_time does).
        conn.start_close(linger=0.0)

    async def plain_once(self, tally: _Tally, deadline: _Deadline) -> None:
        spec = self.spec
        protocol = _PlainClient(self.loop)
        start = time.perf_counter()
        assert spec.plain_port is not None
        deadline.arm()
        try:
            transport, _ = await self.loop.create_connection(lambda: protocol, spec.host, spec.plain_port)
            try:
                first = 0.0
                if spec.request:
                    transport.write(spec.request)
                    first = await protocol.first
            finally:
                transport.close()
        except (asyncio.CancelledError, OSError) as exc:
            tally.fail(exc, deadline)
            return
        finally:
            deadline.disarm()
        tally.completed += 1
        tally.tcp.append(protocol.connected - start)
        if first:
            tally.first.append(first - start)

    async def phase(self, name: str, once: Callable[[_Tally, _Deadline], Awaitable[None]]) -> tuple[Phase, _Tally]:
        spec = self.spec
        tally = _Tally()
        total = 0 if spec.duration is not None else spec.connections
        deadline = None if spec.duration is None else time.perf_counter() + spec.duration
        done = 0
        rate = spec.rate
        started_at = time.time()
        cpu0, wall0 = time.process_time(), time.perf_counter()

        async def worker() -> None:
            nonlocal done
            timer = _Deadline(self.loop, spec.timeout)
            while deadline is not None or tally.attempted < spec.connections:
                slot = tally.attempted
                tally.attempted += 1  # claimed before any wait, so each worker waits for a slot of its own
                if rate is not None:  # connection N starts N / rate seconds into the phase, not before
                    wait = wall0 + slot / rate - time.perf_counter()
                    if wait > 0:
                        await asyncio.sleep(wait)
                if deadline is not None and time.perf_counter() >= deadline:
                    tally.attempted -= 1
                    return
                await once(tally, timer)
                done += 1
                if self.progress is not None:
                    self.progress(name, done, total)

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        completed = tally.completed
        phase = Phase(
            name=name,
            attempted=tally.attempted,
            completed=completed,
            failures=dict(tally.failures),
            tcp_connect=Percentiles.of(tally.tcp),
            handshake=Percentiles.of(tally.handshake),
            first_byte=Percentiles.of(tally.first),
            resumed=tally.resumed,
            wall_seconds=wall,
            client_cpu_seconds=cpu,
            started_at=started_at,
            ended_at=started_at + wall,
        )
        return phase, tally

    async def bulk(self, name: str, *, tls: bool) -> Bulk:
        """``bulk_bytes`` sent and read back on one connection, writing and reading at once.

        A service that cannot be reached, fails, closes or stops echoing raises a :class:`NetworkError` (or the
        :class:`TLSError` of a failed handshake) whose message starts with ``name``.
        """
        spec = self.spec
        size = spec.bulk_bytes
        read: Callable[[], Awaitable[bytes]]
        write: Callable[[bytes], Awaitable[None]]
        close: Callable[[], None]
        port = spec.port if tls else spec.plain_port
        assert port is not None
        conn: TLSConnection | None = None
        try:
            if tls:
                conn = TLSConnection(
                    spec.context, server_side=False, server_hostname=self.server_name, policy=spec.policy
                )
                await asyncio.wait_for(self.loop.create_connection(lambda: conn, spec.host, port), spec.timeout)
            else:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(spec.host, port), spec.timeout)
        except OSError as exc:  # TimeoutError included
            raise _connect_error(name, exc, spec.host, port) from exc
        if conn is not None:
            tls_conn = conn
            try:
                await asyncio.wait_for(tls_conn.wait_handshake(), spec.timeout)
            except TimeoutError as exc:
                self._close(tls_conn)
                raise _transfer_error(
                    name,
                    f"the TLS handshake did not finish within {spec.timeout:g} s",
                    code=Code.HANDSHAKE_TIMEOUT,
                    fix="check that the service speaks TLS on this port, or give a longer timeout=",
                ) from exc
            except BaseException:  # a TLSError already says what failed
                self._close(tls_conn)
                raise
            read, write = tls_conn.read, tls_conn.write

            def close() -> None:
                self._close(tls_conn)

        else:

            async def write(data: bytes) -> None:
                writer.write(data)
                await writer.drain()

            async def read() -> bytes:
                return await reader.read(256 * 1024)

            close = writer.close
        block = bytes(_CHUNK)
        cpu0, wall0 = time.process_time(), time.perf_counter()

        async def send() -> None:
            left = size
            while left > 0:
                await write(block if left >= _CHUNK else block[:left])
                left -= _CHUNK

        sender = asyncio.ensure_future(send())
        got = 0
        try:
            while got < size:
                try:
                    data = await asyncio.wait_for(read(), spec.timeout)
                except TimeoutError as exc:
                    if sender.done() and not sender.cancelled() and sender.exception() is not None:
                        await sender  # the sending failed: that is the error to report
                    raise _transfer_error(
                        name,
                        f"the service sent {got} of {size} bytes back within {spec.timeout:g} s",
                        code=Code.TIMEOUT,
                        fix="give bulk_bytes= only for a service that echoes what it receives, or a longer timeout=",
                    ) from exc
                if not data:
                    raise _transfer_error(
                        name,
                        f"the service closed after {got} of {size} bytes",
                        code=Code.CONNECTION_CLOSED,
                        fix="give bulk_bytes= only for a service that echoes what it receives",
                    )
                got += len(data)
            await sender
        except (TLSError, NetworkError):
            raise
        except OSError as exc:  # a reset, a broken pipe
            raise _transfer_error(
                name,
                f"the connection failed after {got} of {size} bytes came back ({exc.strerror or exc})",
                code=Code.CONNECTION_CLOSED,
                fix="check the service's log: it must echo what it receives",
            ) from exc
        finally:
            sender.cancel()
            close()
        return Bulk(name, size, time.perf_counter() - wall0, time.process_time() - cpu0)


def _transfer_error(name: str, message: str, *, code: Code, fix: str) -> NetworkError:
    return NetworkError(f"{name}: {message}", code=str(code), fix=fix)


def _connect_error(name: str, exc: OSError, host: str, port: int) -> NetworkError:
    """``exc`` in the words every tlskit client uses (:func:`~tlskit.net.explain.network_error`), after ``name``."""
    error = network_error(exc, action="connect", host=host, port=port)
    return type(error)(f"{name}: {error.message}", code=error.code, fix=error.fix, errno=error.errno)


async def run_bench(spec: BenchSpec, *, progress: Progress | None = None) -> BenchReport:
    """Run the phases ``spec`` asks for against a live service and return what was measured.

    Failed handshakes are counted by tlskit problem code (``untrusted_root``, ``client_cert_required``, ...),
    not raised; a service that cannot be reached at all still yields a report whose phases completed nothing.
    """
    runner = _Runner(spec, progress)
    full, tally = await runner.phase("full handshakes", lambda t, d: runner.tls_once(t, d, resume=False))
    notes = []
    resumed = None
    if spec.resume:
        if runner.session is None:
            notes.append("no session to resume: no full handshake completed, or the server sends no tickets")
        else:
            resumed, _ = await runner.phase("resumed handshakes", lambda t, d: runner.tls_once(t, d, resume=True))
            if resumed.resumed < resumed.completed:
                full_ones = resumed.completed - resumed.resumed
                notes.append(f"{full_ones} of {resumed.completed} resumption attempts got a full handshake")
    plain = None
    if spec.plain_port is not None:
        plain, _ = await runner.phase("plaintext connections", runner.plain_once)
    bulk = plain_bulk = None
    if spec.bulk_bytes and full.completed:
        bulk = await runner.bulk("TLS transfer", tls=True)
        if spec.plain_port is not None:
            plain_bulk = await runner.bulk("plaintext transfer", tls=False)
    return BenchReport(
        target=f"{spec.host}:{spec.port}",
        protocol=tally.protocol,
        cipher=tally.cipher,
        concurrency=spec.concurrency,
        full=full,
        resumed=resumed,
        bulk=bulk,
        plain=plain,
        plain_bulk=plain_bulk,
        notes=notes,
    )
