"""tlskit: a coherent toolkit for secure network communication in Python.

- :mod:`tlskit.pki`: keys, CSRs, certificates, CA hierarchies, CRLs, PKCS#12, inspect, verify.
- :mod:`tlskit.net`: ``ssl.SSLContext`` factories, asyncio TLS servers and clients, framing.
- :mod:`tlskit.tools`: tap (what a sniffer sees), probe (why a handshake fails).

The most used names are importable from here; they are loaded lazily so ``import tlskit`` stays cheap.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# A library never configures logging; without a handler its warnings would go to stderr via logging.lastResort.
logging.getLogger("tlskit").addHandler(logging.NullHandler())

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "TlskitError": "tlskit.errors",
    "InputError": "tlskit.errors",
    "PassphraseError": "tlskit.errors",
    "KeyMismatchError": "tlskit.errors",
    "ExistingFileError": "tlskit.errors",
    "VerificationFailed": "tlskit.errors",
    "FrameError": "tlskit.errors",
    "TLSError": "tlskit.errors",
    "TLSVerificationError": "tlskit.errors",
    # contexts
    "ClientAuth": "tlskit.net.context",
    "server_context": "tlskit.net.context",
    "client_context": "tlskit.net.context",
    "CrlCheck": "tlskit.net.context",
    "PeerPolicy": "tlskit.net.context",
    # transport
    "TLSConnection": "tlskit.net.connection",
    "start_server": "tlskit.net.server",
    "Server": "tlskit.net.server",
    "connect": "tlskit.net.client",
    "ReconnectingClient": "tlskit.net.client",
}

__all__ = [
    "ClientAuth",
    "CrlCheck",
    "ExistingFileError",
    "FrameError",
    "InputError",
    "KeyMismatchError",
    "PassphraseError",
    "PeerPolicy",
    "ReconnectingClient",
    "Server",
    "TLSConnection",
    "TLSError",
    "TLSVerificationError",
    "TlskitError",
    "VerificationFailed",
    "__version__",
    "client_context",
    "connect",
    "server_context",
    "start_server",
]

if TYPE_CHECKING:
    from .errors import (
        ExistingFileError,
        FrameError,
        InputError,
        KeyMismatchError,
        PassphraseError,
        TLSError,
        TlskitError,
        TLSVerificationError,
        VerificationFailed,
    )
    from .net.client import ReconnectingClient, connect
    from .net.connection import TLSConnection
    from .net.context import ClientAuth, CrlCheck, PeerPolicy, client_context, server_context
    from .net.server import Server, start_server


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tlskit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
