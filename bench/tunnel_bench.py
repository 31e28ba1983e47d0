"""The tunnel phases of bench/run.py: ``tlskit tunnel server`` and stunnel4 side by side, same certificate,
same plaintext echo target, each tunnel pinned to the server CPU and all load (clients and the target) on the
other one.

- memory: RSS of the tunnel process before and after N idle tunnelled connections (each did a handshake and a
  16-byte echo through the tunnel, so its connection to the target exists), per connection;
- handshakes: tunnel CPU per full TLS 1.3 handshake, each followed by a 16-byte echo (so it includes the
  tunnel's connection to the target), from ``bench/tunnel_churn.py`` processes;
- stream: tunnel CPU per GiB of payload echoed through one connection (each byte crosses the tunnel twice:
  decrypted on the way in, encrypted on the way back), from ``bench/stream_client.py``.
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

from harness import (
    BENCH_DIR,
    HOST,
    PYTHON,
    Proc,
    children_cpu_seconds,
    cpu_times,
    free_port,
    parse_ready,
    pinned,
    wait_all,
    wait_for_port,
)
from results import HandshakeResult, StreamResult

if TYPE_CHECKING:
    from run import Bench

TUNNELS = ("tlskit", "stunnel")
LABELS = {"tlskit": "tlskit tunnel", "stunnel": "stunnel4"}
MIB = 1024 * 1024

STUNNEL_CONF = """\
; stunnel4 as a TLS server in front of the plaintext echo, the same job as `tlskit tunnel server`.
foreground = yes
pid =
[bench]
accept = {host}:{port}
connect = {host}:{target}
cert = {cert}
key = {key}
"""


def stunnel_binary() -> str | None:
    return shutil.which("stunnel4") or shutil.which("stunnel")


class TunnelPhases:
    """Starts the echo target and a tunnel per phase, measures, and stops both before returning."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.args = bench.args

    # -- processes -------------------------------------------------------------------------------------------

    def start_target(self) -> tuple[Proc, int]:
        argv = pinned([PYTHON, str(BENCH_DIR / "plain_echo.py")], self.bench.load_cpu)
        self.bench.note_command("tunnel target: plaintext echo", argv)
        proc = self.bench.procs.spawn("echo-target", argv)
        return proc, parse_ready(proc.expect("READY", timeout=20))

    def start_tunnel(self, kind: str, target: int) -> tuple[Proc, int]:
        bench = self.bench
        if kind == "tlskit":
            argv = pinned([PYTHON, str(BENCH_DIR / "tlskit_tunnel.py"), str(bench.cert), str(bench.key), str(target)],
                          bench.server_cpu)  # fmt: skip
            bench.note_command("tunnel tlskit", argv, target)
            proc = bench.procs.spawn("tlskit-tunnel", argv)
            return proc, parse_ready(proc.expect("READY", timeout=20))
        binary = stunnel_binary()
        if binary is None:
            raise RuntimeError("stunnel4 is not installed (apt-get install stunnel4; .ci/run installs it)")
        port = free_port()
        conf = bench.work / f"stunnel-{port}.conf"
        conf.write_text(STUNNEL_CONF.format(host=HOST, port=port, target=target, cert=bench.cert, key=bench.key))
        argv = pinned([binary, str(conf)], bench.server_cpu)
        bench.note_command("tunnel stunnel (config: accept, connect, cert, key; foreground)", argv)
        proc = bench.procs.spawn("stunnel", argv, stdin_stops=False)
        wait_for_port(proc, port, "stunnel")
        return proc, port

    def _pair(self, kind: str) -> tuple[Proc, Proc, int]:
        target, target_port = self.start_target()
        try:
            tunnel, port = self.start_tunnel(kind, target_port)
        except BaseException:
            self.bench.procs.stop(target)
            raise
        return target, tunnel, port

    def _stop(self, *procs: Proc) -> None:
        for proc in procs:
            self.bench.procs.stop(proc)

    def gc(self, kind: str, tunnel: Proc) -> None:
        if kind == "tlskit":
            self.bench.gc(tunnel)
        else:
            time.sleep(0.3)  # C: nothing to collect; settle like the others

    # -- phases ----------------------------------------------------------------------------------------------

    def memory(self, kind: str) -> None:
        target, tunnel, port = self._pair(kind)
        bench = self.bench
        try:
            bench.results.tunnel_memory[kind] = bench.idle_memory(
                kind, tunnel, port, self.args.tunnel_idle, lambda: self.gc(kind, tunnel)
            )
        finally:
            self._stop(tunnel, target)

    def handshakes(self, kind: str) -> None:
        target, tunnel, port = self._pair(kind)
        try:
            self._churn(port, 1.0, 2)  # warm-up, not counted
            before = cpu_times(tunnel.pid)
            done, wall, client_cpu = self._churn(port, float(self.args.seconds), self.args.churn_procs)
            after = cpu_times(tunnel.pid)
        finally:
            self._stop(tunnel, target)
        if done == 0:
            raise RuntimeError(f"no handshake completed through {kind}")
        result = HandshakeResult(
            kind, self.args.churn_procs, done, wall, after[0] - before[0], after[1] - before[1], client_cpu
        )
        previous = self.bench.results.tunnel_handshakes.get(kind)
        self.bench.results.tunnel_handshakes[kind] = result if previous is None else previous + result

    def _churn(self, port: int, seconds: float, processes: int) -> tuple[int, float, float]:
        bench = self.bench
        argv = pinned([PYTHON, str(BENCH_DIR / "tunnel_churn.py"), str(port), str(bench.root), "--seconds",
                       f"{seconds:g}"], bench.load_cpu)  # fmt: skip
        bench.note_command(f"tunnel handshakes ({'warm-up' if seconds <= 1 else f'{processes} processes'})", argv, port)
        client0 = children_cpu_seconds()
        start = time.perf_counter()
        procs = [bench.procs.spawn("churn", argv) for _ in range(processes)]
        outputs = wait_all(procs, seconds + 60)
        wall = time.perf_counter() - start
        for proc in procs:
            bench.procs.stop(proc)
        done = 0
        for out in outputs:
            for line in out.splitlines():
                if line.startswith("DONE "):
                    done += int(line.split()[1])
        return done, wall, children_cpu_seconds() - client0

    def stream(self, kind: str) -> None:
        target, tunnel, port = self._pair(kind)
        bench = self.bench
        try:
            bench.stream(port, 16 * MIB, deadline=120)  # warm-up
            cpu0 = sum(cpu_times(tunnel.pid))
            client0 = children_cpu_seconds()
            echoed, seconds, negotiated = bench.stream(
                port, self.args.stream_mib * self.args.stream_rounds * MIB, deadline=300
            )
            cpu1 = sum(cpu_times(tunnel.pid))
            bench.results.tunnel_streams[kind] = StreamResult(
                kind, echoed, seconds, cpu1 - cpu0, children_cpu_seconds() - client0, negotiated
            )
        finally:
            self._stop(tunnel, target)


def run_phases(bench: Bench) -> None:
    """Memory, then handshake rounds interleaved across the tunnels, then streams."""
    phases = TunnelPhases(bench)
    for kind in TUNNELS:
        bench.run_phase(f"tunnel memory {kind}", lambda kind=kind: phases.memory(kind))  # type: ignore[misc]
    for round_ in range(1, bench.args.rounds + 1):
        for kind in TUNNELS:
            bench.run_phase(
                f"tunnel handshakes {kind} (round {round_})",
                lambda kind=kind: phases.handshakes(kind),  # type: ignore[misc]
            )
    for kind in TUNNELS:
        bench.run_phase(f"tunnel stream {kind}", lambda kind=kind: phases.stream(kind))  # type: ignore[misc]
