"""Shared fixtures: a complete PKI built once per session with tlskit's own CA code (EC P-256: fast).

Use ``pki`` (all files and CA objects, see :class:`PKI`), ``ca`` (the intermediate CA, to issue more) and
``make_cert`` (issue + write a leaf into the test's tmp_path, with injectable ``now``/``days`` for expired or
not-yet-valid certificates).  The fixture is shared by the whole session: never change its files, and revoke
only certificates your test issued itself (revocations show up on every later CRL of that CA).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509

from peers import pytest_configure, pytest_runtest_setup
from tlskit.pki.ca import CertificateAuthority, Issued
from tlskit.pki.certs import Profile
from tlskit.pki.keys import KeyType

__all__ = ["pytest_configure", "pytest_runtest_setup"]  # peers.py's hooks for the requires() marker

ROOT = Path(__file__).resolve().parent.parent
TLSKIT = ROOT / ".venv" / "bin" / "tlskit"
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class PKI:
    """Paths and objects of the session PKI (all under ``dir``).

    Trust: ``root_pem`` is the root CA certificate (directory ``root_dir``).  ``ca_dir``/``ca_pem`` is the
    intermediate CA signed by the root; ``ca_chain_pem`` is the intermediate followed by the root
    (``chain.pem``) and ``intermediates_pem`` just the intermediate (what ``-untrusted`` wants).

    Leaves, all issued by the intermediate; every ``*_pem`` holds leaf + intermediate (not the root), every
    ``*_key`` is an unencrypted PKCS#8 key with mode 0600:

    - ``server_pem``/``server_key``: profile server, names localhost, 127.0.0.1, ::1 (CN localhost).
    - ``client_pem``/``client_key``: profile client, CN "client" (SAN DNS:client).
    - ``both_pem``/``both_key``: profile server-and-client, names localhost, 127.0.0.1, ::1.
    - ``rsa_server_pem``/``rsa_server_key``: like server but an RSA-2048 key.

    Unrelated hierarchy ("other"): ``other_root_pem`` is a second root, ``other_ca`` its CertificateAuthority
    (directory ``other_root_dir``); ``other_client_pem``/``other_client_key`` (CN "other-client") and
    ``other_server_pem``/``other_server_key`` (localhost, 127.0.0.1, ::1) are issued directly by that root.

    ``root`` and ``ca`` are the CertificateAuthority objects (``ca`` = the intermediate).
    """

    dir: Path
    root: CertificateAuthority
    root_dir: Path
    root_pem: Path
    ca: CertificateAuthority
    ca_dir: Path
    ca_pem: Path
    ca_chain_pem: Path
    intermediates_pem: Path
    server_pem: Path
    server_key: Path
    client_pem: Path
    client_key: Path
    both_pem: Path
    both_key: Path
    rsa_server_pem: Path
    rsa_server_key: Path
    other_ca: CertificateAuthority
    other_root_dir: Path
    other_root_pem: Path
    other_client_pem: Path
    other_client_key: Path
    other_server_pem: Path
    other_server_key: Path

    @property
    def server_cert(self) -> x509.Certificate:
        """The server leaf certificate object."""
        return x509.load_pem_x509_certificates(self.server_pem.read_bytes())[0]

    @property
    def client_cert(self) -> x509.Certificate:
        """The client leaf certificate object."""
        return x509.load_pem_x509_certificates(self.client_pem.read_bytes())[0]


def _write(issued: Issued, prefix: Path) -> tuple[Path, Path]:
    return issued.write(prefix)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """The session PKI (see :class:`PKI` for the fields)."""
    d = tmp_path_factory.mktemp("pki")
    root = CertificateAuthority.create_root(d / "root", name="tlskit Test Root CA")
    ca = root.create_intermediate(d / "intermediate", name="tlskit Test Intermediate CA")
    server_pem, server_key = _write(ca.issue(SERVER_NAMES), d / "server")
    client_pem, client_key = _write(ca.issue(["client"], profile=Profile.CLIENT), d / "client")
    both_pem, both_key = _write(ca.issue(SERVER_NAMES, profile=Profile.SERVER_AND_CLIENT), d / "both")
    rsa_pem, rsa_key = _write(ca.issue(SERVER_NAMES, key_type=KeyType.RSA_2048), d / "rsa-server")
    other = CertificateAuthority.create_root(d / "other-root", name="tlskit Other Root CA")
    oc_pem, oc_key = _write(other.issue(["other-client"], profile=Profile.CLIENT), d / "other-client")
    os_pem, os_key = _write(other.issue(SERVER_NAMES), d / "other-server")
    intermediates = d / "intermediates.pem"
    shutil.copyfile(d / "intermediate" / "ca.pem", intermediates)
    return PKI(
        dir=d,
        root=root,
        root_dir=d / "root",
        root_pem=d / "root" / "ca.pem",
        ca=ca,
        ca_dir=d / "intermediate",
        ca_pem=d / "intermediate" / "ca.pem",
        ca_chain_pem=d / "intermediate" / "chain.pem",
        intermediates_pem=intermediates,
        server_pem=server_pem,
        server_key=server_key,
        client_pem=client_pem,
        client_key=client_key,
        both_pem=both_pem,
        both_key=both_key,
        rsa_server_pem=rsa_pem,
        rsa_server_key=rsa_key,
        other_ca=other,
        other_root_dir=d / "other-root",
        other_root_pem=d / "other-root" / "ca.pem",
        other_client_pem=oc_pem,
        other_client_key=oc_key,
        other_server_pem=os_pem,
        other_server_key=os_key,
    )


@pytest.fixture(scope="session")
def ca(pki: PKI) -> CertificateAuthority:
    """The session's intermediate CA (directory ``pki.ca_dir``), to issue more certificates."""
    return pki.ca


MakeCert = Callable[..., tuple[Path, Path]]


@pytest.fixture
def make_cert(pki: PKI, tmp_path: Path) -> MakeCert:
    """Issue a leaf from the intermediate CA and write it into ``tmp_path``; returns (chain_pem, key_pem).

    ``make_cert(names=("localhost",), *, profile=Profile.SERVER, days=None, now=None, key_type=..., name="leaf")``.
    ``now`` moves issuance in time: ``now=utcnow() - timedelta(days=400), days=30`` is expired, ``now=utcnow() +
    timedelta(days=2)`` is not yet valid.
    """

    def make(
        names: Sequence[str] = ("localhost",),
        *,
        profile: Profile = Profile.SERVER,
        days: int | None = None,
        now: dt.datetime | None = None,
        key_type: KeyType = KeyType.EC_P256,
        name: str = "leaf",
    ) -> tuple[Path, Path]:
        issued = pki.ca.issue(names, profile=profile, days=days, now=now, key_type=key_type)
        return issued.write(tmp_path / name)

    return make


@pytest.fixture
def tlskit_env() -> dict[str, str]:
    """Environment for running the ``tlskit`` CLI as a subprocess without a stray passphrase."""
    env = dict(os.environ)
    env.pop("TLSKIT_PASSPHRASE", None)
    env["NO_COLOR"] = "1"
    return env


def free_port() -> int:
    """A loopback port the OS picked and nothing listens on (bound, then closed: a connection is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- plaintext services in the test process ------------------------------------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: Any = self.server
        server.connections += 1
        with contextlib.suppress(OSError):
            while data := self.request.recv(65536):
                self.request.sendall(data)


class _Counting(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    connections = 0


S = TypeVar("S", bound=socketserver.BaseServer)


@contextlib.contextmanager
def serving(server: S) -> Iterator[S]:
    """``server`` answering from a thread until the block ends."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def echo_target() -> contextlib.AbstractContextManager[_Counting]:
    """A plaintext TCP echo on 127.0.0.1 (a thread per connection) that counts its connections."""
    return serving(_Counting(("127.0.0.1", 0), _Echo))
