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
@click.option("--crl-fetch", is_flag=True, help="Fetch the CRLs the certificates name (distribution points).")
@click.option("--ocsp", is_flag=True, help="Ask the OCSP responders the certificates name.")
@click.option("--whole-chain", is_flag=True, help="With --crl-fetch/--ocsp: check the intermediates too.")
@click.option(
    "--fail-open", is_flag=True, help="With --crl-fetch/--ocsp: accept (with a warning) when no answer can be had."
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="Seconds per fetch.")
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
    crl_fetch: bool,
    ocsp: bool,
    whole_chain: bool,
    fail_open: bool,
    timeout: float,
    at_text: str | None,
    as_json: bool,
) -> None:
    """Verify CERT (a leaf, optionally followed by intermediates) for a TLS server or client.

    --ocsp and --crl-fetch ask the URLs in the certificates whether they were revoked (both: OCSP, falling back
    to the CRL); without an answer the certificate is refused unless --fail-open.
    Exit 0 when valid, 1 when not (with the reason and the fix), 2 on bad usage or unreadable input.
    """
    from ..net.revocation import Revocation
    from ..pki.problems import label, utc
    from ..pki.verify import Purpose, parse_time, verify_files

    at = utc(parse_time(at_text) if at_text else None)
    revocation = None
    if crl_fetch or ocsp:
        revocation = Revocation(
            mode="any" if crl_fetch and ocsp else "ocsp" if ocsp else "crl",
            fail="open" if fail_open else "closed",
            timeout=timeout,
            whole_chain=whole_chain,
        )
    elif whole_chain or fail_open:
        raise click.UsageError("--whole-chain and --fail-open go with --crl-fetch or --ocsp")
    result = verify_files(
        cert,
        ca_paths=ca_paths,
        chain_path=chain_path,
        host=host,
        purpose=Purpose(purpose),
        crl_paths=crl_paths,
        at=at,
        revocation=revocation,
    )
    if as_json:
        payload = {"file": cert, "host": host, "purpose": purpose, "at": at.isoformat(), **result.to_dict()}
        click.echo(json.dumps(payload, indent=2))
    elif result.ok:
        path = " <- ".join(f"'{label(c)}'" for c in result.chain)
        target = f" for {host}" if host else ""
        click.echo(printable(f"OK: valid TLS {purpose} certificate{target}: {path}"))
        for checked, status, source in result.revocation:
            click.echo(printable(f"  revocation of '{label(checked)}': {status}" + (f" ({source})" if source else "")))
    else:
        first, *rest = result.problems
        click.echo(printable(f"INVALID ({first.code}): {first.message}; fix: {to_flags(first.fix)}"))
        for problem in rest:  # every further problem on a line of its own, naming what it is about
            click.echo(printable(f"  also ({problem.code}): {problem.message}"))
    if not as_json:
        for warning in result.warnings:  # failing open: what could not be checked
            click.echo(printable(f"  warning ({warning.code}): {warning.message}"))
    if not result.ok:
        raise click.exceptions.Exit(EXIT_FAILED)


commands: list[click.Command] = [inspect_cmd, verify_cmd]
