"""Renderers for tap observations: human text through rich, or one JSON object per line.

Peer-controlled bytes (payloads, names) are only ever put into ``rich.text.Text`` objects, never parsed as
markup, and through :func:`tlskit._text.printable`, so a payload like ``[bold]`` or a name holding an ANSI
escape prints as what it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from .._text import printable
from ..tools.records import Direction
from ..tools.tap_observer import Observation

__all__ = ["JsonRenderer", "TextRenderer", "describe", "hexdump"]

_ARROWS = {Direction.CLIENT_TO_SERVER: "client->server", Direction.SERVER_TO_CLIENT: "server->client"}
_INDENT = "    "


def hexdump(data: bytes, *, width: int = 16) -> list[str]:
    """Classic offset / hex / ASCII lines."""
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off : off + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {hexes:<{width * 3 - 1}}  {text}")
    return lines


def _n(value: int) -> str:
    return f"{value:,}"


def _plural(count: int, word: str) -> str:
    return f"{_n(count)} {word}{'' if count == 1 else 's'}"


def _client_hello(f: dict[str, Any]) -> tuple[str, list[str]]:
    head = f"ClientHello: SNI {f['sni'] or '(none)'}, ALPN {', '.join(f['alpn']) or '(none)'}"
    versions = ", ".join(f["supported_versions"]) or f"{f['legacy_version']} (no supported_versions)"
    groups = ", ".join(f["supported_groups"]) or "(none)"
    shares = ", ".join(f["key_share_groups"]) or "(none)"
    lines = [
        f"versions offered: {versions}; legacy version {f['legacy_version']}; "
        f"session id {f['session_id_length']} bytes",
        f"cipher suites ({len(f['cipher_suites'])}): {', '.join(f['cipher_suites'])}",
        f"groups: {groups}; key shares: {shares}",
        f"extensions: {', '.join(f['extensions']) or '(none)'}",
    ]
    return head, lines


def _server_hello(f: dict[str, Any]) -> tuple[str, list[str]]:
    if f["hello_retry_request"]:
        return f"HelloRetryRequest: the server wants a key share for {f['key_share_group']}", [
            f"version {f['version']}, cipher suite {f['cipher_suite']}"
        ]
    how = "supported_versions extension" if f["version_from_extension"] else "legacy version field"
    head = f"ServerHello: {f['version']} (from the {how}), {f['cipher_suite']}"
    parts = [f"key share {f['key_share_group']}"] if f["key_share_group"] else []
    if f["alpn"]:
        parts.append(f"ALPN {f['alpn']} (in clear)")
    parts.append(f"extensions: {', '.join(f['extensions']) or '(none)'}")
    return head, ["; ".join(parts)]


def _certificates(f: dict[str, Any]) -> tuple[str, list[str]]:
    certs = f["certificates"]
    lines = []
    for i, c in enumerate(certs):
        if "error" in c:
            lines.append(f"[{i}] {c['error']}")
            continue
        names = f", DNS {', '.join(c['dns_names'])}" if c["dns_names"] else ""
        lines.append(f"[{i}] subject {c['subject']}, issuer {c['issuer']}{names}, expires {c['not_after'][:10]}")
    return f"Certificate in clear: {_plural(len(certs), 'certificate')} an eavesdropper can read", lines


def describe(obs: Observation) -> tuple[str, list[str]]:
    """Headline and detail lines for one observation (payloads excluded: see :class:`TextRenderer`)."""
    f: dict[str, Any] = dict(obs.fields)
    match obs.event:
        case "open":
            return f"connection from {f['client']} -> {f['upstream']}", []
        case "connect_failed":
            return str(f["error"]), []
        case "stream":
            return ("TLS records" if f["kind"] == "tls" else "not TLS: plaintext"), []
        case "plaintext":
            return f"plaintext, {_plural(f['bytes'], 'byte')}:", []
        case "plaintext_more":
            return f"plaintext, {_plural(f['bytes'], 'more byte')} (not shown; see --max-bytes)", []
        case "record":
            enc = ", encrypted" if f["encrypted"] else ""
            return f"record {f['type']}, {f['version']}, {_plural(f['length'], 'byte')}{enc}", []
        case "client_hello":
            return _client_hello(f)
        case "server_hello":
            return _server_hello(f)
        case "certificate":
            return _certificates(f)
        case "server_key_exchange":
            if f["group"]:
                return f"ServerKeyExchange: ECDHE group {f['group']}", []
            if f["dh_bits"]:
                return f"ServerKeyExchange: finite-field DHE, {f['dh_bits']}-bit prime", []
            return f"ServerKeyExchange ({_plural(f['length'], 'byte')})", []
        case "handshake":
            return f"{f['message']} ({_plural(f['length'], 'byte')})", []
        case "change_cipher_spec":
            return f"ChangeCipherSpec ({f['meaning']})", []
        case "alert":
            if f["encrypted"]:
                size = f", {_plural(f['length'], 'byte')}" if f.get("length") else ""
                return f"encrypted alert{size}", []
            return f"alert {f['level']} {f['description']}", []
        case "application_data":
            note = f" ({f['note']})" if f.get("note") else ""
            size = f"{_plural(f['bytes'], 'byte')} in {_plural(f['records'], 'record')}"
            return f"application data, {size}, encrypted{note}", []
        case "malformed":
            return f"malformed: {f['reason']}; decoding stopped, bytes still relayed", []
        case "observer_error":
            return f"display stopped for this direction ({f['error']}); bytes still relayed", []
        case "end":
            how = f"ended by error: {f['error']}" if f.get("error") else "end of stream (FIN)"
            tail = f", {_plural(f['incomplete'], 'byte')} of an unfinished record" if f["incomplete"] else ""
            return f"{how} after {_plural(f['bytes'], 'byte')}{tail}", []
        case "close":
            sizes = ", ".join(f"{d} {_plural(n, 'byte')}" for d, n in f["bytes"].items())
            return f"closed after {f['duration']:.3f} s ({sizes})", []
        case "verdict":
            return f"verdict: {f['text']}", []
        case _:
            return obs.event, [json.dumps(f, default=str)]


class TextRenderer:
    """Human output: ``#conn +elapsed direction  what``, with payloads as text or hex dumps."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def __call__(self, obs: Observation) -> None:
        head, lines = describe(obs)
        arrow = _ARROWS.get(obs.direction, "") if obs.direction else ""
        line = Text(f"#{obs.conn} {obs.elapsed:+8.3f}s {arrow:<14} ", style="dim")
        line.append(printable(head), style=self._style(obs))
        self._console.print(line)
        if obs.event == "plaintext":
            text = obs.fields.get("text")
            lines = text.splitlines() if text is not None else hexdump(bytes.fromhex(obs.fields["hex"]))
        for detail in lines:
            self._console.print(Text(_INDENT + printable(detail)), soft_wrap=True)

    @staticmethod
    def _style(obs: Observation) -> str:
        if obs.event == "verdict":
            return "bold red" if obs.fields.get("readable") else "bold green"
        if obs.event in ("malformed", "connect_failed", "observer_error") or obs.fields.get("level") == "fatal":
            return "red"
        if obs.event in ("client_hello", "server_hello", "certificate"):
            return "bold"
        if obs.event == "plaintext":
            return "yellow"
        return ""


class JsonRenderer:
    """One JSON object per line, flushed at once so a pipe reader sees events as they happen."""

    def __init__(self, stream: TextIO, *, flush: bool = True) -> None:
        self._write: Callable[[str], object] = stream.write
        self._stream = stream
        self._flush = flush

    def __call__(self, obs: Observation) -> None:
        self._write(json.dumps(obs.to_json(), ensure_ascii=False) + "\n")
        if self._flush:
            self._stream.flush()
