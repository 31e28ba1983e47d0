"""Prometheus metrics of tunnels (prometheus-client) and the small HTTP endpoint that serves them.

``GET /metrics`` answers the text exposition format; ``GET /healthz`` answers 200 while every tunnel accepts
connections and 503 once one stops (drain, shutdown).  Each :class:`TunnelMetrics` has its own registry, so
several tunnel groups (or tests) in one process do not mix their counts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

__all__ = ["MetricsServer", "TunnelCounters", "TunnelMetrics", "start_metrics_server"]

log = logging.getLogger("tlskit.tunnel")

_HANDSHAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DURATION_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)


class _Expiry(Collector):
    """``tlskit_tunnel_certificate_expiry_seconds``: computed at scrape time from each tunnel's notAfter."""

    def __init__(self, now: Callable[[], dt.datetime]) -> None:
        self.not_after: dict[str, dt.datetime] = {}
        self._now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "tlskit_tunnel_certificate_expiry_seconds",
            "Seconds until the tunnel's own certificate expires (negative once expired).",
            labels=["tunnel"],
        )
        now = self._now()
        for name, not_after in sorted(self.not_after.items()):
            family.add_metric([name], (not_after - now).total_seconds())
        yield family


class TunnelCounters:
    """One tunnel's children of the metrics, looked up once (``labels()`` costs a dict lookup and a lock)."""

    __slots__ = ("_failures", "_name", "bytes_to_client", "bytes_to_target", "connection_seconds", "handshake_seconds",
                 "open", "target_failures", "total")  # fmt: skip

    def __init__(self, metrics: TunnelMetrics, name: str) -> None:
        self.open = metrics.open.labels(tunnel=name)
        self.total = metrics.total.labels(tunnel=name)
        self.bytes_to_target = metrics.bytes.labels(tunnel=name, direction="to_target")
        self.bytes_to_client = metrics.bytes.labels(tunnel=name, direction="to_client")
        self.handshake_seconds = metrics.handshake.labels(tunnel=name)
        self.connection_seconds = metrics.duration.labels(tunnel=name)
        self.target_failures = metrics.target_failures.labels(tunnel=name)
        self._failures = metrics.failures
        self._name = name

    def handshake_failed(self, code: str) -> None:
        self._failures.labels(tunnel=self._name, code=code).inc()

    def connection_done(self, to_target: int, to_client: int, seconds: float) -> None:
        self.open.dec()
        self.bytes_to_target.inc(to_target)
        self.bytes_to_client.inc(to_client)
        self.connection_seconds.observe(seconds)


class TunnelMetrics:
    """The metrics of a group of tunnels, in a registry of their own."""

    def __init__(self, *, now: Callable[[], dt.datetime] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.open = Gauge("tlskit_tunnel_connections_open", "Tunnelled connections open now.", ["tunnel"], registry=r)
        self.total = Counter(
            "tlskit_tunnel_connections", "Connections accepted after their TLS handshake.", ["tunnel"], registry=r
        )
        self.failures = Counter(
            "tlskit_tunnel_handshake_failures",
            "Handshakes that failed or peers the policy refused, by tlskit problem code.",
            ["tunnel", "code"],
            registry=r,
        )
        self.target_failures = Counter(
            "tlskit_tunnel_target_failures", "Connections to the target that could not be made.", ["tunnel"], registry=r
        )
        self.bytes = Counter(
            "tlskit_tunnel_bytes", "Payload bytes relayed, by direction.", ["tunnel", "direction"], registry=r
        )
        self.handshake = Histogram(
            "tlskit_tunnel_handshake_seconds",
            "From accepting (or connecting) to a finished, accepted TLS handshake.",
            ["tunnel"],
            buckets=_HANDSHAKE_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "tlskit_tunnel_connection_seconds",
            "How long tunnelled connections lasted.",
            ["tunnel"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self._expiry = _Expiry(now or (lambda: dt.datetime.now(dt.UTC)))
        r.register(self._expiry)
        self.healthy: Callable[[], bool] = lambda: True

    def counters(self, name: str) -> TunnelCounters:
        return TunnelCounters(self, name)

    def set_expiry(self, name: str, not_after: dt.datetime | None) -> None:
        if not_after is None:
            self._expiry.not_after.pop(name, None)
        else:
            self._expiry.not_after[name] = not_after

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP/1.0-style exchanges (one request per connection)."""

    def __init__(self, metrics: TunnelMetrics) -> None:
        self.metrics = metrics
        self._server: asyncio.Server | None = None
        self.address: Any = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, body, kind = "405 Method Not Allowed", b"only GET\n", "text/plain"
            elif path == b"/metrics":
                status, body, kind = "200 OK", self.metrics.exposition(), CONTENT_TYPE_LATEST
            elif path == b"/healthz":
                ok = self.metrics.healthy()
                status = "200 OK" if ok else "503 Service Unavailable"
                body, kind = (b"ok\n" if ok else b"draining\n"), "text/plain"
            else:
                status, body, kind = "404 Not Found", b"try /metrics or /healthz\n", "text/plain"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (body if method != b"HEAD" else b""))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def start_metrics_server(metrics: TunnelMetrics, host: str, port: int) -> MetricsServer:
    """Serve ``metrics`` on ``host:port`` (port 0: the OS picks; see :attr:`MetricsServer.address`)."""
    server = MetricsServer(metrics)
    server._server = await asyncio.start_server(server._handle, host, port)
    server.address = server._server.sockets[0].getsockname()
    return server
