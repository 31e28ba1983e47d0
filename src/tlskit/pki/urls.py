"""Where a CA publishes revocation status and its own certificate: the URLs its certificates carry.

A CA made with ``crl_url=``/``ocsp_url=`` puts them into every certificate it issues or signs: a CRL distribution
point (RFC 5280 4.2.1.13) and an authorityInfoAccess extension (4.2.2.1) naming its OCSP responder (RFC 6960) and
where its own certificate can be fetched (caIssuers).  Relying parties (OpenSSL's ``-crl_download``, browsers,
``tlskit verify --ocsp``) follow them; ``tlskit ca serve`` answers at their paths.

Only ``http`` URLs are accepted: CRLs and OCSP answers are signed, so transport security adds nothing, and a
client that had to open an ``https`` connection to learn whether a certificate is revoked would first have to
check the revocation of that server's certificate (RFC 5280 4.2.1.13 and RFC 6960 appendix A expect http; the
CA/Browser Forum requires it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from ..errors import InputError
from .problems import ext

__all__ = ["RevocationURLs", "check_url", "crl_urls", "issuer_urls", "ocsp_urls"]

_WHY_HTTP = (
    "CRLs and OCSP answers are signed, and a client cannot be asked to check an https server's certificate "
    "before it may check any certificate (RFC 5280 and RFC 6960 expect http)"
)


def check_url(url: str, what: str) -> SplitResult:
    """``url`` parsed, or :class:`InputError` saying what is wrong with it (``what`` names the parameter)."""
    text = str(url).strip()
    if not text or any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in text):
        raise InputError(f"{what} {url!r} is not a URL", fix=f"give {what} like http://pki.example.com/int.crl")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"{what} {url!r} is not a valid URL ({exc})", fix="check the host and port") from None
    if parts.scheme.lower() == "https":
        raise InputError(f"{what} {url!r} uses https: {_WHY_HTTP}", fix=f"give {what} with http://")
    if parts.scheme.lower() != "http":
        raise InputError(f"{what} {url!r} is not an http URL", fix=f"give {what} with http:// ({_WHY_HTTP})")
    if not parts.hostname:
        raise InputError(f"{what} {url!r} has no host", fix=f"give {what} like http://pki.example.com/int.crl")
    if parts.username is not None or parts.password is not None:
        raise InputError(f"{what} {url!r} carries a user name or password", fix="leave credentials out of the URL")
    if parts.query or parts.fragment:
        raise InputError(
            f"{what} {url!r} has a query or fragment", fix="give a plain path (the responder answers by path)"
        )
    if port == 0:
        raise InputError(f"{what} {url!r} has port 0", fix="give the port clients will connect to")
    return parts


@dataclass(frozen=True)
class RevocationURLs:
    """The URLs a CA writes into the certificates it issues: ``crl`` (distribution point), ``ocsp`` (responder)
    and ``issuer`` (caIssuers: where its own certificate is published, DER).  Each is validated on creation."""

    crl: str | None = None
    ocsp: str | None = None
    issuer: str | None = None

    def __post_init__(self) -> None:
        for name in ("crl", "ocsp", "issuer"):
            value = getattr(self, name)
            if value is not None:
                check_url(value, f"{name}_url=")
                object.__setattr__(self, name, value.strip())

    def __bool__(self) -> bool:
        return bool(self.crl or self.ocsp or self.issuer)

    def with_default_issuer(self, ca_cert: x509.Certificate) -> RevocationURLs:
        """These URLs with ``issuer`` filled in when a CRL or OCSP URL is given: next to the CRL (``int.crl`` ->
        ``int.crt``), else at the OCSP responder's host, named by the CA's key identifier."""
        if self.issuer is not None or not (self.crl or self.ocsp):
            return self
        if self.crl:
            base, _, last = self.crl.rpartition("/")
            stem = last.rsplit(".", 1)[0] if "." in last else last
            issuer = f"{base}/{stem or 'ca'}.crt"
        else:
            parts = urlsplit(self.ocsp or "")
            ski = x509.SubjectKeyIdentifier.from_public_key(ca_cert.public_key()).digest.hex()
            issuer = f"{parts.scheme}://{parts.netloc}/ca-{ski[:16]}.crt"
        return RevocationURLs(crl=self.crl, ocsp=self.ocsp, issuer=issuer)

    def extensions(self) -> Iterator[x509.ExtensionType]:
        """The non-critical extensions a certificate issued under these URLs carries."""
        if self.crl:
            point = x509.DistributionPoint([x509.UniformResourceIdentifier(self.crl)], None, None, None)
            yield x509.CRLDistributionPoints([point])
        access = []
        if self.ocsp:
            access.append(
                x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(self.ocsp))
            )
        if self.issuer:
            access.append(
                x509.AccessDescription(
                    AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(self.issuer)
                )
            )
        if access:
            yield x509.AuthorityInformationAccess(access)

    def to_json(self) -> dict[str, Any]:
        return {"crl": self.crl, "ocsp": self.ocsp, "issuer": self.issuer}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RevocationURLs:
        return cls(crl=data.get("crl"), ocsp=data.get("ocsp"), issuer=data.get("issuer"))


def _http(urls: Iterator[str]) -> list[str]:
    """The http URLs among ``urls`` (a relying party fetches nothing else: no ldap, no https loops)."""
    return [u for u in urls if u.lower().startswith("http://")]


def crl_urls(cert: x509.Certificate) -> list[str]:
    """The http CRL distribution points of ``cert`` (full names only; none if absent or malformed)."""
    found = ext(cert, x509.CRLDistributionPoints)
    if found is None:
        return []
    names = (n for point in found.value for n in point.full_name or () if isinstance(n, x509.UniformResourceIdentifier))
    return _http(n.value for n in names)


def _access(cert: x509.Certificate, method: x509.ObjectIdentifier) -> list[str]:
    found = ext(cert, x509.AuthorityInformationAccess)
    if found is None:
        return []
    return _http(
        d.access_location.value
        for d in found.value
        if d.access_method == method and isinstance(d.access_location, x509.UniformResourceIdentifier)
    )


def ocsp_urls(cert: x509.Certificate) -> list[str]:
    """The http OCSP responders named in ``cert``'s authorityInfoAccess."""
    return _access(cert, AuthorityInformationAccessOID.OCSP)


def issuer_urls(cert: x509.Certificate) -> list[str]:
    """Where ``cert``'s issuer certificate is published (caIssuers)."""
    return _access(cert, AuthorityInformationAccessOID.CA_ISSUERS)
