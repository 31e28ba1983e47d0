"""Revocation status fetched from the URLs in certificates: once (:class:`Revocation`) or kept fresh in the
background for a server (:class:`RevocationRefresher`).

This is the I/O half of revocation checking: HTTP fetches with a timeout and a size limit (:func:`http_fetch`),
and caches.  What a CRL or an OCSP answer means is judged in :mod:`tlskit.pki.revocation`, without I/O.

``verify_chain(leaf, roots=..., revocation=Revocation(mode="ocsp"))`` checks a chain once.  A server refuses
revoked clients with a refresher as its peer check::

    refresher = RevocationRefresher(Revocation(mode="ocsp"), issuers=[root], interval=60).start()
    server = await start_server(handler, port=8443, context=ctx, policy=PeerPolicy(check=refresher.peer_check))

The refresher keeps each CRL until shortly before its nextUpdate and each OCSP answer per certificate, and
fetches both again every ``interval`` seconds in a background thread, so a certificate revoked at the CA is
refused within one interval, without a restart.  The first handshake of a certificate it has no answer for
yet waits for one fetch (at most ``timeout``); every later one is answered from the cache.
"""

from __future__ import annotations

import collections
import http.client
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from cryptography import x509

from ..errors import InputError
from ..pki.ocsp import build_request
from ..pki.problems import Problem, utc
from ..pki.revocation import (
    SKEW,
    Answer,
    FailMode,
    Findings,
    RevocationMode,
    check_chain,
    load_fetched_crl,
    ocsp_answer,
    unavailable,
)
from ..pki.urls import check_url
from .context import parse_choice

if TYPE_CHECKING:
    from .connection import TLSConnection

__all__ = ["FailMode", "Fetch", "FetchError", "Revocation", "RevocationMode", "RevocationRefresher", "http_fetch"]

log = logging.getLogger("tlskit.revocation")

_USER_AGENT = "tlskit"
_OCSP_REQUEST, _OCSP_RESPONSE = "application/ocsp-request", "application/ocsp-response"


class FetchError(Exception):
    """A fetch failed; the message says why in words (``connection refused``, ``HTTP 404 Not Found``, ...)."""


class Fetch(Protocol):
    """How revocation data is fetched: ``body`` None is a GET, else a POST of ``content_type``.  Returns the
    response body or raises :class:`FetchError`."""

    def __call__(
        self, url: str, *, body: bytes | None, content_type: str | None, timeout: float, max_bytes: int
    ) -> bytes: ...


def http_fetch(
    url: str, *, body: bytes | None = None, content_type: str | None = None, timeout: float, max_bytes: int
) -> bytes:
    """GET (or POST ``body``) an http URL: 200 only, no redirects, at most ``max_bytes``, each network step within
    ``timeout`` seconds and the whole within about twice that.  Raises :class:`FetchError` with the reason."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise FetchError("only http URLs are fetched")
    deadline = time.monotonic() + timeout
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        port = parts.port or 80
    except ValueError:  # a port out of range, from a certificate anyone could have made
        raise FetchError(f"not a valid port in {url}") from None
    conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    headers = {"User-Agent": _USER_AGENT, "Connection": "close", "Accept": "*/*"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    try:
        conn.request("GET" if body is None else "POST", path, body=body, headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            where = response.getheader("Location")
            moved = f" to {where} (redirects are not followed)" if where else ""
            raise FetchError(f"HTTP {response.status} {response.reason}{moved}")
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise FetchError(f"the answer is {int(length)} bytes, more than the limit of {max_bytes}")
        chunks, total = [], 0
        while chunk := response.read(min(65536, max_bytes + 1 - total)):
            total += len(chunk)
            if total > max_bytes:
                raise FetchError(f"the answer is larger than the limit of {max_bytes} bytes")
            if time.monotonic() > deadline + timeout:
                raise FetchError(f"the answer did not arrive within {timeout:g} s")
            chunks.append(chunk)
        return b"".join(chunks)
    except TimeoutError:
        raise FetchError(f"no answer within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise FetchError("connection refused (is the server running?)") from None
    except socket.gaierror as exc:
        raise FetchError(f"unknown host {parts.hostname} ({exc.strerror})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
    finally:
        conn.close()


@dataclass(frozen=True, init=False)
class Revocation:
    """How to check revocation online, as an immutable value (pass it to ``verify_chain(revocation=...)``).

    - ``mode``: ``"ocsp"``, ``"crl"`` or ``"any"`` (OCSP, falling back to the CRL).
    - ``fail``: ``"closed"`` (default: no answer means refused) or ``"open"`` (no answer is a warning).
    - ``timeout``: seconds per fetch; ``max_bytes``: the largest CRL or OCSP answer read.
    - ``whole_chain``: check the intermediates too, not only the leaf.
    - ``nonce``: send a nonce with OCSP requests (a replayed answer is then refused).
    - ``crl_urls``: CRLs to consult besides the ones the certificates name.
    - ``fetch``: the HTTP client (default :func:`http_fetch`), for proxies or tests.
    """

    mode: RevocationMode
    fail: FailMode
    timeout: float
    max_bytes: int
    whole_chain: bool
    nonce: bool
    crl_urls: tuple[str, ...]
    fetch: Fetch | None = field(compare=False)

    def __init__(
        self,
        mode: RevocationMode | str = RevocationMode.ANY,
        fail: FailMode | str = FailMode.CLOSED,
        *,
        timeout: float = 5.0,
        max_bytes: int = 10 * 2**20,
        whole_chain: bool = False,
        nonce: bool = True,
        crl_urls: Iterable[str] = (),
        fetch: Fetch | None = None,
    ) -> None:
        if not timeout > 0:
            raise InputError(f"timeout={timeout} for revocation fetches", fix="give a positive number of seconds")
        if max_bytes < 1024:
            raise InputError(f"max_bytes={max_bytes} is too small for any CRL", fix="give at least 1024")
        urls = (crl_urls,) if isinstance(crl_urls, str) else tuple(crl_urls)
        for url in urls:
            check_url(url, "crl_url=")
        # A frozen dataclass: fields are set once, here, and never change.
        object.__setattr__(self, "mode", parse_choice(RevocationMode, mode, "revocation mode"))
        object.__setattr__(self, "fail", parse_choice(FailMode, fail, "fail mode"))
        object.__setattr__(self, "timeout", float(timeout))
        object.__setattr__(self, "max_bytes", int(max_bytes))
        object.__setattr__(self, "whole_chain", bool(whole_chain))
        object.__setattr__(self, "nonce", bool(nonce))
        object.__setattr__(self, "crl_urls", urls)
        object.__setattr__(self, "fetch", fetch)

    def _get(self, url: str, body: bytes | None = None) -> bytes:
        fetch = self.fetch or http_fetch
        content_type = None if body is None else _OCSP_REQUEST
        return fetch(url, body=body, content_type=content_type, timeout=self.timeout, max_bytes=self.max_bytes)

    def fetch_ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, url: str, *, at: datetime) -> Answer:
        """Ask the responder at ``url`` about ``cert`` (POST, as RFC 6960 A.1 and OpenSSL do) and judge the answer."""
        query = build_request(cert, issuer, nonce=self.nonce)
        try:
            data = self._get(url, query.der)
        except FetchError as exc:
            return unavailable(url, "an OCSP answer", str(exc))
        return ocsp_answer(data, cert=cert, issuer=issuer, query=query, source=url, at=at)

    def fetch_crl(self, url: str) -> x509.CertificateRevocationList | Answer:
        """The CRL at ``url``, or why there is none."""
        try:
            data = self._get(url)
        except FetchError as exc:
            return unavailable(url, "the CRL", str(exc))
        return load_fetched_crl(data, url)

    def check(
        self, chain: Sequence[x509.Certificate], *, at: datetime | None = None, issuers: Sequence[x509.Certificate] = ()
    ) -> Findings:
        """Fetch and judge the status of ``chain`` (leaf first; its issuers in the chain or in ``issuers``)."""
        return self._check(chain, lookup=_Once(self), at=at, issuers=issuers)

    def _check(
        self, chain: Sequence[x509.Certificate], *, lookup: _Once | RevocationRefresher, at: datetime | None,
        issuers: Sequence[x509.Certificate],
    ) -> Findings:  # fmt: skip
        return check_chain(
            chain,
            lookup=lookup,
            mode=self.mode,
            fail=self.fail,
            whole_chain=self.whole_chain,
            issuers=issuers,
            crl_urls=self.crl_urls,
            at=at,
        )


class _Once:
    """The lookup of one check: fetches, each CRL at most once."""

    def __init__(self, spec: Revocation) -> None:
        self._spec = spec
        self._crls: dict[str, x509.CertificateRevocationList | Answer] = {}

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, url: str, *, at: datetime) -> Answer:
        return self._spec.fetch_ocsp(cert, issuer, url, at=at)

    def crl(self, url: str, *, at: datetime) -> x509.CertificateRevocationList | Answer:
        if url not in self._crls:
            self._crls[url] = self._spec.fetch_crl(url)
        return self._crls[url]


# ------------------------------------------------------------------------------------- the background refresher


_MAX_INTERMEDIATES = 256  # distinct intermediate CAs remembered for resumed sessions


@dataclass
class _Entry:
    value: x509.CertificateRevocationList | Answer
    due: float  # monotonic time of the next refresh
    cert: x509.Certificate | None = None
    issuer: x509.Certificate | None = None
    url: str = ""


def _valid_until(value: x509.CertificateRevocationList | Answer) -> datetime | None:
    if isinstance(value, Answer):
        return value.next_update if value.decisive else None
    return value.next_update_utc


_FORKED: weakref.WeakSet[RevocationRefresher] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for refresher in list(_FORKED):
        refresher._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class RevocationRefresher:
    """Revocation status kept fresh in a background thread, for servers (see the module's documentation).

    ``revocation`` says how (mode, fail open/closed, timeouts, CRL URLs to follow); ``issuers`` are the CA
    certificates that may have issued peers' certificates (the trust anchors: a client usually sends only its
    leaf and intermediates); ``interval`` is the longest time a revocation goes unnoticed.  ``clock`` returns
    the current time (tests move it).  Use as a context manager, or :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        revocation: Revocation | None = None,
        *,
        issuers: Iterable[x509.Certificate] = (),
        interval: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not interval > 0:
            raise InputError(f"interval={interval} for revocation refreshes", fix="give a positive number of seconds")
        self.revocation = revocation or Revocation()
        self.issuers = tuple(issuers)
        self.interval = float(interval)
        self._max_entries = max_entries
        self._clock = clock or (lambda: utc(None))
        self._entries: collections.OrderedDict[tuple[str, ...], _Entry] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshes = 0
        """How many background refreshes ran (for tests and monitoring)."""
        # Intermediates from full handshakes, by subject (bounded): what a resumed session's chain lacks.
        self._intermediates: collections.OrderedDict[x509.Name, x509.Certificate] = collections.OrderedDict()
        _FORKED.add(self)

    def __repr__(self) -> str:
        return f"RevocationRefresher({self.revocation.mode}, interval={self.interval:g}, entries={len(self._entries)})"

    # -- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> RevocationRefresher:
        """Fetch the CRLs named in the spec now (a server starts with them), then refresh in the background."""
        at = self._clock()
        for url in self.revocation.crl_urls:
            value = self.crl(url, at=at)
            if isinstance(value, Answer) and value.problem is not None:
                log.warning("%s", value.problem.message)
        self._ensure_thread()
        return self

    def close(self) -> None:
        """Stop the background thread (cached answers stay usable)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.revocation.timeout * 2 + 1)

    def __enter__(self) -> RevocationRefresher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _after_fork(self) -> None:
        # A worker process: the parent's thread does not exist here and its lock may have been held mid-fork.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event() if not self._stop.is_set() else self._stop
        self._thread = None

    def _ensure_thread(self) -> None:
        if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self._run, name="tlskit-revocation", daemon=True)
        self._thread.start()

    # -- checks -------------------------------------------------------------------------------------------------

    def check(self, chain: Sequence[x509.Certificate], *, at: datetime | None = None) -> Findings:
        """The status of ``chain`` from the cache (fetching what is not cached yet)."""
        self._ensure_thread()
        return self.revocation._check(chain, lookup=self, at=at or self._clock(), issuers=self.issuers)

    def peer_check(self, conn: TLSConnection) -> Problem | None:
        """A :data:`~tlskit.net.policy.PeerCheck`: refuse a peer whose certificate is revoked (or, failing
        closed, whose status is not known).  A peer without a certificate is left to the rest of the policy.

        A resumed session carries the peer's certificate but not the chain it sent: the intermediates seen in
        full handshakes are remembered and put back, so a client revoked since its first connection cannot come
        back by resuming (an intermediate never seen by this process must be among ``issuers``).
        """
        chain = conn.peer_chain
        if chain:
            self._remember(chain[1:])
        else:
            leaf = conn.peer_certificate
            if leaf is None:
                return None
            chain = [leaf, *self._known_issuers(leaf)]
        findings = self.check(chain)
        for warning in findings.warnings:
            log.warning("accepting %s without revocation status: %s", conn.remote_address, warning.message)
        return findings.problems[0] if findings.problems else None

    peer_check.reads_certificates = True  # type: ignore[attr-defined]  # see net.policy.reads_certificates

    def _remember(self, intermediates: Sequence[x509.Certificate]) -> None:
        with self._lock:
            for cert in intermediates:
                self._intermediates[cert.subject] = cert
                self._intermediates.move_to_end(cert.subject)
            while len(self._intermediates) > _MAX_INTERMEDIATES:
                self._intermediates.popitem(last=False)

    def _known_issuers(self, leaf: x509.Certificate) -> list[x509.Certificate]:
        """The remembered intermediates above ``leaf``, nearest first (none if its issuer was never seen)."""
        found: list[x509.Certificate] = []
        name = leaf.issuer
        with self._lock:
            while (cert := self._intermediates.get(name)) is not None and cert not in found:
                found.append(cert)
                if cert.issuer == cert.subject:
                    break
                name = cert.issuer
        return found

    # -- Lookup (called by check_chain) -------------------------------------------------------------------------

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, url: str, *, at: datetime) -> Answer:
        key = ("ocsp", url, issuer.subject.rfc4514_string(), str(cert.serial_number))
        value = self._cached(key, at)
        if not isinstance(value, Answer):
            value = self.revocation.fetch_ocsp(cert, issuer, url, at=at)
            self._store(key, _Entry(value, self._due(value, at), cert, issuer, url))
        return value

    def crl(self, url: str, *, at: datetime) -> x509.CertificateRevocationList | Answer:
        key = ("crl", url)
        value = self._cached(key, at)
        if value is None:
            value = self.revocation.fetch_crl(url)
            self._store(key, _Entry(value, self._due(value, at), url=url))
        return value

    def _cached(self, key: tuple[str, ...], at: datetime) -> x509.CertificateRevocationList | Answer | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
        until = _valid_until(entry.value)
        if until is not None and until < at - SKEW:
            return None  # expired while the background could not refresh it: ask again now
        if isinstance(entry.value, Answer) and not entry.value.decisive and entry.due <= time.monotonic():
            return None
        return entry.value

    def _store(self, key: tuple[str, ...], entry: _Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        self._wake.set()

    def _due(self, value: x509.CertificateRevocationList | Answer, at: datetime) -> float:
        """When to fetch again: after ``interval``, sooner when the data runs out first (or could not be had)."""
        delay = self.interval
        until = _valid_until(value)
        if until is not None:
            left = (until - at - timedelta(seconds=min(self.interval, 300))).total_seconds()
            delay = min(delay, max(left, 1.0))
        if isinstance(value, Answer) and not value.decisive:
            delay = min(delay, 5.0)
        return time.monotonic() + delay

    # -- the background thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                due = [(k, e) for k, e in self._entries.items() if e.due <= time.monotonic()]
                nearest = min((e.due for e in self._entries.values()), default=time.monotonic() + self.interval)
            for key, entry in due:
                if self._stop.is_set():
                    return
                self._refresh(key, entry)
            if not due:
                self._wake.clear()
                self._wake.wait(max(0.01, min(nearest - time.monotonic(), self.interval)))

    def _refresh(self, key: tuple[str, ...], entry: _Entry) -> None:
        at = self._clock()
        if entry.cert is not None and entry.issuer is not None:
            value: x509.CertificateRevocationList | Answer = self.revocation.fetch_ocsp(
                entry.cert, entry.issuer, entry.url, at=at
            )
        else:
            value = self.revocation.fetch_crl(entry.url)
        self.refreshes += 1
        if isinstance(value, Answer) and not value.decisive:
            until = _valid_until(entry.value)
            if until is not None and until > at:
                # Keep the last good data while it is valid; try again soon.
                log.warning(
                    "%s (keeping the previous answer until %s)", value.problem.message if value.problem else "", until
                )
                value = entry.value
        with self._lock:
            if key in self._entries:
                self._entries[key] = _Entry(value, self._due(value, at), entry.cert, entry.issuer, entry.url)
