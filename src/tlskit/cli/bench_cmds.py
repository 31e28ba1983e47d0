"""``tlskit bench``: a TLS load generator and latency meter (thin layer over :mod:`tlskit.tools.loadgen`)."""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING

import click

from .._text import printable
from ..errors import InputError, NetworkError, TLSError
from .common import EXIT_FAILED, fail, handle_errors_with, read_passphrase
from .net_cmds import client_options, parse_address

if TYPE_CHECKING:
    from ..tools.loadgen import BenchReport, BenchSpec, Percentiles, Phase

# The library's names for what bench's flags set (see common.to_flags).
_FLAGS = {"bulk_bytes": "--bytes", "request": "--request", "plain_port": "--plain-port"}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``1G``, ``64MiB``, ``512k``, ``1048576``: bytes (binary multiples)."""
    m = _SIZE.match(text)
    if m is None:
        raise InputError(f"--bytes {text!r} is not a size", fix="write it like 64M, 1G or 1048576")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))


def _ms(p: Percentiles | None) -> list[str]:
    return ["-"] * 3 if p is None else [f"{p.p50:.2f}", f"{p.p90:.2f}", f"{p.p99:.2f}"]


def _render(report: BenchReport) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = Console(highlight=False)
    cipher = f", {report.cipher}" if report.cipher else ""
    out.print(Text(f"tlskit bench {report.target}: {report.protocol or 'no TLS session'}{cipher}, "
                   f"{report.concurrency} connections at a time", style="bold"))  # fmt: skip
    table = Table(box=None, pad_edge=False)
    for header in ("", "p50 ms", "p90 ms", "p99 ms"):
        table.add_column(header, justify="left" if not header else "right")
    phases: list[Phase] = [p for p in (report.full, report.resumed, report.plain) if p is not None]
    for phase in phases:
        table.add_row(Text(phase.name, style="bold"))
        if phase is not report.plain:
            table.add_row("  TCP connect", *_ms(phase.tcp_connect))
            table.add_row("  handshake", *_ms(phase.handshake))
        else:
            table.add_row("  TCP connect", *_ms(phase.tcp_connect))
        table.add_row("  first byte", *_ms(phase.first_byte))
    out.print(table)
    for phase in phases:
        rate = (
            f"{phase.name}: {phase.completed} of {phase.attempted} in {phase.wall_seconds:.2f} s, "
            f"{phase.per_second:.0f}/s, {phase.per_client_cpu_second:.0f} per client CPU second"
        )
        if phase is report.resumed:
            rate += f", {phase.resumed} resumed"
        out.print(Text(rate))
        for code, count in sorted(phase.failures.items(), key=lambda kv: -kv[1]):
            out.print(Text(f"  failed ({code}): {count}", style="red"))
    for bulk in (report.bulk, report.plain_bulk):
        if bulk is not None:
            out.print(
                Text(f"{bulk.name}: {bulk.bytes / 2**20:.0f} MiB echoed in {bulk.seconds:.2f} s, "
                     f"{bulk.mib_per_second:.0f} MiB/s, {bulk.cpu_seconds_per_gib:.2f} s of client CPU per GiB")
            )  # fmt: skip
    for note in report.notes:
        out.print(Text(f"note: {note}", style="yellow"))
    out.print(Text(printable(report.summary()), style="bold"))


@click.command("bench")
@click.argument("address", metavar="HOST:PORT")
@client_options
@click.option("--insecure", is_flag=True, help="Do not verify the server (as openssl s_time; --ca is then ignored).")
@click.option("--tls", "version", type=click.Choice(["1.2", "1.3"]), help="Only this protocol version.")
@click.option("--connections", type=click.IntRange(1), default=1000, show_default=True, help="Connections per phase.")
@click.option("--concurrency", type=click.IntRange(1), default=8, show_default=True, help="Connections at a time.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="S", help="Seconds per phase.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="N",
    help="Start at most N connections per second (a fixed offered load; default: as fast as possible).",
)
@click.option("--resume", is_flag=True, help="Also measure resumed handshakes (TLS 1.3 tickets, TLS 1.2 sessions).")
@click.option("--bytes", "size", metavar="SIZE", help="Echo SIZE bytes through the service (64M, 1G).")
@click.option("--plain-port", type=click.IntRange(1, 65535), help="A plaintext port of the same service, to compare.")
@click.option(
    "--request",
    default="GET / HTTP/1.0\\r\\n\\r\\n",
    show_default=True,
    help="What each connection sends (\\r \\n \\t escapes); the first byte of the answer is timed.  Empty: close "
    "right after the handshake, as openssl s_time does.",
)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, metavar="S")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors_with(_FLAGS)
def bench_cmd(
    *,
    address: str,
    ca: tuple[str, ...],
    cert: str | None,
    key: str | None,
    servername: str | None,
    alpn: tuple[str, ...],
    insecure: bool,
    version: str | None,
    connections: int,
    concurrency: int,
    duration: float | None,
    rate: float | None,
    resume: bool,
    size: str | None,
    plain_port: int | None,
    request: str,
    timeout: float,
    as_json: bool,
) -> None:
    """Measure what TLS costs a service: TCP connect, full and resumed handshakes, time to first byte (p50, p90,
    p99), handshakes per second and bulk throughput; with --plain-port, the same over plaintext, and one sentence
    on what TLS adds.  Exit 1 when no handshake completed (the failures are listed by problem code), or when the
    --bytes transfer failed (the service could not be reached, closed, or did not echo everything in time).
    """
    from ..net.context import client_context
    from ..net.server import run
    from ..tools.loadgen import BenchSpec

    host, port = parse_address(address)
    if (cert is None) != (key is None):
        raise InputError("--cert and --key go together", fix="give both, or neither")
    context = client_context(
        ca=None if insecure else list(ca) or None,
        # --insecure: no trust anchors at all, so no path is built either, the work openssl s_time does.
        system_trust=False if insecure else None,
        cert=cert,
        key=key,
        passphrase=read_passphrase(None),
        alpn=alpn,
        verify=not insecure,
        min_version=version or "1.2",
        max_version=version,
    )
    raw = request.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t").encode()
    spec = BenchSpec(
        host=host.strip("[]"),
        port=port,
        context=context,
        server_name=servername,
        connections=connections,
        concurrency=concurrency,
        duration=duration,
        rate=rate,
        resume=resume,
        bulk_bytes=parse_size(size) if size else 0,
        plain_port=plain_port,
        request=raw,
        timeout=timeout,
    )
    try:
        report = run(_with_progress(spec, show=not as_json and sys.stderr.isatty()))
    except (NetworkError, TLSError) as exc:  # the service failed the run (the --bytes transfer): not bad usage
        raise fail(str(exc), code=EXIT_FAILED, flags=_FLAGS) from None
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _render(report)
    if report.full.completed == 0:
        raise click.exceptions.Exit(EXIT_FAILED)


async def _with_progress(spec: BenchSpec, *, show: bool) -> BenchReport:
    """Run the bench, with a progress bar on stderr when it is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from ..tools.loadgen import run_bench

    if not show:
        return await run_bench(spec)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total or None)
            bar.update(tasks[phase], completed=done)

        return await run_bench(spec, progress=progress)


commands: list[click.Command] = [bench_cmd]
