"""``start_server(..., workers=N)``: N forked processes accepting on one port, supervised by the parent.

Design:

- The parent binds a placeholder socket with ``SO_REUSEPORT`` (bound, never listening) to reserve the port and
  learn it when ``port=0``; it accepts nothing itself.
- Workers are forked from the parent after the ``SSLContext`` was built, so they share OpenSSL's session
  ticket keys (they live in the ``SSL_CTX``): a ticket issued by one worker resumes on any other.
- Each worker opens its own listening socket on the port with ``SO_REUSEPORT``; the kernel spreads new
  connections over the workers (no shared accept queue, no thundering herd), which is what lets handshake
  throughput scale with cores.
- A forked child leaves the parent's event loop alone (its epoll instance is shared with the parent), clears
  the inherited signal wake-up fd and runs a fresh loop of the same kind (uvloop or asyncio).
- Supervision: the parent watches every worker through a pidfd; a worker that dies unexpectedly is logged
  and replaced, unless workers keep dying (then it is only reported).  Each worker has a control pipe: the
  parent writes a shutdown deadline into it; EOF (the parent died) also shuts the worker down.  SIGTERM sent
  to a worker directly shuts it down gracefully too; SIGINT is ignored by workers so Ctrl-C in a terminal
  reaches only the parent, which shuts everything down in order.
- ``reload()`` is a rolling restart: a worker with the new context (and policy) starts, then an old one retires
  gracefully.  Connections still in a retiring worker's accept queue when it closes its listener are reset
  by Linux (unless ``net.ipv4.tcp_migrate_req=1``), so reload single-process servers when that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from ..errors import InputError
from .explain import network_error

__all__ = ["WorkerListener", "WorkerPool", "WorkerStart"]

log = logging.getLogger("tlskit.server")

_DEFAULT_DEADLINE = 10.0
_CRASH_WINDOW = 10.0  # seconds
_CRASH_LIMIT = 5  # unexpected exits within the window before the parent stops replacing workers
_READY_TIMEOUT = 30.0  # seconds for a new worker to listen


class WorkerListener(Protocol):
    """What a worker runs: something listening that can be closed gracefully (a :class:`tlskit.Server`)."""

    async def close(self, *, deadline: float) -> None: ...
    async def wait_closed(self) -> None: ...


WorkerStart = Callable[[str | None, int, int], Awaitable[WorkerListener]]
"""Called in each worker after the fork with ``(host, port, backlog)``: listen there with SO_REUSEPORT."""


@dataclass
class _Worker:
    pid: int
    control: int  # write end of the worker's control pipe
    pidfd: int | None
    ready: asyncio.Future[bool]  # True once the worker listens; False if it exited before
    ready_fd: int | None = None  # read end of the worker's readiness pipe, until it reported
    retiring: bool = False


@dataclass
class WorkerPool:
    """The parent's view of its workers (created by :meth:`start`)."""

    start_listener: WorkerStart
    host: str | None
    port: int
    backlog: int
    sockets: list[socket.socket]
    loop: asyncio.AbstractEventLoop
    workers: dict[int, _Worker] = field(default_factory=dict)
    closing: bool = False
    crashes: list[float] = field(default_factory=list)
    _all_gone: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(
        cls, start_listener: WorkerStart, host: str | None, port: int, *, count: int, backlog: int
    ) -> WorkerPool:
        if not hasattr(socket, "SO_REUSEPORT"):
            raise InputError("workers > 1 needs SO_REUSEPORT, which this platform lacks", fix="use workers=1")
        loop = asyncio.get_running_loop()
        sockets = await _placeholders(loop, host, port)
        pool = cls(start_listener, host, sockets[0].getsockname()[1], backlog, sockets, loop)
        workers = [pool._spawn() for _ in range(count)]
        # Return once every worker listens, so a client connecting right after start_server() is served.
        try:
            ready = await asyncio.wait_for(asyncio.gather(*(w.ready for w in workers)), _READY_TIMEOUT)
        except TimeoutError:
            ready = [False]
        if not all(ready):
            await pool.close(deadline=0.0)
            raise InputError(
                f"the workers could not listen on {host or '*'}:{port} within {_READY_TIMEOUT:g} s",
                fix="see the log above for the worker's error",
            )
        return pool

    @property
    def pids(self) -> list[int]:
        return [pid for pid, w in self.workers.items() if not w.retiring]

    # -- spawning --------------------------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        read_end, write_end = os.pipe()
        ready_read, ready_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(write_end)
            os.close(ready_read)
            self._child(read_end, ready_write)
        os.close(read_end)
        os.close(ready_write)
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        worker = _Worker(pid, write_end, pidfd, self.loop.create_future(), ready_read)
        self.workers[pid] = worker
        self.loop.add_reader(ready_read, self._on_ready, worker)
        if pidfd is not None:
            self.loop.add_reader(pidfd, self._reap, worker)
        else:
            self.loop.call_later(0.5, self._poll, worker)
        log.info("started worker %d on port %d", pid, self.port)
        return worker

    def _on_ready(self, worker: _Worker) -> None:
        """The worker wrote its readiness byte (it listens), or the pipe closed (it exited before)."""
        fd = worker.ready_fd
        if fd is None:
            return
        self.loop.remove_reader(fd)
        try:
            ok = os.read(fd, 1) == b"1"
        except OSError:
            ok = False
        os.close(fd)
        worker.ready_fd = None
        if not worker.ready.done():
            worker.ready.set_result(ok)

    def _child(self, control: int, ready: int) -> NoReturn:
        """The worker process: never returns."""
        status = 1
        try:
            # The parent's loop is running in this (copied) thread; forget it without touching it.
            asyncio.events._set_running_loop(None)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for w in self.workers.values():
                for fd in (w.control, w.pidfd, w.ready_fd):
                    if fd is not None:
                        os.close(fd)
            for s in self.sockets:
                s.close()
            loop = type(self.loop)()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._worker_main(control, ready))
            status = 0
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(status)

    async def _worker_main(self, control: int, ready: int) -> None:
        server = await self.start_listener(self.host, self.port, self.backlog)
        os.write(ready, b"1")
        os.close(ready)
        loop = asyncio.get_running_loop()

        closing: list[asyncio.Task[None]] = []

        def stop(deadline: float = _DEFAULT_DEADLINE) -> None:
            loop.remove_reader(control)
            closing.append(loop.create_task(server.close(deadline=deadline)))

        def on_control() -> None:
            data = os.read(control, 64)
            try:
                deadline = float(data.decode().strip() or _DEFAULT_DEADLINE)
            except ValueError:
                deadline = _DEFAULT_DEADLINE
            stop(deadline)  # a deadline, or EOF: the parent is gone

        loop.add_reader(control, on_control)
        loop.add_signal_handler(signal.SIGTERM, stop)
        await server.wait_closed()

    # -- supervision -----------------------------------------------------------------------------------------

    def _poll(self, worker: _Worker) -> None:
        if worker.pid not in self.workers:
            return
        pid, status = os.waitpid(worker.pid, os.WNOHANG)
        if pid == 0:
            self.loop.call_later(0.5, self._poll, worker)
            return
        self._exited(worker, status)

    def _reap(self, worker: _Worker) -> None:
        assert worker.pidfd is not None
        self.loop.remove_reader(worker.pidfd)
        os.close(worker.pidfd)
        worker.pidfd = None
        _, status = os.waitpid(worker.pid, 0)
        self._exited(worker, status)

    def _exited(self, worker: _Worker, status: int) -> None:
        self.workers.pop(worker.pid, None)
        self._on_ready(worker)  # a worker that died before listening never becomes ready
        os.close(worker.control)
        code = os.waitstatus_to_exitcode(status)
        if self.closing or worker.retiring:
            log.info("worker %d exited (%s)", worker.pid, _describe(code))
        else:
            now = time.monotonic()
            self.crashes = [t for t in self.crashes if now - t < _CRASH_WINDOW] + [now]
            if len(self.crashes) > _CRASH_LIMIT:
                log.error(
                    "worker %d died (%s); %d deaths in %g s: not starting another",
                    worker.pid, _describe(code), len(self.crashes), _CRASH_WINDOW,
                )  # fmt: skip
            else:
                log.warning("worker %d died (%s); starting a new one", worker.pid, _describe(code))
                self._spawn()
        if not self.workers:
            self._all_gone.set()

    def _retire(self, worker: _Worker, deadline: float) -> None:
        worker.retiring = True
        with contextlib.suppress(OSError):  # already gone: the pidfd reports it
            os.write(worker.control, f"{deadline}\n".encode())

    def reload(self) -> None:
        """Rolling restart: each old worker retires once a newly forked one (with the new settings) listens."""
        old = [w for w in self.workers.values() if not w.retiring]
        for worker in old:
            new = self._spawn()
            new.ready.add_done_callback(functools.partial(self._replaced, worker))

    def _replaced(self, old: _Worker, ready: asyncio.Future[bool]) -> None:
        # A new worker that could not listen leaves the old one serving (its failure is logged by the worker).
        if ready.result() and old.pid in self.workers:
            self._retire(old, _DEFAULT_DEADLINE)

    async def close(self, *, deadline: float) -> None:
        """Tell every worker to close within ``deadline``; kill those still running a little later."""
        self.closing = True
        for worker in list(self.workers.values()):
            self._retire(worker, deadline)
        if self.workers:
            try:
                await asyncio.wait_for(self._all_gone.wait(), deadline + 2.0)
            except TimeoutError:
                for worker in list(self.workers.values()):
                    log.warning("worker %d did not stop in time: killing it", worker.pid)
                    os.kill(worker.pid, signal.SIGKILL)
                    if worker.pidfd is not None:
                        self.loop.remove_reader(worker.pidfd)
                        os.close(worker.pidfd)
                        worker.pidfd = None
                    self._exited(worker, os.waitpid(worker.pid, 0)[1])
        for s in self.sockets:
            s.close()


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


async def _placeholders(loop: asyncio.AbstractEventLoop, host: str | None, port: int) -> list[socket.socket]:
    """Bound, non-listening SO_REUSEPORT sockets holding the port for every address of ``host``."""
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise network_error(exc, action="listen", host=host, port=port) from exc
    sockets: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, resolved in infos:
            if (family, resolved[0]) in seen:
                continue
            seen.add((family, resolved[0]))
            address = resolved
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except OSError as exc:
        for s in sockets:
            s.close()
        raise network_error(exc, action="listen", host=host, port=port) from exc
    return sockets
