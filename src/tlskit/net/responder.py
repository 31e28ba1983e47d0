"""Publishing revocation: each CA's CRL, its certificate and OCSP answers over HTTP, at the paths of its URLs.

A CA made with ``crl_url="http://pki.example:8080/int.crl"`` has its CRL served at ``/int.crl`` (DER,
``application/pkix-crl``), its certificate at the caIssuers path (DER, ``application/pkix-cert``), and OCSP
requests answered at the path of its OCSP URL (RFC 6960: POST, or GET with the request base64-encoded in the
path).  Several CAs may share one OCSP URL: the issuer hashes in the request pick the CA; a request about a CA
not served here gets ``unauthorized``.

The CA directories stay the source of truth: before answering, the responder re-reads a CA's index when it
changed on disk (``tlskit ca revoke`` in another process), under the directory's shared lock.  The CRL is
signed anew right after a revocation and when half its validity has passed, so it never expires while served;
OCSP answers are signed by the CA or by its delegated responder (``tlskit ca ocsp-signer``) and cached until
half their validity has passed or the CA's records change.

The HTTP server is the standard library's ``ThreadingHTTPServer`` with a handler of our own: CRLs and OCSP
answers are small, and a few hundred requests a second is far beyond what relying parties that cache ask for,
so a dependency would buy nothing.  What the stdlib server leaves to the handler is done here: request bodies
are bounded, every connection has a timeout, one request per connection (HTTP/1.0 semantics), nothing but
these paths is served.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from ..errors import InputError, TlskitError
from ..pki.ca import CertificateAuthority, OcspSigner
from ..pki.certs import utc_now
from ..pki.ocsp import ANSWER_VALIDITY, CertID, OcspAuthority, nonce_of, parse_request, respond, unsuccessful
from ..pki.problems import label

__all__ = ["Reply", "ResponderServer", "RevocationResponder", "start_responder"]

log = logging.getLogger("tlskit.responder")

CRL_VALIDITY = dt.timedelta(days=1)
_MAX_REQUEST = 16 * 1024  # an OCSP request for one certificate is about 100 bytes
_CRL, _CERT, _OCSP = "application/pkix-crl", "application/pkix-cert", "application/ocsp-response"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, content type, body, extra headers and a note for the log."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    note: str = ""


def _path(url: str | None) -> str | None:
    return urllib.parse.urlsplit(url).path or "/" if url else None


@dataclass
class _Published:
    """One CA as the responder keeps it."""

    ca: CertificateAuthority
    authority: OcspAuthority
    lock: threading.Lock = field(default_factory=threading.Lock)
    version: tuple[int, int, int] | None = None
    revoked: frozenset[tuple[int, str, str]] = frozenset()
    crl: bytes = b""
    crl_this: dt.datetime | None = None
    crl_renew: dt.datetime | None = None
    answers: dict[tuple[int, str], tuple[bytes, dt.datetime]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return label(self.ca.cert)


class RevocationResponder:
    """Answers CRL, CA certificate and OCSP requests for ``cas`` (see the module's documentation).

    ``signers`` maps a CA (by position) to its delegated OCSP responder, or None to sign with the CA's own key.
    ``crl_validity`` and ``ocsp_validity`` set nextUpdate; ``clock`` returns the current time (tests move it).
    """

    def __init__(
        self,
        cas: Sequence[CertificateAuthority],
        *,
        signers: Sequence[OcspSigner | None] = (),
        crl_validity: dt.timedelta = CRL_VALIDITY,
        ocsp_validity: dt.timedelta = ANSWER_VALIDITY,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        if not cas:
            raise InputError("no CA to serve", fix="give at least one CA directory")
        if crl_validity <= dt.timedelta(0) or ocsp_validity <= dt.timedelta(0):
            raise InputError("validity periods must be positive", fix="give positive crl_validity= and ocsp_validity=")
        self.crl_validity, self.ocsp_validity = crl_validity, ocsp_validity
        self._clock = clock or (lambda: utc_now(None))
        self._crls: dict[str, _Published] = {}
        self._certs: dict[str, _Published] = {}
        self._ocsp: dict[str, list[_Published]] = {}
        for index, ca in enumerate(cas):
            signer = signers[index] if index < len(signers) else None
            authority = OcspAuthority(ca.cert, signer.cert if signer else ca.cert, signer.key if signer else ca.key)
            pub = _Published(ca, authority)
            if not ca.urls:
                raise InputError(
                    f"{ca.directory or pub.name}: the CA has no URLs to serve",
                    fix="create it with crl_url= and ocsp_url=",
                )
            for table, url in ((self._crls, ca.urls.crl), (self._certs, ca.urls.issuer)):
                path = _path(url)
                if path is None:
                    continue
                if path in self._crls or path in self._certs:
                    raise InputError(f"two CAs publish at the path {path}", fix="give each CA its own URLs")
                table[path] = pub
            ocsp_path = _path(ca.urls.ocsp)
            if ocsp_path is not None:
                self._ocsp.setdefault(ocsp_path.rstrip("/") or "/", []).append(pub)
        self.published = [p for group in (self._crls, self._certs) for p in group.values()]

    @property
    def paths(self) -> list[str]:
        """Every path answered, for the log at start."""
        return sorted([*self._crls, *self._certs, *self._ocsp])

    # -- the CA's records -----------------------------------------------------------------------------------------

    def _sync(self, pub: _Published, now: dt.datetime) -> None:
        """Re-read the CA's index if it changed on disk; forget signed answers whose status changed."""
        version = pub.ca.index_version()
        if version is not None and version == pub.version:
            return
        pub.ca.refresh()
        pub.version = version
        revoked = frozenset(
            (r.serial, r.revoked_at.isoformat(), r.reason.value if r.reason else "")
            for r in pub.ca.records()
            if r.revoked_at is not None
        )
        if revoked != pub.revoked:
            pub.revoked = revoked
            pub.answers.clear()
            pub.crl_renew = None  # sign a new CRL now

    def crl(self, pub: _Published) -> bytes:
        """The CA's current CRL (DER), signed anew after a revocation and halfway through its validity."""
        now = self._clock()
        with pub.lock:
            self._sync(pub, now)
            # (a clock set back before the CRL's thisUpdate gets one it can use, too)
            if pub.crl_renew is None or now >= pub.crl_renew or (pub.crl_this is not None and now < pub.crl_this):
                crl = pub.ca.crl(validity=self.crl_validity, now=now)
                pub.crl = crl.public_bytes(serialization.Encoding.DER)
                pub.crl_this = crl.last_update_utc
                pub.crl_renew = now + self.crl_validity / 2
                pub.version = pub.ca.index_version()  # our own write of the CRL number is no news
                log.info("%s: signed CRL with %d revoked", pub.name, len(pub.revoked))
            return pub.crl

    def answer(self, request_der: bytes) -> tuple[bytes, str]:
        """An OCSP response (DER) to ``request_der`` and a note for the log."""
        request = parse_request(request_der)
        if request is None:
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST), "malformed request"
        cert_id = CertID.of(request)
        pub = next((p for group in self._ocsp.values() for p in group if p.authority.serves(cert_id)), None)
        if pub is None:
            return unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED), "unauthorized: a CA not served here"
        now = self._clock()
        nonce = nonce_of(request) is not None  # parse_request refused malformed extensions
        with pub.lock:
            self._sync(pub, now)
            key = (cert_id.serial, cert_id.algorithm)
            cached = pub.answers.get(key)
            record = next((r for r in pub.ca.records() if r.serial == cert_id.serial), None)
            if record is None:
                status, note = ocsp.OCSPCertStatus.UNKNOWN, "unknown"
            elif record.revoked_at is not None:
                status, note = ocsp.OCSPCertStatus.REVOKED, "revoked"
            else:
                status, note = ocsp.OCSPCertStatus.GOOD, "good"
            note = f"{note} serial {cert_id.serial:X} ({pub.name})"
            if cached is not None and not nonce and now < cached[1]:
                return cached[0], note + " (cached)"
            der, _ = respond(
                request,
                pub.authority,
                status=status,
                revoked_at=record.revoked_at if record else None,
                reason=record.reason if record else None,
                now=now,
                validity=self.ocsp_validity,
            )
            if not nonce:  # an answer with a nonce is for that request alone
                pub.answers[key] = (der, now + self.ocsp_validity / 2)
            return der, note

    # -- HTTP -----------------------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, body: bytes | None) -> Reply:
        """Answer one HTTP request (``target`` as in the request line)."""
        path = urllib.parse.urlsplit(target).path or "/"
        try:
            if method in ("GET", "HEAD") and path in self._crls:
                pub = self._crls[path]
                data = self.crl(pub)
                return Reply(200, _CRL, data, self._expiry(pub.crl_renew, pub.crl_this), f"CRL of {pub.name}")
            if method in ("GET", "HEAD") and path in self._certs:
                pub = self._certs[path]
                return Reply(
                    200, _CERT, pub.ca.cert.public_bytes(serialization.Encoding.DER), (), f"certificate of {pub.name}"
                )
            if method == "POST" and (path.rstrip("/") or "/") in self._ocsp:
                der, note = self.answer(body or b"")
                return Reply(200, _OCSP, der, (), f"OCSP {note}")
            if method in ("GET", "HEAD"):
                request = self._ocsp_get(path)
                if request is not None:
                    der, note = self.answer(request)
                    return Reply(
                        200,
                        _OCSP,
                        der,
                        self._expiry(self._clock() + self.ocsp_validity / 2, self._clock()),
                        f"OCSP {note}",
                    )
        except TlskitError as exc:
            log.error("cannot answer %s %s: %s", method, path, exc)
            if path.rstrip("/") in self._ocsp or self._ocsp_get(path) is not None:
                return Reply(200, _OCSP, unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR), (), f"error: {exc}")
            return Reply(500, "text/plain", b"internal error\n", (), f"error: {exc}")
        if method not in ("GET", "HEAD", "POST"):
            return Reply(405, "text/plain", b"method not allowed\n", (("Allow", "GET, HEAD, POST"),), "bad method")
        return Reply(404, "text/plain", b"not found\n", (), "not found")

    def _ocsp_get(self, path: str) -> bytes | None:
        """The request in an RFC 6960 A.1 GET path (``{ocsp path}/{url-encoded base64}``), or None."""
        for prefix in self._ocsp:
            base = prefix.rstrip("/")
            if not path.startswith(base + "/") or len(path) <= len(base) + 1:
                continue
            encoded = urllib.parse.unquote(path[len(base) + 1 :])
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                return b""  # malformed: answered as such
        return None

    def _expiry(self, until: dt.datetime | None, since: dt.datetime | None) -> tuple[tuple[str, str], ...]:
        """HTTP caching headers (RFC 5019 6.2) for data good until ``until``."""
        if until is None:
            return ()
        now = self._clock()
        age = max(0, int((until - now).total_seconds()))
        headers = [
            ("Cache-Control", f"max-age={age}, public, no-transform, must-revalidate"),
            ("Expires", email.utils.format_datetime(until, usegmt=True)),
        ]
        if since is not None:
            headers.append(("Last-Modified", email.utils.format_datetime(since, usegmt=True)))
        return tuple(headers)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"
    timeout = 10.0
    server_version = "tlskit"
    sys_version = ""

    def _serve(self, method: str) -> None:
        body: bytes | None = None
        if method == "POST":
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():
                self._send(Reply(411, "text/plain", b"length required\n", (), "no Content-Length"))
                return
            if int(length) > _MAX_REQUEST:
                self._send(Reply(413, "text/plain", b"request too large\n", (), f"{length}-byte request"))
                return
            body = self.rfile.read(int(length))
        responder = self.server.responder
        if responder is None:
            self._send(Reply(503, "text/plain", b"starting\n", (("Retry-After", "1"),), "not ready"))
            return
        self._send(responder.handle(method, self.path, body), head=method == "HEAD")

    def _send(self, reply: Reply, *, head: bool = False) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(reply.body)
        log.info("%s %s %s: %d %s", self.client_address[0], self.command, self.path[:80], reply.status, reply.note)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request is logged by _send; errors from the stdlib server are not needed


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], responder: RevocationResponder | None) -> None:
        self.responder = responder
        super().__init__(address, _Handler)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class ResponderServer:
    """A :class:`RevocationResponder` listening on HTTP in a background thread (see :func:`start_responder`)."""

    def __init__(self, http: _HTTPServer) -> None:
        self._http = http
        self._thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def responder(self) -> RevocationResponder | None:
        """What answers; None (503 until set) lets a server listen on a port the OS picks before its CAs, whose
        URLs name that port, exist."""
        return self._http.responder

    @responder.setter
    def responder(self, responder: RevocationResponder | None) -> None:
        self._http.responder = responder

    def close(self) -> None:
        """Stop answering and release the port."""
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def __enter__(self) -> ResponderServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_responder(responder: RevocationResponder | None, host: str = "127.0.0.1", port: int = 0) -> ResponderServer:
    """Serve ``responder`` on ``host:port`` (port 0: the OS picks one; see :attr:`ResponderServer.port`)."""
    bare = host.strip("[]")
    server_class = _HTTPServer6 if ":" in bare else _HTTPServer
    try:
        http = server_class((bare, port), responder)
    except OSError as exc:
        raise InputError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc})",
            fix="choose another port (0 lets the system pick one), or stop what uses it",
        ) from exc
    return ResponderServer(http)
