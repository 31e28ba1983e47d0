"""Text from the network or from certificates, made safe to print: control characters shown, never obeyed.

A certificate's CN, a SAN, the SNI or ALPN a peer sent, an error that quotes them: any of these may hold an
escape sequence (``ESC [2J`` clears the screen, ``ESC ]0;...BEL`` retitles the window, C1 ``U+009B`` is a CSI on
some terminals), a newline that forges a log line, or a bidi override (``U+202E``) that makes ``exe.txt`` read
``txt.exe``.  Every place that prints such a string passes it through :func:`printable` first.  This module is
below every layer (like ``_fileio``), so pki, net, tools and cli may all use it; it needs nothing but ``str``.

Rich markup (``[bold]``) is not this function's business: it is harmless on a terminal, and rich interprets it
only where a string is printed as markup.  Renderers put such strings into ``rich.text.Text`` (never markup) or
pass them through ``rich.markup.escape``.
"""

from __future__ import annotations

__all__ = ["printable"]


def printable(text: str) -> str:
    r"""``text`` with every non-printable character escaped as ``repr`` escapes it, without the quotes.

    Non-printable is what :meth:`str.isprintable` says: C0 and C1 controls, DEL, format characters (bidi
    controls such as U+202E, zero-width spaces, BOM), line and paragraph separators, other spaces than U+0020,
    surrogates and unassigned code points.  They become ``\x1b``, ``\n``, ``\x9b``, ``\u202e``, ``\U000e0041``.
    Letters of any script stay as they are.  Backslashes are not doubled, so RFC 4514 escapes (``O=Acme\, Inc.``)
    read as usual and escaping twice changes nothing: ``printable(printable(s)) == printable(s)``.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
