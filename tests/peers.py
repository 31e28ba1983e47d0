"""Real TLS peers for tests: ``openssl s_server``, ``gnutls-serv``, Node scripts, run on loopback.

Every peer listens on a port the OS picks (port 0) and is always stopped by its context manager.  The port
is read from the peer's own output (``openssl s_server`` prints ``ACCEPT host:port``, our Node scripts print
``PORT n``).  ``gnutls-serv``, which binds every interface, runs in a network namespace of its own behind a
relay on a loopback port of the test's namespace (:func:`isolated`).

A test that needs a peer program says so with ``@requires("openssl")`` (a marker) or :func:`tool` (at run
time), and a missing data set or facility goes through :func:`missing`: the test skips on a developer's
machine, and fails, naming what is missing and how to install it, where ``TLSKIT_REQUIRE_PEERS=1`` is set
(``.ci/run`` sets it).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

NODE = shutil.which("node")
OPENSSL = shutil.which("openssl")
GNUTLS_CLI = shutil.which("gnutls-cli")
CURL = shutil.which("curl")
HAPROXY = shutil.which("haproxy")

RELAY = Path(__file__).with_name("netns_relay.py")

# The Debian package of each peer program (.ci/run installs them).
PACKAGES = {
    "openssl": "openssl",
    "gnutls-cli": "gnutls-bin",
    "gnutls-serv": "gnutls-bin",
    "certtool": "gnutls-bin",
    "node": "nodejs",
    "curl": "curl",
    "haproxy": "haproxy",
    "unshare": "util-linux",
    "testssl": "testssl.sh",
    "setpriv": "util-linux",
    "mosquitto": "mosquitto",
    "chromium": "chromium",
    "certutil": "libnss3-tools",
    "keytool": "default-jre-headless",
    "update-ca-certificates": "ca-certificates",
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


def start(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    pass_fds: Sequence[int] = (),
) -> Peer:
    """Start ``argv`` in its own process group with stdin piped and stdout+stderr collected."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        pass_fds=pass_fds,
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


# --- servers that listen on every interface ------------------------------------------------------------------
# gnutls-serv has no option to listen on loopback only: it binds every interface.  Rather than expose it, it runs
# in a user and network namespace of its own (unprivileged: ``unshare --user --map-root-user --net``) whose only
# interface is loopback, behind tests/netns_relay.py.  The relay inherits a socket listening on 127.0.0.1 of the
# test's namespace (a socket stays in the namespace it was made in) and forwards each connection to the server.


# Preferred: an unprivileged user + network namespace (no capability needed).  Where user namespaces are blocked
# (some container seccomp profiles) but this process holds CAP_SYS_ADMIN, a plain network namespace does the same.
_NAMESPACE_OPTIONS = (("--user", "--map-root-user", "--net"), ("--net",))


@functools.cache
def _namespace_options(unshare: str) -> tuple[tuple[str, ...] | None, str]:
    """The ``unshare`` options that make a private network namespace here, or None and why none can be made."""
    why = ""
    for options in _NAMESPACE_OPTIONS:
        try:
            done = subprocess.run(
                [unshare, *options, "--", sys.executable, "-c", ""],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = str(exc)
            continue
        if done.returncode == 0:
            return options, ""
        why = done.stderr.strip() or f"exit status {done.returncode}"
    return None, why


def require_network_namespaces() -> tuple[str, ...]:
    """``unshare`` and the options that made a private network namespace here; :func:`missing` otherwise."""
    unshare = tool("unshare")
    options, why = _namespace_options(unshare)
    if options is None:
        missing(
            f"no private network namespace can be made here ({why})",
            "allow unprivileged user namespaces (sysctl user.max_user_namespaces=10000 "
            "kernel.unprivileged_userns_clone=1 kernel.apparmor_restrict_unprivileged_userns=0; in a container, a "
            "seccomp profile that allows unshare), or run the tests with CAP_SYS_ADMIN",
        )
    return (unshare, *(options or ()))


@contextlib.contextmanager
def isolated(argv: Sequence[str], *, ready_timeout: float = 30.0) -> Iterator[Peer]:
    """Run a server that listens on every interface in a private network namespace; yield it as a :class:`Peer`
    whose ``port`` on 127.0.0.1 reaches it.  Every ``{port}`` in ``argv`` becomes the port it must listen on.

    ``lines``/``wait_for`` hold the server's output (and the relay's, lines starting ``relay:``).  The relay and
    the server are stopped on the way out, whatever happened.
    """
    unshare = require_network_namespaces()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        fd = listener.fileno()
        relay = [*unshare, "--", sys.executable, str(RELAY), str(fd), "--"]
        peer = start([*relay, *argv], pass_fds=(fd,))
        peer.port = listener.getsockname()[1]
    # Only the relay holds the listening socket now: if it dies, connections are refused instead of left waiting.
    try:
        peer.wait_for(r"^relay: ready$", timeout=ready_timeout)
        yield peer
    finally:
        peer.stop()


def gnutls_server(*args: str | Path) -> contextlib.AbstractContextManager[Peer]:
    """``gnutls-serv ARGS`` in a private network namespace (see :func:`isolated`); connect to 127.0.0.1:port."""
    return isolated([tool("gnutls-serv"), "--port", "{port}", *map(str, args)])
