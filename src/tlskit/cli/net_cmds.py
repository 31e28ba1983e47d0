"""(being written)"""

from __future__ import annotations

import re

import click

from ..errors import InputError

commands: list[click.Command] = []

_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\]:(?P<port>[^:]+)$")


def parse_address(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into ``(host, port)``; ``PORT`` alone when ``default_host`` is set.

    Port 0 is accepted only for listening (``default_host`` given), where it means "let the OS pick".
    """
    listening = default_host is not None
    form = "[HOST:]PORT" if listening else "HOST:PORT"
    if m := _BRACKETED.match(text):
        host, port_text = m["host"], m["port"]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif listening and ":" not in text:
        host, port_text = default_host or "", text
    else:
        raise InputError(f"{text!r} is not {form}", fix="write it like 127.0.0.1:8443 or [::1]:8443")
    if not host:
        raise InputError(f"{text!r} has no host", fix=f"write {form}, e.g. localhost:8443")
    if not port_text.isdigit() or not (0 if listening else 1) <= int(port_text) <= 65535:
        low = 0 if listening else 1
        raise InputError(f"{text!r}: bad port {port_text!r}", fix=f"use a port number from {low} to 65535")
    return host, int(port_text)
