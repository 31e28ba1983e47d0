"""``tlskit ca trust install|uninstall|status``: a CA in the machine's trust stores (library: tools.trust)."""

from __future__ import annotations

import click

from .._text import printable
from ..tools.trust import Outcome, Store, StoreResult, TrustStores, install, load_ca_certificate, status, uninstall
from ..tools.trust import trust_name as _trust_name
from .common import EXIT_FAILED, handle_errors

_STORES = [s.value for s in Store]
_ACTIONS = {"install": install, "uninstall": uninstall, "status": status}


def _stores(chosen: tuple[str, ...]) -> list[Store]:
    if not chosen or "all" in chosen:
        return list(Store)
    return [Store(s) for s in chosen]


def _line(result: StoreResult) -> str:
    detail = f" ({result.detail})" if result.detail else ""
    verb = {
        Outcome.ADDED: "added",
        Outcome.REMOVED: "removed",
        Outcome.PRESENT: "trusted, installed by tlskit",
        Outcome.NOT_PRESENT: "not installed by tlskit",
        Outcome.ABSENT: "skipped, not on this machine",
        Outcome.FAILED: "could not change",
    }[result.outcome]
    return printable(f"{result.store.value:<6}  {result.location}: {verb}{detail}")


def _command(action: str) -> click.Command:
    helps = {
        "install": "Trust the CA certificate CA.pem (or a CA directory) in the machine's trust stores.",
        "uninstall": "Remove what 'tlskit ca trust install' added for CA.pem; nothing else is touched.",
        "status": "Show in which trust stores tlskit installed CA.pem.",
    }

    @click.command(action, help=helps[action])
    @click.argument("ca_path", metavar="CA.pem", type=click.Path())
    @click.option(
        "--store",
        "stores",
        multiple=True,
        type=click.Choice([*_STORES, "all"]),
        help="system (needs root), nss (Chromium, Firefox), java; repeatable (default: all).",
    )
    @handle_errors
    def command(*, ca_path: str, stores: tuple[str, ...]) -> None:
        cert = load_ca_certificate(ca_path)
        results = _ACTIONS[action](cert, stores=_stores(stores), where=TrustStores())
        click.echo(printable(f"{ca_path}: {_trust_name(cert)}"))
        for result in results:
            click.echo(_line(result), err=result.failed)
        if any(r.failed for r in results):
            raise click.exceptions.Exit(EXIT_FAILED)

    return command


@click.group("trust")
def trust_group() -> None:
    """Trust a CA on this machine, like mkcert -install: system store, NSS databases (browsers), Java.

    What tlskit adds is named after the CA's fingerprint (tlskit-<hex>): installing twice changes nothing,
    and uninstall removes only those entries.  HOME selects the user whose NSS databases are changed.
    """


for _action in _ACTIONS:
    trust_group.add_command(_command(_action))
