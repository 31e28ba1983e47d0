"""``tlskit tunnel server|client`` and ``tlskit tunnel --config FILE``: flags or TOML into specs, then run.

All the work is in :mod:`tlskit.tools.tunnel`; this module parses, sets up logging (text or one JSON object per
line on stderr) and prints the listening addresses.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from .._text import printable
from ..errors import InputError
from .common import EXIT_OK, handle_errors_with, to_flags

if TYPE_CHECKING:
    from ..tools.tunnel.spec import Endpoint, TunnelSpec

__all__ = ["commands", "tunnel_cmd"]

# Library parameters -> this command's flags (see cli.common.to_flags).
FLAGS = {
    "target": "--target",
    "listen": "--listen",
    "name": "--name",
    "servername": "--servername",
    "allow_cn": "--allow-cn",
    "allow_dns": "--allow-dns",
    "allow_ip": "--allow-ip",
    "allow_uri": "--allow-uri",
    "proxy_protocol": "--proxy-protocol",
    "max_connections": "--max-connections",
    "handshake_timeout": "--handshake-timeout",
    "idle_timeout": "--idle-timeout",
    "connect_timeout": "--connect-timeout",
    "drain_timeout": "--drain-timeout",
    "workers": "--workers",
    "metrics": "--metrics",
}


# --- logging -----------------------------------------------------------------------------------------------


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: the tunnel's structured event, or the message of any other record."""

    def __init__(self, words: Callable[[str], str]) -> None:
        super().__init__()
        self._words = words

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
        }
        event = getattr(record, "tunnel_event", None)
        if isinstance(event, dict):
            out.update(event)
            for key in ("message", "fix", "error"):
                if isinstance(out.get(key), str):
                    out[key] = self._words(out[key])
        else:
            out["message"] = printable(self._words(record.getMessage()))
        return json.dumps(out, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """``tunnel: MESSAGE``, in the command's words (flags or configuration keys), control characters escaped."""

    def __init__(self, words: Callable[[str], str]) -> None:
        super().__init__("tunnel: %(message)s")
        self._words = words

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        # Only warnings and errors quote the library's parameters (one line per connection is INFO).
        return printable(self._words(text) if record.levelno >= logging.WARNING else text)


def _setup_logging(log_format: str, words: Callable[[str], str]) -> None:
    from .net_cmds import _DropHandshakeRecords  # the server's own line per failed handshake: the tunnel logs its own

    # One log record per connection: skip what logging would look up for each (logging's "Optimization" notes).
    logging._srcfile = None  # no caller's file and line: a stack walk per record
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(words) if log_format == "json" else _TextFormatter(words))
    handler.addFilter(_DropHandshakeRecords())
    for name in ("tlskit.tunnel", "tlskit.server", "tlskit.policy", "tlskit.client"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


# --- running -----------------------------------------------------------------------------------------------


async def _run(
    specs: Sequence[TunnelSpec], metrics: Endpoint | None, reload_specs: Callable[[], Sequence[TunnelSpec]] | None
) -> int:
    from ..net.server import format_peer
    from ..tools.tunnel.events import log_event
    from ..tools.tunnel.runtime import TunnelGroup

    group = TunnelGroup(specs, metrics_address=metrics, reload_specs=reload_specs)
    await group.start()
    for tunnel in group.tunnels:
        spec = tunnel.spec
        where = f"unix:{tunnel.address}" if spec.listen.unix else format_peer(tunnel.address)
        what = "TLS in, plaintext out" if spec.mode.value == "server" else "plaintext in, TLS out"
        if spec.mode.value == "server":
            what += f"; client certificates {spec.effective_client_auth.value}"
            if spec.proxy_protocol is not None:
                what += f"; PROXY protocol {spec.proxy_protocol.value}"
            if spec.workers > 1:
                what += f"; {spec.workers} workers"
        log_event(
            logging.INFO,
            f"[{spec.name}] listening on {where} -> {spec.target} ({what})",
            {"event": "listening", "tunnel": spec.name, "listen": where, "target": str(spec.target),
             "mode": spec.mode.value},
        )  # fmt: skip
    if group.metrics_server is not None:
        where = format_peer(group.metrics_server.address)
        log_event(logging.INFO, f"metrics on http://{where}/metrics", {"event": "metrics", "listen": where})
    await group.serve_forever()
    log_event(logging.INFO, "stopped", {"event": "stopped"})
    return EXIT_OK


def _start(
    specs: Sequence[TunnelSpec],
    *,
    metrics: str | None,
    log_format: str,
    reload_specs: Callable[[], Sequence[TunnelSpec]] | None = None,
    words: Callable[[str], str] | None = None,
) -> None:
    from ..net.server import run
    from ..tools.tunnel.spec import parse_endpoint

    where = parse_endpoint(metrics, param="metrics", listening=True) if metrics is not None else None
    _setup_logging(log_format, words or (lambda text: to_flags(text, FLAGS)))
    code = run(_run(specs, where, reload_specs))
    if code:
        raise click.exceptions.Exit(code)


# --- click commands ----------------------------------------------------------------------------------------


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--name", default="tunnel", show_default=True, help="Name in log lines and metrics."),
        click.option("--ca", multiple=True, metavar="FILE", help="Trust anchors (repeatable)."),
        click.option("--allow-dns", multiple=True, metavar="NAME", help="... or this DNS name SAN (repeatable)."),
        click.option("--allow-ip", multiple=True, metavar="ADDR", help="... or this IP address SAN (repeatable)."),
        click.option("--allow-uri", multiple=True, metavar="URI", help="... or this URI SAN, e.g. a SPIFFE ID."),
        click.option("--pin", multiple=True, metavar="sha256:B64", help="Accept only this public key (repeatable)."),
        click.option("--max-connections", type=int, default=None, help="Refuse connections beyond this many."),
        click.option("--handshake-timeout", type=float, default=10.0, show_default=True, metavar="S"),
        click.option("--connect-timeout", type=float, default=10.0, show_default=True, metavar="S",
                     help="Give up connecting to the target after S seconds."),
        click.option("--drain-timeout", type=float, default=10.0, show_default=True, metavar="S",
                     help="On SIGTERM, let open connections finish for up to S seconds."),
        click.option("--metrics", metavar="[HOST:]PORT", help="Serve Prometheus /metrics and /healthz here."),
        click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                     help="One line per connection on stderr, as text or as a JSON object."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _spec(mode: str, **values: Any) -> TunnelSpec:
    from ..tools.tunnel.spec import Mode, TunnelSpec

    pins = values.pop("pin")
    for key in ("ca", "allow_cn", "allow_dns", "allow_ip", "allow_uri"):
        if key in values:
            values[key] = tuple(values[key])
    return TunnelSpec(mode=Mode(mode), pins=tuple(pins), **values)


def _check(spec: TunnelSpec) -> None:
    spec.context()  # unreadable or mismatched files: exit 2 before anything listens


@click.group("tunnel", invoke_without_command=True)
@click.option("--config", "config_path", metavar="FILE.toml", help="Run the tunnels of this file (see --help).")
@click.option("--metrics", metavar="[HOST:]PORT", help="With --config: overrides the file's metrics.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="With --config: overrides it.")
@click.pass_context
@handle_errors_with(FLAGS)
def tunnel_cmd(ctx: click.Context, config_path: str | None, metrics: str | None, log_format: str | None) -> None:
    """TLS in front of (server) or behind (client) any TCP service, like stunnel and ghostunnel.

    \b
    tlskit tunnel server --listen 0.0.0.0:8443 --target 127.0.0.1:6379 --cert s.pem --key s-key.pem --ca ca.pem
    tlskit tunnel client --listen 127.0.0.1:6380 --target redis.internal:8443 --ca ca.pem --cert c.pem --key c-key.pem
    tlskit tunnel --config tunnels.toml

    The TOML file has a [tunnel.NAME] table per tunnel, with the flags' names as keys (mode = "server" or
    "client", listen, target, cert, key, ca, client-auth, allow-cn, allow-dns, allow-ip, allow-uri, pin,
    proxy-protocol, max-connections, handshake-timeout, idle-timeout, connect-timeout, drain-timeout, workers,
    servername), and optional top-level log-format and metrics.  SIGHUP reloads certificates, keys, CAs and the
    file; a changed certificate, key or CA file reloads its tunnel; SIGTERM drains.
    """
    if ctx.invoked_subcommand is not None:
        if config_path or metrics or log_format:
            raise InputError(
                "--config, --metrics and --log-format before server/client", fix="put them after the mode's name"
            )
        return
    if config_path is None:
        click.echo(ctx.get_help(), err=True)
        raise click.exceptions.Exit(2)
    from .tunnel_config import check_files, config_words, load_config

    config = load_config(config_path)
    check_files(config)

    def reload_specs() -> Sequence[TunnelSpec]:
        fresh = load_config(config_path)
        return fresh.specs

    where = metrics or (str(config.metrics) if config.metrics else None)
    _start(
        config.specs,
        metrics=where,
        log_format=log_format or config.log_format or "text",
        reload_specs=reload_specs,
        words=config_words,
    )


@tunnel_cmd.command("server")
@click.option("--listen", required=True, metavar="[HOST:]PORT", help="Where TLS clients connect (host: 127.0.0.1).")
@click.option("--target", required=True, metavar="HOST:PORT|unix:PATH", help="The plaintext service.")
@click.option("--cert", required=True, metavar="FILE", help="Certificate chain (leaf first), PEM.")
@click.option("--key", required=True, metavar="FILE", help="Private key, PEM.")
@click.option(
    "--client-auth", type=click.Choice(["none", "optional", "required"]), default=None,
    help="Client certificates (default: required with --ca, else none).",
)  # fmt: skip
@click.option("--allow-cn", multiple=True, metavar="NAME", help="Accept only clients with this CN (repeatable).")
@_common
@click.option("--proxy-protocol", type=click.Choice(["v1", "v2"]), default=None, help="PROXY header to the target.")
@click.option("--idle-timeout", type=float, default=None, metavar="S", help="Close connections idle for S seconds.")
@click.option("--workers", type=int, default=1, show_default=True, help="Processes sharing the port.")
@handle_errors_with(FLAGS)
def server_cmd(*, metrics: str | None, log_format: str, **values: Any) -> None:
    """Terminate TLS on --listen and forward plaintext to --target (ghostunnel server, stunnel's accept side)."""
    spec = _spec("server", **values)
    _check(spec)
    _start([spec], metrics=metrics, log_format=log_format)


@tunnel_cmd.command("client")
@click.option("--listen", required=True, metavar="[HOST:]PORT|unix:PATH", help="Where plaintext clients connect.")
@click.option("--target", required=True, metavar="HOST:PORT", help="The TLS server.")
@click.option("--cert", metavar="FILE", help="Client certificate chain, for mutual TLS.")
@click.option("--key", metavar="FILE", help="Client private key.")
@click.option("--servername", help="Name sent as SNI and verified (default: the target's host).")
@_common
@handle_errors_with(FLAGS)
def client_cmd(*, metrics: str | None, log_format: str, **values: Any) -> None:
    """Accept plaintext on --listen and originate (mutual) TLS to --target, resuming sessions (ghostunnel client)."""
    spec = _spec("client", **values)
    _check(spec)
    _start([spec], metrics=metrics, log_format=log_format)


commands: list[click.Command] = [tunnel_cmd]
