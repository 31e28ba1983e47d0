"""Real TLS peers for tests: ``openssl s_server``, ``gnutls-serv``, Node scripts, run on loopback.

Every peer listens on a port the OS picks (port 0) and is always stopped by its context manager.  The port
is read from the peer's own output (``openssl s_server`` prints ``ACCEPT host:port``, our Node scripts print
``PORT n``) or, for ``gnutls-serv``, which neither prints it nor binds loopback only, from the listening
sockets of the private network namespace it runs in (:func:`in_private_network`).
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
from typing import TypeVar

import pytest

NODE = shutil.which("node")
OPENSSL = shutil.which("openssl")
GNUTLS_SERV = shutil.which("gnutls-serv")
GNUTLS_CLI = shutil.which("gnutls-cli")
CURL = shutil.which("curl")
HAPROXY = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy") or None
STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (.ci/run installs it)")
T = TypeVar("T")

needs_gnutls = pytest.mark.skipif(GNUTLS_SERV is None, reason="gnutls-bin is not installed (.ci/run installs it)")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed (.ci/run installs it)")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed (.ci/run installs it)")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (.ci/run installs it)")


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
    assert OPENSSL is not None
    argv = [OPENSSL, "s_server", "-accept", "127.0.0.1:0", *args]
    return running(argv, port_from=port_from_accept_line, **kwargs)


def node_script(source: str, *args: str, **kwargs: object) -> contextlib.AbstractContextManager[Peer]:
    """Run a Node program (``node -e``) that prints ``PORT n`` when listening; extra args in process.argv."""
    assert NODE is not None
    return running([NODE, "-e", source, "--", *args], port_from=port_from_port_line, **kwargs)


def run_node(source: str, *args: str, timeout: float = 30.0, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a Node program to completion (a client), returning its output."""
    assert NODE is not None
    return subprocess.run(
        [NODE, "-e", source, "--", *args], capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )  # type: ignore[call-overload]


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
        pytest.skip("gnutls-serv listens on all interfaces and no private network namespace is allowed here")
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
