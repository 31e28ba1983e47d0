"""tlskit's pytest plugin: a CA and TLS contexts for testing your own TLS code, the job trustme does.

Installed with tlskit (entry point ``pytest11``), so the fixtures are there in any test suite:

- ``tls_ca``: a :class:`~tlskit.CertificateAuthority` (EC P-256) in a temporary directory, made once per session;
  ``tls_ca.issue(["db.internal"])`` makes more certificates, ``tls_ca_pem`` is its certificate file.
- ``tls_server_context``: a server ``ssl.SSLContext`` for localhost, 127.0.0.1 and ::1, issued by ``tls_ca``; it asks
  clients for a certificate from ``tls_ca`` without requiring one, so the same server serves plain and mutual
  TLS (``tlskit.peer_info(...).authorized`` tells them apart).
- ``tls_client_context``: a client context trusting ``tls_ca`` (and nothing else).
- ``tls_client_cert_context``: the same with a client certificate (CN ``client``) for mutual TLS.
- ``tls_server_cert`` / ``tls_client_cert``: the (certificate chain, key) files behind them, for other programs.

Keys and certificates are made once per session; contexts are new for every test (a test may change its own).
Nothing is imported before a fixture is used, so the plugin costs a suite that does not use it nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import ssl

    from .pki.ca import CertificateAuthority

__all__ = [
    "tls_ca",
    "tls_ca_pem",
    "tls_client_cert",
    "tls_client_cert_context",
    "tls_client_context",
    "tls_server_cert",
    "tls_server_context",
]

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """A root CA in a temporary directory (``ca.pem``, ``ca-key.pem``), made once per session."""
    from .pki.ca import CertificateAuthority

    return CertificateAuthority.create_root(tmp_path_factory.mktemp("tls_ca") / "ca", name="tlskit pytest CA")


@pytest.fixture(scope="session")
def tls_ca_pem(tls_ca: CertificateAuthority) -> Path:
    """The file holding ``tls_ca``'s certificate (what ``curl --cacert`` or ``ca=`` wants)."""
    assert tls_ca.directory is not None
    return tls_ca.directory / "ca.pem"


@pytest.fixture(scope="session")
def tls_server_cert(tls_ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(chain, key) files of a server certificate for localhost, 127.0.0.1 and ::1."""
    return tls_ca.issue(SERVER_NAMES).write(tmp_path_factory.mktemp("tls_server") / "server")


@pytest.fixture(scope="session")
def tls_client_cert(tls_ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(chain, key) files of a client certificate with the common name ``client``."""
    from .pki.certs import Profile

    return tls_ca.issue(["client"], profile=Profile.CLIENT).write(tmp_path_factory.mktemp("tls_client") / "client")


@pytest.fixture
def tls_server_context(tls_ca: CertificateAuthority, tls_server_cert: tuple[Path, Path]) -> ssl.SSLContext:
    """A server context for localhost, 127.0.0.1 and ::1; client certificates from ``tls_ca`` asked, not required."""
    from .net.context import ClientAuth, server_context

    cert, key = tls_server_cert
    return server_context(cert=cert, key=key, ca=tls_ca.cert, client_auth=ClientAuth.OPTIONAL)


@pytest.fixture
def tls_client_context(tls_ca: CertificateAuthority) -> ssl.SSLContext:
    """A client context that trusts ``tls_ca`` and nothing else."""
    from .net.context import client_context

    return client_context(ca=tls_ca.cert)


@pytest.fixture
def tls_client_cert_context(tls_ca: CertificateAuthority, tls_client_cert: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts ``tls_ca`` and presents a client certificate (CN ``client``)."""
    from .net.context import client_context

    cert, key = tls_client_cert
    return client_context(ca=tls_ca.cert, cert=cert, key=key)
