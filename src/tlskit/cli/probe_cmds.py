"""``tlskit probe HOST:PORT``: what a TLS server negotiates and sends, and every problem with it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from .._text import printable
from .common import EXIT_FAILED, EXIT_OK, handle_errors, passphrase_option, read_passphrase, to_flags
from .net_cmds import parse_address

if TYPE_CHECKING:
    from ..tools.probe import ProbeReport


@click.command("probe")
@click.argument("address", metavar="HOST:PORT")
@click.option(
    "--ca",
    "cas",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Trust anchors (repeatable; default: the system's).",
)
@click.option("--servername", default=None, help="Server name to send (SNI) and check (default: HOST).")
@click.option("--cert", type=click.Path(dir_okay=False), default=None, help="Client certificate (chain) to present.")
@click.option("--key", type=click.Path(dir_okay=False), default=None, help="Private key of --cert.")
@passphrase_option
@click.option("--alpn", multiple=True, help="ALPN protocol to offer (repeatable), e.g. h2.")
@click.option(
    "--crl",
    "crls",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="CRL to check revocation against (repeatable).",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds per connection."
)
@click.option("--no-scan", is_flag=True, help="Skip the per-version and per-cipher handshakes.")
@click.option(
    "--no-revocation", is_flag=True, help="Do not ask the OCSP responder or CRL the server's certificate names."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def probe_cmd(
    *,
    address: str,
    cas: tuple[str, ...],
    servername: str | None,
    cert: str | None,
    key: str | None,
    passphrase_file: str | None,
    alpn: tuple[str, ...],
    crls: tuple[str, ...],
    timeout: float,
    no_scan: bool,
    no_revocation: bool,
    as_json: bool,
) -> None:
    """Connect to HOST:PORT and explain what is wrong with its TLS: each problem with a code, a sentence and a fix.

    Shows the negotiated protocol, cipher, group and ALPN, the certificate chain exactly as the server sent
    it, which protocol versions it accepts, whether its certificate was revoked (asking the OCSP responder or
    CRL it names), and whether it meets Mozilla's "modern" and "intermediate" profiles.
    Exit status: 0 no problems, 1 problems found, 2 bad usage or unreachable.
    """
    from ..tools.probe import probe

    host, port = parse_address(address)
    passphrase = read_passphrase(passphrase_file) if key is not None else None
    report = probe(
        host.strip("[]"),
        port,
        ca=cas,
        server_name=servername,
        cert=cert,
        key=key,
        passphrase=passphrase,
        alpn=alpn,
        crls=crls,
        timeout=timeout,
        scan=not no_scan,
        revocation=not no_revocation,
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _render(report)
    raise click.exceptions.Exit(EXIT_OK if report.ok else EXIT_FAILED)


def _text(value: object) -> str:
    """A value from the server (names, ALPN, messages quoting them) as rich markup that shows it as text."""
    from rich.markup import escape

    return escape(printable(str(value)))


def _render(report: ProbeReport) -> None:
    """The human report: handshake, chain, versions, profiles, then the problems with their fixes."""
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=True)
    sni = f" (SNI {report.server_name})" if report.server_name else ""
    out.print(f"[bold]{_text(report.host)}:{report.port}[/]{_text(sni)}")
    fields = (("protocol", report.protocol), ("cipher", report.cipher), ("group", report.group), ("ALPN", report.alpn))
    out.print("  " + "   ".join(f"{k} [cyan]{_text(v) if v else '-'}[/]" for k, v in fields))

    out.print(f"\n[bold]Chain as sent[/] ({len(report.chain)} certificate{'s' * (len(report.chain) != 1)})")
    for i, c in enumerate(report.chain):
        left = f"{c.days_left} days left" if c.days_left >= 0 else f"[red]expired {-c.days_left} days ago[/]"
        out.print(f"  [bold]#{i}[/] {_text(c.subject) or '(empty subject)'}")
        out.print(f"      issuer     {_text(c.issuer)}")
        out.print(f"      valid      {c.not_before:%Y-%m-%d} to {c.not_after:%Y-%m-%d} ({left})")
        out.print(
            f"      key        {_text(c.key_type)} ({c.key_bits} bits), signed with {_text(c.signature_algorithm)}"
        )
        out.print(f"      SANs       {_text(', '.join(c.sans)) or '-'}")
        out.print(f"      EKU        {_text(', '.join(c.eku)) or '-'}")

    if report.versions:
        colours = {"accepted": "green", "refused": "dim", "not testable here": "yellow"}
        line = ", ".join(f"{v.value} [{colours[s.value]}]{s.value}[/]" for v, s in report.versions.items())
        out.print(f"\n[bold]Protocol versions[/]  {line}")
        if report.tls12_ciphers:
            out.print(f"[bold]TLS 1.2 suites[/]     {_text(', '.join(report.tls12_ciphers))}")
    for check in report.profiles:
        verdict = {True: "[green]yes[/]", False: "[red]no[/]", None: "[yellow]probably[/]"}[check.met]
        why = f" ({_text('; '.join(check.reasons))})" if check.reasons else ""
        out.print(f"Mozilla {check.name + ':':<14}{verdict}{why}")

    if report.ok:
        out.print("\n[bold green]No problems found.[/]")
        return
    out.print(f"\n[bold red]Problems ({len(report.problems)})[/]")
    for p in report.problems:
        out.print(f"  [red]x[/] [bold]{p.code}[/]: {_text(p.message)}")
        out.print(f"      fix: {_text(to_flags(p.fix))}")


commands: list[click.Command] = [probe_cmd]
