"""Real TLS peers for tests: ``openssl s_server``, ``gnutls-serv``, Node scripts, run on loopback.

Every peer listens on a port the OS picks (port 0) and is always stopped by its context manager.  The port
is read from the peer's own output (``openssl s_server`` prints ``ACCEPT host:port``, our Node scripts print
``PORT n``) or, for ``gnutls-serv``, which neither prints it nor binds loopback only, from the listening
sockets of the private network namespace it runs in (:func:`in_private_network`).

A test that needs a peer program says so with ``@requires("openssl")`` (a marker) or :func:`tool` (at run
time), and a missing data set or facility goes through :func:`missing`: the test skips on a developer's
machine, and fails, naming what is missing and how to install it, where ``TLSKIT_REQUIRE_PEERS=1`` is set
(``.ci/run`` sets it).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

NODE = shutil.which("node")
OPENSSL = shutil.which("openssl")
GNUTLS_SERV = shutil.which("gnutls-serv")
GNUTLS_CLI = shutil.which("gnutls-cli")
T = TypeVar("T")

# The Debian package of each peer program (.ci/run installs them).
PACKAGES = {
    "openssl": "openssl",
    "gnutls-cli": "gnutls-bin",
    "gnutls-serv": "gnutls-bin",
    "certtool": "gnutls-bin",
    "node": "nodejs",
    "curl": "curl",
}


# --- peers that must be there ----------------------------------------------------------------------------------


def peers_required() -> bool:
    """Whether a missing peer fails the test (``TLSKIT_REQUIRE_PEERS`` set and not ``0``) instead of skipping it."""
    return os.environ.get("TLSKIT_REQUIRE_PEERS", "") not in ("", "0")


def missing(what: str, how: str) -> NoReturn:
    """A peer or data set the test needs is missing: skip the test, or fail it under TLSKIT_REQUIRE_PEERS=1.

    ``what`` names what is missing, ``how`` says how to get it.
    """
    if peers_required():
        pytest.fail(f"{what}: {how} (TLSKIT_REQUIRE_PEERS is set, so a missing peer fails)", pytrace=False)
    pytest.skip(f"{what}: {how} (with TLSKIT_REQUIRE_PEERS=1 this fails)")


def tool(name: str) -> str:
    """The path of the peer program ``name``; :func:`missing` if it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        package = PACKAGES.get(name)
        how = f"install the package {package} (apt-get install {package}; .ci/run does)" if package else "install it"
        missing(f"{name} is not installed (not found on PATH)", how)
    return path


def requires(*names: str) -> pytest.MarkDecorator:
    """Mark a test (or ``pytest.param``, or a module's ``pytestmark``) as needing these peer programs."""
    return pytest.mark.requires(*names)


# The requires() marker's hooks; conftest.py imports them (a pytest run elsewhere can load them with ``-p peers``).


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(*names): the test runs these peer programs (see tests/peers.py)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture runs: every program a ``requires`` marker names must be there."""
    for mark in item.iter_markers("requires"):
        for name in mark.args:
            tool(name)


@dataclass
class Peer:
    """A running peer process whose combined output is collected in the background."""

    proc: subprocess.Popen[bytes]
    port: int = 0
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _drained: bool = False  # the output pipe reached EOF: no more lines will come

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until a line of output matches ``pattern``; fail the test with the output otherwise."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if m := rx.search(line):
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                # An exited process may still have output in the pipe: give up only once it is all read.
                if left <= 0 or (self._drained and seen == len(self.lines)):
                    raise AssertionError(f"peer never printed {pattern!r}; output:\n{self.output_unlocked()}")
                self._cond.wait(min(left, 0.1))

    def output_unlocked(self) -> str:
        return "\n".join(self.lines)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self._cond.notify_all()
        with self._cond:
            self._drained = True
            self._cond.notify_all()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start(argv: Sequence[str], *, cwd: str | Path | None = None, env: dict[str, str] | None = None) -> Peer:
    """Start ``argv`` in its own process group with stdin piped and stdout+stderr collected."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    peer = Peer(proc)
    threading.Thread(target=peer._pump, daemon=True).start()
    return peer


@contextlib.contextmanager
def running(argv: Sequence[str], *, port_from: Callable[[Peer], int], **kwargs: object) -> Iterator[Peer]:
    """Start a peer, learn its port, yield it, always stop it."""
    peer = start(argv, **kwargs)  # type: ignore[arg-type]
    try:
        peer.port = port_from(peer)
        yield peer
    finally:
        peer.stop()


def port_from_accept_line(peer: Peer) -> int:
    """``openssl s_server`` prints ``ACCEPT 127.0.0.1:PORT`` (or ``ACCEPT [::1]:PORT``)."""
    return int(peer.wait_for(r"^ACCEPT .*:(\d+)$").group(1))


def port_from_port_line(peer: Peer) -> int:
    """Our Node scripts print ``PORT n`` once listening."""
    return int(peer.wait_for(r"^PORT (\d+)$").group(1))


def openssl_server(*args: str, **kwargs: object) -> contextlib.AbstractContextManager[Peer]:
    """``openssl s_server -accept 127.0.0.1:0 ARGS`` (add ``-cert``, ``-key``, ``-CAfile``, ``-Verify`` ...)."""
    argv = [tool("openssl"), "s_server", "-accept", "127.0.0.1:0", *args]
    return running(argv, port_from=port_from_accept_line, **kwargs)


# gnutls-serv has no option to listen on loopback only: it binds every interface.  Rather than expose it, each
# gnutls-serv test runs in a thread moved into a private network namespace that holds only loopback (threads
# have their own namespaces, and processes started from the thread inherit it).  Without the privilege for
# that (CAP_SYS_ADMIN), the tests skip instead of listening on the machine's real addresses.

_CLONE_NEWNET = 0x40000000
_SIOCSIFFLAGS = 0x8914
_IFF_UP_LOOPBACK_RUNNING = 0x1 | 0x8 | 0x40


def _enter_private_network() -> bool:
    """Move the calling thread into a new network namespace whose only interface, loopback, is up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", _IFF_UP_LOOPBACK_RUNNING, b""))
    return True


def in_private_network(body: Callable[[], T]) -> T:
    """Run ``body`` in a thread with a private network namespace; skip the test where that is not allowed."""
    results: list[T] = []
    errors: list[BaseException] = []
    isolated = threading.Event()

    def target() -> None:
        try:
            if _enter_private_network():
                isolated.set()
                results.append(body())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    if not isolated.is_set():
        missing(
            "no private network namespace can be made here (gnutls-serv listens on every interface)",
            "run the tests with CAP_SYS_ADMIN",
        )
    return results[0]


def ipv4_listen_port(pid: int, timeout: float = 10.0) -> int:
    """The IPv4 port a process listens on, from its own view of the network (its namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/tcp") as fh:
            for row in list(fh)[1:]:
                cols = row.split()
                if cols[3] == "0A":  # TCP_LISTEN
                    return int(cols[1].rsplit(":", 1)[1], 16)
        time.sleep(0.05)
    raise AssertionError("gnutls-serv never listened")
