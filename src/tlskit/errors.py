"""One small exception hierarchy.

Every error tlskit raises derives from :class:`TlskitError` and carries a one-line message that names the
problem and, where there is one, the fix.  Library-internal failures (from ``cryptography`` or ``ssl``) are
translated at the boundary with ``raise ... from exc`` so the original stays available as ``__cause__``.
TLS failures additionally derive from :class:`ssl.SSLError` so ``except ssl.SSLError`` keeps working.
"""

from __future__ import annotations

import ssl

__all__ = [
    "ExistingFileError",
    "FrameError",
    "InputError",
    "KeyMismatchError",
    "NetworkError",
    "PassphraseError",
    "TLSError",
    "TLSVerificationError",
    "TlskitError",
]


class TlskitError(Exception):
    """Base class of every tlskit error.

    ``fix`` is a short imperative sentence telling the user what to do, or ``""``.
    """

    def __init__(self, message: str, *, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}: {self.fix}" if self.fix else self.message


class InputError(TlskitError, ValueError):
    """An input (file, argument, option) is unreadable, malformed or of the wrong kind."""


class PassphraseError(InputError):
    """A private key is encrypted and the passphrase is missing or wrong."""


class KeyMismatchError(InputError):
    """A private key does not belong to the certificate it was paired with."""


class ExistingFileError(TlskitError, FileExistsError):
    """An output file exists and overwriting it was not asked for (``force=True`` / ``--force``)."""


class NetworkError(TlskitError, OSError):
    """Listening or connecting failed (a busy port, an unreachable host).  Still an :class:`OSError`.

    ``code`` is a stable identifier (``"address_in_use"``, ``"connection_refused"``, ...); ``errno`` is the
    operating system's error number, when there is one.
    """

    def __init__(self, message: str, *, code: str = "network_error", fix: str = "", errno: int | None = None) -> None:
        TlskitError.__init__(self, message, fix=fix)
        self.code = code
        self.errno = errno
        self.strerror = message

    def __str__(self) -> str:
        return TlskitError.__str__(self)


class FrameError(TlskitError):
    """A peer violated the framing protocol (over-long frame, bad length prefix, invalid JSON)."""


class TLSError(TlskitError, ssl.SSLError):
    """A TLS handshake or connection failed.  Still an :class:`ssl.SSLError`.

    ``code`` is a stable identifier (``"untrusted_root"``, ``"hostname_mismatch"``, ...), ``message`` a plain
    sentence and ``fix`` what to do about it.
    """

    def __init__(self, message: str, *, code: str = "tls_error", fix: str = "") -> None:
        TlskitError.__init__(self, message, fix=fix)
        self.code = code
        # ssl.SSLError exposes reason/library; keep them meaningful for code that reads them.
        self.reason = code
        self.library = "tlskit"

    def __str__(self) -> str:
        return TlskitError.__str__(self)


class TLSVerificationError(TLSError, ssl.SSLCertVerificationError):
    """The peer's certificate did not verify.  Still an :class:`ssl.SSLCertVerificationError`."""

    def __init__(self, message: str, *, code: str = "verify_failed", fix: str = "") -> None:
        super().__init__(message, code=code, fix=fix)
        self.verify_message = message
        self.verify_code = 0
