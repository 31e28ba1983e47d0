"""Revocation status from the URLs in certificates, judged without I/O.

What a CRL or an OCSP answer says about one certificate is an :class:`Answer` (good, revoked, unknown, invalid,
or unavailable, each with its :class:`~tlskit.pki.problems.Problem`).  :func:`check_chain` walks a chain and asks
a :class:`Lookup` for each certificate's CRLs and OCSP answers; the lookup is where I/O happens (``tlskit.net``
fetches over HTTP, with timeouts, size limits and caches), so this module stays pure and testable.  The
outcome is :class:`Findings`: problems, and the warnings a fail-open check lets pass.

The rules:

- ``RevocationMode.OCSP`` asks the responders a certificate names, ``CRL`` fetches its distribution points (and
  any CRL URLs given), ``ANY`` asks OCSP first and falls back to the CRL when no responder answers.
- Only the absence of an answer (unreachable, timeout, too large, no URL) is subject to :class:`FailMode`:
  closed makes it a problem, open a warning.  An answer that is revoked, unknown, badly signed, stale or for
  another certificate is always a problem: a responder that says so, or an attacker who forged it, must be heard.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import InputError
from .diagnose import crl_signed_by, crl_status, is_self_signed, issued_by, revoked_problem, signature_ok
from .files import parse_crl
from .ocsp import HASHES, CertID, OcspQuery, issuer_hashes, nonce_of
from .problems import Code, Problem, ext, label, utc, when
from .urls import crl_urls, ocsp_urls

__all__ = [
    "REVOCATION_CODES",
    "SKEW",
    "Answer",
    "AnswerStatus",
    "FailMode",
    "Findings",
    "Lookup",
    "RevocationMode",
    "RevocationSource",
    "check_chain",
    "crl_answer",
    "find_issuer",
    "load_fetched_crl",
    "ocsp_answer",
    "unavailable",
]

#: Clock skew tolerated on thisUpdate/nextUpdate (OpenSSL's ``ocsp -validity_period`` default).
SKEW = timedelta(minutes=5)
_SHA1 = hashes.SHA1()  # noqa: S303 - responderID byKey is always a SHA-1 hash (RFC 6960 4.2.1)


class RevocationMode(enum.StrEnum):
    """Where revocation status comes from: ``crl``, ``ocsp``, or ``any`` (OCSP, falling back to the CRL)."""

    CRL = "crl"
    OCSP = "ocsp"
    ANY = "any"


class FailMode(enum.StrEnum):
    """What a missing answer means: ``closed`` refuses the certificate, ``open`` accepts it with a warning."""

    OPEN = "open"
    CLOSED = "closed"


class AnswerStatus(enum.StrEnum):
    """What one source said: good, revoked, unknown (to the responder), invalid (not to be trusted), or no
    answer at all (unavailable)."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Answer:
    """What one source (a CRL or an OCSP responder, named by ``source``) said about one certificate.

    ``problem`` is None only when the certificate is good.  ``next_update`` is when newer information is due.
    """

    status: AnswerStatus
    problem: Problem | None
    source: str
    next_update: datetime | None = None

    @property
    def decisive(self) -> bool:
        """An answer was obtained (whatever it says); False when none could be."""
        return self.status is not AnswerStatus.UNAVAILABLE


@dataclass(frozen=True)
class Findings:
    """The outcome of a revocation check: problems, warnings (what a fail-open check let pass) and, per
    certificate checked, the answer that decided (``answers``)."""

    problems: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    answers: tuple[tuple[x509.Certificate, Answer], ...] = ()


class RevocationSource(Protocol):
    """What :func:`tlskit.pki.verify.verify_chain` asks about revocation (``tlskit.Revocation`` and the
    background ``tlskit.RevocationRefresher`` are two)."""

    def check(self, chain: Sequence[x509.Certificate], *, at: datetime | None = None) -> Findings: ...


class Lookup(Protocol):
    """Where :func:`check_chain` gets CRLs and OCSP answers: the one place that does I/O (and caches)."""

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, url: str, *, at: datetime) -> Answer:
        """The judged answer of the responder at ``url`` about ``cert`` (see :func:`ocsp_answer`)."""
        ...

    def crl(self, url: str, *, at: datetime) -> x509.CertificateRevocationList | Answer:
        """The CRL published at ``url``, or an unavailable/invalid :class:`Answer` saying why there is none."""
        ...


# ------------------------------------------------------------------------------------------------ answers

_UNAVAILABLE_FIX = (
    "check that the URL is reachable from here and its server runs (tlskit ca serve); "
    "or accept certificates without an answer on purpose (fail open)"
)


def unavailable(source: str, what: str, reason: str) -> Answer:
    """No answer from ``source``: ``what`` was sought ("the OCSP answer", "the CRL"), ``reason`` says why."""
    return Answer(
        AnswerStatus.UNAVAILABLE,
        Problem(Code.REVOCATION_UNAVAILABLE, f"could not get {what} from {source}: {reason}", _UNAVAILABLE_FIX),
        source,
    )


def _invalid_ocsp(source: str, issuer: x509.Certificate, reason: str) -> Answer:
    return Answer(
        AnswerStatus.INVALID,
        Problem(
            Code.OCSP_INVALID,
            f"the OCSP answer from {source} cannot be trusted: {reason}",
            f"check the responder of '{label(issuer)}': it must sign current answers with the CA's key or a "
            "responder certificate the CA issued (tlskit ca ocsp-signer)",
        ),
        source,
    )


_RESPONSE_STATUS = {
    ocsp.OCSPResponseStatus.MALFORMED_REQUEST: "malformedRequest: it could not read the request",
    ocsp.OCSPResponseStatus.UNAUTHORIZED: "unauthorized: it does not answer for this CA",
    ocsp.OCSPResponseStatus.SIG_REQUIRED: "sigRequired: it wants signed requests",
    ocsp.OCSPResponseStatus.TRY_LATER: "tryLater: it is busy",
    ocsp.OCSPResponseStatus.INTERNAL_ERROR: "internalError",
}


def _signer(response: ocsp.OCSPResponse, issuer: x509.Certificate, moment: datetime) -> x509.Certificate | str:
    """Who signed ``response``: ``issuer`` itself, or a responder certificate it authorized; else why not."""
    key_hash, name = response.responder_key_hash, response.responder_name
    candidates = [issuer, *response.certificates]

    def named(cert: x509.Certificate) -> bool:
        if key_hash is not None:
            return issuer_hashes(cert, _SHA1)[1] == key_hash
        return name == cert.subject

    signer = next((c for c in candidates if named(c)), None)
    if signer is None:
        return "it is signed by a responder that is not the CA and whose certificate was not sent"
    if signer.public_key() == issuer.public_key():
        return issuer
    if not issued_by(signer, issuer):
        return f"its responder '{label(signer)}' was not issued by '{label(issuer)}'"
    eku = ext(signer, x509.ExtendedKeyUsage)
    if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku.value:
        return f"its responder '{label(signer)}' lacks id-kp-OCSPSigning (RFC 6960 4.2.2.2)"
    if not signer.not_valid_before_utc <= moment <= signer.not_valid_after_utc:
        return f"its responder certificate '{label(signer)}' is not valid now"
    return signer


def ocsp_answer(
    data: bytes,
    *,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    query: OcspQuery,
    source: str,
    at: datetime | None = None,
) -> Answer:
    """Judge the OCSP response ``data`` fetched from ``source`` for ``query`` about ``cert``.

    It must parse, be successful, answer about ``cert``, be signed by ``issuer`` or a responder ``issuer``
    authorized (id-kp-OCSPSigning), echo the nonce if it carries one, and be current (thisUpdate not in the
    future, nextUpdate not past, within :data:`SKEW`).
    """
    moment = utc(at)
    try:
        response = ocsp.load_der_ocsp_response(data)
    except ValueError as exc:
        return _invalid_ocsp(source, issuer, f"it is not an OCSP response ({exc})")
    status = response.response_status
    if status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        text = _RESPONSE_STATUS.get(status, status.name)
        if status in (ocsp.OCSPResponseStatus.TRY_LATER, ocsp.OCSPResponseStatus.INTERNAL_ERROR):
            return unavailable(source, "an OCSP answer", f"the responder said {text}")
        return _invalid_ocsp(source, issuer, f"the responder refused the request ({text})")
    try:
        singles = list(response.responses)
        single = next((s for s in singles if _same_cert(CertID.of(s), query.cert_id, issuer)), None)
        signer = _signer(response, issuer, moment)
        signed = not isinstance(signer, str) and signature_ok(
            signer.public_key(), response.signature, response.tbs_response_bytes, response.signature_hash_algorithm
        )
        nonce = nonce_of(response)
    except InputError as exc:  # a nonce twice, extensions that do not parse
        return _invalid_ocsp(source, issuer, f"it is malformed ({exc.message})")
    except (ValueError, TypeError) as exc:
        return _invalid_ocsp(source, issuer, f"it is malformed ({exc})")
    if isinstance(signer, str):
        return _invalid_ocsp(source, issuer, signer)
    if not signed:
        return _invalid_ocsp(source, issuer, f"its signature does not verify with the key of '{label(signer)}'")
    if single is None:
        return _invalid_ocsp(source, issuer, f"it answers about another certificate, not serial {cert.serial_number:X}")
    if query.nonce is not None and nonce is not None and nonce != query.nonce:
        return _invalid_ocsp(source, issuer, "its nonce differs from the request's (a replayed answer?)")
    if single.this_update_utc > moment + SKEW:
        return _invalid_ocsp(
            source, issuer, f"it is not valid before {when(single.this_update_utc)} (check the clocks)"
        )
    next_update = single.next_update_utc
    if next_update is not None and next_update < moment - SKEW:
        return _invalid_ocsp(source, issuer, f"it is stale: it expired on {when(next_update)}")
    cert_status = single.certificate_status
    if cert_status is ocsp.OCSPCertStatus.GOOD:
        return Answer(AnswerStatus.GOOD, None, source, next_update)
    if cert_status is ocsp.OCSPCertStatus.REVOKED:
        revoked_at = single.revocation_time_utc or single.this_update_utc
        reason = single.revocation_reason.value if single.revocation_reason is not None else None
        return Answer(AnswerStatus.REVOKED, revoked_problem(cert, issuer, revoked_at, reason), source, next_update)
    return Answer(
        AnswerStatus.UNKNOWN,
        Problem(
            Code.REVOCATION_UNKNOWN,
            f"the OCSP responder of '{label(issuer)}' ({source}) does not know '{label(cert)}' "
            f"(serial {cert.serial_number:X}): that CA may never have issued it",
            "use a certificate the CA really issued; if it did, check the responder serves that CA's records",
        ),
        source,
        next_update,
    )


def _same_cert(answered: CertID, asked: CertID, issuer: x509.Certificate) -> bool:
    if answered.serial != asked.serial:
        return False
    if answered.algorithm == asked.algorithm:
        return (answered.name_hash, answered.key_hash) == (asked.name_hash, asked.key_hash)
    algorithm = HASHES.get(answered.algorithm)  # the answer may use another hash than the request: recompute
    return algorithm is not None and issuer_hashes(issuer, algorithm) == (answered.name_hash, answered.key_hash)


def crl_answer(
    crl: bytes | x509.CertificateRevocationList,
    *,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    source: str,
    named: bool = True,
    at: datetime | None = None,
) -> Answer | None:
    """Judge the CRL fetched from ``source`` for ``cert``.

    ``named=True``: ``cert`` names ``source`` as its distribution point, so a CRL from another CA or signed by
    another key is ``crl_invalid``.  ``named=False`` (a CRL URL given by the user): a CRL of another issuer is
    simply not about ``cert`` (None).
    """
    if isinstance(crl, bytes):
        try:
            crl = parse_crl(crl, source=source)
        except InputError as exc:
            return _invalid_crl(source, issuer, f"it is not a CRL ({exc.message})")
    if crl.issuer != cert.issuer:
        if not named:
            return None
        return _invalid_crl(
            source, issuer, f"it was issued by '{crl.issuer.rfc4514_string()}', not by the certificate's CA"
        )
    if not crl_signed_by(crl, issuer):
        return _invalid_crl(
            source, issuer, f"its signature does not verify with the key of '{label(issuer)}' (signed by another key)"
        )
    found = crl_status(crl, cert, issuer, at=at, source=source)
    if found is None:
        return Answer(AnswerStatus.GOOD, None, source, crl.next_update_utc)
    status = AnswerStatus.REVOKED if found.code == Code.REVOKED else AnswerStatus.INVALID
    return Answer(status, found, source, crl.next_update_utc)


def _invalid_crl(source: str, issuer: x509.Certificate | None, reason: str) -> Answer:
    whose = f"the CRL of '{label(issuer)}'" if issuer is not None else "the CA's CRL"
    return Answer(
        AnswerStatus.INVALID,
        Problem(
            Code.CRL_INVALID,
            f"the CRL at {source} cannot be used: {reason}",
            f"publish {whose} there, signed by that CA (tlskit ca serve does)",
        ),
        source,
    )


def load_fetched_crl(data: bytes, source: str) -> x509.CertificateRevocationList | Answer:
    """The CRL fetched from ``source`` (DER or PEM), or an invalid :class:`Answer` if it is none."""
    try:
        return parse_crl(data, source=source)
    except InputError as exc:
        return _invalid_crl(source, None, f"it is not a CRL ({exc.message})")


#: The codes of a certificate refused because of its revocation status (or the lack of one).
REVOCATION_CODES = frozenset(
    {Code.REVOKED, Code.REVOCATION_UNKNOWN, Code.REVOCATION_UNAVAILABLE, Code.NO_REVOCATION_URL, Code.OCSP_INVALID,
     Code.CRL_INVALID}
)  # fmt: skip


# -------------------------------------------------------------------------------------------- the chain


def find_issuer(cert: x509.Certificate, candidates: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The certificate among ``candidates`` that issued ``cert`` (by name and signature)."""
    return next((c for c in candidates if c.subject == cert.issuer and issued_by(cert, c)), None)


def _status(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    lookup: Lookup,
    mode: RevocationMode,
    extra_crls: Sequence[str],
    at: datetime,
) -> Answer:
    tried: list[Answer] = []
    if mode in (RevocationMode.OCSP, RevocationMode.ANY):
        for url in ocsp_urls(cert):
            answer = lookup.ocsp(cert, issuer, url, at=at)
            if answer.decisive:
                return answer
            tried.append(answer)
    if mode in (RevocationMode.CRL, RevocationMode.ANY):
        named = crl_urls(cert)
        for url in [*named, *(u for u in extra_crls if u not in named)]:
            got = lookup.crl(url, at=at)
            judged = (
                got
                if isinstance(got, Answer)
                else crl_answer(got, cert=cert, issuer=issuer, source=url, named=url in named, at=at)
            )
            if judged is None:
                continue
            if judged.decisive:
                return judged
            tried.append(judged)
    if tried:
        return tried[-1]
    return _no_url(cert, label(issuer), mode, extra_crls)


def _names_a_source(cert: x509.Certificate, mode: RevocationMode, extra_crls: Sequence[str]) -> bool:
    ocsp_ok = mode is not RevocationMode.CRL and bool(ocsp_urls(cert))
    return ocsp_ok or (mode is not RevocationMode.OCSP and bool(crl_urls(cert) or extra_crls))


def _no_url(cert: x509.Certificate, issuer: str, mode: RevocationMode, extra_crls: Sequence[str]) -> Answer:
    what = {RevocationMode.OCSP: "OCSP responder", RevocationMode.CRL: "CRL distribution point"}.get(
        mode, "CRL distribution point or OCSP responder"
    )
    extra = f", and none of the CRLs given is from '{issuer}'" if extra_crls else ""
    return Answer(
        AnswerStatus.UNAVAILABLE,
        Problem(
            Code.NO_REVOCATION_URL,
            f"'{label(cert)}' names no {what}{extra}, so whether it was revoked cannot be checked",
            "issue certificates from a CA made with crl_url= or ocsp_url=, or accept certificates without "
            "revocation information on purpose (fail open)",
        ),
        "",
    )


def check_chain(
    chain: Sequence[x509.Certificate],
    *,
    lookup: Lookup,
    mode: RevocationMode = RevocationMode.ANY,
    fail: FailMode = FailMode.CLOSED,
    whole_chain: bool = False,
    issuers: Sequence[x509.Certificate] = (),
    crl_urls: Sequence[str] = (),
    at: datetime | None = None,
) -> Findings:
    """The revocation status of ``chain`` (leaf first) through ``lookup``.

    Only the leaf is checked unless ``whole_chain`` (then every certificate below a self-signed anchor).
    Issuers are found in the chain and among ``issuers`` (trust anchors).  ``crl_urls`` are CRLs to consult
    besides the ones certificates name.
    """
    moment = utc(at)
    problems: list[Problem] = []
    warnings: list[Problem] = []
    answers: list[tuple[x509.Certificate, Answer]] = []
    scope = [c for c in chain if not is_self_signed(c)] if whole_chain else list(chain[:1])
    for index, cert in enumerate(scope):
        issuer = find_issuer(cert, [*chain[index + 1 :], *issuers])
        if issuer is None and not _names_a_source(cert, mode, crl_urls):
            answer = _no_url(cert, cert.issuer.rfc4514_string(), mode, crl_urls)
        elif issuer is None:
            answer = Answer(
                AnswerStatus.UNAVAILABLE,
                Problem(
                    Code.REVOCATION_UNAVAILABLE,
                    f"the issuer of '{label(cert)}' ('{cert.issuer.rfc4514_string()}') is not known here, so its "
                    "revocation status cannot be asked",
                    "give the intermediate CA certificates (intermediates=) and the root (ca=)",
                ),
                "",
            )
        else:
            answer = _status(cert, issuer, lookup=lookup, mode=mode, extra_crls=crl_urls, at=moment)
        answers.append((cert, answer))
        if answer.problem is None:
            continue
        if answer.decisive or fail is FailMode.CLOSED:
            problems.append(answer.problem)
        else:
            warnings.append(answer.problem)
    return Findings(tuple(problems), tuple(warnings), tuple(answers))
