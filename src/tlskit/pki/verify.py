"""Chain verification on cryptography's ``x509.verification`` (CA/B Forum "web PKI" rules), plus tlskit's own checks.

cryptography builds and validates the path; tlskit adds what it does not do (revocation: CRLs given, or status
fetched from the URLs in the certificates through a ``revocation=`` source) and a few
conformance rules that strict verifiers (OpenSSL's X509_STRICT, the CA/B Forum requirements) apply: weak keys,
missing key identifiers, non-positive serials, a CN that names something the SANs do not, wildcards over a
whole top-level domain, a name matched only through a wildcard over a public suffix (``*.co.uk``: the Public
Suffix List).  When a chain is rejected, :func:`~tlskit.pki.diagnose.diagnose_chain` names every
reason in plain words with a fix.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import socket
import ssl
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import verification as xv
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import InputError
from . import files
from .diagnose import (
    check_revocation,
    diagnose_chain,
    hostname_problem,
    is_self_signed,
    parse_host,
    weak_key_reason,
)
from .inspect import serial_hex
from .problems import Code, Problem, Purpose, explain_rejection, ext, label, unique, utc
from .revocation import RevocationSource
from .suffixes import is_public_suffix

__all__ = ["Purpose", "VerifyResult", "parse_time", "system_roots", "verify_chain", "verify_files"]


@dataclass(frozen=True)
class VerifyResult:
    """The outcome: ``ok``, the path that was built (leaf first, ending at a trust anchor) and the problems.

    ``warnings`` are findings that do not make the chain invalid: revocation status that could not be obtained
    when the check fails open.  ``revocation`` says, per certificate checked online, which source answered what.
    """

    ok: bool
    chain: list[x509.Certificate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    revocation: list[tuple[x509.Certificate, str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON shape: ``{"ok", "chain": [{subject, issuer, serial}], "problems": [{code, message, fix}]}``."""
        return {
            "ok": self.ok,
            "chain": [
                {
                    "subject": c.subject.rfc4514_string(),
                    "issuer": c.issuer.rfc4514_string(),
                    "serial": serial_hex(c.serial_number),
                }
                for c in self.chain
            ],
            "problems": [p.to_dict() for p in self.problems],
            "warnings": [p.to_dict() for p in self.warnings],
            "revocation": [
                {"subject": c.subject.rfc4514_string(), "status": status, "source": source}
                for c, status, source in self.revocation
            ],
        }


# ------------------------------------------------------------------------------------------ building blocks


def _eku_validator(
    purpose: Purpose,
) -> Callable[[xv.Policy, x509.Certificate, x509.ExtendedKeyUsage | None], None]:
    """An EKU check for ``purpose`` (cryptography's client verifier only knows clientAuth)."""

    def check(_policy: xv.Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
        if eku is not None and purpose.eku not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
            raise ValueError(f"extendedKeyUsage does not allow TLS {purpose.value} authentication")

    return check


def _client_san(_policy: xv.Policy, cert: x509.Certificate, san: x509.SubjectAlternativeName | None) -> None:
    # Client certificates often identify a person by CN alone, so a SAN is optional (cryptography's client
    # verifier requires one); an empty one, or no identity at all, is still refused.
    if san is not None and not list(san):
        raise ValueError("subjectAltName is empty")
    if not cert.subject and san is None:
        raise ValueError("certificate has neither a subject nor a subjectAltName")


def _verifier(
    store: xv.Store, purpose: Purpose, subject: xv.Subject | None, at: datetime
) -> xv.ServerVerifier | xv.ClientVerifier:
    builder = xv.PolicyBuilder().store(store).time(at)
    if purpose is Purpose.SERVER and subject is not None:
        return builder.build_server_verifier(subject)
    # No peer name (or a client): the client verifier builds the path without matching a name; the extension
    # policies make it check the EKU of the purpose asked for.
    ee = xv.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, xv.Criticality.NON_CRITICAL, _eku_validator(purpose)
    )
    ca = xv.ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, xv.Criticality.NON_CRITICAL, _eku_validator(purpose)
    )
    if purpose is Purpose.CLIENT:
        ee = ee.may_be_present(x509.SubjectAlternativeName, xv.Criticality.AGNOSTIC, _client_san)
    return builder.extension_policies(ca_policy=ca, ee_policy=ee).build_client_verifier()


def _merge(reason: Problem, found: list[Problem]) -> list[Problem]:
    """cryptography's reason first, unless the diagnosis already says it, or says it more precisely."""
    have = {p.code for p in found}
    if reason.code in have or (reason.code is Code.EXPIRED and Code.NOT_YET_VALID in have):
        return found
    if reason.code in {Code.UNTRUSTED_ROOT, Code.INCOMPLETE_CHAIN} and found:
        return found  # "no path to a root" next to the specific finding would only confuse
    return [reason, *found]


# ------------------------------------------------------------------------------------ tlskit's own checks


def _cn_as_ip(cn: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a CN spells, in any form a lenient parser accepts (hex, octal, leading zeros, IPv6)."""
    try:
        return ipaddress.ip_address(cn)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-FxX.]+", cn) and any(ch.isdigit() for ch in cn):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(cn))
        except OSError:
            return None
    return None


def _cn_problem(leaf: x509.Certificate) -> Problem | None:
    """CA/B BR 7.1.4.3: a CN naming an IP or a SAN must be a character-for-character copy of that SAN.

    Legacy clients still match the CN, so an IP address or a differently spelled name (case, IDNA form,
    ``0xC0A80101`` for ``192.168.1.1``) is an identity the SANs do not vouch for in that form.  A CN that is not
    an IP and no spelling of a SAN (``"tlskit test server"``, a legacy host name) is left alone.
    """
    cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    san = ext(leaf, x509.SubjectAlternativeName)
    if not cns or san is None:
        return None
    cn = str(cns[0].value)
    dns = san.value.get_values_for_type(x509.DNSName)
    ips = san.value.get_values_for_type(x509.IPAddress)
    if cn in dns or cn in {str(ip) for ip in ips}:
        return None
    address = _cn_as_ip(cn)
    try:
        folded = cn.encode("idna").decode("ascii").lower()
    except UnicodeError:
        folded = cn.lower()
    if address is None and folded not in {d.lower() for d in dns}:
        return None
    return Problem(
        Code.NONCONFORMING,
        f"the CN '{cn}' is not spelled exactly as one of the subjectAltNames ({', '.join([*dns, *map(str, ips)])})",
        "reissue it with a CN copied character for character from one of its SANs, or with no CN",
    )


def _conformance(chain: Sequence[x509.Certificate], purpose: Purpose) -> list[Problem]:
    """Checks that cryptography's verifier leaves out; each maps to an RFC 5280 or CA/B Forum rule."""
    problems: list[Problem] = []

    def bad(cert: x509.Certificate, what: str, fix: str = "reissue it with a standard profile (tlskit ca)") -> None:
        problems.append(Problem(Code.NONCONFORMING, f"'{label(cert)}' {what}", fix))

    for depth, cert in enumerate(chain):
        anchor = depth == len(chain) - 1  # RFC 5280 6.1: a trust anchor is its name and key, not a checked cert
        weak = weak_key_reason(cert)
        if weak:
            problems.append(Problem(Code.WEAK_KEY, f"'{label(cert)}' has {weak}", "use EC P-256 or RSA-2048+ keys"))
        if cert.serial_number <= 0 and not anchor:
            bad(cert, "has a serial number that is not positive (RFC 5280 4.1.2.2)")
        aki = ext(cert, x509.AuthorityKeyIdentifier)
        ski = ext(cert, x509.SubjectKeyIdentifier)
        if not anchor and cert.issuer != cert.subject and (aki is None or aki.value.key_identifier is None):
            bad(cert, "lacks an authorityKeyIdentifier (RFC 5280 4.2.1.1)")
        if depth and ski is None:
            bad(cert, "is a CA certificate without a subjectKeyIdentifier (RFC 5280 4.2.1.2)")
        if aki is not None and is_self_signed(cert):
            value = aki.value
            if value.authority_cert_issuer or value.authority_cert_serial_number is not None:
                bad(cert, "is a root whose authorityKeyIdentifier names an issuer and serial (CA/B BR 7.1.2.1.3)")
            elif ski is not None and value.key_identifier not in (None, ski.value.digest):
                bad(cert, "is a root whose authorityKeyIdentifier differs from its subjectKeyIdentifier")
        pc = ext(cert, x509.PolicyConstraints)
        if pc is not None and not pc.critical:
            bad(cert, "has a non-critical policyConstraints extension (RFC 5280 4.2.1.11)")
    leaf = chain[0]
    eku = ext(leaf, x509.ExtendedKeyUsage)
    if eku is not None and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku.value:
        bad(leaf, "allows any extended key usage (CA/B BR 7.1.2.7.10)", f"reissue it with the {purpose.value} profile")
    if purpose is Purpose.SERVER:
        cn = _cn_problem(leaf)
        if cn is not None:
            problems.append(cn)
        san = ext(leaf, x509.SubjectAlternativeName)
        for name in san.value.get_values_for_type(x509.DNSName) if san is not None else []:
            if name == "*" or (name.startswith("*.") and "." not in name[2:]):
                bad(leaf, f"has the wildcard {name} covering a whole top-level domain", "use names under your domain")
    return problems


def _public_suffix_match(leaf: x509.Certificate, host: str) -> Problem | None:
    """``host`` matched only through a wildcard over a public suffix (``*.co.uk``, ``*.s3.amazonaws.com``).

    Such a wildcard covers names of many owners (CA/B BR 3.2.2.6); like browsers, tlskit does not let it match,
    while the certificate's other names still count (a certificate for ``s3.amazonaws.com`` that also carries
    ``*.s3.amazonaws.com`` is valid for ``s3.amazonaws.com``).
    """
    san = ext(leaf, x509.SubjectAlternativeName)
    if san is None or "." not in host:
        return None
    wanted = host.rstrip(".").lower()
    names = [n.lower() for n in san.value.get_values_for_type(x509.DNSName)]
    if wanted in names:
        return None
    parent = wanted.split(".", 1)[1]
    if f"*.{parent}" in names and is_public_suffix(parent):
        return Problem(
            Code.HOSTNAME_MISMATCH,
            f"the certificate matches {host} only through the wildcard *.{parent}, which covers a public suffix "
            "(names of different owners, per the Public Suffix List) and therefore does not count",
            f"reissue it with {host} itself as a SAN, under a domain you own",
        )
    return None


# ---------------------------------------------------------------------------------------------- verification


def verify_chain(
    leaf: x509.Certificate,
    *,
    roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    host: str | None = None,
    purpose: Purpose = Purpose.SERVER,
    crls: Sequence[x509.CertificateRevocationList] = (),
    at: datetime | None = None,
    revocation: RevocationSource | None = None,
) -> VerifyResult:
    """Verify ``leaf`` up to one of ``roots`` for ``purpose`` (and ``host``: a DNS name or IP) at time ``at``.

    ``intermediates`` are untrusted candidates for the path, in any order.  CRLs are applied to every
    certificate of the built path whose issuer signed one of them.  ``revocation`` (``tlskit.Revocation``, or a
    ``tlskit.RevocationRefresher``) fetches status from the URLs in the certificates once a path is built.
    Raises :class:`InputError` for an unusable ``host``; every verification failure is reported in the result,
    never raised.
    """
    purpose = Purpose(purpose)
    moment = utc(at)
    subject = parse_host(host) if host else None
    if not roots:
        return VerifyResult(
            False,
            problems=[Problem(Code.UNTRUSTED_ROOT, "no trust anchors were given", "give the root CA (ca=)")],
        )
    try:
        verifier = _verifier(xv.Store(list(roots)), purpose, subject, moment)
        result = verifier.verify(leaf, list(intermediates))
        chain = list(result) if isinstance(result, list) else list(result.chain)
    except (xv.VerificationError, ValueError, x509.UnsupportedGeneralNameType) as exc:
        found = diagnose_chain(
            [leaf], roots=roots, intermediates=intermediates, host=host, purpose=purpose, crls=crls, at=moment
        )
        return VerifyResult(False, problems=unique(_merge(explain_rejection(exc, leaf, host), found)))
    problems = _conformance(chain, purpose)
    if purpose is Purpose.SERVER and subject is not None and isinstance(subject, x509.DNSName):
        suffix = _public_suffix_match(leaf, subject.value)
        if suffix is not None:
            problems.append(suffix)
    for cert, issuer in itertools.pairwise(chain):
        problems += check_revocation(cert, issuer, crls, at=moment)
    mismatch = hostname_problem(leaf, host) if host and purpose is Purpose.CLIENT else None
    if mismatch is not None:  # the server verifier matched the name already; the client verifier does not
        problems.append(mismatch)
    if revocation is None:
        return VerifyResult(not problems, chain=chain, problems=problems)
    findings = revocation.check(chain, at=moment)
    problems = unique([*problems, *findings.problems])
    checked = [(cert, str(answer.status), answer.source) for cert, answer in findings.answers]
    return VerifyResult(
        not problems, chain=chain, problems=problems, warnings=list(findings.warnings), revocation=checked
    )


def parse_time(text: str) -> datetime:
    """``--at`` values: ISO-8601 date or date-time (``Z`` or an offset; naive means UTC) or a Unix timestamp."""
    value = text.strip()
    try:
        if re.fullmatch(r"-?\d+(\.\d+)?", value):
            return datetime.fromtimestamp(float(value), tz=UTC)
        return utc(datetime.fromisoformat(value.replace("z", "Z")))
    except (ValueError, OverflowError, OSError) as exc:
        raise InputError(
            f"cannot read the time {text!r}",
            fix="use ISO-8601 (2025-01-31 or 2025-01-31T12:00:00Z) or a Unix timestamp",
        ) from exc


def system_roots() -> list[x509.Certificate]:
    """The system trust store as OpenSSL is configured to find it (``cafile`` and ``capath``)."""
    paths = ssl.get_default_verify_paths()
    found: dict[bytes, x509.Certificate] = {}
    candidates = [paths.cafile, paths.openssl_cafile]
    for directory in (paths.capath, paths.openssl_capath):
        if directory and os.path.isdir(directory):
            candidates += sorted(str(p) for p in Path(directory).iterdir() if p.is_file())
    for candidate in candidates:
        if not candidate or not os.path.isfile(candidate):
            continue
        try:
            with warnings.catch_warnings():  # some system roots predate RFC 5280's serial rules; that is fine
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                certs = x509.load_pem_x509_certificates(Path(candidate).read_bytes())
        except (ValueError, OSError):
            continue  # capath also holds CRLs and odd files; one bad file must not hide the rest
        for cert in certs:
            found.setdefault(cert.fingerprint(hashes.SHA256()), cert)
    if not found:
        raise InputError("no system trust store was found", fix="give the root CA certificate (ca=)")
    return list(found.values())


def verify_files(
    cert_path: str | os.PathLike[str],
    *,
    ca_paths: Sequence[str | os.PathLike[str]] = (),
    chain_path: str | os.PathLike[str] | None = None,
    host: str | None = None,
    purpose: Purpose = Purpose.SERVER,
    crl_paths: Sequence[str | os.PathLike[str]] = (),
    at: datetime | None = None,
    revocation: RevocationSource | None = None,
) -> VerifyResult:
    """:func:`verify_chain` on files: the first certificate of ``cert_path`` is the leaf, the rest intermediates.

    Without ``ca_paths`` the system trust store is used.  Unreadable files raise :class:`InputError`.
    """
    leaf, *intermediates = files.load_certificates(cert_path)
    if chain_path is not None:
        intermediates += files.load_certificates(chain_path)
    roots = [cert for path in ca_paths for cert in files.load_certificates(path)] if ca_paths else system_roots()
    crls = [files.load_crl(path) for path in crl_paths]
    return verify_chain(
        leaf,
        roots=roots,
        intermediates=intermediates,
        host=host,
        purpose=purpose,
        crls=crls,
        at=at,
        revocation=revocation,
    )
