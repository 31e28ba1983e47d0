"""Decoders for the handshake messages a TLS observer can read in clear.

ClientHello and ServerHello (every version), and under TLS 1.2 and older the Certificate and
ServerKeyExchange messages.  Each decoder takes one complete message body and either returns its event or
raises :class:`DecodeError`; the bounds-checked reader makes every length field an explicit check.
"""

from __future__ import annotations

import warnings

from cryptography import x509

from .._text import printable
from ._iana import cipher_suite_name, extension_name
from .tls_events import CertificateInfo, Certificates, ClientHello, Direction, ServerHello, ServerKeyExchange

__all__ = [
    "HRR_RANDOM",
    "DecodeError",
    "describe_certificate",
    "parse_certificate",
    "parse_client_hello",
    "parse_server_hello",
    "parse_server_key_exchange",
]

#: A ServerHello with this random is a HelloRetryRequest (RFC 8446 section 4.1.3).
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


class DecodeError(Exception):
    """A message does not decode; the parser turns it into a :class:`Malformed` event (never escapes it)."""


class _Reader:
    """Bounds-checked big-endian reader over one message."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int) -> bytes:
        if n > self.remaining:
            raise DecodeError(f"{self._what} is truncated")
        self._pos += n
        return self._data[self._pos - n : self._pos]

    def uint(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def vec(self, width: int) -> bytes:
        return self.take(self.uint(width))

    def sub(self, width: int, what: str) -> _Reader:
        return _Reader(self.vec(width), what)

    def end(self) -> None:
        if self.remaining:
            raise DecodeError(f"{self._what} has {self.remaining} unexpected trailing bytes")


def _u16s(data: bytes, what: str) -> tuple[int, ...]:
    if len(data) % 2:
        raise DecodeError(f"{what} has an odd length")
    return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def _text(raw: bytes) -> str:
    """Peer-supplied names as safe text: non-printable characters escaped, never interpreted."""
    return printable(raw.decode("utf-8", "backslashreplace"))


def _extensions(r: _Reader, what: str) -> list[tuple[int, bytes]]:
    if not r.remaining:  # extensions are optional before TLS 1.3
        return []
    block = r.sub(2, f"{what} extensions")
    out = []
    while block.remaining:
        ext_type = block.uint(2)
        out.append((ext_type, block.vec(2)))
    return out


def _alpn(r: _Reader, what: str) -> tuple[str, ...]:
    names = r.sub(2, what)
    out = []
    while names.remaining:
        out.append(_text(names.vec(1)))
    return tuple(out)


def parse_client_hello(direction: Direction, body: bytes) -> ClientHello:
    r = _Reader(body, "ClientHello")
    legacy_version = r.uint(2)
    r.take(32)  # random
    session_id = r.vec(1)
    suites = _u16s(r.vec(2), "ClientHello cipher suites")
    r.vec(1)  # compression methods
    extensions = _extensions(r, "ClientHello")
    r.end()
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    groups: tuple[int, ...] = ()
    shares: list[int] = []
    sigalgs: tuple[int, ...] = ()
    for ext_type, data in extensions:
        what = f"ClientHello {extension_name(ext_type)} extension"
        e = _Reader(data, what)
        if ext_type == 0 and data:
            names = e.sub(2, what)
            while names.remaining:
                name_type, name = names.uint(1), names.vec(2)
                if name_type == 0 and server_name is None:
                    server_name = _text(name)
        elif ext_type == 16:
            alpn = _alpn(e, what)
        elif ext_type == 43:
            versions = _u16s(e.vec(1), what)
        elif ext_type == 10:
            groups = _u16s(e.vec(2), what)
        elif ext_type == 51:
            entries = e.sub(2, what)
            while entries.remaining:
                shares.append(entries.uint(2))
                entries.vec(2)  # the public key itself
        elif ext_type == 13:
            sigalgs = _u16s(e.vec(2), what)
        else:
            continue
        e.end()
    return ClientHello(
        direction,
        legacy_version=legacy_version,
        session_id_length=len(session_id),
        cipher_suites=suites,
        extensions=tuple(ext_type for ext_type, _ in extensions),
        server_name=server_name,
        alpn=alpn,
        supported_versions=versions,
        supported_groups=groups,
        key_share_groups=tuple(shares),
        signature_algorithms=sigalgs,
    )


def parse_server_hello(direction: Direction, body: bytes) -> ServerHello:
    r = _Reader(body, "ServerHello")
    legacy_version = r.uint(2)
    hrr = r.take(32) == HRR_RANDOM
    session_id = r.vec(1)
    suite = r.uint(2)
    r.uint(1)  # compression method
    extensions = _extensions(r, "ServerHello")
    r.end()
    version, key_share, alpn = legacy_version, None, None
    for ext_type, data in extensions:
        what = f"ServerHello {extension_name(ext_type)} extension"
        e = _Reader(data, what)
        if ext_type == 43:
            version = e.uint(2)
        elif ext_type == 51:
            key_share = e.uint(2)
            if not hrr:  # a HelloRetryRequest names only the group it wants
                e.vec(2)
        elif ext_type == 16:
            alpn = next(iter(_alpn(e, what)), None)
        else:
            continue
        e.end()
    return ServerHello(
        direction,
        legacy_version=legacy_version,
        version=version,
        cipher_suite=suite,
        session_id_length=len(session_id),
        extensions=tuple(ext_type for ext_type, _ in extensions),
        hello_retry_request=hrr,
        key_share_group=key_share,
        alpn=alpn,
    )


def describe_certificate(der: bytes) -> CertificateInfo:
    """Subject, issuer, DNS names and expiry of a DER certificate; unparseable input is described, not raised."""
    try:
        with warnings.catch_warnings():
            # Peer-supplied oddities (e.g. bad string types) warn; the tap reports, it does not lint.
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                dns_names = tuple(san.get_values_for_type(x509.DNSName))
            except x509.ExtensionNotFound:
                dns_names = ()
            return CertificateInfo(
                size=len(der),
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                dns_names=dns_names,
                not_after=cert.not_valid_after_utc.isoformat(),
            )
    # Hostile DER reaches cryptography's lazy accessors, which raise ValueError, TypeError, InvalidVersion,
    # DuplicateExtension...; any of them means "not a certificate we can describe", never a crash.
    except Exception as exc:
        return CertificateInfo(size=len(der), error=f"not a parseable X.509 certificate ({exc})")


def parse_certificate(direction: Direction, body: bytes, *, tls13: bool) -> Certificates:
    r = _Reader(body, "Certificate")
    if tls13:
        r.vec(1)  # certificate_request_context
    entries = r.sub(3, "Certificate list")
    r.end()
    certs = []
    while entries.remaining:
        certs.append(describe_certificate(entries.vec(3)))
        if tls13:
            entries.vec(2)  # per-certificate extensions
    return Certificates(direction, certificates=tuple(certs))


def parse_server_key_exchange(direction: Direction, body: bytes, *, suite: int | None) -> ServerKeyExchange:
    r = _Reader(body, "ServerKeyExchange")
    name = cipher_suite_name(suite) if suite is not None else ""
    group = dh_bits = None
    if "_ECDHE_" in name:
        if r.uint(1) == 3:  # named_curve; explicit curves carry no group id
            group = r.uint(2)
    elif "_DHE_" in name:
        dh_bits = int.from_bytes(r.vec(2), "big").bit_length()
    return ServerKeyExchange(direction, length=len(body), group=group, dh_bits=dh_bits)
