"""Real TLS peers for tests: ``openssl s_server``, ``gnutls-serv``, Node scripts, run on loopback.

Every peer listens on a port the OS picks (port 0) and is always stopped by its context manager.  The port
is read from the peer's own output (``openssl s_server`` prints ``ACCEPT host:port``, our Node scripts print
``PORT n``) or, for ``gnutls-serv`` which does not print it, from the listening sockets the process owns.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

NODE = shutil.which("node")
OPENSSL = shutil.which("openssl")
GNUTLS_SERV = shutil.which("gnutls-serv")
GNUTLS_CLI = shutil.which("gnutls-cli")

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (.ci/run installs it)")
needs_gnutls = pytest.mark.skipif(GNUTLS_SERV is None, reason="gnutls-bin is not installed (.ci/run installs it)")


@dataclass
class Peer:
    """A running peer process whose combined output is collected in the background."""

    proc: subprocess.Popen[bytes]
    port: int = 0
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

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
                if left <= 0 or (self.proc.poll() is not None and seen == len(self.lines)):
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


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state owned by process ``pid`` (from /proc)."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            next(fh)
            for row in fh:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A = TCP_LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def port_from_proc(peer: Peer, timeout: float = 10.0) -> int:
    """Find the port a peer listens on by looking at its sockets (for peers that do not print it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.proc.poll() is not None:
            raise AssertionError(f"peer exited early; output:\n{peer.output}")
        ports = listening_ports(peer.proc.pid)
        if ports:
            return min(ports)
        time.sleep(0.05)
    raise AssertionError(f"peer never listened; output:\n{peer.output}")


def openssl_server(*args: str, **kwargs: object) -> contextlib.AbstractContextManager[Peer]:
    """``openssl s_server -accept 127.0.0.1:0 ARGS`` (add ``-cert``, ``-key``, ``-CAfile``, ``-Verify`` ...)."""
    assert OPENSSL is not None
    argv = [OPENSSL, "s_server", "-accept", "127.0.0.1:0", *args]
    return running(argv, port_from=port_from_accept_line, **kwargs)


def gnutls_server(*args: str, **kwargs: object) -> contextlib.AbstractContextManager[Peer]:
    """``gnutls-serv --port 0 ARGS``; the port is read from /proc since gnutls-serv does not print it."""
    assert GNUTLS_SERV is not None
    argv = [GNUTLS_SERV, "--port", "0", *args]
    return running(argv, port_from=port_from_proc, **kwargs)


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
