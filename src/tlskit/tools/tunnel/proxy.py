"""The PROXY protocol (haproxy's ``proxy-protocol.txt``, versions 1 and 2), sans-IO: headers built and parsed.

A tunnel that terminates TLS and connects to its target from its own address hides the client's: the target
sees the tunnel.  The PROXY protocol puts one header in front of the relayed bytes, saying who connected to
whom; version 2 is binary and carries type-length-value extensions (TLVs) such as the TLS version and the
client certificate's CN (``PP2_TYPE_SSL`` with ``PP2_SUBTYPE_SSL_VERSION`` and ``PP2_SUBTYPE_SSL_CN``).

:func:`build_v1` and :func:`build_v2` make headers; :func:`parse` reads one back from the start of a byte
string (returning None while it is incomplete) and raises :class:`ProxyProtocolError` for anything the
specification does not allow, so it can be given arbitrary bytes.  Nothing here touches a socket.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ...errors import TlskitError

__all__ = [
    "V1_MAX",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyProtocolError",
    "SSLInfo",
    "TLVType",
    "build",
    "build_v1",
    "build_v2",
    "parse",
    "parse_ssl_tlv",
    "ssl_tlv",
]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
"""The 12 bytes every version 2 header starts with."""
V1_MAX = 107
"""The longest version 1 header, CRLF included (the specification's bound)."""
_V1_PREFIX = b"PROXY "

Address = tuple[str, int]


class ProxyProtocolError(TlskitError):
    """Bytes that are not a valid PROXY protocol header."""


class TLVType(enum.IntEnum):
    """Version 2 TLV types (and the sub-types inside ``SSL``) of the specification."""

    ALPN = 0x01
    AUTHORITY = 0x02
    CRC32C = 0x03
    NOOP = 0x04
    UNIQUE_ID = 0x05
    SSL = 0x20
    SSL_VERSION = 0x21
    SSL_CN = 0x22
    SSL_CIPHER = 0x23
    SSL_SIG_ALG = 0x24
    SSL_KEY_ALG = 0x25
    NETNS = 0x30


# PP2_TYPE_SSL's "client" bit field.
CLIENT_SSL = 0x01
CLIENT_CERT_CONN = 0x02
CLIENT_CERT_SESS = 0x04

_CMD_LOCAL, _CMD_PROXY = 0x20, 0x21
_FAMILY_UNSPEC, _TCP4, _TCP6 = 0x00, 0x11, 0x21
_ADDRESS_SIZE = {_FAMILY_UNSPEC: 0, _TCP4: 12, _TCP6: 36, 0x12: 12, 0x22: 36, 0x31: 216, 0x32: 216}


@dataclass(frozen=True, kw_only=True)
class SSLInfo:
    """What ``PP2_TYPE_SSL`` says: TLS was used, whether a client certificate came and verified, and sub-TLVs."""

    client: int = CLIENT_SSL
    verify: int = 0
    """0 when the client presented a certificate that verified, anything else otherwise."""
    version: str | None = None
    cn: str | None = None
    cipher: str | None = None

    @property
    def cert_sent(self) -> bool:
        return bool(self.client & (CLIENT_CERT_CONN | CLIENT_CERT_SESS))


@dataclass(frozen=True, kw_only=True)
class ProxyHeader:
    """One parsed header.  ``source``/``destination`` are None for ``UNKNOWN`` (v1) and ``LOCAL``/UNSPEC (v2)."""

    version: int
    source: Address | None
    destination: Address | None
    local: bool = False
    """Version 2 ``LOCAL`` command: the connection was made by the proxy itself (a health check)."""
    tlvs: tuple[tuple[int, bytes], ...] = field(default=())

    def tlv(self, kind: int) -> bytes | None:
        """The value of the first TLV of type ``kind``, or None."""
        return next((value for t, value in self.tlvs if t == kind), None)

    @property
    def ssl(self) -> SSLInfo | None:
        value = self.tlv(TLVType.SSL)
        return None if value is None else parse_ssl_tlv(value)


# --- building ------------------------------------------------------------------------------------------------


def _ip(address: Address, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        ip = ipaddress.ip_address(address[0].split("%", 1)[0])
    except (ValueError, IndexError, AttributeError):
        raise ProxyProtocolError(f"{what} {address!r} is not an IP address and port") from None
    if not 0 <= int(address[1]) <= 65535:
        raise ProxyProtocolError(f"{what} port {address[1]!r} is out of range")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # "::ffff:192.0.2.1" from a dual-stack socket is an IPv4 client
    return ip


def build_v1(source: Address | None, destination: Address | None) -> bytes:
    """``PROXY TCP4|TCP6 src dst sport dport\\r\\n``, or ``PROXY UNKNOWN\\r\\n`` without TCP addresses."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    src, dst = _ip(source, "source"), _ip(destination, "destination")
    if src.version != dst.version:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {int(source[1])} {int(destination[1])}\r\n".encode("ascii")


def _tlv(kind: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ProxyProtocolError(f"TLV 0x{kind:02x} is too long ({len(value)} bytes)")
    return struct.pack("!BH", kind, len(value)) + value


def ssl_tlv(info: SSLInfo) -> bytes:
    """The value of a ``PP2_TYPE_SSL`` TLV: client bits, verify result, then the sub-TLVs that are set."""
    out = struct.pack("!BI", info.client & 0xFF, info.verify & 0xFFFFFFFF)
    for kind, text in ((TLVType.SSL_VERSION, info.version), (TLVType.SSL_CN, info.cn),
                       (TLVType.SSL_CIPHER, info.cipher)):  # fmt: skip
        if text is not None:
            out += _tlv(kind, text.encode("utf-8"))
    return out


def build_v2(
    source: Address | None,
    destination: Address | None,
    *,
    tlvs: Iterable[tuple[int, bytes]] | Mapping[int, bytes] = (),
    local: bool = False,
) -> bytes:
    """A version 2 header: PROXY (or LOCAL) over TCP4/TCP6 (UNSPEC without addresses), then ``tlvs``."""
    items = list(tlvs.items()) if isinstance(tlvs, Mapping) else list(tlvs)
    body = b""
    family = _FAMILY_UNSPEC
    if source is not None and destination is not None and not local:
        src, dst = _ip(source, "source"), _ip(destination, "destination")
        if src.version == dst.version:
            family = _TCP4 if src.version == 4 else _TCP6
            body = src.packed + dst.packed + struct.pack("!HH", int(source[1]), int(destination[1]))
    body += b"".join(_tlv(int(kind), value) for kind, value in items)
    if len(body) > 0xFFFF:
        raise ProxyProtocolError(f"the header's body is too long ({len(body)} bytes)")
    return V2_SIGNATURE + bytes((_CMD_LOCAL if local else _CMD_PROXY, family)) + struct.pack("!H", len(body)) + body


def build(
    version: int, source: Address | None, destination: Address | None, *, ssl: SSLInfo | None = None,
    authority: str | None = None, alpn: str | None = None,
) -> bytes:  # fmt: skip
    """A header of ``version`` 1 or 2; version 2 carries ``ssl``, ``authority`` (SNI) and ``alpn`` as TLVs."""
    if version == 1:
        return build_v1(source, destination)
    if version != 2:
        raise ProxyProtocolError(f"unknown PROXY protocol version {version!r}")
    tlvs: list[tuple[int, bytes]] = []
    if alpn:
        tlvs.append((TLVType.ALPN, alpn.encode("ascii", "replace")))
    if authority:
        tlvs.append((TLVType.AUTHORITY, authority.encode("ascii", "replace")))
    if ssl is not None:
        tlvs.append((TLVType.SSL, ssl_tlv(ssl)))
    return build_v2(source, destination, tlvs=tlvs)


# --- parsing -------------------------------------------------------------------------------------------------


def parse(data: bytes | bytearray | memoryview) -> tuple[ProxyHeader, int] | None:
    """Parse the header at the start of ``data``: ``(header, bytes it took)``, or None if more bytes are needed.

    Raises :class:`ProxyProtocolError` as soon as the bytes cannot be the start of a valid header.
    """
    data = bytes(data)
    if data[:1] == b"\r":
        if not V2_SIGNATURE.startswith(data[:12]):
            raise ProxyProtocolError("not a PROXY protocol header (bad version 2 signature)")
        return _parse_v2(data) if len(data) >= 16 else None
    if not _V1_PREFIX.startswith(data[:6]):
        raise ProxyProtocolError("not a PROXY protocol header (it starts neither with 'PROXY ' nor the v2 signature)")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data[:V1_MAX]:
            raise ProxyProtocolError(f"version 1 header without CRLF within {V1_MAX} bytes")
        return None
    return _parse_v1(data[:end]), end + 2


def _port(text: str) -> int:
    if not text.isdigit() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyProtocolError(f"bad port {text!r} in a version 1 header")
    return int(text)


def _parse_v1(line: bytes) -> ProxyHeader:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("version 1 header is not ASCII") from None
    parts = text.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(version=1, source=None, destination=None)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"malformed version 1 header {text[:60]!r}")
    kind = ipaddress.IPv4Address if parts[1] == "TCP4" else ipaddress.IPv6Address
    try:
        src, dst = kind(parts[2]), kind(parts[3])
    except ValueError:
        raise ProxyProtocolError(f"bad {parts[1]} address in version 1 header {text[:60]!r}") from None
    return ProxyHeader(version=1, source=(str(src), _port(parts[4])), destination=(str(dst), _port(parts[5])))


def _parse_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    ver_cmd, family, length = data[12], data[13], struct.unpack_from("!H", data, 14)[0]
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"unsupported PROXY protocol version {ver_cmd >> 4}")
    if ver_cmd not in (_CMD_LOCAL, _CMD_PROXY):
        raise ProxyProtocolError(f"unknown version 2 command 0x{ver_cmd & 0xF:x}")
    if family not in _ADDRESS_SIZE:
        raise ProxyProtocolError(f"unknown version 2 address family 0x{family:02x}")
    if len(data) < 16 + length:
        return None
    body = data[16 : 16 + length]
    size = _ADDRESS_SIZE[family]
    if length < size:
        raise ProxyProtocolError(f"version 2 header too short for its address family ({length} < {size})")
    local = ver_cmd == _CMD_LOCAL
    source = destination = None
    if not local and family in (_TCP4, 0x12):
        source = (str(ipaddress.IPv4Address(body[0:4])), struct.unpack_from("!H", body, 8)[0])
        destination = (str(ipaddress.IPv4Address(body[4:8])), struct.unpack_from("!H", body, 10)[0])
    elif not local and family in (_TCP6, 0x22):
        source = (str(ipaddress.IPv6Address(body[0:16])), struct.unpack_from("!H", body, 32)[0])
        destination = (str(ipaddress.IPv6Address(body[16:32])), struct.unpack_from("!H", body, 34)[0])
    tlvs = tuple(_parse_tlvs(body[size:], "version 2 header"))
    return ProxyHeader(version=2, source=source, destination=destination, local=local, tlvs=tlvs), 16 + length


def _parse_tlvs(data: bytes, where: str) -> list[tuple[int, bytes]]:
    out = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 3:
            raise ProxyProtocolError(f"truncated TLV in the {where}")
        kind, size = data[offset], struct.unpack_from("!H", data, offset + 1)[0]
        offset += 3
        if offset + size > len(data):
            raise ProxyProtocolError(f"TLV 0x{kind:02x} in the {where} is longer than what is left ({size} bytes)")
        out.append((kind, data[offset : offset + size]))
        offset += size
    return out


def parse_ssl_tlv(value: bytes) -> SSLInfo:
    """Read the value of a ``PP2_TYPE_SSL`` TLV (client bits, verify, sub-TLVs)."""
    if len(value) < 5:
        raise ProxyProtocolError("PP2_TYPE_SSL TLV shorter than 5 bytes")
    client, verify = struct.unpack_from("!BI", value)
    texts: dict[int, str] = {}
    for kind, sub in _parse_tlvs(value[5:], "PP2_TYPE_SSL TLV"):
        try:
            texts.setdefault(kind, sub.decode("utf-8"))
        except UnicodeDecodeError:
            raise ProxyProtocolError(f"sub-TLV 0x{kind:02x} of PP2_TYPE_SSL is not UTF-8") from None
    return SSLInfo(
        client=client,
        verify=verify,
        version=texts.get(TLVType.SSL_VERSION),
        cn=texts.get(TLVType.SSL_CN),
        cipher=texts.get(TLVType.SSL_CIPHER),
    )
