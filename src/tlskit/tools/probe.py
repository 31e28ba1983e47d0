"""``tlskit probe``: connect to a TLS server and explain everything that is wrong with it, not just the first thing.

One handshake with a client that accepts anything (so the chain can be examined even when a real client would
refuse it), then the chain as sent is diagnosed with :func:`tlskit.pki.diagnose.diagnose_chain` against the
given trust anchors (or the system's); the handshake's own failures (client certificates) are classified here.
Then each protocol version is tried on its own and, if TLS 1.2 is accepted, a short list of TLS 1.2 suites one
at a time, to judge the configuration against Mozilla's "modern" and "intermediate" profiles.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import os
import ssl
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography import x509

from ..errors import InputError
from ..net.explain import network_error
from ..net.revocation import FailMode, Revocation, RevocationMode
from ..pki.certs import key_matches, utc_now
from ..pki.diagnose import diagnose_chain
from ..pki.files import load_certificates, load_crl
from ..pki.inspect import general_name, key_description, signature_name, usage_name
from ..pki.keys import load_private_key
from ..pki.problems import Code, Problem, Purpose, explain_ssl_error, unique
from ..pki.verify import system_roots
from .scan import Handshake, ProtocolVersion, ServerFlight, handshake, probe_context

__all__ = [
    "INTERMEDIATE_TLS12_SUITES",
    "CertificateInfo",
    "ProbeReport",
    "ProfileCheck",
    "VersionSupport",
    "probe",
]

#: Mozilla "intermediate" (v5.7) TLS 1.2 suites: ECDHE/DHE key exchange with AEAD ciphers only.
INTERMEDIATE_TLS12_SUITES = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
)
# Suites outside that profile that servers still commonly accept: CBC, static RSA key exchange, 3DES.
_LEGACY_TLS12_SUITES = (
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA256",
    "DHE-RSA-AES128-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
)
_SUITES = (*INTERMEDIATE_TLS12_SUITES, *_LEGACY_TLS12_SUITES)
_OLD_VERSIONS = (ProtocolVersion.TLS1_0, ProtocolVersion.TLS1_1)


class VersionSupport(enum.StrEnum):
    """Whether a server accepted a protocol version offered on its own."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    NOT_TESTABLE = "not testable here"


@dataclass(frozen=True)
class CertificateInfo:
    """What a person needs to know about one certificate of a chain."""

    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: int
    key_type: str
    key_bits: int
    signature_algorithm: str
    sans: tuple[str, ...]
    eku: tuple[str, ...]

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, *, now: dt.datetime | None = None) -> CertificateInfo:
        """Summarize ``cert``; ``days_left`` counts from ``now`` and is negative once it has expired."""
        key_type, key_bits = key_description(cert.public_key())
        try:
            sans = tuple(map(general_name, cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value))
        except x509.ExtensionNotFound:
            sans = ()
        try:
            eku = tuple(map(usage_name, cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value))
        except x509.ExtensionNotFound:
            eku = ()
        return cls(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            days_left=(cert.not_valid_after_utc - utc_now(now)).days,
            key_type=key_type,
            key_bits=key_bits,
            signature_algorithm=signature_name(cert.signature_algorithm_oid),
            sans=sans,
            eku=eku,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (dates in ISO 8601)."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left,
            "key_type": self.key_type,
            "key_bits": self.key_bits,
            "signature_algorithm": self.signature_algorithm,
            "sans": list(self.sans),
            "eku": list(self.eku),
        }


@dataclass(frozen=True)
class ProfileCheck:
    """Whether the server meets a Mozilla server-side TLS profile.

    ``met`` is ``None`` when nothing violates the profile but a part of it could not be tested here.
    ``reasons`` lists the violations (or what could not be tested).
    """

    name: str
    met: bool | None
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"met": self.met, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class ProbeReport:
    """Everything a probe found.  ``problems`` is empty for a healthy server."""

    host: str
    port: int
    server_name: str | None
    protocol: ProtocolVersion | None
    cipher: str | None
    group: str | None
    alpn: str | None
    chain: tuple[CertificateInfo, ...]
    problems: tuple[Problem, ...]
    versions: Mapping[ProtocolVersion, VersionSupport] = field(default_factory=dict)
    tls12_ciphers: tuple[str, ...] = ()
    profiles: tuple[ProfileCheck, ...] = ()

    @property
    def ok(self) -> bool:
        """No problems found."""
        return not self.problems

    @property
    def codes(self) -> set[str]:
        """The problem codes, for quick membership tests."""
        return {p.code for p in self.problems}

    def to_json(self) -> dict[str, Any]:
        """The JSON form printed by ``tlskit probe --json``."""
        return {
            "host": self.host,
            "port": self.port,
            "server_name": self.server_name,
            "protocol": self.protocol.value if self.protocol else None,
            "cipher": self.cipher,
            "group": self.group,
            "alpn": self.alpn,
            "chain": [c.to_json() for c in self.chain],
            "versions": {v.value: s.value for v, s in self.versions.items()},
            "tls12_ciphers": list(self.tls12_ciphers),
            "profiles": {p.name: p.to_json() for p in self.profiles},
            "problems": [p.to_dict() for p in self.problems],
            "ok": self.ok,
        }


# --- inputs ------------------------------------------------------------------------------------------------


def _default_roots() -> list[x509.Certificate]:
    """The system's trust anchors, or none (then every chain is reported as untrusted, which it is here)."""
    try:
        return system_roots()
    except InputError:
        return []


def _check_client_identity(cert: str, key: str, passphrase: bytes | None) -> None:
    chain = load_certificates(cert)
    private = load_private_key(key, passphrase=passphrase)
    if not key_matches(chain[0], private):
        raise InputError(
            f"{key}: the key does not belong to the certificate in {cert}",
            fix="pass the key made with that certificate",
        )


# --- diagnosis ---------------------------------------------------------------------------------------------


def _cert_requested(result: Handshake) -> bool | None:
    """Whether the server asked for a client certificate, as far as a client can see it (None: cannot tell)."""
    if result.after_handshake or result.flight.certificate_request:
        return True
    # TLS 1.2 and older send the CertificateRequest in the clear, in the flight we read; TLS 1.3 encrypts it.
    older = result.flight.version is not None and result.flight.version is not ProtocolVersion.TLS1_3
    return False if older else None


def _revocation(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    revocation: Revocation | bool,
    *,
    timeout: float,
    now: dt.datetime | None,
) -> list[Problem]:
    """What the URLs in the server's certificate say: problems, and unreachable responders (clients that check
    would refuse or warn); a certificate without URLs is left to the rest of the report."""
    if revocation is False:
        return []
    spec = (
        revocation
        if isinstance(revocation, Revocation)
        else Revocation(RevocationMode.ANY, FailMode.OPEN, timeout=min(timeout, 5.0))
    )
    findings = spec.check(chain, at=now, issuers=roots)
    return [*findings.problems, *(w for w in findings.warnings if w.code != Code.NO_REVOCATION_URL)]


def _version_problem(
    versions: Mapping[ProtocolVersion, VersionSupport], negotiated: ProtocolVersion | None
) -> Problem | None:
    old = [v for v in _OLD_VERSIONS if versions.get(v) is VersionSupport.ACCEPTED]
    if not old and negotiated is not None and negotiated in _OLD_VERSIONS:
        old = [negotiated]
    if not old:
        return None
    names = " and ".join(v.value for v in old)
    only = not any(versions.get(v) is VersionSupport.ACCEPTED for v in (ProtocolVersion.TLS1_2, ProtocolVersion.TLS1_3))
    return Problem(
        Code.PROTOCOL_TOO_OLD,
        f"the server {'only speaks' if only else 'accepts'} {names}, deprecated since 2021 (RFC 8996)",
        "enable TLS 1.2 and 1.3 and disable TLS 1.0/1.1 in the server configuration",
    )


def _profiles(versions: Mapping[ProtocolVersion, VersionSupport], tls12: Sequence[str]) -> tuple[ProfileCheck, ...]:
    def state(v: ProtocolVersion) -> VersionSupport:
        return versions.get(v, VersionSupport.NOT_TESTABLE)

    untested = [
        f"{v.value} could not be tested here" for v in ProtocolVersion if state(v) is VersionSupport.NOT_TESTABLE
    ]
    old = [f"accepts {v.value}" for v in _OLD_VERSIONS if state(v) is VersionSupport.ACCEPTED]
    no13 = ["does not accept TLS 1.3"] if state(ProtocolVersion.TLS1_3) is VersionSupport.REFUSED else []

    def check(name: str, violations: list[str]) -> ProfileCheck:
        if violations:
            return ProfileCheck(name, False, tuple(violations))
        return ProfileCheck(name, None if untested else True, tuple(untested))

    modern = old + (["accepts TLS 1.2"] if state(ProtocolVersion.TLS1_2) is VersionSupport.ACCEPTED else []) + no13
    weak = [s for s in tls12 if s not in INTERMEDIATE_TLS12_SUITES]
    intermediate = old + no13 + ([f"accepts TLS 1.2 suites outside the profile: {', '.join(weak)}"] if weak else [])
    return check("modern", modern), check("intermediate", intermediate)


# --- the probe ---------------------------------------------------------------------------------------------


def probe(
    host: str,
    port: int,
    *,
    ca: Sequence[str | os.PathLike[str]] = (),
    server_name: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    passphrase: bytes | None = None,
    alpn: Sequence[str] = (),
    crls: Sequence[str | os.PathLike[str]] = (),
    timeout: float = 10.0,
    scan: bool = True,
    now: dt.datetime | None = None,
    revocation: Revocation | bool = True,
) -> ProbeReport:
    """Probe ``host:port`` and report what the server negotiates, sends and gets wrong.

    ``ca`` files are the trust anchors (default: the system's); ``crls`` are checked for revocation, and so are
    the URLs in the server's certificate (``revocation``: True asks its OCSP responder, else its CRL; a
    :class:`~tlskit.net.revocation.Revocation` says how; False skips it).  A revoked certificate, an answer that
    cannot be trusted and an unreachable responder are problems; a certificate that names no URL is not.
    ``server_name`` is sent as SNI and checked against the certificate (default: ``host``).  ``scan=False``
    skips the per-version and per-suite handshakes.  Raises :class:`~tlskit.errors.InputError` for unreadable
    inputs and :class:`~tlskit.errors.TlskitError` when there is no TCP connection at all.
    """
    if (cert is None) != (key is None):
        raise InputError("a client certificate needs both cert= and key=", fix="pass both, or neither")
    if cert is not None and key is not None:
        _check_client_identity(cert, key, passphrase)
    anchors = [c for f in ca for c in load_certificates(f)]
    crl_objs = [load_crl(f) for f in crls]
    name = server_name or host
    sni = None if _is_ip(name) else name
    try:
        main_ctx = probe_context(alpn=tuple(alpn), cert=cert, key=key, passphrase=passphrase)
    except ssl.SSLError as exc:
        raise InputError(
            f"OpenSSL refused the client certificate or key ({exc.reason})", fix="check both files"
        ) from exc

    target = _Target(host, port, sni, timeout)
    result = target.handshake(main_ctx, settle=min(timeout, 2.0))
    chain = [x509.load_der_x509_certificate(der) for der in result.chain]
    problems: list[Problem] = []
    if chain:
        roots = anchors or _default_roots()
        problems += diagnose_chain(chain, roots=roots, host=name, purpose=Purpose.SERVER, crls=crl_objs, at=now)
        problems += _revocation(chain, roots, revocation, timeout=timeout, now=now)
    if result.error is not None:
        failure = explain_ssl_error(
            result.error,
            host=name,
            chain=chain,
            sent_cert=cert is not None,
            cert_requested=_cert_requested(result),
        )
        # The chain's own problems already say why a verification failed; other failures are news.
        if failure.code in (Code.CLIENT_CERT_REQUIRED, Code.CLIENT_CERT_REJECTED) or not chain or not problems:
            problems.append(failure)

    # A peer that does not speak TLS at all has no versions or suites to scan: say so once, not six times.
    scan = scan and not any(p.code == Code.NOT_TLS for p in problems)
    versions, tls12 = _scan(target, alpn=tuple(alpn)) if scan else ({}, [])
    negotiated = result.protocol or result.flight.version
    if (old := _version_problem(versions, negotiated)) is not None:
        problems.append(old)
    return ProbeReport(
        host=host,
        port=port,
        server_name=sni,
        protocol=negotiated,
        cipher=result.cipher,
        group=result.flight.group,
        alpn=result.alpn,
        chain=tuple(CertificateInfo.from_certificate(c, now=now) for c in chain),
        problems=tuple(unique(problems)),
        versions=MappingProxyType(versions),
        tls12_ciphers=tuple(tls12),
        profiles=_profiles(versions, tls12) if scan else (),
    )


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    sni: str | None
    timeout: float

    def handshake(self, ctx: ssl.SSLContext, *, settle: float = 0.0) -> Handshake:
        """The main handshake: no TCP connection at all is an error for the whole probe."""
        try:
            return handshake(
                self.host, self.port, context=ctx, server_name=self.sni, timeout=self.timeout, settle=settle
            )
        except OSError as exc:
            raise network_error(exc, action="connect", host=self.host, port=self.port) from exc

    def server_hello(self, ctx: ssl.SSLContext | None) -> ServerFlight | None:
        """A scan handshake's plaintext flight; None if the local OpenSSL could not even offer it.

        A scan connection that is reset or stalls counts as a refusal: some servers drop old hellos silently.
        """
        if ctx is None:
            return None
        try:
            result = handshake(self.host, self.port, context=ctx, server_name=self.sni, timeout=self.timeout)
        except OSError:
            return ServerFlight()
        return result.flight if result.sent else None


def _pinned_context(*, version: ProtocolVersion, suite: str = "ALL", alpn: tuple[str, ...]) -> ssl.SSLContext | None:
    """A probing context offering only ``version`` (and ``suite``), or None if the local OpenSSL cannot."""
    try:
        return probe_context(version=version, ciphers=f"{suite}:@SECLEVEL=0", alpn=alpn)
    except (ValueError, ssl.SSLError):
        return None


def _scan(target: _Target, *, alpn: tuple[str, ...]) -> tuple[dict[ProtocolVersion, VersionSupport], list[str]]:
    """Each protocol version on its own, then (if TLS 1.2 is accepted) each TLS 1.2 suite on its own.

    The ServerHello decides, not the whole handshake: a server that then demands a client certificate still
    accepted the version.  Contexts are built here and handshakes run in threads, so a distant server costs
    about one round of round trips.
    """
    with ThreadPoolExecutor(max_workers=8) as pool:
        contexts = [_pinned_context(version=v, alpn=alpn) for v in ProtocolVersion]
        versions: dict[ProtocolVersion, VersionSupport] = {}
        for version, flight in zip(ProtocolVersion, pool.map(target.server_hello, contexts), strict=True):
            if flight is None:
                versions[version] = VersionSupport.NOT_TESTABLE
            else:
                versions[version] = VersionSupport.ACCEPTED if flight.version is version else VersionSupport.REFUSED
        if versions[ProtocolVersion.TLS1_2] is not VersionSupport.ACCEPTED:
            return versions, []
        contexts = [_pinned_context(version=ProtocolVersion.TLS1_2, suite=s, alpn=alpn) for s in _SUITES]
        flights = pool.map(target.server_hello, contexts)
        return versions, [s for s, f in zip(_SUITES, flights, strict=True) if f and f.version is ProtocolVersion.TLS1_2]


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True
