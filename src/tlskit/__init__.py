"""tlskit: a coherent toolkit for secure network communication in Python.

- :mod:`tlskit.pki`: keys, CSRs, certificates, CA hierarchies, CRLs, PKCS#12, inspect, verify.
- :mod:`tlskit.net`: ``ssl.SSLContext`` factories, the peer policy, asyncio TLS servers and clients, framing.
- :mod:`tlskit.tools`: tap (what a sniffer sees), probe (why a handshake fails).

The names the README teaches are importable from here, listed once in :data:`_EXPORTS`; they load lazily, so
``import tlskit`` costs almost nothing and loads neither the CLI (click) nor the terminal renderer (rich).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# A library never configures logging; without a handler its warnings would go to stderr via logging.lastResort.
logging.getLogger("tlskit").addHandler(logging.NullHandler())

# The public surface: name -> module that defines it.  The TYPE_CHECKING imports below mirror this table for
# type checkers (tests/test_layout.py checks that they agree).
_EXPORTS: dict[str, str] = {
    # errors
    "TlskitError": "tlskit.errors",
    "InputError": "tlskit.errors",
    "PassphraseError": "tlskit.errors",
    "KeyMismatchError": "tlskit.errors",
    "ExistingFileError": "tlskit.errors",
    "FrameError": "tlskit.errors",
    "TLSError": "tlskit.errors",
    "TLSVerificationError": "tlskit.errors",
    # PKI
    "KeyType": "tlskit.pki.keys",
    "generate_key": "tlskit.pki.keys",
    "load_private_key": "tlskit.pki.keys",
    "save_private_key": "tlskit.pki.keys",
    "Profile": "tlskit.pki.certs",
    "build_csr": "tlskit.pki.certs",
    "self_signed": "tlskit.pki.certs",
    "CertificateAuthority": "tlskit.pki.ca",
    "Issued": "tlskit.pki.ca",
    "load_certificates": "tlskit.pki.files",
    "spki_pin": "tlskit.pki.inspect",
    "Purpose": "tlskit.pki.problems",
    "Problem": "tlskit.pki.problems",
    "verify_chain": "tlskit.pki.verify",
    "VerifyResult": "tlskit.pki.verify",
    # contexts and peer policy
    "ClientAuth": "tlskit.net.context",
    "CrlCheck": "tlskit.net.context",
    "TLSProfile": "tlskit.net.context",
    "server_context": "tlskit.net.context",
    "client_context": "tlskit.net.context",
    "PeerPolicy": "tlskit.net.policy",
    # revocation online
    "Revocation": "tlskit.net.revocation",
    "RevocationRefresher": "tlskit.net.revocation",
    "RevocationResponder": "tlskit.net.responder",
    "start_responder": "tlskit.net.responder",
    # connection facts where other libraries hide them, failures in words
    "peer_info": "tlskit.net.peerinfo",
    "PeerInfo": "tlskit.net.peerinfo",
    "tls_error": "tlskit.net.explain",
    # transport
    "TLSConnection": "tlskit.net.connection",
    "start_server": "tlskit.net.server",
    "Server": "tlskit.net.server",
    "connect": "tlskit.net.client",
    "ReconnectingClient": "tlskit.net.client",
    # framing
    "LengthPrefixedFramer": "tlskit.net.framing",
    "DelimitedFramer": "tlskit.net.framing",
    "JsonCodec": "tlskit.net.framing",
}

__all__ = list(_EXPORTS)  # the table above is the one list
__all__.append("__version__")

if TYPE_CHECKING:
    from .errors import ExistingFileError as ExistingFileError
    from .errors import FrameError as FrameError
    from .errors import InputError as InputError
    from .errors import KeyMismatchError as KeyMismatchError
    from .errors import PassphraseError as PassphraseError
    from .errors import TLSError as TLSError
    from .errors import TlskitError as TlskitError
    from .errors import TLSVerificationError as TLSVerificationError
    from .net.client import ReconnectingClient as ReconnectingClient
    from .net.client import connect as connect
    from .net.connection import TLSConnection as TLSConnection
    from .net.context import ClientAuth as ClientAuth
    from .net.context import CrlCheck as CrlCheck
    from .net.context import TLSProfile as TLSProfile
    from .net.context import client_context as client_context
    from .net.context import server_context as server_context
    from .net.explain import tls_error as tls_error
    from .net.framing import DelimitedFramer as DelimitedFramer
    from .net.framing import JsonCodec as JsonCodec
    from .net.framing import LengthPrefixedFramer as LengthPrefixedFramer
    from .net.peerinfo import PeerInfo as PeerInfo
    from .net.peerinfo import peer_info as peer_info
    from .net.policy import PeerPolicy as PeerPolicy
    from .net.responder import RevocationResponder as RevocationResponder
    from .net.responder import start_responder as start_responder
    from .net.revocation import Revocation as Revocation
    from .net.revocation import RevocationRefresher as RevocationRefresher
    from .net.server import Server as Server
    from .net.server import start_server as start_server
    from .pki.ca import CertificateAuthority as CertificateAuthority
    from .pki.ca import Issued as Issued
    from .pki.certs import Profile as Profile
    from .pki.certs import build_csr as build_csr
    from .pki.certs import self_signed as self_signed
    from .pki.files import load_certificates as load_certificates
    from .pki.inspect import spki_pin as spki_pin
    from .pki.keys import KeyType as KeyType
    from .pki.keys import generate_key as generate_key
    from .pki.keys import load_private_key as load_private_key
    from .pki.keys import save_private_key as save_private_key
    from .pki.problems import Problem as Problem
    from .pki.problems import Purpose as Purpose
    from .pki.verify import VerifyResult as VerifyResult
    from .pki.verify import verify_chain as verify_chain


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tlskit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
