"""Prometheus metrics of tunnels (prometheus-client) and the small HTTP endpoint that serves them.

Counting costs a connection almost nothing: each tunnel keeps plain integers and bucket counts
(:class:`TunnelCounters`), and a collector turns them into Prometheus families only when ``/metrics`` is
scraped (prometheus-client's own ``Counter.inc()`` takes a lock and checks labels on every call).

``GET /metrics`` answers the text exposition format; ``GET /healthz`` answers 200 while every tunnel accepts
connections and 503 once one stops (drain, shutdown).  Each :class:`TunnelMetrics` has its own registry, so
several tunnel groups (or tests) in one process do not mix their counts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from ...errors import NetworkError
from ...net.explain import network_error

__all__ = ["MetricsServer", "TunnelCounters", "TunnelMetrics", "start_metrics_server"]

HANDSHAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DURATION_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)


class _Histogram:
    """Bucket counts (not cumulative) and a sum: ``observe`` is one bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)


class TunnelCounters:
    """One tunnel's counts, as plain numbers (see the module's docstring)."""

    __slots__ = ("bytes_to_client", "bytes_to_target", "connection_seconds", "failures", "handshake_seconds",
                 "not_after", "open", "target_failures", "total")  # fmt: skip

    def __init__(self) -> None:
        self.open = 0
        self.total = 0
        self.target_failures = 0
        self.bytes_to_target = 0
        self.bytes_to_client = 0
        self.failures: dict[str, int] = {}
        self.handshake_seconds = _Histogram(HANDSHAKE_BUCKETS)
        self.connection_seconds = _Histogram(DURATION_BUCKETS)
        self.not_after: dt.datetime | None = None

    def opened(self, handshake_seconds: float) -> None:
        self.total += 1
        self.open += 1
        self.handshake_seconds.observe(handshake_seconds)

    def handshake_failed(self, code: str) -> None:
        self.failures[code] = self.failures.get(code, 0) + 1

    def connection_done(self, to_target: int, to_client: int, seconds: float) -> None:
        self.open -= 1
        self.bytes_to_target += to_target
        self.bytes_to_client += to_client
        self.connection_seconds.observe(seconds)


class _Collector(Collector):
    def __init__(self, metrics: TunnelMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        tunnels = sorted(self._metrics.tunnels.items())
        opened = GaugeMetricFamily(
            "tlskit_tunnel_connections_open", "Tunnelled connections open now.", labels=["tunnel"]
        )
        total = CounterMetricFamily(
            "tlskit_tunnel_connections", "Connections accepted after their TLS handshake.", labels=["tunnel"]
        )
        failures = CounterMetricFamily(
            "tlskit_tunnel_handshake_failures",
            "Handshakes that failed or peers the policy refused, by tlskit problem code.",
            labels=["tunnel", "code"],
        )
        target = CounterMetricFamily(
            "tlskit_tunnel_target_failures", "Connections to the target that could not be made.", labels=["tunnel"]
        )
        relayed = CounterMetricFamily(
            "tlskit_tunnel_bytes", "Payload bytes relayed, by direction.", labels=["tunnel", "direction"]
        )
        handshake = HistogramMetricFamily(
            "tlskit_tunnel_handshake_seconds",
            "From accepting (or connecting) to a finished, accepted TLS handshake.",
            labels=["tunnel"],
        )
        duration = HistogramMetricFamily(
            "tlskit_tunnel_connection_seconds", "How long tunnelled connections lasted.", labels=["tunnel"]
        )
        expiry = GaugeMetricFamily(
            "tlskit_tunnel_certificate_expiry_seconds",
            "Seconds until the tunnel's own certificate expires (negative once expired).",
            labels=["tunnel"],
        )
        now = self._metrics.now()
        for name, c in tunnels:
            opened.add_metric([name], c.open)
            total.add_metric([name], c.total)
            for code, count in sorted(c.failures.items()):
                failures.add_metric([name, code], count)
            target.add_metric([name], c.target_failures)
            relayed.add_metric([name, "to_target"], c.bytes_to_target)
            relayed.add_metric([name, "to_client"], c.bytes_to_client)
            handshake.add_metric([name], c.handshake_seconds.cumulative(), c.handshake_seconds.sum)
            duration.add_metric([name], c.connection_seconds.cumulative(), c.connection_seconds.sum)
            if c.not_after is not None:
                expiry.add_metric([name], (c.not_after - now).total_seconds())
        yield from (opened, total, failures, target, relayed, handshake, duration, expiry)


class TunnelMetrics:
    """The metrics of a group of tunnels, in a registry of their own."""

    def __init__(self, *, now: Callable[[], dt.datetime] | None = None) -> None:
        self.tunnels: dict[str, TunnelCounters] = {}
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))
        self.healthy: Callable[[], bool] = lambda: True

    def counters(self, name: str) -> TunnelCounters:
        return self.tunnels.setdefault(name, TunnelCounters())

    def set_expiry(self, name: str, not_after: dt.datetime | None) -> None:
        self.counters(name).not_after = not_after

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
    """Serve ``metrics`` on ``host:port`` (port 0: the OS picks; see :attr:`MetricsServer.address`).

    A busy port or an unresolvable host raises :class:`~tlskit.errors.NetworkError` naming ``metrics=``.
    """
    server = MetricsServer(metrics)
    try:
        server._server = await asyncio.start_server(server._handle, host, port)
    except OSError as exc:  # the words every listener of tlskit uses, and which listener it was
        raise _metrics_error(network_error(exc, action="listen", host=host, port=port)) from exc
    server.address = server._server.sockets[0].getsockname()
    return server


def _metrics_error(error: NetworkError) -> NetworkError:
    """``error`` (still the OSError subclass it was) saying it is the metrics endpoint that cannot listen."""
    kind = type(error)
    return kind(f"metrics endpoint (metrics=): {error.message}", code=error.code, fix=error.fix, errno=error.errno)
