"""``tlskit inspect`` and ``tlskit verify``: thin layers over :mod:`tlskit.pki.inspect` and :mod:`tlskit.pki.verify`."""

from __future__ import annotations

import json
import sys

import click

from .._text import printable
from .common import EXIT_FAILED, handle_errors, passphrase_option, read_passphrase, to_flags


@click.command("inspect")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of summaries instead of text.")
@passphrase_option
@handle_errors
def inspect_cmd(*, files: tuple[str, ...], as_json: bool, passphrase_file: str | None) -> None:
    """Summarize certificates, chains, CSRs, CRLs and keys (PEM or DER, detected).

    Shows subject, issuer, serial, validity and days left, SANs, key type and size, key usages, CA
    constraints, SHA-256 fingerprint and the SPKI pin (for tlskit connect --pin).
    """
    from rich.console import Console

    from ..pki.inspect import inspect_file
    from .inspect_render import render

    passphrase = read_passphrase(passphrase_file)
    summaries = [s for path in files for s in inspect_file(path, passphrase=passphrase)]
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
        return
    # Off a terminal rich assumes 80 columns, which would fold SHA-256 fingerprints mid-byte.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    for index, summary in enumerate(summaries):
        if index:
            console.print()
        console.print(render(summary))


@click.command("verify")
@click.argument("cert", type=click.Path(dir_okay=False))
@click.option(
    "--ca",
    "ca_paths",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Trusted root certificate(s); repeatable.  Default: the system trust store.",
)
@click.option("--chain", "chain_path", type=click.Path(dir_okay=False), help="Untrusted intermediate certificates.")
@click.option("--host", help="DNS name or IP address the certificate must be valid for.")
@click.option(
    "--purpose", type=click.Choice(["server", "client"]), default="server", show_default=True, help="TLS role."
)
@click.option("--crl", "crl_paths", multiple=True, type=click.Path(dir_okay=False), help="CRL(s) to check; repeatable.")
@click.option("--at", "at_text", metavar="TIME", help="Verify at this time: ISO-8601 or a Unix timestamp.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def verify_cmd(
    *,
    cert: str,
    ca_paths: tuple[str, ...],
    chain_path: str | None,
    host: str | None,
    purpose: str,
    crl_paths: tuple[str, ...],
    at_text: str | None,
    as_json: bool,
) -> None:
    """Verify CERT (a leaf, optionally followed by intermediates) for a TLS server or client.

    Exit 0 when valid, 1 when not (with the reason and the fix), 2 on bad usage or unreadable input.
    """
    from ..pki.problems import label, utc
    from ..pki.verify import Purpose, parse_time, verify_files

    at = utc(parse_time(at_text) if at_text else None)
    result = verify_files(
        cert,
        ca_paths=ca_paths,
        chain_path=chain_path,
        host=host,
        purpose=Purpose(purpose),
        crl_paths=crl_paths,
        at=at,
    )
    if as_json:
        payload = {"file": cert, "host": host, "purpose": purpose, "at": at.isoformat(), **result.to_dict()}
        click.echo(json.dumps(payload, indent=2))
    elif result.ok:
        path = " <- ".join(f"'{label(c)}'" for c in result.chain)
        target = f" for {host}" if host else ""
        click.echo(printable(f"OK: valid TLS {purpose} certificate{target}: {path}"))
    else:
        first, *rest = result.problems
        click.echo(printable(f"INVALID ({first.code}): {first.message}; fix: {to_flags(first.fix)}"))
        for problem in rest:  # every further problem on a line of its own, naming what it is about
            click.echo(printable(f"  also ({problem.code}): {problem.message}"))
    if not result.ok:
        raise click.exceptions.Exit(EXIT_FAILED)


commands: list[click.Command] = [inspect_cmd, verify_cmd]
