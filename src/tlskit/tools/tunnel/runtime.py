"""Running tunnels: :class:`ServerTunnel` (TLS in, plaintext out), :class:`ClientTunnel` (plaintext in, TLS
out) and :class:`TunnelGroup` (several of them in one process, with reload, drain and metrics).

Server mode is :func:`tlskit.net.server.start_server` with a handler that connects to the target and hands
both sides to a :class:`~tlskit.tools.tunnel.relay.Relay`: the peer policy is the server's (one check, after
every handshake, in every worker), so a refused client is closed before the handler runs and the target never
hears of it.  Client mode accepts plain connections, reads nothing from them until :func:`tlskit.net.client.connect`
has made and judged the TLS connection to the target (resuming the last session), then relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import InputError, NetworkError, TLSError, TlskitError
from ...net.client import connect
from ...net.explain import network_error
from ...net.policy import REFUSAL_CODES, PeerPolicy
from ...net.server import Server, _Refused, format_peer, start_server
from ...pki.names import common_name
from ...pki.problems import Code
from .events import ConnectionRecord, log, log_event, log_failure
from .metrics import MetricsServer, TunnelCounters, TunnelMetrics, start_metrics_server
from .proxy import CLIENT_CERT_CONN, CLIENT_CERT_SESS, CLIENT_SSL, SSLInfo, build
from .relay import Relay
from .spec import Endpoint, Mode, TunnelSpec

if TYPE_CHECKING:
    import datetime as dt

    from ...net.connection import TLSConnection

__all__ = ["ClientTunnel", "ServerTunnel", "Tunnel", "TunnelGroup", "proxy_header"]


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def proxy_header(conn: TLSConnection, version: int) -> bytes:
    """The PROXY protocol header for a client of a server tunnel: its address, and in v2 its TLS facts."""
    source, destination = conn.remote_address, conn.local_address
    if version == 1:
        return build(1, source, destination)
    cert = conn.peer_certificate
    client = CLIENT_SSL
    cn = None
    if cert is not None:
        client |= CLIENT_CERT_SESS if conn.session_reused else CLIENT_CERT_CONN | CLIENT_CERT_SESS
        cn = common_name(cert.subject)
    cipher = conn.cipher
    info = SSLInfo(
        client=client,
        verify=0 if conn.peer_verified else 1,
        version=conn.protocol,
        cn=cn,
        cipher=cipher.name if cipher else None,
    )
    return build(2, source, destination, ssl=info, authority=conn.server_name, alpn=conn.alpn_protocol)


async def _connect_plain(relay: Relay, target: Endpoint, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        if target.path is not None:
            await loop.create_unix_connection(lambda: relay, target.path)
        else:
            await loop.create_connection(lambda: relay, target.host or "localhost", target.port)


def _not_after(spec: TunnelSpec) -> dt.datetime | None:
    if spec.cert is None:
        return None
    from ...pki.files import load_certificates

    try:
        return load_certificates(spec.cert)[0].not_valid_after_utc
    except (TlskitError, IndexError):
        return None


class Tunnel:
    """What both modes share: the spec, the metrics, reload and the connection records."""

    def __init__(self, spec: TunnelSpec, *, metrics: TunnelMetrics) -> None:
        self.spec = spec
        self.metrics = metrics
        self.counters: TunnelCounters = metrics.counters(spec.name)
        self.address: Any = None
        """Where the tunnel listens (port 0 resolved)."""
        self.accepting = False
        self._relays: set[Relay] = set()

    def buffered_bytes(self) -> int:
        """Bytes the open connections of this process hold in buffers (bounded by the high-water marks)."""
        return sum(relay.buffered for relay in self._relays)

    def relayed_bytes(self) -> int:
        """Payload bytes the open connections of this process have relayed so far, both ways."""
        return sum(relay.tls_to_plain + relay.plain_to_tls for relay in self._relays)

    @property
    def name(self) -> str:
        return self.spec.name

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self, *, deadline: float | None = None) -> None:
        raise NotImplementedError

    def _apply(self, spec: TunnelSpec, context: ssl.SSLContext, policy: PeerPolicy | None) -> None:
        raise NotImplementedError

    def reload(self, spec: TunnelSpec | None = None) -> bool:
        """Read certificates, key and CAs again (and take ``spec``'s allow-lists, target, ...); False if that failed.

        Live connections keep what they started with.  On failure the old configuration stays and one line says why.
        """
        new = self.spec if spec is None else spec
        changed = self.spec.restart_needed(new)
        if changed:
            names = " and ".join(", ".join(f"{name}=" for name in changed).rsplit(", ", 1))
            log.error("[%s] reload: changing %s needs a restart; keeping the current configuration", self.name, names)
            return False
        old, self.spec = self.spec, new  # before _apply: workers forked by a rolling restart copy this spec
        try:
            context = new.context()
            self._apply(new, context, new.policy())
        except (TlskitError, OSError) as exc:
            self.spec = old
            log_event(
                logging.ERROR,
                f"[{self.name}] reload failed, keeping the current configuration: {exc}",
                {"event": "reload_failed", "tunnel": self.name, "error": str(exc)},
            )
            return False
        self.metrics.set_expiry(self.name, _not_after(new))
        log_event(logging.INFO, f"[{self.name}] reloaded", {"event": "reloaded", "tunnel": self.name})
        return True

    def _finished(self, record: ConnectionRecord, relay: Relay, started: float, tls_to_plain: bool) -> None:
        record.seconds = time.monotonic() - started
        if tls_to_plain:
            record.to_target, record.to_client = relay.tls_to_plain, relay.plain_to_tls
        else:
            record.to_target, record.to_client = relay.plain_to_tls, relay.tls_to_plain
        record.ended = record.ended or relay.ended
        self.counters.connection_done(record.to_target, record.to_client, record.seconds)
        record.emit()

    def _tls_failed(self, error: TLSError, peer: Any) -> None:
        self.counters.handshake_failed(error.code)
        log_failure(self.name, peer, error, refused=error.code in REFUSAL_CODES)


class ServerTunnel(Tunnel):
    """TLS in, plaintext (optionally behind a PROXY header) to the target."""

    def __init__(self, spec: TunnelSpec, *, metrics: TunnelMetrics) -> None:
        super().__init__(spec, metrics=metrics)
        self.server: Server | None = None

    async def start(self) -> None:
        spec = self.spec
        listen = spec.listen
        self.server = await start_server(
            self._handle,
            listen.host,
            listen.port,
            context=spec.context(),
            policy=spec.policy(),
            handshake_timeout=spec.handshake_timeout,
            max_connections=spec.max_connections,
            idle_timeout=spec.idle_timeout,
            on_tls_error=self._tls_failed,
            workers=spec.workers,
        )
        self.address = self.server.addresses[0]
        self.metrics.set_expiry(self.name, _not_after(spec))
        self.accepting = True

    def _apply(self, spec: TunnelSpec, context: ssl.SSLContext, policy: PeerPolicy | None) -> None:
        assert self.server is not None
        self.server.reload(context, policy=policy)

    async def _handle(self, conn: TLSConnection) -> None:
        spec = self.spec
        counters = self.counters
        started = conn.opened_at
        counters.opened(time.monotonic() - started)
        record = ConnectionRecord.of(self.name, conn.remote_address, str(spec.target), conn)
        version = spec.proxy_protocol
        header = proxy_header(conn, version.version) if version is not None else b""
        relay = Relay(done=asyncio.get_running_loop().create_future(), header=header)
        self._relays.add(relay)
        try:
            try:
                await _connect_plain(relay, spec.target, spec.connect_timeout)
            except OSError as exc:  # TimeoutError included
                counters.target_failures += 1
                record.ended = f"cannot connect to target {spec.target}: {_why(exc)}"
                if relay.plain is not None:
                    relay.plain.abort()
                return
            relay.start(conn)
            try:
                await relay.done
            except asyncio.CancelledError:
                relay.abort("closed at shutdown")
                raise
        finally:
            self._relays.discard(relay)
            self._finished(record, relay, started, tls_to_plain=True)

    async def close(self, *, deadline: float | None = None) -> None:
        """Stop accepting; let connections finish for ``deadline`` seconds (default: the spec's drain_timeout)."""
        self.accepting = False
        if self.server is not None:
            await self.server.close(deadline=self.spec.drain_timeout if deadline is None else deadline)


class ClientTunnel(Tunnel):
    """Plaintext in (TCP or a Unix socket), TLS to the target, resuming the last session."""

    def __init__(self, spec: TunnelSpec, *, metrics: TunnelMetrics) -> None:
        super().__init__(spec, metrics=metrics)
        self._listener: asyncio.Server | None = None
        self._context: ssl.SSLContext | None = None
        self._policy: PeerPolicy | None = None
        self.session: ssl.SSLSession | None = None
        """The session the next connection offers (the last one's)."""
        self._refused_logged = 0.0

    async def start(self) -> None:
        spec = self.spec
        self._context, self._policy = spec.context(), spec.policy()
        loop = asyncio.get_running_loop()
        listen = spec.listen
        if listen.path is not None:
            with contextlib.suppress(FileNotFoundError):
                if os.path.exists(listen.path) and _is_stale_socket(listen.path):
                    os.unlink(listen.path)
            try:
                self._listener = await loop.create_unix_server(self._accept, listen.path)
            except OSError as exc:  # no such directory, no permission, a path too long for a socket
                raise _unix_listen_error(exc, listen.path) from exc
            self.address = listen.path
        else:
            try:
                self._listener = await loop.create_server(self._accept, listen.host, listen.port, backlog=1024)
            except OSError as exc:  # a busy or privileged port: the words every listener of tlskit uses
                raise network_error(exc, action="listen", host=listen.host, port=listen.port) from exc
            self.address = self._listener.sockets[0].getsockname()
        self.metrics.set_expiry(self.name, _not_after(spec))
        self.accepting = True

    def _apply(self, spec: TunnelSpec, context: ssl.SSLContext, policy: PeerPolicy | None) -> None:
        self._context, self._policy, self.session = context, policy, None

    def _accept(self) -> asyncio.BaseProtocol:
        if not self.accepting:  # draining: no new connections, and no limit to speak of
            return _Refused()
        limit = self.spec.max_connections
        if limit is not None and len(self._relays) >= limit:
            now = time.monotonic()
            if now - self._refused_logged >= 1.0:
                self._refused_logged = now
                log.warning("[%s] connection limit of %s reached: refusing new connections", self.name, limit)
            return _Refused()
        relay = Relay(done=asyncio.get_running_loop().create_future(), names=("target", "client"))
        self._relays.add(relay)
        asyncio.get_running_loop().create_task(self._serve(relay))
        return relay

    async def _serve(self, relay: Relay) -> None:
        spec, context, policy = self.spec, self._context, self._policy
        assert context is not None
        started = time.monotonic()
        await asyncio.sleep(0)  # connection_made has run
        plain = relay.plain
        peer = plain.get_extra_info("peername") if plain is not None else None
        peer = format_peer(peer or "unix")
        target = spec.target
        assert target.host is not None
        try:
            conn = await connect(
                target.host,
                target.port,
                context=context,
                policy=policy,
                server_name=spec.servername,
                session=self.session,
                handshake_timeout=spec.connect_timeout + spec.handshake_timeout,
            )
        except TLSError as exc:
            self._tls_failed(exc, (target.host, target.port))
            self._drop(relay)
            return
        except OSError as exc:
            self.counters.target_failures += 1
            log_event(
                logging.WARNING,
                f"[{self.name}] {peer}: cannot connect to target {target}: {_why(exc)}",
                {"event": "target_failed", "tunnel": self.name, "peer": peer, "target": str(target),
                 "error": _why(exc)},
            )  # fmt: skip
            self._drop(relay)
            return
        self.counters.opened(time.monotonic() - started)
        record = ConnectionRecord.of(self.name, peer, str(target), conn)
        if plain is None or plain.is_closing():
            conn.abort()
            record.ended = "client gone before the target answered"
            self._relays.discard(relay)
            self._finished(record, relay, started, tls_to_plain=False)
            return
        relay.start(conn)

        def finished(_: asyncio.Future[None]) -> None:
            self._relays.discard(relay)
            session = conn.session
            if session is not None and self._context is context:
                self.session = session
            self._finished(record, relay, started, tls_to_plain=False)

        relay.done.add_done_callback(finished)

    def _drop(self, relay: Relay) -> None:
        self._relays.discard(relay)
        relay.refuse()

    async def close(self, *, deadline: float | None = None) -> None:
        """Stop accepting; let connections finish for ``deadline`` seconds, then drop the rest."""
        self.accepting = False
        if self._listener is not None:
            self._listener.close()
        wait = self.spec.drain_timeout if deadline is None else deadline
        pending = [r.done for r in self._relays]
        if pending:
            _, late = await asyncio.wait(pending, timeout=wait)
            for relay in list(self._relays):
                if not relay.done.done():
                    relay.abort("closed at shutdown")
            if late:
                await asyncio.wait(late, timeout=2.0)
        if self.spec.listen.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.spec.listen.path)


def _unix_listen_error(exc: OSError, path: str) -> NetworkError:
    """Why a Unix socket cannot be made at ``path``, naming listen= (the words of :func:`network_error` speak of
    hosts and ports)."""
    where = f"listen=unix:{path}: cannot listen there"
    number = exc.errno
    if number == errno.ENOENT:
        message, fix = f"{where}: the directory {os.path.dirname(path) or '.'} does not exist", "create it first"
    elif number in (errno.EACCES, errno.EPERM):
        message, fix = f"{where}: permission denied", "choose a directory this user may create files in"
    else:
        why = os.strerror(number) if number and number > 0 else str(exc) or type(exc).__name__
        message, fix = f"{where}: {why}", "check the path (a socket's path must be short, in a directory that exists)"
    return NetworkError(message, code=str(Code.NETWORK_ERROR), fix=f"{fix}, or choose another path", errno=number)


def _is_stale_socket(path: str) -> bool:
    """True if ``path`` is a Unix socket nobody listens on (left by a previous run)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    raise InputError(f"listen=unix:{path} is in use by another program", fix="stop it, or choose another path")


def make_tunnel(spec: TunnelSpec, *, metrics: TunnelMetrics) -> Tunnel:
    return ServerTunnel(spec, metrics=metrics) if spec.mode is Mode.SERVER else ClientTunnel(spec, metrics=metrics)


class TunnelGroup:
    """Several tunnels in one process: started together, reloaded together, drained together.

    ``reload_specs`` (say, re-reading a configuration file) gives the specs a reload applies; without it a
    reload reads each tunnel's files again.  The files are also watched (every ``watch_interval`` seconds):
    a changed certificate, key or CA file reloads its tunnel.
    """

    def __init__(
        self,
        specs: Sequence[TunnelSpec],
        *,
        metrics_address: Endpoint | None = None,
        reload_specs: Callable[[], Sequence[TunnelSpec]] | None = None,
        watch_interval: float | None = 1.0,
    ) -> None:
        if not specs:
            raise InputError("no tunnel to run", fix="give at least one tunnel")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise InputError(f"two tunnels are named {_first_duplicate(names)!r}", fix="give each tunnel its own name")
        if metrics_address is not None and any(s.workers > 1 for s in specs):
            raise InputError(
                "metrics= counts connections in this process, and workers= > 1 serves them in other processes",
                fix="use workers=1 with metrics=, or leave metrics= out",
            )
        self.metrics = TunnelMetrics()
        self.metrics.healthy = self.healthy
        self.tunnels = [make_tunnel(spec, metrics=self.metrics) for spec in specs]
        self._metrics_address = metrics_address
        self.metrics_server: MetricsServer | None = None
        self._reload_specs = reload_specs
        self._watch_interval = watch_interval
        self._watcher: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._closing = False

    def healthy(self) -> bool:
        return not self._closing and all(t.accepting for t in self.tunnels)

    async def start(self) -> None:
        """Start every tunnel (and the metrics endpoint); on failure stop those already started."""
        try:
            for tunnel in self.tunnels:
                await tunnel.start()
            if self._metrics_address is not None:
                where = self._metrics_address
                self.metrics_server = await start_metrics_server(self.metrics, where.host or "127.0.0.1", where.port)
        except BaseException:
            await self.close(deadline=0.0)
            raise
        if self._watch_interval:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(self._watch_interval))

    def reload(self) -> None:
        """SIGHUP: new specs from ``reload_specs`` (if given), new contexts from the files; bad input keeps the old."""
        specs: dict[str, TunnelSpec] = {}
        if self._reload_specs is not None:
            try:
                specs = {s.name: s for s in self._reload_specs()}
            except TlskitError as exc:
                log_event(
                    logging.ERROR,
                    f"reload failed, keeping the current configuration: {exc}",
                    {"event": "reload_failed", "error": str(exc)},
                )
                return
            missing = sorted({t.name for t in self.tunnels} ^ specs.keys())
            if missing:
                log.error("reload: tunnels cannot be added or removed without a restart (%s)", ", ".join(missing))
        for tunnel in self.tunnels:
            tunnel.reload(specs.get(tunnel.name))

    async def _watch(self, interval: float) -> None:
        seen = {t.name: _signature(t.spec) for t in self.tunnels}
        while True:
            await asyncio.sleep(interval)
            for tunnel in self.tunnels:
                now = _signature(tunnel.spec)
                if now != seen[tunnel.name]:
                    seen[tunnel.name] = now
                    log.info("[%s] certificate, key or CA file changed: reloading", tunnel.name)
                    tunnel.reload()

    async def close(self, *, deadline: float | None = None) -> None:
        """Stop accepting everywhere (``/healthz`` turns 503), drain, close."""
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
        await asyncio.gather(*(t.close(deadline=deadline) for t in self.tunnels))
        if self.metrics_server is not None:
            await self.metrics_server.close()
        self._stopped.set()

    def stop(self) -> None:
        """Begin a graceful close (from a signal handler)."""
        if not self._closing:
            log_event(logging.INFO, "stopping: draining connections", {"event": "draining"})
            self._closing = True
            asyncio.get_running_loop().create_task(self.close())

    async def serve_forever(self, *, signals: bool = True) -> None:
        """Until SIGTERM/SIGINT (drain, then return); SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        if signals:
            loop.add_signal_handler(signal.SIGTERM, self.stop)
            loop.add_signal_handler(signal.SIGINT, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self._stopped.wait()
        finally:
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)


def _signature(spec: TunnelSpec) -> tuple[tuple[int, int, int], ...]:
    out = []
    for path in spec.files:
        try:
            st = os.stat(path)
        except OSError:
            out.append((0, 0, 0))
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def _first_duplicate(names: Sequence[str]) -> str:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return ""
