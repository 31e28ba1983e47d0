"""SSLContext factories with secure defaults: :func:`server_context` and :func:`client_context`.

Both return a plain :class:`ssl.SSLContext`, so the result works with asyncio, httpx, urllib3, aiohttp and
tlskit's own transport alike.  Every default lives in :func:`_apply_secure_defaults` with its reason (modelled
on urllib3's ``create_urllib3_context``); options are keyword-only and validated before any context is built,
with errors that name the file and the fix.

Two policies cannot be expressed to OpenSSL through the ``ssl`` module: SPKI pins and an allow-list of peer
identities.  They ride on the context as a :class:`PeerPolicy` (see :func:`peer_policy`) that tlskit's
connections check right after the handshake.  **Other libraries ignore them**: a context with pins handed to
httpx still verifies the chain and host name, but not the pins.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ..errors import InputError, KeyMismatchError
from ..pki.certs import key_matches
from ..pki.files import load_certificates, load_crl, parse_certificates, parse_crl
from ..pki.keys import PrivateKey, load_private_key, parse_private_key
from ._openssl import load_identity, load_trust, set_groups

__all__ = [
    "DEFAULT_GROUPS",
    "INTERMEDIATE_CIPHERS",
    "ClientAuth",
    "CrlCheck",
    "PeerPolicy",
    "client_context",
    "peer_policy",
    "server_context",
    "spki_pin",
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
# TLS 1.3 suites are not configurable here; OpenSSL's defaults (AES-GCM, ChaCha20-Poly1305) are all AEAD.
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
# Mozilla "intermediate" key-exchange groups, in preference order.
DEFAULT_GROUPS = "X25519:P-256:P-384"

# Name of the attribute carrying the PeerPolicy on a context (SSLContext instances accept attributes).
_POLICY_ATTR = "tlskit_peer_policy"


def _parse_choice(cls: type[_E], value: str | _E, what: str) -> _E:
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
        return _parse_choice(cls, value, "client authentication")


class CrlCheck(enum.Enum):
    """Which certificates CRLs are checked for: the peer's certificate only, or every certificate of its chain."""

    LEAF = "leaf"
    CHAIN = "chain"

    @classmethod
    def parse(cls, value: str | CrlCheck) -> CrlCheck:
        """Parse ``"leaf" | "chain"`` (case-insensitive)."""
        return _parse_choice(cls, value, "CRL check")


_VERIFY_MODES = {
    ClientAuth.NONE: ssl.CERT_NONE,
    ClientAuth.OPTIONAL: ssl.CERT_OPTIONAL,
    ClientAuth.REQUIRED: ssl.CERT_REQUIRED,
}
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


def _apply_secure_defaults(ctx: ssl.SSLContext) -> None:
    """Every security default of tlskit, in one place, each with its reason."""
    # TLS 1.0/1.1 are deprecated (RFC 8996): weak MAC constructions and CBC-only suites.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Only forward-secret AEAD suites (no RSA key exchange, no CBC with its padding-oracle history).
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    # X25519, P-256, P-384 only: well-analysed, fast, universally supported (Mozilla intermediate).
    set_groups(ctx, DEFAULT_GROUPS)
    # TLS compression leaks plaintext through ciphertext length (CRIME).
    ctx.options |= ssl.OP_NO_COMPRESSION
    # Renegotiation is a DoS lever and the root of past injection attacks; TLS 1.3 removed it altogether.
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    # With only strong suites left, let the client choose (Mozilla): it knows whether it has AES hardware.
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
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
    # SSLKEYLOGFILE is the standard opt-in (browsers, curl) for decrypting one's own traffic in Wireshark.
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog:
        try:
            ctx.keylog_filename = keylog
        except OSError as exc:
            raise InputError(
                f"SSLKEYLOGFILE={keylog}: cannot open ({exc.strerror})", fix="unset it or name a writable file"
            ) from exc


@dataclass(frozen=True)
class _ProtocolSpec:
    """Version range, TLS 1.2 cipher list and ALPN protocols: parsed before any file is read."""

    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion | None
    ciphers: str | None
    alpn: tuple[str, ...]

    @classmethod
    def parse(
        cls, *, min_version: Version, max_version: Version | None, ciphers: str | None, alpn: Iterable[str]
    ) -> _ProtocolSpec:
        low = tls_version_from_str(min_version)
        high = None if max_version is None else tls_version_from_str(max_version)
        if high is not None and high < low:
            raise InputError(f"max_version {max_version} is below min_version {min_version}", fix="raise max_version")
        protocols = (alpn,) if isinstance(alpn, str) else tuple(alpn)
        for p in protocols:
            if not p or len(p.encode()) > 255:
                raise InputError(f"invalid ALPN protocol {p!r}", fix="use names of 1 to 255 bytes, e.g. h2, http/1.1")
        spec = cls(low, high, ciphers, protocols)
        spec.new_context(ssl.PROTOCOL_TLS_CLIENT)  # a throwaway context validates the cipher list now
        return spec

    def new_context(self, protocol: int) -> ssl.SSLContext:
        """A context with the secure defaults, then these settings."""
        ctx = ssl.SSLContext(protocol)
        _apply_secure_defaults(ctx)
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


# --- peer policy: pins and allow-list, checked by tlskit connections after the handshake -----------------


def _spki_sha256(cert: x509.Certificate) -> bytes:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def spki_pin(cert: x509.Certificate) -> str:
    """The pin of a certificate's public key: ``"sha256:" + base64(sha256(SubjectPublicKeyInfo))``."""
    return "sha256:" + base64.b64encode(_spki_sha256(cert)).decode("ascii")


def _parse_pin(text: str) -> bytes:
    # "sha256:B64" is tlskit's form; "sha256//B64" is curl's (--pinnedpubkey), accepted for copy-paste.
    algo, sep, value = text.strip().partition(":")
    if not sep:
        algo, sep, value = text.strip().partition("//")
    try:
        digest = base64.b64decode(value, validate=True) if algo.lower() == "sha256" else b""
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise InputError(f"invalid pin {text!r}", fix="use sha256:BASE64 of the SubjectPublicKeyInfo (tlskit inspect)")
    return digest


_IDENTITY_KINDS = ("cn", "dns", "uri")


@dataclass(frozen=True)
class PeerPolicy:
    """SPKI pins and an allow-list of peer identities, which OpenSSL cannot enforce through ``ssl``.

    tlskit connections call :meth:`check` after every handshake and treat a reason as an authorization
    failure.  Other libraries using the same context ignore the policy.
    """

    pins: frozenset[bytes] = frozenset()
    """SHA-256 digests of acceptable SubjectPublicKeyInfos; one must match a certificate of the peer's chain."""
    allow_cn: frozenset[str] = frozenset()
    allow_dns: frozenset[str] = frozenset()
    allow_uri: frozenset[str] = frozenset()
    """Accepted identities (CN and DNS compared case-insensitively, stored lower-case); any one match admits."""

    @classmethod
    def build(cls, *, pins: Iterable[str] = (), allow_peers: Iterable[str] | None = None) -> PeerPolicy | None:
        """Parse ``pins`` (``sha256:BASE64``) and ``allow_peers`` (``CN:x``, ``DNS:x``, ``URI:x``); None if empty."""
        if isinstance(pins, str):
            pins = [pins]
        if isinstance(allow_peers, str):
            allow_peers = [allow_peers]
        digests = frozenset(_parse_pin(p) for p in pins)
        allowed: dict[str, set[str]] = {kind: set() for kind in _IDENTITY_KINDS}
        for entry in allow_peers or ():
            kind, sep, value = entry.partition(":")
            if not sep or kind.lower() not in allowed or not value:
                raise InputError(f"invalid peer identity {entry!r}", fix="use CN:NAME, DNS:NAME or URI:URI")
            allowed[kind.lower()].add(value if kind.lower() == "uri" else value.lower())
        policy = cls(digests, *(frozenset(allowed[k]) for k in _IDENTITY_KINDS))
        return policy if policy.active else None

    @property
    def active(self) -> bool:
        return bool(self.pins or self.allow_cn or self.allow_dns or self.allow_uri)

    def check(self, chain_der: Sequence[bytes]) -> str | None:
        """None if the peer's chain (DER, leaf first) satisfies the policy, else the reason it does not."""
        if not chain_der:
            return "the peer presented no certificate"
        try:
            chain = [x509.load_der_x509_certificate(der) for der in chain_der]
        except ValueError as exc:
            return f"the peer's certificate cannot be parsed ({exc})"
        if self.pins and not any(_spki_sha256(c) in self.pins for c in chain):
            return f"the peer's public key matches none of the {len(self.pins)} pinned keys"
        if self.allow_cn or self.allow_dns or self.allow_uri:
            cns, dns, uris = _identities(chain[0])
            if not (
                self.allow_cn & {n.lower() for n in cns}
                or self.allow_dns & {n.lower() for n in dns}
                or self.allow_uri & set(uris)
            ):
                shown = ", ".join([*(f"CN:{n}" for n in cns), *(f"DNS:{n}" for n in dns), *(f"URI:{u}" for u in uris)])
                return f"the peer's identity ({shown or 'none'}) is not in the allow-list"
        return None


def _identities(cert: x509.Certificate) -> tuple[list[str], list[str], list[str]]:
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return cns, [], []
    return cns, san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.UniformResourceIdentifier)


def peer_policy(ctx: ssl.SSLContext) -> PeerPolicy | None:
    """The :class:`PeerPolicy` tlskit attached to ``ctx``, if any (None for contexts made elsewhere)."""
    policy = getattr(ctx, _POLICY_ATTR, None)
    return policy if isinstance(policy, PeerPolicy) else None


def _attach_policy(ctx: ssl.SSLContext, policy: PeerPolicy | None) -> None:
    if policy is not None:
        setattr(ctx, _POLICY_ATTR, policy)


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
    alpn: Iterable[str] = (),
    min_version: Version = ssl.TLSVersion.TLSv1_2,
    max_version: Version | None = None,
    ciphers: str | None = None,
    crls: CrlSource | Iterable[CrlSource] = (),
    crl_check: CrlCheck | str = CrlCheck.LEAF,
    sni: Mapping[str, SniEntry] | None = None,
    allow_peers: Iterable[str] | None = None,
    pins: Iterable[str] = (),
) -> ssl.SSLContext:
    """Build a server context.

    ``cert`` is the chain (leaf first; a path, PEM bytes or certificates) and ``key`` its private key.
    ``ca`` and ``system_trust`` are the anchors for client certificates, asked for per ``client_auth``.
    ``sni`` maps server names (``*.x`` wildcards allowed) to ``(cert, key[, passphrase])``; clients asking for
    other names, or none, get ``cert``.  ``allow_peers`` (``CN:x``, ``DNS:x``, ``URI:x``) and ``pins``
    (``sha256:BASE64``) restrict client certificates; see :class:`PeerPolicy`.
    """
    auth = ClientAuth.parse(client_auth)
    spec = _ProtocolSpec.parse(min_version=min_version, max_version=max_version, ciphers=ciphers, alpn=alpn)
    policy = PeerPolicy.build(pins=pins, allow_peers=allow_peers)
    if policy is not None and auth is ClientAuth.NONE:
        raise InputError("allow_peers/pins need client certificates", fix="set client_auth to optional or required")
    anchors = _load_anchors(ca)
    if auth is not ClientAuth.NONE and not anchors and not system_trust:
        raise InputError(
            f"client_auth={auth.value} needs trust anchors for client certificates", fix="pass ca= (the client CA)"
        )
    revoked = _load_crls(crls)
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
        _attach_policy(ctx, policy)
        return ctx

    ctx = build(*identity)
    if sni_identities:
        contexts = {name: build(*ident) for name, ident in sni_identities.items()}
        ctx.sni_callback = _SniSelector(
            exact={n: c for n, c in contexts.items() if not n.startswith("*.")},
            wildcard={n[2:]: c for n, c in contexts.items() if n.startswith("*.")},
        )
    return ctx


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
    min_version: Version = ssl.TLSVersion.TLSv1_2,
    max_version: Version | None = None,
    ciphers: str | None = None,
    crls: CrlSource | Iterable[CrlSource] = (),
    crl_check: CrlCheck | str = CrlCheck.LEAF,
    pins: Iterable[str] = (),
    allow_peers: Iterable[str] | None = None,
) -> ssl.SSLContext:
    """Build a client context.

    Trust: ``ca`` anchors, plus the system store if ``system_trust`` (default: the system store only when no
    ``ca`` is given; ``True`` adds ``ca`` to it; ``False`` uses ``ca`` alone).  ``cert``/``key`` is the client
    certificate for mutual TLS.  ``verify=False`` turns verification off (CERT_NONE, no host name check) but
    still loads the anchors, so a tlskit connection can report why verification would have failed.
    """
    if (cert is None) != (key is None):
        raise InputError("a client certificate needs both cert= and key=", fix="pass both, or neither")
    spec = _ProtocolSpec.parse(min_version=min_version, max_version=max_version, ciphers=ciphers, alpn=alpn)
    policy = PeerPolicy.build(pins=pins, allow_peers=allow_peers)
    anchors = _load_anchors(ca)
    use_system = not anchors if system_trust is None else system_trust
    if verify and not anchors and not use_system:
        raise InputError("system_trust=False and no ca= leaves nothing to trust", fix="pass ca= or allow system_trust")
    revoked = _load_crls(crls)
    crl_flags = _CRL_FLAGS[CrlCheck.parse(crl_check)]
    identity = _load_identity(cert, key, passphrase) if cert is not None and key is not None else None

    ctx = spec.new_context(ssl.PROTOCOL_TLS_CLIENT)
    if identity is not None:
        load_identity(ctx, *identity)
    load_trust(ctx, anchors, system=use_system, crls=revoked, crl_flags=crl_flags)
    # check_hostname must be turned off before verify_mode can drop to CERT_NONE.
    ctx.check_hostname = verify and check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    _attach_policy(ctx, policy)
    return ctx
