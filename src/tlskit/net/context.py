"""SSLContext factories with secure defaults: :func:`server_context` and :func:`client_context`.

Both return a plain :class:`ssl.SSLContext`, so the result works with asyncio, httpx, urllib3, aiohttp and
tlskit's own transport alike: everything set here is enforced by OpenSSL itself (versions, suites, groups,
trust, client certificates, CRLs, host names).  Every default lives in :func:`_apply_secure_defaults` with its
reason (modelled on urllib3's ``create_urllib3_context``); options are keyword-only and validated before any
context is built, with errors that name the file and the fix.

What OpenSSL cannot enforce through the ``ssl`` module (allow-lists of peer identities, SPKI pins, a callback)
is not part of a context: it is a :class:`~tlskit.net.policy.PeerPolicy`, given to tlskit's own connections
(``start_server(..., policy=)``, ``connect(..., policy=)``).
"""

from __future__ import annotations

import enum
import os
import ssl
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from cryptography import x509

from .._fileio import open_private_append
from ..errors import InputError, KeyMismatchError
from ..pki.certs import key_matches
from ..pki.files import load_certificates, load_crl, parse_certificates, parse_crl
from ..pki.keys import PrivateKey, load_private_key, parse_private_key
from ._openssl import disable_session_cache, load_identity, load_trust, set_groups

__all__ = [
    "DEFAULT_GROUPS",
    "INTERMEDIATE_CIPHERS",
    "ClientAuth",
    "CrlCheck",
    "KeyLogWarning",
    "TLSProfile",
    "client_certificate_loaded",
    "client_context",
    "server_context",
    "tls_version_from_str",
]

Path_: TypeAlias = str | os.PathLike[str]
CertSource: TypeAlias = Path_ | bytes | x509.Certificate | Sequence[x509.Certificate]
KeySource: TypeAlias = Path_ | bytes | PrivateKey
CaSource: TypeAlias = Path_ | bytes | x509.Certificate | Iterable[Path_ | bytes | x509.Certificate]
CrlSource: TypeAlias = Path_ | bytes | x509.CertificateRevocationList
Passphrase: TypeAlias = bytes | str | None
Version: TypeAlias = str | ssl.TLSVersion
SniEntry: TypeAlias = tuple[CertSource, KeySource] | tuple[CertSource, KeySource, Passphrase]
_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")

# Mozilla "intermediate" (server-side TLS guidelines, v5.7) TLS 1.2 suites: forward-secret ECDHE key exchange
# with AEAD ciphers only.  The DHE-RSA suites of that list are left out: they need custom DH parameters, which
# the ssl module does not set up by default, and every client that speaks TLS 1.2 also speaks ECDHE.
# TLS 1.3 suites are not configurable through the ssl module; OpenSSL's defaults are exactly Mozilla's three
# (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305), all AEAD.
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
# Mozilla's key-exchange groups (the same for "modern" and "intermediate"), in preference order.
DEFAULT_GROUPS = "X25519:P-256:P-384"

# OpenSSL's SSL_OP_PRIORITIZE_CHACHA (ssl.h, 1.1.1 and later), which the ssl module does not name: with the
# server's order in force, a client that puts ChaCha20-Poly1305 first (one without AES hardware) still gets it.
_OP_PRIORITIZE_CHACHA = 1 << 21


class TLSProfile(enum.Enum):
    """A server configuration from Mozilla's server-side TLS guidelines (v5.7).

    - ``INTERMEDIATE`` (the default): TLS 1.2 and 1.3, ECDHE with AEAD suites only; every client of the last
      ten years (Firefox 27, Chrome 31, Android 4.4.2, Java 8u31, OpenSSL 1.0.1, Safari 9).
    - ``MODERN``: TLS 1.3 only, for services whose clients all speak it (Firefox 63, Chrome 70, Android 10,
      Java 11, OpenSSL 1.1.1, Safari 12.1).  Mozilla also asks for an ECDSA certificate (P-256 or P-384,
      tlskit's default key type) valid for at most 90 days (``tlskit ca issue --days 90``).
    """

    MODERN = "modern"
    INTERMEDIATE = "intermediate"

    @property
    def min_version(self) -> ssl.TLSVersion:
        """The lowest TLS version the profile allows."""
        return ssl.TLSVersion.TLSv1_3 if self is TLSProfile.MODERN else ssl.TLSVersion.TLSv1_2


def parse_choice(cls: type[_E], value: str | _E, what: str) -> _E:
    """``value`` as a member of the enum ``cls`` (by value, case-insensitive), or InputError listing the choices."""
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).strip().lower())
    except ValueError:
        choices = ", ".join(str(m.value) for m in cls)
        raise InputError(f"unknown {what} {value!r}", fix=f"use one of: {choices}") from None


class ClientAuth(enum.Enum):
    """Whether a server asks for client certificates: NONE, OPTIONAL (verified if sent) or REQUIRED."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"

    @classmethod
    def parse(cls, value: str | ClientAuth) -> ClientAuth:
        """Parse ``"none" | "optional" | "required"`` (case-insensitive)."""
        return parse_choice(cls, value, "client authentication")

    @classmethod
    def of(cls, ctx: ssl.SSLContext) -> ClientAuth:
        """What a server context asks of clients (from its ``verify_mode``)."""
        return _FROM_VERIFY_MODE[int(ctx.verify_mode)]


class CrlCheck(enum.Enum):
    """Which certificates CRLs are checked for: the peer's certificate only, or every certificate of its chain."""

    LEAF = "leaf"
    CHAIN = "chain"

    @classmethod
    def parse(cls, value: str | CrlCheck) -> CrlCheck:
        """Parse ``"leaf" | "chain"`` (case-insensitive)."""
        return parse_choice(cls, value, "CRL check")


_VERIFY_MODES = {
    ClientAuth.NONE: ssl.CERT_NONE,
    ClientAuth.OPTIONAL: ssl.CERT_OPTIONAL,
    ClientAuth.REQUIRED: ssl.CERT_REQUIRED,
}
_FROM_VERIFY_MODE = {int(mode): auth for auth, mode in _VERIFY_MODES.items()}
_CRL_FLAGS = {CrlCheck.LEAF: ssl.VERIFY_CRL_CHECK_LEAF, CrlCheck.CHAIN: ssl.VERIFY_CRL_CHECK_CHAIN}
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def tls_version_from_str(value: Version) -> ssl.TLSVersion:
    """Parse ``"1.2"``, ``"1.3"`` (also ``"TLSv1.3"``, ``"tls1.3"``) or an :class:`ssl.TLSVersion`.

    TLS 1.0 and 1.1 are refused: they are deprecated (RFC 8996) and OpenSSL's default security level rejects
    them anyway.
    """
    if isinstance(value, ssl.TLSVersion):
        if value in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            return value
        text = value.name
    else:
        text = str(value).strip().lower().removeprefix("tlsv").removeprefix("tls").replace("_", ".")
        if text in _VERSIONS:
            return _VERSIONS[text]
    raise InputError(f"unsupported TLS version {value!r}", fix="use 1.2 or 1.3 (TLS 1.0 and 1.1 are deprecated)")


# --- secure defaults ---------------------------------------------------------------------------------------


def _apply_secure_defaults(ctx: ssl.SSLContext, *, profile: TLSProfile = TLSProfile.INTERMEDIATE) -> None:
    """Every security default of tlskit, in one place, each with its reason.

    ``profile`` is Mozilla's configuration for servers (clients always get ``INTERMEDIATE``: a client cannot
    choose its servers' versions, and everything it accepts is still forward-secret AEAD).
    """
    server = ctx.protocol == ssl.PROTOCOL_TLS_SERVER
    # TLS 1.0/1.1 are deprecated (RFC 8996): weak MAC constructions and CBC-only suites.  The modern profile
    # drops TLS 1.2 too: TLS 1.3 alone has no negotiable weak parts (no RSA key exchange, no renegotiation,
    # a signed transcript that stops downgrades).
    ctx.minimum_version = profile.min_version
    # Only forward-secret AEAD suites (no RSA key exchange, no CBC with its padding-oracle history).
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    # X25519, P-256, P-384 only: well-analysed, fast, universally supported (Mozilla, both profiles).
    set_groups(ctx, DEFAULT_GROUPS)
    # TLS compression leaks plaintext through ciphertext length (CRIME).
    ctx.options |= ssl.OP_NO_COMPRESSION
    # Renegotiation is a DoS lever and the root of past injection attacks; TLS 1.3 removed it altogether.  A
    # client's attempt is refused with a no_renegotiation alert and ends its connection.
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    if server:
        # The server's order decides (AES-GCM before ChaCha20, 128-bit before 256-bit, ECDSA before RSA), so a
        # client's odd preferences never pick the weaker of two offered suites, and scanners (testssl.sh rates a
        # missing order HIGH) see one configured order.  Mozilla's v5 guidelines let the client choose, for the
        # one case PRIORITIZE_CHACHA keeps: a client without AES hardware that lists ChaCha20 first gets it.
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | _OP_PRIORITIZE_CHACHA
    # Session tickets on: resumption saves a full handshake per reconnect, and contexts built before forking
    # share their ticket key so workers can resume each other's sessions.
    ctx.options &= ~ssl.OP_NO_TICKET
    # (OP_SINGLE_DH_USE / OP_SINGLE_ECDH_USE are not set: OpenSSL >= 1.1.0 always uses fresh ephemeral keys.)
    # Host names are matched against subjectAltName only: the CN fallback is deprecated (RFC 6125) and lets a
    # certificate for "Example Inc" be mistaken for a host.
    ctx.hostname_checks_common_name = False
    # Strict RFC 5280 checks (as Python 3.13 does by default); partial chains let an intermediate or a
    # self-signed leaf given as ``ca=`` act as the trust anchor, like Node's ``ca`` option.
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    # Session keys are written to a key log only when asked for (keylog=): a key log decrypts every recorded
    # connection, so no context of tlskit's opens one because of an environment variable it inherited (a
    # client still honours SSLKEYLOGFILE, with a warning: see client_context).


class KeyLogWarning(UserWarning):
    """A client context writes TLS session keys because ``SSLKEYLOGFILE`` is set."""


def _set_keylog(ctx: ssl.SSLContext, path: Path_) -> None:
    """Write the session keys of ``ctx``'s connections to ``path`` (NSS key log format), created 0600."""
    # OpenSSL would create the file with the umask; create it private first (or check an existing one), then let
    # OpenSSL append to it.
    open_private_append(path, what="key log").close()
    try:
        ctx.keylog_filename = os.fspath(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the key log ({exc.strerror})", fix="name a writable file") from exc


@dataclass(frozen=True)
class _ProtocolSpec:
    """Version range, TLS 1.2 cipher list and ALPN protocols: parsed before any file is read."""

    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion | None
    ciphers: str | None
    alpn: tuple[str, ...]
    profile: TLSProfile = TLSProfile.INTERMEDIATE

    @classmethod
    def parse(
        cls,
        *,
        min_version: Version | None,
        max_version: Version | None,
        ciphers: str | None,
        alpn: Iterable[str],
        profile: TLSProfile | str = TLSProfile.INTERMEDIATE,
    ) -> _ProtocolSpec:
        profile = parse_choice(TLSProfile, profile, "TLS profile")
        low = profile.min_version if min_version is None else tls_version_from_str(min_version)
        if low < profile.min_version:
            raise InputError(
                f"min_version {min_version} is below what profile={profile.value} allows (TLS 1.3 only)",
                fix="leave min_version out, or use profile=intermediate for TLS 1.2 clients",
            )
        high = None if max_version is None else tls_version_from_str(max_version)
        if high is not None and high < low:
            raise InputError(f"max_version {max_version} is below min_version {low.name}", fix="raise max_version")
        protocols = (alpn,) if isinstance(alpn, str) else tuple(alpn)
        for p in protocols:
            if not p or len(p.encode()) > 255:
                raise InputError(f"invalid ALPN protocol {p!r}", fix="use names of 1 to 255 bytes, e.g. h2, http/1.1")
        spec = cls(low, high, ciphers, protocols, profile)
        spec.new_context(ssl.PROTOCOL_TLS_CLIENT)  # a throwaway context validates the cipher list now
        return spec

    def new_context(self, protocol: int) -> ssl.SSLContext:
        """A context with the secure defaults, then these settings."""
        ctx = ssl.SSLContext(protocol)
        _apply_secure_defaults(ctx, profile=self.profile)
        ctx.minimum_version = self.min_version
        if self.max_version is not None:
            ctx.maximum_version = self.max_version
        if self.ciphers is not None:
            try:
                ctx.set_ciphers(self.ciphers)
            except ssl.SSLError as exc:
                raise InputError(
                    f"cipher list {self.ciphers!r} selects no usable cipher", fix="use names from 'openssl ciphers'"
                ) from exc
        if self.alpn:
            ctx.set_alpn_protocols(list(self.alpn))
        return ctx


# --- loading certificates, keys, trust anchors, CRLs ------------------------------------------------------


def _load_chain(cert: CertSource) -> tuple[list[x509.Certificate], str]:
    if isinstance(cert, x509.Certificate):
        return [cert], "<certificate>"
    if isinstance(cert, bytes):
        return parse_certificates(cert), "<certificate>"
    if isinstance(cert, str | os.PathLike):
        return load_certificates(cert), os.fspath(cert)
    chain = list(cert)
    if not chain or not all(isinstance(c, x509.Certificate) for c in chain):
        raise InputError("cert: expected a path, PEM bytes or a list of certificates", fix="pass the certificate")
    return chain, "<certificate>"


def _load_key(key: KeySource, passphrase: Passphrase) -> tuple[PrivateKey, str]:
    secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
    if isinstance(key, str | os.PathLike):
        return load_private_key(key, passphrase=secret), os.fspath(key)
    if isinstance(key, bytes):
        return parse_private_key(key, passphrase=secret), "<key>"
    return key, "<key>"


def _load_identity(
    cert: CertSource, key: KeySource, passphrase: Passphrase
) -> tuple[list[x509.Certificate], PrivateKey]:
    """Load and cross-check a certificate chain and its key (switched inputs, wrong passphrase, mismatch)."""
    chain, cert_source = _load_chain(cert)
    private, key_source = _load_key(key, passphrase)
    if not key_matches(chain[0], private):
        if any(key_matches(c, private) for c in chain[1:]):
            raise KeyMismatchError(
                f"{cert_source}: the chain does not start with the certificate of {key_source}",
                fix="put the server's own certificate first, then its intermediates",
            )
        raise KeyMismatchError(
            f"{key_source}: the key does not belong to the certificate in {cert_source}",
            fix="pass the key that was created with this certificate",
        )
    return chain, private


def _collect(
    items: object, kind: type[_T], parse: Callable[[bytes], list[_T]], load: Callable[[Path_], list[_T]]
) -> list[_T]:
    """Objects of ``kind`` from one or several paths, PEM/DER bytes or objects, each validated as it loads."""
    out: list[_T] = []
    batch: Iterable[object] = [items]
    if isinstance(items, Iterable) and not isinstance(items, str | bytes | os.PathLike | kind):
        batch = items
    for item in batch:
        if isinstance(item, kind):
            out.append(item)
        elif isinstance(item, bytes):
            out.extend(parse(item))
        elif isinstance(item, str | os.PathLike):
            out.extend(load(item))
        else:
            raise InputError(
                f"unexpected {type(item).__name__} where a {kind.__name__} was expected", fix="pass a path"
            )
    return out


def _load_anchors(ca: CaSource | None) -> list[x509.Certificate]:
    if ca is None:
        return []
    return _collect(ca, x509.Certificate, lambda b: parse_certificates(b, source="<ca>"), load_certificates)


def _load_crls(crls: CrlSource | Iterable[CrlSource]) -> list[x509.CertificateRevocationList]:
    return _collect(crls, x509.CertificateRevocationList, lambda b: [parse_crl(b)], lambda p: [load_crl(p)])


# --- SNI -------------------------------------------------------------------------------------------------


def _normalize_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


@dataclass(frozen=True)
class _SniSelector:
    """``sni_callback`` swapping in the context whose certificate matches the requested server name.

    Exact names win over wildcards; ``*.b.example`` matches one extra label (``a.b.example``, not
    ``b.example`` nor ``x.a.b.example``), as in certificate matching.  No match keeps the default context.
    """

    exact: Mapping[str, ssl.SSLContext]
    wildcard: Mapping[str, ssl.SSLContext]

    def select(self, server_name: str | None) -> ssl.SSLContext | None:
        if not server_name:
            return None
        name = _normalize_name(server_name)
        found = self.exact.get(name)
        if found is None and "." in name:
            found = self.wildcard.get(name.split(".", 1)[1])
        return found

    def __call__(self, ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        ctx = self.select(server_name)
        if ctx is not None:
            ssl_object.context = ctx


def _check_sni_name(name: str) -> str:
    norm = _normalize_name(name)
    labels = norm.split(".")
    if not norm or "" in labels or any("*" in label for label in labels[1:]) or (labels[0] != "*" and "*" in labels[0]):
        raise InputError(f"invalid SNI name {name!r}", fix="use a host name or a wildcard like *.example.com")
    return norm


# --- factories -------------------------------------------------------------------------------------------


def server_context(
    *,
    cert: CertSource,
    key: KeySource,
    passphrase: Passphrase = None,
    ca: CaSource | None = None,
    system_trust: bool = False,
    client_auth: ClientAuth | str = ClientAuth.NONE,
    profile: TLSProfile | str = TLSProfile.INTERMEDIATE,
    alpn: Iterable[str] = (),
    min_version: Version | None = None,
    max_version: Version | None = None,
    ciphers: str | None = None,
    crls: CrlSource | Iterable[CrlSource] = (),
    crl_check: CrlCheck | str = CrlCheck.LEAF,
    sni: Mapping[str, SniEntry] | None = None,
    keylog: Path_ | None = None,
) -> ssl.SSLContext:
    """Build a server context.

    ``profile`` is one of Mozilla's server configurations (:class:`TLSProfile`): ``intermediate`` (TLS 1.2 and
    1.3, the default) or ``modern`` (TLS 1.3 only); ``min_version`` (default: the profile's) may raise it.

    ``cert`` is the chain (leaf first; a path, PEM bytes or certificates) and ``key`` its private key.
    ``ca`` and ``system_trust`` are the anchors for client certificates, asked for per ``client_auth``.
    ``sni`` maps server names (``*.x`` wildcards allowed) to ``(cert, key[, passphrase])``; clients asking for
    other names, or none, get ``cert``.  ``keylog`` names a file that receives the session keys (for Wireshark),
    created with mode 0600; servers never read ``SSLKEYLOGFILE``.  Which clients may talk beyond what OpenSSL
    verifies (allow-lists, pins) is a :class:`~tlskit.net.policy.PeerPolicy` given to ``start_server``.
    """
    auth = ClientAuth.parse(client_auth)
    spec = _ProtocolSpec.parse(
        min_version=min_version, max_version=max_version, ciphers=ciphers, alpn=alpn, profile=profile
    )
    anchors = _load_anchors(ca)
    if auth is not ClientAuth.NONE and not anchors and not system_trust:
        raise InputError(
            f"client_auth={auth.value} needs trust anchors for client certificates", fix="pass ca= (the client CA)"
        )
    revoked = _load_crls(crls)
    if revoked and auth is ClientAuth.NONE:
        # A CRL here lists client certificates; a server that asks for none would never consult it.
        raise InputError(
            "a CRL (crls=) revokes client certificates, and this server does not ask for any",
            fix="pass client_auth=optional or client_auth=required with ca=, or drop crls=",
        )
    crl_flags = _CRL_FLAGS[CrlCheck.parse(crl_check)]
    identity = _load_identity(cert, key, passphrase)
    sni_identities: dict[str, tuple[list[x509.Certificate], PrivateKey]] = {}
    for name, entry in (sni or {}).items():
        sni_cert, sni_key, *rest = entry
        sni_identities[_check_sni_name(name)] = _load_identity(sni_cert, sni_key, rest[0] if rest else passphrase)

    def build(chain: list[x509.Certificate], private: PrivateKey) -> ssl.SSLContext:
        # SNI swaps the whole context, so every one carries the same settings and trust.
        ctx = spec.new_context(ssl.PROTOCOL_TLS_SERVER)
        load_identity(ctx, chain, private)
        if auth is not ClientAuth.NONE:
            load_trust(ctx, anchors, system=system_trust, crls=revoked, crl_flags=crl_flags)
        ctx.verify_mode = _VERIFY_MODES[auth]
        # One TLS 1.3 ticket per handshake instead of OpenSSL's two: each costs an encryption and a record, and a
        # client that resumes gets a fresh one, the single-use pattern RFC 8446 (appendix C.4) recommends.
        ctx.num_tickets = 1
        # Resumption by tickets only: no internal session cache to insert into and sweep (see the function).
        disable_session_cache(ctx)
        if keylog is not None:
            _set_keylog(ctx, keylog)
        return ctx

    ctx = build(*identity)
    if sni_identities:
        contexts = {name: build(*ident) for name, ident in sni_identities.items()}
        ctx.sni_callback = _SniSelector(
            exact={n: c for n, c in contexts.items() if not n.startswith("*.")},
            wildcard={n[2:]: c for n, c in contexts.items() if n.startswith("*.")},
        )
    return ctx


# Client contexts built here -> whether they carry a client certificate.  The ssl module cannot tell (there is
# no getter for a loaded certificate), and explanations need it: a client that sent no certificate must never
# be told its certificate was rejected.  A registry, not an attribute: the context stays a plain SSLContext.
_CLIENT_IDENTITY: weakref.WeakKeyDictionary[ssl.SSLContext, bool] = weakref.WeakKeyDictionary()


def client_certificate_loaded(ctx: ssl.SSLContext) -> bool | None:
    """Whether ``ctx`` (built by :func:`client_context`) has a client certificate; None for other contexts."""
    return _CLIENT_IDENTITY.get(ctx)


def client_context(
    *,
    ca: CaSource | None = None,
    system_trust: bool | None = None,
    cert: CertSource | None = None,
    key: KeySource | None = None,
    passphrase: Passphrase = None,
    alpn: Iterable[str] = (),
    verify: bool = True,
    check_hostname: bool = True,
    min_version: Version | None = None,
    max_version: Version | None = None,
    ciphers: str | None = None,
    crls: CrlSource | Iterable[CrlSource] = (),
    crl_check: CrlCheck | str = CrlCheck.LEAF,
    keylog: Path_ | None = None,
) -> ssl.SSLContext:
    """Build a client context.

    Trust: ``ca`` anchors, plus the system store if ``system_trust`` (default: the system store only when no
    ``ca`` is given; ``True`` adds ``ca`` to it; ``False`` uses ``ca`` alone).  ``cert``/``key`` is the client
    certificate for mutual TLS.  ``verify=False`` turns verification off (CERT_NONE, no host name check) but
    still loads the anchors, so a tlskit connection can report why verification would have failed.
    ``keylog`` names a file for the session keys (created 0600); without it, ``SSLKEYLOGFILE`` is honoured as
    browsers and curl do, with a :class:`KeyLogWarning`.  Pins and allow-lists are a
    :class:`~tlskit.net.policy.PeerPolicy` given to ``connect``.
    """
    if (cert is None) != (key is None):
        raise InputError("a client certificate needs both cert= and key=", fix="pass both, or neither")
    spec = _ProtocolSpec.parse(min_version=min_version, max_version=max_version, ciphers=ciphers, alpn=alpn)
    anchors = _load_anchors(ca)
    use_system = not anchors if system_trust is None else system_trust
    if verify and not anchors and not use_system:
        raise InputError("system_trust=False and no ca= leaves nothing to trust", fix="pass ca= or allow system_trust")
    revoked = _load_crls(crls)
    if revoked and not verify:
        # OpenSSL consults CRLs while it verifies; with verification off a revoked server would be accepted.
        raise InputError(
            "a CRL (crls=) is checked while the server's certificate is verified, and verification is off "
            "(verify=False)",
            fix="drop crls=, or keep verify=True",
        )
    crl_flags = _CRL_FLAGS[CrlCheck.parse(crl_check)]
    identity = _load_identity(cert, key, passphrase) if cert is not None and key is not None else None

    ctx = spec.new_context(ssl.PROTOCOL_TLS_CLIENT)
    if identity is not None:
        load_identity(ctx, *identity)
    load_trust(ctx, anchors, system=use_system, crls=revoked, crl_flags=crl_flags)
    # check_hostname must be turned off before verify_mode can drop to CERT_NONE.
    ctx.check_hostname = verify and check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    if keylog is None and os.environ.get("SSLKEYLOGFILE"):
        keylog = os.environ["SSLKEYLOGFILE"]
        warnings.warn(
            f"SSLKEYLOGFILE is set: the session keys of this client's TLS connections are written to {keylog}, "
            "and anyone who reads that file can decrypt them",
            KeyLogWarning,
            stacklevel=2,
        )
    if keylog is not None:
        _set_keylog(ctx, keylog)
    _CLIENT_IDENTITY[ctx] = identity is not None
    return ctx
