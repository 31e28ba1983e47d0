"""Rendering of :mod:`tlskit.pki.inspect` summaries for people: a title line and an aligned field table (rich).

Values (names from certificates, file names) go into ``rich.text.Text`` (never parsed as markup) through
:func:`tlskit._text.printable` (control characters escaped).
"""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from .._text import printable
from ..pki.inspect import Summary

__all__ = ["render", "render_text"]

_LABELS = {
    "subject": "subject",
    "issuer": "issuer",
    "serial": "serial",
    "sans": "names",
    "key": "key",
    "key_usage": "key usage",
    "extended_key_usage": "ext. key usage",
    "basic_constraints": "CA",
    "signature_algorithm": "signature",
    "fingerprint_sha256": "SHA-256",
    "spki_pin": "SPKI pin",
    "this_update": "this update",
    "next_update": "next update",
    "crl_number": "CRL number",
    "encrypted": "encrypted",
    "signature_valid": "signature valid",
    "requests_ca": "requests CA",
    "crl_urls": "CRL",
    "ocsp_urls": "OCSP",
    "ca_issuers_urls": "CA issuers",
}


def _text(value: object, style: str = "") -> Text:
    return Text(printable(str(value)), style=style)


def _validity(summary: Summary) -> Text:
    text = Text(f"{summary['not_before']} -> {summary['not_after']}  ")
    days = summary["days_left"]
    if summary["expired"]:
        text.append("EXPIRED", style="bold red")
    elif summary["not_yet_valid"]:
        text.append("NOT YET VALID", style="bold red")
    else:
        text.append(f"{days} days left", style="yellow" if days < 30 else "green")
    return text


def _value(field: str, summary: Summary) -> RenderableType | None:
    value = summary.get(field)
    if field == "key":
        if summary.get("key_type") is None:
            return Text("encrypted (give the passphrase to see more)") if summary.get("encrypted") else None
        return _text(f"{summary['key_type']} ({summary['key_size']} bits)")
    if field == "basic_constraints":
        if value is None:
            return Text("no (no basicConstraints)")
        if not value["ca"]:
            return Text("no")
        limit = value["path_length"]
        return Text("yes" + ("" if limit is None else f", path length {limit}"))
    if value is None or value in ([], ""):
        return None
    if isinstance(value, list):
        return _text(", ".join(str(v) for v in value))
    if isinstance(value, bool):
        return Text("yes" if value else "no", style="red" if field == "signature_valid" and not value else "")
    return _text(value)


def render(summary: Summary) -> RenderableType:
    """A rich renderable: a title line and an aligned field table."""
    kind = summary.get("kind", "?")
    title = Text(kind, style="bold cyan")
    if summary.get("file"):
        index = f" [{summary['chain_index']}]" if "chain_index" in summary else ""
        title.append(printable(f"  {summary['file']}{index}"))
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    order = {
        "certificate": [
            "subject",
            "issuer",
            "serial",
            "validity",
            "sans",
            "key",
            "key_usage",
            "extended_key_usage",
            "basic_constraints",
            "crl_urls",
            "ocsp_urls",
            "ca_issuers_urls",
            "signature_algorithm",
            "fingerprint_sha256",
            "spki_pin",
        ],
        "csr": ["subject", "sans", "key", "requests_ca", "signature_algorithm", "signature_valid", "spki_pin"],
        "crl": ["issuer", "this_update", "next_update", "crl_number", "signature_algorithm"],
    }.get(kind, ["key", "encrypted", "spki_pin"])
    for field in order:
        cell = _validity(summary) if field == "validity" else _value(field, summary)
        if cell is not None:
            table.add_row(_LABELS.get(field, field), cell)
    parts: list[RenderableType] = [title, table]
    if kind == "crl":
        revoked = summary["revoked"]
        parts.append(Text(f"revoked certificates: {len(revoked)}" + (" (EXPIRED CRL)" if summary["expired"] else "")))
        for entry in revoked:
            reason = f" ({entry['reason']})" if entry["reason"] else ""
            parts.append(_text(f"  {entry['serial']}  {entry['revoked_at']}{reason}"))
    return Group(*parts)


def render_text(summary: Summary, *, width: int = 100) -> str:
    """The readable summary as plain text (no colours)."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(render(summary))
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
