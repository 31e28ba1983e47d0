"""Chain diagnosis: every problem with a certificate chain as a peer sent it, in plain words, with a fix.

:func:`diagnose_chain` checks each certificate on its own (validity, key and signature strength, purpose,
names, CA constraints, revocation) and how the chain was sent (order, missing issuer, untrusted root), and
reports everything it finds, not only the first problem.  The vocabulary (:class:`Problem`, :class:`Code`,
:func:`explain_ssl_error`) lives in :mod:`tlskit.pki.problems` and is re-exported here.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import InputError
from .inspect import serial_hex, usage_name
from .problems import (
    EXTENSION_ERRORS,
    Code,
    Problem,
    Purpose,
    dn,
    explain_ssl_error,
    ext,
    label,
    names_of,
    unique,
    utc,
    when,
)

__all__ = [
    "Code",
    "Problem",
    "Purpose",
    "check_revocation",
    "crl_signed_by",
    "crl_status",
    "diagnose_chain",
    "explain_ssl_error",
    "host_matches",
    "hostname_problem",
    "is_self_signed",
    "issued_by",
    "parse_host",
    "revoked_problem",
    "signature_ok",
    "weak_key_reason",
]


# --------------------------------------------------------------------------------------------- certificate facts


def parse_host(host: str) -> x509.DNSName | x509.IPAddress:
    """A peer name as cryptography wants it: an IP address, or a DNS name in lower-case A-label form."""
    text = host.strip().removeprefix("[").removesuffix("]")
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    text = text.rstrip(".").lower()
    try:
        ascii_name = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError as exc:
        raise InputError(f"{host!r} is not a valid host name", fix="give a DNS name or an IP address") from exc
    if not ascii_name or any(not (c.isalnum() or c in "-._*") for c in ascii_name):
        raise InputError(f"{host!r} is not a valid host name", fix="give a DNS name or an IP address")
    return x509.DNSName(ascii_name)


def _dns_match(pattern: str, host: str) -> bool:
    # RFC 6125: case-insensitive; a wildcard only as the whole left-most label, matching exactly one label.
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    head, _, rest = host.partition(".")
    return bool(head) and rest == pattern[2:] and "*" not in rest


def host_matches(cert: x509.Certificate, host: str) -> bool:
    """Whether ``host`` (DNS name or IP) is one of the certificate's subjectAltNames (never the CN)."""
    san = ext(cert, x509.SubjectAlternativeName)
    if san is None:
        return False
    subject = parse_host(host)
    if isinstance(subject, x509.IPAddress):
        return subject.value in san.value.get_values_for_type(x509.IPAddress)
    return any(_dns_match(p, subject.value) for p in san.value.get_values_for_type(x509.DNSName))


def hostname_problem(cert: x509.Certificate, host: str) -> Problem | None:
    """A ``hostname_mismatch`` naming the names ``cert`` does carry, or None when ``host`` matches."""
    if host_matches(cert, host):
        return None
    carried = ", ".join(names_of(cert)) or "no DNS or IP names"
    return Problem(
        Code.HOSTNAME_MISMATCH,
        f"'{label(cert)}' is not valid for {host}; it is valid for: {carried}",
        f"connect with one of those names, or reissue the certificate with {host} as a SAN",
    )


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` is ``cert``'s issuer: its name, and a signature its key verifies (SHA-1 too)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (TypeError, InvalidSignature):
        return False
    except (ValueError, UnsupportedAlgorithm):
        # cryptography's helper refuses SHA-1/MD5 signatures outright; check them by hand so that a weak
        # signature is reported as weak_signature rather than as a bad or missing issuer
        return _legacy_signature_ok(cert, issuer)
    return True


def _legacy_signature_ok(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        key, digest = issuer.public_key(), cert.signature_hash_algorithm
        params = cert.signature_algorithm_parameters  # None for the legacy algorithms this is about
    except (ValueError, UnsupportedAlgorithm):
        return False
    return digest is not None and signature_ok(key, cert.signature, cert.tbs_certificate_bytes, digest, params)


def signature_ok(key: object, signature: bytes, data: bytes, digest: object, params: object = None) -> bool:
    """Whether ``signature`` over ``data`` verifies with the public ``key`` (RSA PKCS#1 v1.5 or PSS, ECDSA, DSA,
    Ed25519/Ed448 when ``digest`` is None).  Never raises."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) and digest is None:
            key.verify(signature, data)
        elif not isinstance(digest, hashes.HashAlgorithm):
            return False
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, params if isinstance(params, padding.PSS) else padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(digest))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, digest)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    """Issuer equals subject and the signature verifies with the certificate's own key."""
    return cert.issuer == cert.subject and issued_by(cert, cert)


def weak_key_reason(cert: x509.Certificate) -> str | None:
    """Why the certificate's key is too weak (RSA < 2048 bits, EC < 256 bits, DSA), or None."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "an unsupported or malformed public key"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            return f"an RSA key of only {key.key_size} bits (2048 is the minimum)"
        if key.key_size % 8:
            return f"an RSA key of {key.key_size} bits, not a whole number of bytes"
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 256:
        return f"an EC key on {key.curve.name} ({key.curve.key_size} bits; 256 is the minimum)"
    elif isinstance(key, dsa.DSAPublicKey):
        return "a DSA key (DSA is no longer accepted for TLS)"
    return None


def _weak_hash(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if isinstance(algorithm, hashes.SHA1 | hashes.MD5):
        return algorithm.name.upper().replace("SHA1", "SHA-1")
    return None


# ----------------------------------------------------------------------------------------- revocation


def check_revocation(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    *,
    at: datetime | None = None,
) -> list[Problem]:
    """Check ``cert`` against the CRLs that ``issuer`` signed; CRLs of other issuers are ignored.

    A CRL that claims ``issuer``'s name but whose signature does not verify with its key belongs to another CA
    with the same name, and is ignored too.  An unusable CRL of the right issuer is a ``crl_invalid`` problem:
    revocation status cannot be established from it.
    """
    problems: list[Problem] = []
    for crl in crls:
        if crl.issuer != cert.issuer or not crl_signed_by(crl, issuer):
            continue
        found = crl_status(crl, cert, issuer, at=at)
        if found is not None:
            problems.append(found)
    return problems


def crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """Whether ``crl`` carries ``issuer``'s name and a signature its key verifies."""
    if crl.issuer != issuer.subject:
        return False
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]  # X25519 etc. raise
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


def crl_status(
    crl: x509.CertificateRevocationList,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    at: datetime | None = None,
    source: str | None = None,
) -> Problem | None:
    """What a CRL ``issuer`` signed says about ``cert`` at ``at``: ``revoked``, ``crl_invalid`` when it cannot be
    used (stale, not yet valid, malformed), or None when ``cert`` is not on it.  The signature is checked by the
    caller (:func:`crl_signed_by`).  ``source`` (a URL) names where the CRL came from."""
    moment = utc(at)
    reason = _crl_defect(crl, issuer, moment)
    if reason:
        where = f" (from {source})" if source else ""
        return Problem(
            Code.CRL_INVALID,
            f"the CRL from '{label(issuer)}'{where} cannot be used: {reason}",
            "publish a current CRL from that CA (tlskit ca crl, or tlskit ca serve renews it)",
        )
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None or entry.revocation_date_utc > moment:
        return None
    return revoked_problem(cert, issuer, entry.revocation_date_utc, _crl_reason(entry))


def revoked_problem(cert: x509.Certificate, issuer: x509.Certificate, at: datetime, reason: str | None) -> Problem:
    """The one wording of a revoked certificate, whether a CRL or an OCSP responder said so."""
    why = f" (reason: {reason})" if reason and reason != "unspecified" else ""
    return Problem(
        Code.REVOKED,
        f"'{label(cert)}' (serial {serial_hex(cert.serial_number)}) was revoked by '{label(issuer)}' on "
        f"{when(at)}{why}",
        "replace the certificate with a newly issued one",
    )


def _crl_reason(entry: x509.RevokedCertificate) -> str | None:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
    except (x509.ExtensionNotFound, *EXTENSION_ERRORS):
        return None


def _crl_defect(crl: x509.CertificateRevocationList, issuer: x509.Certificate, moment: datetime) -> str | None:
    ku = ext(issuer, x509.KeyUsage)
    if ku is not None and not ku.value.crl_sign:
        return "its issuer's keyUsage does not allow signing CRLs (cRLSign)"
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber)
    except x509.ExtensionNotFound:
        return "it has no CRL number (RFC 5280 requires one)"
    except EXTENSION_ERRORS as exc:
        return f"its extensions are malformed ({exc})"
    if number.critical:
        return "its CRL number extension is marked critical (RFC 5280 forbids it)"
    for extension in crl.extensions:
        if extension.critical and isinstance(extension.value, x509.UnrecognizedExtension):
            return f"it has an unknown critical extension {extension.oid.dotted_string}"
    if crl.last_update_utc > moment:
        return f"it is not valid before {when(crl.last_update_utc)}"
    if crl.next_update_utc is not None and crl.next_update_utc < moment:
        return f"it expired on {when(crl.next_update_utc)}"
    return None


# ------------------------------------------------------------------------------------------ chain diagnosis


def diagnose_chain(
    chain_as_sent: Sequence[x509.Certificate],
    *,
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    host: str | None = None,
    purpose: Purpose = Purpose.SERVER,
    crls: Sequence[x509.CertificateRevocationList] = (),
    at: datetime | None = None,
) -> list[Problem]:
    """Every problem with a chain as a peer sent it (leaf first), each certificate checked on its own.

    Issuers are looked for among the sent certificates, ``intermediates`` and ``roots`` by name and signature.
    Findings are independent: an expired leaf with a wrong host name reports both.  A self-signed leaf that is
    not trusted reports ``self_signed`` (not also ``untrusted_root``); a leaf without subjectAltName reports
    ``no_san`` (its host name cannot be checked at all).  An empty list means no problem was found.
    """
    if not chain_as_sent:
        return [Problem(Code.INCOMPLETE_CHAIN, "no certificate was presented", "configure a certificate")]
    moment = utc(at)
    leaf = chain_as_sent[0]
    path, problems = _build_path(leaf, chain_as_sent, intermediates, roots)
    problems = [*_leaf_problems(leaf, host=host, purpose=purpose, roots=roots), *problems]
    problems += _order_problems(chain_as_sent)
    for depth, cert in enumerate(path):
        problems += _cert_problems(cert, moment, is_anchor=cert in roots or is_self_signed(cert))
        if depth:
            problems += _issuer_problems(cert, depth, path)
    for cert, issuer in itertools.pairwise(path):
        problems += check_revocation(cert, issuer, crls, at=moment)
    # the same finding can come from two walks (e.g. a root both sent and trusted): report it once
    return unique(problems)


def _build_path(
    leaf: x509.Certificate,
    sent: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
) -> tuple[list[x509.Certificate], list[Problem]]:
    """Follow issuers upward from the leaf; report how the path ends if it does not end at a trusted root."""
    pool = [*sent[1:], *intermediates]
    path = [leaf]
    cur = leaf
    while len(path) <= 16:  # far beyond any real chain; stops loops among cross-signed certificates
        if cur in roots:
            return path, []
        if is_self_signed(cur):
            if cur is leaf:
                return path, [
                    Problem(
                        Code.SELF_SIGNED,
                        f"'{label(cur)}' is self-signed and not in the trust store",
                        "use a certificate issued by a CA the clients trust (tlskit ca issue), "
                        "or give this certificate as a trust anchor (ca=)",
                    )
                ]
            return path, [_untrusted(cur.subject, f"the chain ends at the root '{label(cur)}'")]
        root = next((r for r in roots if r.subject == cur.issuer and issued_by(cur, r)), None)
        if root is not None:
            return [*path, root], []
        nxt = next((c for c in pool if c not in path and c.subject == cur.issuer and issued_by(cur, c)), None)
        if nxt is not None:
            path.append(nxt)
            cur = nxt
            continue
        if any(r.subject == cur.issuer for r in roots):
            return path, [
                _untrusted(
                    cur.issuer,
                    f"'{label(cur)}' was issued by a CA named '{dn(cur.issuer)}', but not by the trusted "
                    "certificate of that name (a different key)",
                )
            ]
        if any(c.subject == cur.issuer for c in pool):
            return path, [
                Problem(
                    Code.BAD_SIGNATURE,
                    f"the signature on '{label(cur)}' does not verify with the key of '{dn(cur.issuer)}'",
                    "reissue the certificate from the CA whose certificate is in the chain",
                )
            ]
        if cur is leaf:
            return path, [
                Problem(
                    Code.INCOMPLETE_CHAIN,
                    f"the issuer of '{label(cur)}', '{dn(cur.issuer)}', was not sent and is not in the trust store",
                    f"if '{dn(cur.issuer)}' is an intermediate CA, append its certificate to the chain file "
                    "(tlskit ca issue writes leaf + intermediates); if it is a root, trust it (ca=)",
                )
            ]
        return path, [_untrusted(cur.issuer, f"the chain ends with '{label(cur)}', issued by '{dn(cur.issuer)}'")]
    return path, [Problem(Code.PATH_LENGTH_EXCEEDED, "the chain is too long or loops", "send a shorter chain")]


def _untrusted(name: x509.Name, what: str) -> Problem:
    return Problem(
        Code.UNTRUSTED_ROOT,
        f"{what}, which is not in the trust store",
        f"trust the root CA '{dn(name)}' (ca=), or use a certificate from a CA you already trust",
    )


def _leaf_problems(
    leaf: x509.Certificate, *, host: str | None, purpose: Purpose, roots: Sequence[x509.Certificate]
) -> list[Problem]:
    problems: list[Problem] = []
    name = label(leaf)
    san = ext(leaf, x509.SubjectAlternativeName)
    if san is None or not list(san.value):
        if purpose is Purpose.SERVER or host:
            problems.append(
                Problem(
                    Code.NO_SAN,
                    f"'{name}' has no subjectAltName; clients ignore the CN, so it matches no host name",
                    "reissue it with the host names as SANs (tlskit ca issue NAME...)",
                )
            )
    elif host:
        mismatch = hostname_problem(leaf, host)
        if mismatch is not None:
            problems.append(mismatch)
    eku = ext(leaf, x509.ExtendedKeyUsage)
    if eku is not None and purpose.eku not in eku.value and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku.value:
        allowed = ", ".join(usage_name(u) for u in eku.value) or "nothing"
        problems.append(
            Problem(
                Code.WRONG_PURPOSE,
                f"'{name}' is not for TLS {purpose.value}s (its extendedKeyUsage allows: {allowed})",
                f"reissue it with the {purpose.value} profile (profile=Profile.{purpose.name})",
            )
        )
    bc = ext(leaf, x509.BasicConstraints)
    if bc is not None and bc.value.ca and leaf not in roots and not is_self_signed(leaf):
        problems.append(
            Problem(
                Code.CA_CONSTRAINTS,
                f"'{name}' is a CA certificate used as an end-entity certificate",
                "issue a separate end-entity certificate from that CA",
            )
        )
    ku = ext(leaf, x509.KeyUsage)
    if ku is not None and not (ku.value.digital_signature or ku.value.key_encipherment or ku.value.key_agreement):
        problems.append(
            Problem(
                Code.KEY_USAGE,
                f"the keyUsage of '{name}' allows neither digitalSignature nor keyEncipherment, needed for TLS",
                "reissue it with a TLS profile (tlskit ca issue)",
            )
        )
    return problems


def _order_problems(sent: Sequence[x509.Certificate]) -> list[Problem]:
    for i, cert in enumerate(sent[:-1]):
        if issued_by(cert, sent[i + 1]) or is_self_signed(cert):
            continue
        issuer = next((c for c in sent[1:] if c is not cert and issued_by(cert, c)), None)
        if issuer is not None:
            return [
                Problem(
                    Code.WRONG_ORDER,
                    f"the chain is out of order: '{label(cert)}' is followed by '{label(sent[i + 1])}' instead "
                    f"of its issuer '{label(issuer)}'",
                    "order the chain file leaf first, then each issuer in turn",
                )
            ]
    return []


def _cert_problems(cert: x509.Certificate, moment: datetime, *, is_anchor: bool) -> list[Problem]:
    problems: list[Problem] = []
    name = label(cert)
    try:
        _ = cert.extensions
    except EXTENSION_ERRORS as exc:
        problems.append(
            Problem(Code.MALFORMED, f"'{name}' has malformed extensions ({exc})", "reissue it with a standard tool")
        )
    if moment > cert.not_valid_after_utc:
        problems.append(
            Problem(
                Code.EXPIRED,
                f"'{name}' expired on {when(cert.not_valid_after_utc)}",
                "renew the certificate (tlskit ca issue) and install the new one",
            )
        )
    elif moment < cert.not_valid_before_utc:
        problems.append(
            Problem(
                Code.NOT_YET_VALID,
                f"'{name}' is not valid before {when(cert.not_valid_before_utc)}",
                "check the clock of this machine and of the CA; wait, or reissue it with an earlier start",
            )
        )
    weak = weak_key_reason(cert)
    if weak:
        problems.append(Problem(Code.WEAK_KEY, f"'{name}' has {weak}", "reissue it with an EC P-256 or RSA-2048+ key"))
    digest = None if is_anchor else _weak_hash(cert)  # a root's self-signature is never checked by anyone
    if digest:
        problems.append(
            Problem(
                Code.WEAK_SIGNATURE,
                f"'{name}' is signed with {digest}, which verifiers reject",
                "reissue it signed with SHA-256",
            )
        )
    return problems


def _issuer_problems(issuer: x509.Certificate, depth: int, path: Sequence[x509.Certificate]) -> list[Problem]:
    problems: list[Problem] = []
    name = label(issuer)
    bc = ext(issuer, x509.BasicConstraints)
    if bc is None or not bc.value.ca:
        problems.append(
            Problem(
                Code.CA_CONSTRAINTS,
                f"'{name}' issued '{label(path[depth - 1])}' but is not a CA (basicConstraints CA:FALSE or absent)",
                "issue certificates only from a CA certificate (tlskit ca init / ca intermediate)",
            )
        )
    else:
        # pathLenConstraint counts the non-self-issued intermediates below this CA.
        below = sum(1 for c in path[1:depth] if c.issuer != c.subject)
        if bc.value.path_length is not None and below > bc.value.path_length:
            problems.append(
                Problem(
                    Code.PATH_LENGTH_EXCEEDED,
                    f"'{name}' allows {bc.value.path_length} intermediate CA(s) below it, but the chain has {below}",
                    "issue from a CA higher up, or recreate the CA with a larger path_length=",
                )
            )
    ku = ext(issuer, x509.KeyUsage)
    if ku is not None and not ku.value.key_cert_sign:
        problems.append(
            Problem(
                Code.KEY_USAGE,
                f"the keyUsage of CA '{name}' does not allow signing certificates (keyCertSign)",
                "recreate the CA certificate with keyCertSign (tlskit ca init)",
            )
        )
    return problems
