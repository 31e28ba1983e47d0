"""Who may talk to us beyond what OpenSSL verified: the peer policy (:class:`PeerPolicy`) and its one check.

OpenSSL decides whether a peer's certificate *verifies*; a :class:`PeerPolicy` decides whether this peer is one
we talk to: allow-lists of identities (CN, DNS, IP and URI subjectAltNames), SPKI pins, and a callback, like Go's
``tls.Config.VerifyConnection``.  It is an explicit value given to :func:`tlskit.start_server`,
:func:`tlskit.connect` and :class:`tlskit.ReconnectingClient`, never an attribute of the ``SSLContext``, and it
is checked in exactly one place: :func:`judge`, which every :class:`~tlskit.net.connection.TLSConnection` calls
once its handshake is done (server and client, verification on or off, every worker).

The rules, each chosen so that a policy the user sets holds in every mode:

- An allow-list or a pin means "only these peers": a peer that sent no certificate is refused, whatever the
  client authentication mode says.
- Pins hold with verification off (``--insecure --pin``, as curl's ``-k --pinnedpubkey``).  Without
  verification only the leaf's key counts: it is the one key the peer proved it holds in the handshake, while
  any other certificate it sends could be copied from anywhere.  With verification, any certificate of the
  chain OpenSSL built may be pinned (an intermediate or the root, as HPKP allowed).
- An allow-list names identities, which only mean something when a CA vouched for them, or when the key is
  pinned: an allow-list without verification and without pins is refused when the connection is set up.
- A refused peer gets an alert (close_notify) and a close; its bytes never reach the handler and no
  application byte is sent to it.

This module holds no knowledge of sockets or event loops; the words for a refusal come from
:mod:`tlskit.pki.problems`.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..errors import InputError
from ..pki.inspect import spki_pin, spki_sha256
from ..pki.problems import Code, Problem
from ..pki.revocation import REVOCATION_CODES

if TYPE_CHECKING:
    from .connection import TLSConnection

__all__ = ["REFUSAL_CODES", "PeerCheck", "PeerPolicy", "Verdict", "judge", "validate_policy"]

log = logging.getLogger("tlskit.policy")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PeerCheck = Callable[["TLSConnection"], "str | Problem | None"]
"""A user check run after the built-in ones: return None to accept the peer, or the reason to refuse it (a
sentence, or a :class:`~tlskit.pki.problems.Problem` whose code then names the refusal, as
:meth:`tlskit.RevocationRefresher.peer_check` returns ``revoked``).

An exception raised by the check refuses the peer too (and is logged): a buggy check must not let peers in.
"""


def reads_certificates(check: PeerCheck) -> bool:
    """Whether ``check`` judges the peer's certificate (it says so with a true ``reads_certificates`` attribute, as
    :meth:`tlskit.RevocationRefresher.peer_check` does): a server that asks for none would never give it one."""
    return bool(getattr(check, "reads_certificates", False))


# --- pins ------------------------------------------------------------------------------------------------


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
        raise InputError(
            f"invalid pin {text!r}", fix="use sha256:BASE64 of the SubjectPublicKeyInfo (tlskit inspect shows it)"
        )
    return digest


# --- the policy ------------------------------------------------------------------------------------------


def _strings(values: Iterable[str], what: str, *, fold: bool) -> frozenset[str]:
    values = [values] if isinstance(values, str) else list(values)
    out = set()
    for value in values:
        text = str(value).strip()
        if not text:
            raise InputError(f"empty {what} in the peer policy", fix=f"give a {what} or leave the option out")
        out.add(text.rstrip(".").lower() if fold else text)
    return frozenset(out)


def _addresses(values: Iterable[str | IPAddress]) -> frozenset[IPAddress]:
    values = [values] if isinstance(values, str) else list(values)
    out = set()
    for value in values:
        try:
            out.add(ipaddress.ip_address(str(value).strip().removeprefix("[").removesuffix("]")))
        except ValueError:
            raise InputError(f"invalid IP address {value!r} in the peer policy", fix="use 192.0.2.1 or ::1") from None
    return frozenset(out)


@dataclass(frozen=True, init=False)
class PeerPolicy:
    """Which peers a connection accepts beyond what OpenSSL verified: allow-lists, pins and a callback.

    ``PeerPolicy(allow_cn=["alice"], allow_uri=["spiffe://example.org/ns/prod/sa/api"])`` admits a peer whose
    certificate matches any one listed identity; ``pins`` (``sha256:BASE64`` of a SubjectPublicKeyInfo, or
    curl's ``sha256//BASE64``) admits only those keys; both given, both must hold.  ``check`` runs last (see
    :data:`PeerCheck`).  CN and DNS names compare case-insensitively, URIs exactly, IP addresses as addresses.
    Invalid entries raise :class:`~tlskit.errors.InputError` here, before any connection.
    """

    allow_cn: frozenset[str]
    allow_dns: frozenset[str]
    allow_ip: frozenset[IPAddress]
    allow_uri: frozenset[str]
    pins: frozenset[bytes]
    check: PeerCheck | None

    def __init__(
        self,
        *,
        allow_cn: Iterable[str] = (),
        allow_dns: Iterable[str] = (),
        allow_ip: Iterable[str | IPAddress] = (),
        allow_uri: Iterable[str] = (),
        pins: Iterable[str] = (),
        check: PeerCheck | None = None,
    ) -> None:
        if check is not None and not callable(check):
            raise InputError("check must be a callable taking the connection", fix="pass a function, or None")
        pins = [pins] if isinstance(pins, str) else pins
        # A frozen dataclass: fields are set once, here, and never change.
        object.__setattr__(self, "allow_cn", _strings(allow_cn, "CN", fold=True))
        object.__setattr__(self, "allow_dns", _strings(allow_dns, "DNS name", fold=True))
        object.__setattr__(self, "allow_ip", _addresses(allow_ip))
        object.__setattr__(self, "allow_uri", _strings(allow_uri, "URI", fold=False))
        object.__setattr__(self, "pins", frozenset(_parse_pin(p) for p in pins))
        object.__setattr__(self, "check", check)

    @property
    def allow_list(self) -> bool:
        """True if identities are listed (any of CN, DNS, IP, URI)."""
        return bool(self.allow_cn or self.allow_dns or self.allow_ip or self.allow_uri)

    @property
    def needs_certificate(self) -> bool:
        """True if only listed or pinned peers may talk: a peer without a certificate is then refused."""
        return self.allow_list or bool(self.pins)

    def __bool__(self) -> bool:
        return self.needs_certificate or self.check is not None


def _identities(cert: x509.Certificate) -> tuple[list[str], list[str], list[IPAddress], list[str]]:
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return cns, [], [], []
    ips = [ip for ip in san.get_values_for_type(x509.IPAddress) if isinstance(ip, IPAddress)]  # not networks
    return cns, san.get_values_for_type(x509.DNSName), ips, san.get_values_for_type(x509.UniformResourceIdentifier)


def validate_policy(policy: PeerPolicy | None, ctx: ssl.SSLContext) -> PeerPolicy | None:
    """Check that ``policy`` can hold with ``ctx``; raise :class:`InputError` with the fix if it cannot.

    A server that never asks for client certificates cannot tell listed clients from others; a client that
    does not verify the server can be shown any name in a self-signed certificate, so its allow-list needs pins.
    Returns the policy, or None for an empty one (nothing to check).
    """
    if policy is None or not policy:
        return None
    if not isinstance(policy, PeerPolicy):
        raise InputError(f"policy must be a PeerPolicy, not {type(policy).__name__}", fix="use tlskit.PeerPolicy(...)")
    unverified = ctx.verify_mode == ssl.CERT_NONE
    if ctx.protocol == ssl.PROTOCOL_TLS_SERVER and unverified and policy.needs_certificate:
        raise InputError(
            "an allow-list or pins need client certificates, and this server context does not ask for them",
            fix="build the context with client_auth=optional or client_auth=required and ca=",
        )
    if ctx.protocol == ssl.PROTOCOL_TLS_SERVER and unverified and policy.check and reads_certificates(policy.check):
        raise InputError(
            "the check judges client certificates (revocation), and this server context does not ask for any",
            fix="build the context with client_auth=optional or client_auth=required and ca=",
        )
    if ctx.protocol != ssl.PROTOCOL_TLS_SERVER and unverified and policy.allow_list and not policy.pins:
        raise InputError(
            "an allow-list without verification proves nothing: any server can put any name in a self-signed "
            "certificate",
            fix="turn verification on (verify=True with ca=), or pin the server's key (pins=)",
        )
    return policy


# --- the one check ---------------------------------------------------------------------------------------


REFUSAL_CODES = frozenset({Code.PEER_NOT_ALLOWED, Code.PIN_MISMATCH, Code.PEER_REFUSED, *REVOCATION_CODES})
"""The problem codes of a peer the policy refused (the handshake itself succeeded), revocation checks' included."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`judge` for one handshake."""

    refusal: Problem | None
    """Why the peer is refused, or None if the connection may proceed."""


_ACCEPT = Verdict(None)


def _leaf(conn: TLSConnection) -> x509.Certificate | None:
    return conn.peer_certificate


def judge(conn: TLSConnection, policy: PeerPolicy | None) -> Verdict:
    """The one peer check: may this connection, whose handshake just finished, proceed under ``policy``?

    ``conn.peer_verified`` says whether OpenSSL verified the peer's certificate during the handshake; it
    decides which certificates a pin may match.
    """
    if policy is None:
        return _ACCEPT
    client = conn.server_side  # the peer is a client when we are the server
    who = "client" if client else "server"
    if policy.needs_certificate:
        leaf = _leaf(conn)
        if leaf is None:
            return Verdict(
                Problem(
                    Code.PEER_NOT_ALLOWED,
                    f"the {who} sent no certificate, and only listed or pinned peers may connect",
                    "give the client a certificate that the allow-list names (cert=, key=)"
                    if client
                    else "connect to a server that presents a certificate",
                )
            )
        if policy.pins:
            # Unverified: the leaf only (the key the peer proved it holds); verified: the chain OpenSSL built.
            candidates = conn.peer_chain if conn.peer_verified else [leaf]
            if not any(spki_sha256(c) in policy.pins for c in candidates):
                return Verdict(
                    Problem(
                        Code.PIN_MISMATCH,
                        f"the {who}'s public key {spki_pin(leaf)} matches none of the {len(policy.pins)} pinned "
                        f"key{'s' if len(policy.pins) > 1 else ''}",
                        f"check the pins against the {who}'s certificate (tlskit inspect shows its pin), or update "
                        "them after a key rotation",
                    )
                )
        if policy.allow_list:
            cns, dns, ips, uris = _identities(leaf)
            if not (
                policy.allow_cn & {n.lower() for n in cns}
                or policy.allow_dns & {n.rstrip(".").lower() for n in dns}
                or policy.allow_ip & set(ips)
                or policy.allow_uri & set(uris)
            ):
                shown = ", ".join(
                    [*(f"CN:{n}" for n in cns), *(f"DNS:{n}" for n in dns), *(f"IP:{a}" for a in ips)]
                    + [f"URI:{u}" for u in uris]
                )
                return Verdict(
                    Problem(
                        Code.PEER_NOT_ALLOWED,
                        f"the {who}'s identity ({shown or 'none'}) is not in the allow-list",
                        f"add one of the {who}'s names to the allow-list, or give it a certificate for a listed name",
                    )
                )
    if policy.check is not None:
        return _run_check(policy.check, conn, who)
    return _ACCEPT


def _run_check(check: PeerCheck, conn: TLSConnection, who: str) -> Verdict:
    try:
        reason: Any = check(conn)
    except Exception as exc:
        log.exception("the peer check raised %s: refusing the %s", type(exc).__name__, who)
        reason = f"the peer check raised {type(exc).__name__}: {exc}"
    if reason is None:
        return _ACCEPT
    if isinstance(reason, Problem):
        return Verdict(reason)
    return Verdict(
        Problem(
            Code.PEER_REFUSED,
            f"the {who} was refused by the peer check: {reason}",
            "see the check's reason; it runs after every handshake (PeerPolicy(check=...))",
        )
    )
