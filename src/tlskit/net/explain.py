"""TLS failures in words: ``ssl.SSLError`` into :class:`~tlskit.errors.TLSError`, and why an unverified peer
would have failed verification.

The vocabulary (codes, sentences, fixes) is :mod:`tlskit.pki.problems`; this module only tells it who the peer
is and what it sent.  The asyncio adapter (:mod:`tlskit.net.connection`) calls it; the engine never does.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from cryptography import x509

from ..errors import NetworkError, TLSError, TlskitError, TLSVerificationError
from ..pki.problems import Code, Problem, Purpose, explain_os_error, explain_ssl_error
from ..pki.verify import verify_chain

__all__ = ["explain_unverified", "network_error", "problem_error", "refusal_error", "tls_error"]


# --- plain-language errors ---------------------------------------------------------------------------------


def _underlying(exc: BaseException) -> BaseException:
    """The error under the wrappers of other libraries (httpx, websockets, paho): an ``ssl.SSLError`` if there is
    one in the chain of causes, else the first socket or end-of-stream error, else ``exc`` itself."""
    chain: list[BaseException] = []
    item: BaseException | None = exc
    while item is not None and item not in chain and len(chain) < 16:
        chain.append(item)
        item = item.__cause__ or item.__context__
    for kind in (ssl.SSLError, (OSError, EOFError)):
        for item in chain:
            if isinstance(item, kind):
                return item
    return exc


def tls_error(
    exc: BaseException,
    *,
    during: str = "handshake",
    server_side: bool = False,
    host: str | None = None,
    chain: Sequence[x509.Certificate] = (),
    sent_cert: bool | None = None,
) -> TLSError:
    """Translate ``exc`` (usually an ``ssl.SSLError``) into a :class:`TLSError` with code, sentence and fix.

    The wording comes from :func:`tlskit.pki.problems.explain_ssl_error`, told who the peer is
    (``server_side``: we are the server, so the peer is a client), the name the client asked for (``host``),
    the peer's certificates as sent (``chain``) and, for a client, whether it sent a certificate
    (``sent_cert``; None: unknown).  ``exc`` may be another library's error (httpx, websockets, paho-mqtt): the
    ``ssl`` or socket error it wraps is explained.  The caller keeps ``exc`` as the cause
    (``raise tls_error(exc) from exc``).
    """
    if isinstance(exc, TLSError):
        return exc
    exc = _underlying(exc)
    if isinstance(exc, TLSError):
        return exc
    problem = explain_ssl_error(
        exc,
        host=host,
        peer=Purpose.CLIENT if server_side else Purpose.SERVER,
        chain=chain,
        sent_cert=None if server_side else sent_cert,
        after_handshake=during != "handshake",
    )
    message = problem.message
    if during != "handshake" and problem.code == Code.UNKNOWN:
        # explain_ssl_error speaks of handshakes; a bad record on an open connection is not one
        message = message.replace("the TLS handshake failed", f"the TLS {during} failed", 1)
    if isinstance(exc, ssl.SSLCertVerificationError):
        err = TLSVerificationError(message, code=str(problem.code), fix=problem.fix)
        err.verify_code = exc.verify_code or 0
        return err
    return TLSError(message, code=str(problem.code), fix=problem.fix)


def network_error(exc: OSError, *, action: str, host: str | None, port: int) -> NetworkError:
    """A socket error from listening (``action="listen"``) or connecting (``"connect"``) as a
    :class:`NetworkError` in words: the one translation every listener and client of tlskit uses (servers,
    clients, tap, probe, demo, the tunnel).  The caller keeps ``exc`` as the cause (``raise ... from exc``).
    """
    if isinstance(exc, NetworkError):
        return exc
    problem = explain_os_error(exc, action=action, host=host or "*", port=port)
    kind = _network_error_type(type(exc))
    return kind(problem.message, code=str(problem.code), fix=problem.fix, errno=exc.errno)


_NETWORK_ERROR_TYPES: dict[type[OSError], type[NetworkError]] = {OSError: NetworkError}


def _network_error_type(kind: type[OSError]) -> type[NetworkError]:
    """NetworkError that is also ``kind`` (``ConnectionRefusedError``, ``socket.gaierror``, ...), so code that
    catches the specific OSError keeps working."""
    found = _NETWORK_ERROR_TYPES.get(kind)
    if found is None:
        found = type("NetworkError", (NetworkError, kind), {"__module__": NetworkError.__module__})
        _NETWORK_ERROR_TYPES[kind] = found
    return found


def problem_error(problem: Problem) -> TLSError:
    """A :class:`TLSError` carrying ``problem`` (for failures found outside OpenSSL: timeouts, early EOF)."""
    return TLSError(problem.message, code=str(problem.code), fix=problem.fix)


def refusal_error(problem: Problem, *, server_side: bool) -> TLSError:
    """The error for a peer the peer policy refused (see :func:`tlskit.net.policy.judge`).

    A client refusing a server raises :class:`TLSVerificationError`, so ``except ssl.SSLCertVerificationError``
    catches a pin mismatch like any other rejected server certificate.
    """
    kind = TLSError if server_side else TLSVerificationError
    return kind(problem.message, code=str(problem.code), fix=problem.fix)


# --- verification we did not ask OpenSSL for ----------------------------------------------------------------


def explain_unverified(
    ctx: ssl.SSLContext, chain: Sequence[bytes], *, hostname: str | None, client_cert: bool
) -> str | None:
    """Verify ``chain`` (DER, leaf first) against ``ctx``'s CA certificates; None if fine, else why not.

    Used when a peer was not verified during the handshake (``verify=False``), to report why verification
    would have failed, as Node's ``authorizationError`` does.  ``client_cert`` selects the client profile.
    """
    if not chain:
        return "the peer presented no certificate"
    roots = ctx.get_ca_certs(binary_form=True)
    if not roots:
        return "no trust anchors are configured, so the peer's certificate cannot be verified"
    try:
        leaf, *rest = (x509.load_der_x509_certificate(der) for der in chain)
        anchors = [x509.load_der_x509_certificate(der) for der in roots]
        result = verify_chain(
            leaf,
            roots=anchors,
            intermediates=rest,
            host=None if client_cert else hostname,
            purpose=Purpose.CLIENT if client_cert else Purpose.SERVER,
        )
    except (ValueError, TlskitError) as exc:  # unparsable certificate, or a host verify_chain cannot use
        return f"the peer's certificate cannot be checked ({exc})"
    if result.ok:
        return None
    return result.problems[0].message if result.problems else "the peer's certificate did not verify"
