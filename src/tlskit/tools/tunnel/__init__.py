"""``tlskit tunnel``: TLS in front of (server mode) or behind (client mode) any TCP service.

- :mod:`.spec`: :class:`TunnelSpec`, one tunnel, validated when made;
- :mod:`.proxy`: the PROXY protocol v1/v2, built and parsed (sans-IO);
- :mod:`.relay`: the protocol-level relay between a TLS connection and a plain transport;
- :mod:`.runtime`: server and client tunnels, and groups of them with reload, drain and metrics;
- :mod:`.metrics`: Prometheus metrics and the ``/metrics``, ``/healthz`` endpoint;
- :mod:`.events`: one log record per connection (text and JSON-able).
"""

from __future__ import annotations

from .runtime import ClientTunnel, ServerTunnel, Tunnel, TunnelGroup
from .spec import Endpoint, Mode, ProxyProtocol, TunnelSpec, parse_endpoint

__all__ = [
    "ClientTunnel",
    "Endpoint",
    "Mode",
    "ProxyProtocol",
    "ServerTunnel",
    "Tunnel",
    "TunnelGroup",
    "TunnelSpec",
    "parse_endpoint",
]
