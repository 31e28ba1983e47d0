"""Names: subjectAltName entries and subject DNs from the strings people type.

``parse_san`` accepts an explicit prefix (``DNS:``, ``IP:``, ``email:``, ``URI:``) or guesses the kind: an IPv4 or
IPv6 literal, an ``user@host`` address, a ``scheme://`` URI, otherwise a DNS name.  DNS names may be wildcards
(``*.example.com``, the whole left-most label only) and internationalized (converted to the ASCII A-label form
that certificates must carry).  ``parse_subject`` reads OpenSSL's ``/CN=a/O=b`` and RFC 4514's ``CN=a,O=b``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..errors import InputError

__all__ = [
    "common_name",
    "format_san",
    "name_for_cn",
    "parse_dns_name",
    "parse_san",
    "parse_sans",
    "parse_subject",
]

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

# Short names accepted in DNs (OpenSSL's spelling), mapped to OIDs.
_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "TITLE": NameOID.TITLE,
    "GN": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
    "POSTALCODE": NameOID.POSTAL_CODE,
}
_ATTRIBUTES.update({"E": NameOID.EMAIL_ADDRESS, "GIVENNAME": NameOID.GIVEN_NAME, "SURNAME": NameOID.SURNAME})
# cryptography's RFC 4514 parser matches attribute names exactly, so offer the usual spellings.
_RFC4514_OVERRIDES = {
    spelling: oid for key, oid in _ATTRIBUTES.items() for spelling in {key, key.lower(), key.title()}
} | {"emailAddress": NameOID.EMAIL_ADDRESS, "serialNumber": NameOID.SERIAL_NUMBER, "postalCode": NameOID.POSTAL_CODE}


def _bad_san(text: str, why: str) -> InputError:
    return InputError(
        f"invalid subjectAltName {text!r}: {why}",
        fix="use a DNS name, an IP address, an email address or a URI (optionally prefixed DNS:, IP:, email:, URI:)",
    )


def parse_dns_name(text: str) -> str:
    """Validate a DNS name and return its ASCII form (IDN labels become ``xn--`` A-labels).

    A wildcard is allowed only as the entire left-most label of a name with at least two more labels.
    """
    name = text.strip().rstrip(".")
    if not name:
        raise _bad_san(text, "empty DNS name")
    labels = name.split(".")
    wildcard = labels[0] == "*"
    if wildcard:
        labels = labels[1:]
        if len(labels) < 2:
            raise _bad_san(text, "a wildcard needs at least two labels after it (*.example.com)")
    out: list[str] = []
    for label in labels:
        if "*" in label:
            raise _bad_san(text, "'*' is only allowed as the whole left-most label")
        try:
            # Python's codec implements IDNA 2003 per label; it maps case and rejects disallowed code points.
            ascii_label = label.encode("idna").decode("ascii").lower() if not label.isascii() else label.lower()
        except UnicodeError as exc:
            raise _bad_san(text, f"label {label!r} is not a valid internationalized name") from exc
        if not _LABEL.match(ascii_label):
            raise _bad_san(text, f"label {label!r} is not a valid host name label")
        out.append(ascii_label)
    result = ".".join((["*"] if wildcard else []) + out)
    if len(result) > 253:
        raise _bad_san(text, "longer than 253 characters")
    return result


def parse_san(text: str | x509.GeneralName) -> x509.GeneralName:
    """Parse one subjectAltName entry, guessing its kind when it has no ``KIND:`` prefix."""
    if isinstance(text, x509.GeneralName):
        return text
    value = text.strip()
    kind, sep, rest = value.partition(":")
    lowered = kind.lower()
    # "::1" and other IPv6 literals contain ':' too, so only known prefixes count as prefixes.
    if sep and lowered in {"dns", "ip", "email", "uri"}:
        value = rest.strip()
    else:
        lowered = ""
    if lowered in {"ip", ""}:
        try:
            return x509.IPAddress(ipaddress.ip_address(value.strip("[]")))
        except ValueError:
            if lowered == "ip":
                raise _bad_san(text, "not an IPv4 or IPv6 address") from None
    if lowered == "uri" or (not lowered and _SCHEME.match(value)):
        if not _SCHEME.match(value) or any(c.isspace() for c in value):
            raise _bad_san(text, "a URI needs a scheme (https://...) and no spaces")
        return x509.UniformResourceIdentifier(value)
    if lowered == "email" or (not lowered and "@" in value):
        local, at, domain = value.rpartition("@")
        if not at or not local or not local.isascii() or any(c.isspace() for c in local):
            raise _bad_san(text, "not an email address")
        return x509.RFC822Name(f"{local}@{parse_dns_name(domain)}")
    return x509.DNSName(parse_dns_name(value))


def parse_sans(values: Iterable[str | x509.GeneralName]) -> list[x509.GeneralName]:
    """Parse several entries, dropping exact duplicates while keeping order."""
    out: list[x509.GeneralName] = []
    for v in values:
        gn = parse_san(v)
        if gn not in out:
            out.append(gn)
    return out


def format_san(name: x509.GeneralName) -> str:
    """Render one entry the way OpenSSL prints it: ``DNS:a.example``, ``IP:::1``, ``email:...``, ``URI:...``."""
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"DirName:{name.value.rfc4514_string()}"
    return f"{type(name).__name__}:{name.value!r}"


def name_for_cn(name: x509.GeneralName) -> str | None:
    """The text to use as a subject CN for a SAN entry, or None when it would not fit (CN is at most 64)."""
    text = str(name.value)
    return text if 0 < len(text) <= 64 else None


def _attribute(key: str, source: str) -> x509.ObjectIdentifier:
    oid = _ATTRIBUTES.get(key.strip().upper())
    if oid is None:
        known = ", ".join(sorted(_ATTRIBUTES))
        raise InputError(f"unknown attribute {key!r} in subject {source!r}", fix=f"use one of: {known}")
    return oid


def parse_subject(text: str | x509.Name) -> x509.Name:
    """Parse a subject DN: ``/C=DE/O=Acme/CN=host`` (OpenSSL, in order) or ``CN=host,O=Acme,C=DE`` (RFC 4514)."""
    if isinstance(text, x509.Name):
        return text
    value = text.strip()
    if not value:
        return x509.Name([])
    try:
        if value.startswith("/"):
            attrs: list[x509.NameAttribute[str]] = []
            # Split on '/' not preceded by a backslash; "\/" is a literal slash, as in OpenSSL.
            for part in re.split(r"(?<!\\)/", value[1:]):
                if not part:
                    continue
                key, eq, val = part.partition("=")
                if not eq or not val:
                    raise InputError(f"subject {text!r}: {part!r} is not KEY=VALUE", fix="write /CN=name/O=org")
                attrs.append(x509.NameAttribute(_attribute(key, text), val.replace("\\/", "/")))
            return x509.Name(attrs)
        for part in re.split(r"(?<!\\),", value):
            _attribute(part.partition("=")[0], text)  # unknown attributes get the helpful error
        return x509.Name.from_rfc4514_string(value, _RFC4514_OVERRIDES)
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(
            f"invalid subject {text!r}: {exc or 'malformed'}", fix="write CN=name,O=org or /CN=name/O=org"
        ) from exc


def common_name(name: x509.Name) -> str | None:
    """The (last) CN of a name, or None."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[-1].value) if values else None
