"""Run a server that listens on every interface in a private network namespace, reachable only through a
socket the test made on its own loopback.  Started by ``peers.isolated`` as::

    unshare --user --map-root-user --net -- python netns_relay.py FD -- ARGV...

FD is a socket listening on 127.0.0.1 in the test's network namespace, inherited from the test; a socket stays
in the namespace it was made in, so connections to it arrive here from the test's loopback.  The relay brings
up ``lo``, the only interface of its new namespace, picks a free port there, starts ARGV with every ``{port}``
replaced by it, prints ``relay: ready`` once ARGV listens on that port, then forwards every connection accepted
on FD to 127.0.0.1:port in the namespace, byte for byte both ways; an EOF is passed on as a half-close
(``shutdown(SHUT_WR)``), an error as a reset.  ARGV's output goes where the relay's goes.  The relay stops ARGV
and exits on SIGTERM, when ARGV exits, and when its stdin reaches EOF (the test process is gone).

Standard library only: it runs with the test's interpreter inside the namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

READY_TIMEOUT = 30.0  # seconds for ARGV to listen
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sH22x"  # struct ifreq: the name, then ifr_flags in the 24-byte union
_PR_SET_PDEATHSIG = 1
_TCP_LISTEN = "0A"


def say(message: str) -> None:
    print(f"relay: {message}", flush=True)


def bring_up_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0)))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def free_port() -> int:
    """A free port on 127.0.0.1 of this namespace, where nothing else runs to take it in the meantime."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


def listening(port: int) -> bool:
    """Whether something in this namespace listens on IPv4 ``port`` (any address)."""
    with open("/proc/self/net/tcp") as fh:
        for row in list(fh)[1:]:
            cols = row.split()
            if cols[3] == _TCP_LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def die_with_relay() -> None:
    """In the child before exec: SIGKILL when the relay dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def pump(src: socket.socket, dst: socket.socket, failed: threading.Event) -> None:
    """Copy ``src`` to ``dst`` until EOF, then half-close ``dst``; on an error, shut both down."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        failed.set()
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def forward(client: socket.socket, port: int) -> None:
    failed = threading.Event()
    try:
        server = socket.create_connection(("127.0.0.1", port))
    except OSError as exc:
        say(f"cannot reach 127.0.0.1:{port}: {exc}")
        server = None
        failed.set()
    if server is not None:
        back = threading.Thread(target=pump, args=(server, client, failed), daemon=True)
        back.start()
        pump(client, server, failed)
        back.join()
    for s in (client, server):
        if s is None:
            continue
        if failed.is_set():  # pass an error on as a reset, not as a clean close
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


class Stop(Exception):
    """SIGTERM arrived: stop the server and exit."""


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: the clean-up must not be interrupted
    raise Stop


def exit_when_done(child: subprocess.Popen[bytes]) -> None:
    """The server exited by itself: say so and end the relay (connections are then refused)."""
    code = child.wait()
    say(f"server exited with status {code}")
    os.kill(os.getpid(), signal.SIGTERM)


def exit_on_stdin_eof() -> None:
    """The test holds the other end of stdin: EOF means it is gone."""
    while os.read(0, 4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def main(args: Sequence[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        say("usage: netns_relay.py FD -- ARGV...")
        return 2
    listener = socket.socket(fileno=int(args[0]))
    signal.signal(signal.SIGTERM, on_sigterm)
    bring_up_loopback()
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in args[2:]]
    # No thread runs yet, so preexec_fn is safe here.
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_relay)  # noqa: PLW1509
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not listening(port):
            if child.poll() is not None:
                say(f"server exited with status {child.returncode} before listening on port {port}")
                return 1
            if time.monotonic() > deadline:
                say(f"server did not listen on port {port} within {READY_TIMEOUT:.0f} s")
                return 1
            time.sleep(0.02)
        threading.Thread(target=exit_when_done, args=(child,), daemon=True).start()
        threading.Thread(target=exit_on_stdin_eof, daemon=True).start()
        say("ready")
        while True:
            client, _ = listener.accept()
            threading.Thread(target=forward, args=(client, port), daemon=True).start()
    except Stop:
        return 0
    finally:
        listener.close()
        stop(child)


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(status)  # without waiting for the forwarding threads, which die with the process
