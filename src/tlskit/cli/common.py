"""Shared CLI plumbing: error translation, passphrase sources, console output."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from .._text import printable
from ..errors import InputError, TlskitError
from ..pki.files import PemKind, detect_kind

P = ParamSpec("P")
R = TypeVar("R")

#: Exit codes shared by every command: 0 success, 1 a negative result (verification failed, handshake
#: refused), 2 bad usage or unreadable input.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

PASSPHRASE_ENV = "TLSKIT_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret


# The library names its parameters in messages ("pass force=True", "trust it (ca=)"); people at the command
# line read flags.  Each library parameter -> the flag that sets it.
_FLAGS = {
    "force": "--force",
    "ca": "--ca",
    "intermediates": "--chain",
    "path_length": "--path-length",
    "name": "--name",
    "allow_ca": "--allow-ca",
    "sans": "--san",
    "cn": "--cn",
    "subject": "--subject",
    "csr": "--csr",
    "days": "--days",
    "passphrase": "--passphrase-file",
    "cert": "--cert",
    "key": "--key",
    "server_name": "--servername",
    "timeout": "--timeout",
    "target": "--to",
    "listen": "--listen",
    "client_auth": "--client-auth",
    "profile": "--profile",
    "pins": "--pin",
    "keylog": "--keylog",
    "verify": "--insecure",
    "crl_url": "--crl-url",
    "crls": "--crl",
    "ocsp_url": "--ocsp-url",
    "issuer_url": "--issuer-url",
    "interval": "--revocation-interval",
}
_PARAMETER = re.compile(r"\b(?P<name>[a-z][a-z_]*)=(?P<value>[A-Za-z0-9][\w.-]*)?")
_SPECIAL = {
    "verify=True": "verification on (no --insecure)",
    "verify=False": "--insecure",
    "profile=Profile.CLIENT": "tlskit ca issue --client",
    "profile=Profile.SERVER": "tlskit ca issue without --client",
}


def to_flags(text: str, flags: Mapping[str, str] | None = None) -> str:
    """A library message in command-line words: ``force=True`` -> ``--force``, ``days=1`` -> ``--days 1``.

    ``flags`` adds to (or overrides) the table for one command: ``tunnel`` names its target ``--target``.
    """
    table = _FLAGS if flags is None else {**_FLAGS, **flags}

    def flag(m: re.Match[str]) -> str:
        if m[0] in _SPECIAL:
            return _SPECIAL[m[0]]
        name, value = m["name"], m["value"]
        option = table.get(name)
        if option is None:
            return m[0]
        return option if value in (None, "True") else f"{option} {value}"

    return _PARAMETER.sub(flag, text)


def fail(message: str, *, code: int = EXIT_USAGE, flags: Mapping[str, str] | None = None) -> click.exceptions.Exit:
    """Print one ``tlskit: error: ...`` line on stderr and return an Exit to raise.

    Library parameters are named as flags (``flags`` adds a command's own); messages quote files, certificates
    and peers, so control characters are escaped and the line stays one line.
    """
    click.echo(f"tlskit: error: {printable(to_flags(message, flags))}", err=True)
    return click.exceptions.Exit(code)


def handle_errors_with(flags: Mapping[str, str] | None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """:func:`handle_errors` for a command whose flags for some library parameters differ (see :func:`to_flags`)."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except TlskitError as exc:
                raise fail(str(exc), flags=flags) from None
            except KeyboardInterrupt:
                raise click.exceptions.Exit(130) from None

        return wrapper

    return decorate


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn tlskit errors into one actionable line and exit code 2; never a traceback."""
    return handle_errors_with(None)(func)


def _usage_line(exc: click.UsageError) -> click.exceptions.Exit:
    """Click's usage error (wrong option value, missing argument) as our one line, pointing at --help."""
    text = " ".join(exc.format_message().split()).rstrip(".")
    text = text[:1].lower() + text[1:]
    where = f": see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
    return fail(f"{text}{where}")


class OneLineErrorsGroup(click.Group):
    """The root group: click's usage errors get the same one-line ``tlskit: error:`` form (exit 2) as ours.

    Click would print a usage block and ``Error: ...`` instead; scripts and people then see two formats.
    """

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # that "error" is the help text itself
        except click.UsageError as exc:
            raise _usage_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _usage_line(exc) from None


def read_passphrase(passphrase_file: str | None, *, confirm: bool = False, required: bool = False) -> bytes | None:
    """A passphrase from a file (first line), the ``TLSKIT_PASSPHRASE`` variable, or a prompt on a terminal.

    Never from argv: command lines are visible to every user of the machine (``ps``).
    """
    if passphrase_file is not None:
        try:
            text = Path(passphrase_file).read_bytes()
        except OSError as exc:
            raise InputError(
                f"{passphrase_file}: cannot read passphrase file ({exc.strerror})", fix="check the path"
            ) from exc
        kind = detect_kind(text)
        if kind is not PemKind.UNKNOWN:
            # Its first line would silently become the passphrase: "-----BEGIN CERTIFICATE-----".
            raise InputError(
                f"{passphrase_file}: is a {kind}, not a passphrase file",
                fix="pass a file holding only the passphrase on its first line",
            )
        line = text.splitlines()[0] if text.strip() else b""
        if not line:
            raise InputError(
                f"{passphrase_file}: passphrase file is empty", fix="write the passphrase on its first line"
            )
        return line
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env.encode()
    if required:
        if sys.stdin.isatty():
            value: str = click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
            return value.encode()
        raise InputError("a passphrase is required", fix=f"use --passphrase-file F or set {PASSPHRASE_ENV}")
    return None


passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"Read the passphrase from this file's first line (or set {PASSPHRASE_ENV}; prompted on a terminal).",
)
force_option = click.option("--force", is_flag=True, help="Overwrite existing output files.")
