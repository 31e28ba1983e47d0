"""The PROXY protocol (issue 8): tlskit's builder and parser, against a parser written here from haproxy's
specification (``proxy-protocol.txt``) and against haproxy itself, as a tunnel's target with ``accept-proxy``.
"""

from __future__ import annotations

import ipaddress
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import PKI
from peers import CURL, HAPROXY, requires, running
from tlskit.tools.tunnel.proxy import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    SSLInfo,
    TLVType,
    build,
    build_v1,
    build_v2,
    parse,
)

# --- a parser written from the specification, independent of tlskit's --------------------------------------


def spec_parse_v2(data: bytes) -> dict[str, Any]:
    """Section 2.2 of proxy-protocol.txt, literally: 16-byte header, addresses by family, then TLVs (2.2.7)."""
    assert data[:12] == b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
    ver_cmd, fam = data[12], data[13]
    (length,) = struct.unpack(">H", data[14:16])
    assert ver_cmd >> 4 == 2 and ver_cmd & 0xF in (0, 1)
    body = data[16 : 16 + length]
    assert len(body) == length and len(data) == 16 + length
    out: dict[str, Any] = {"command": "PROXY" if ver_cmd & 0xF else "LOCAL", "tlvs": {}}
    if fam == 0x11:  # TCP over IPv4: 4 + 4 + 2 + 2
        src, dst, sport, dport = struct.unpack(">4s4sHH", body[:12])
        out["src"] = (socket_ntop(src), sport)
        out["dst"] = (socket_ntop(dst), dport)
        rest = body[12:]
    elif fam == 0x21:  # TCP over IPv6: 16 + 16 + 2 + 2
        src, dst, sport, dport = struct.unpack(">16s16sHH", body[:36])
        out["src"], out["dst"] = (socket_ntop(src), sport), (socket_ntop(dst), dport)
        rest = body[36:]
    else:
        assert fam == 0x00
        rest = body
    while rest:
        kind, hi, lo = rest[0], rest[1], rest[2]
        size = (hi << 8) | lo
        value, rest = rest[3 : 3 + size], rest[3 + size :]
        assert len(value) == size
        out["tlvs"][kind] = value
    if 0x20 in out["tlvs"]:  # struct pp2_tlv_ssl { uint8_t client; uint32_t verify; struct pp2_tlv sub_tlv[0]; }
        value = out["tlvs"][0x20]
        client, verify = value[0], int.from_bytes(value[1:5], "big")
        subs, rest = {}, value[5:]
        while rest:
            kind, size = rest[0], (rest[1] << 8) | rest[2]
            subs[kind], rest = rest[3 : 3 + size], rest[3 + size :]
        out["ssl"] = {"client": client, "verify": verify, "subs": subs}
    return out


def socket_ntop(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def spec_parse_v1(line: bytes) -> tuple[str, ...]:
    """Section 2.1: 'PROXY' SP proto SP src SP dst SP sport SP dport CRLF, at most 107 bytes."""
    assert line.endswith(b"\r\n") and len(line) <= 107
    return tuple(line[:-2].decode("ascii").split(" "))


# --- the builder, read by the independent parser ------------------------------------------------------------


def test_v1_headers() -> None:
    assert spec_parse_v1(build_v1(("192.0.2.1", 56324), ("198.51.100.2", 443))) == (
        "PROXY", "TCP4", "192.0.2.1", "198.51.100.2", "56324", "443",
    )  # fmt: skip
    assert spec_parse_v1(build_v1(("::1", 1), ("2001:db8::2", 65535))) == (
        "PROXY", "TCP6", "::1", "2001:db8::2", "1", "65535",
    )  # fmt: skip
    longest = build_v1(("ffff:" * 7 + "ffff", 65535), ("ffff:" * 7 + "ffff", 65535))
    assert len(longest) <= 107
    assert build_v1(None, None) == b"PROXY UNKNOWN\r\n"
    assert spec_parse_v1(build_v1(("::ffff:192.0.2.1", 5), ("::ffff:192.0.2.2", 6)))[1] == "TCP4"  # dual stack


def test_v2_header_with_tls_facts() -> None:
    info = SSLInfo(client=0x01 | 0x02 | 0x04, verify=0, version="TLSv1.3", cn="alice", cipher="TLS_AES_128_GCM_SHA256")
    data = build(2, ("192.0.2.1", 56324), ("198.51.100.2", 443), ssl=info, authority="api.example", alpn="h2")
    seen = spec_parse_v2(data)
    assert seen["command"] == "PROXY"
    assert seen["src"] == ("192.0.2.1", 56324) and seen["dst"] == ("198.51.100.2", 443)
    assert seen["tlvs"][0x02] == b"api.example" and seen["tlvs"][0x01] == b"h2"
    assert seen["ssl"] == {
        "client": 7,
        "verify": 0,
        "subs": {0x21: b"TLSv1.3", 0x22: b"alice", 0x23: b"TLS_AES_128_GCM_SHA256"},
    }
    v6 = spec_parse_v2(build_v2(("2001:db8::1", 1), ("2001:db8::2", 2)))
    assert v6["src"] == ("2001:db8::1", 1) and v6["tlvs"] == {}
    assert spec_parse_v2(build_v2(None, None, local=True))["command"] == "LOCAL"


# --- tlskit's parser ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        build_v1(("192.0.2.1", 1), ("192.0.2.2", 2)),
        build_v1(("2001:db8::1", 65535), ("::1", 0)),
        build_v1(None, None),
        build(2, ("192.0.2.1", 1), ("192.0.2.2", 2), ssl=SSLInfo(version="TLSv1.2", cn="é")),
        build_v2(("2001:db8::1", 1), ("::1", 2), tlvs={TLVType.NOOP: b"", 0xE0: b"x" * 300}),
        build_v2(None, None, local=True),
    ],
)
def test_parse_round_trips_and_waits_for_more(header: bytes) -> None:
    parsed = parse(header + b"payload")
    assert parsed is not None
    result, used = parsed
    assert used == len(header) and isinstance(result, ProxyHeader)
    for cut in range(len(header)):
        assert parse(header[:cut]) is None, cut  # a prefix is "need more", never an error
    if header.startswith(V2_SIGNATURE) and result.ssl is not None:
        assert result.ssl.cn == "é" and result.ssl.version == "TLSv1.2"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"GET / HTTP/1.1\r\n", "neither"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CRLF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "bad port"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "bad TCP4 address"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
        (b"PROXY " + b"x" * 120, "107"),
        (V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12, "version 3"),
        (V2_SIGNATURE + b"\x2f\x11\x00\x0c" + b"\x00" * 12, "command"),
        (V2_SIGNATURE + b"\x21\x99\x00\x00", "family"),
        (V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4, "too short"),
        (V2_SIGNATURE + b"\x21\x00\x00\x04" + b"\x20\x00\x09\x00", "longer than"),
        (V2_SIGNATURE + b"\x21\x00\x00\x05" + b"\x20\x00\x02\x01\x00", "shorter than 5"),
        (b"\r\n\r\n\x00\r\nQUIZ\n" + b"\x00" * 8, "signature"),
    ],
)
def test_parse_rejects_what_the_specification_does_not_allow(data: bytes, why: str) -> None:
    with pytest.raises(ProxyProtocolError, match=why):
        parsed = parse(data)
        assert parsed is not None, "a rejection, not a request for more bytes"
        info = parsed[0].ssl  # the SSL TLV is read when asked for: where "shorter than 5" is found
        pytest.fail(f"accepted {parsed[0]} (ssl={info})")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_parse_of_any_bytes_returns_or_raises_proxy_protocol_error(data: bytes) -> None:
    for candidate in (data, b"PROXY " + data, V2_SIGNATURE + data):
        try:
            result = parse(candidate)
            if result is not None:
                _ = result[0].ssl
        except ProxyProtocolError:
            pass


# --- haproxy as the target, with accept-proxy ---------------------------------------------------------------


HAPROXY_CFG = """\
global
  log stdout format raw local0
defaults
  mode http
  log global
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend fe
  bind unix@{socket} accept-proxy
  http-request return status 200 content-type text/plain lf-string "{answer}"
"""
ANSWER = "src=%[src]:%[src_port] dst=%[dst]:%[dst_port] authority=%[fc_pp_authority]"


@requires("haproxy", "curl")
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_haproxy_reads_the_real_client_address(pki: PKI, tmp_path: Path, version: str) -> None:
    """curl (mutual TLS) -> tlskit tunnel server --proxy-protocol -> haproxy: haproxy sees curl's address."""
    sock = tmp_path / "haproxy.sock"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(socket=sock, answer=ANSWER))
    assert HAPROXY is not None and CURL is not None
    with running([HAPROXY, "-f", str(cfg), "-db"], port_from=lambda peer: _wait_for_socket(sock, peer)):
        args = ["--target", f"unix:{sock}", "--proxy-protocol", version, "--ca", pki.root_pem]
        with tunnel_server(pki, *args) as tunnel:
            out = subprocess.run(
                [CURL, "-sS", "--cacert", str(pki.root_pem), "--cert", str(pki.client_pem), "--key",
                 str(pki.client_key), "-w", "\n%{local_port} %{remote_port}", f"https://localhost:{tunnel.port}/"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
    assert out.returncode == 0, out.stderr
    body, ports = out.stdout.rsplit("\n", 1)
    local_port, remote_port = ports.split()
    assert body.startswith(f"src=127.0.0.1:{local_port} dst=127.0.0.1:{remote_port} authority="), out.stdout
    # Version 2 also carries the SNI (PP2_TYPE_AUTHORITY), which haproxy reads back; v1 has no TLVs.
    assert body.endswith("authority=localhost" if version == "v2" else "authority="), body


def _wait_for_socket(path: Path, peer: Any) -> int:
    import time

    deadline = time.monotonic() + 10
    while not path.exists():
        if time.monotonic() > deadline or peer.proc.poll() is not None:
            raise AssertionError(f"haproxy did not start:\n{peer.output}")
        time.sleep(0.02)
    return 0


def tunnel_server(pki: PKI, *args: Any) -> Any:
    from test_tunnel_cli import tunnel_cli

    return tunnel_cli("server", "--listen", "127.0.0.1:0", "--cert", pki.server_pem, "--key", pki.server_key, *args)


def test_the_v2_header_a_tunnel_sends(pki: PKI, tmp_path: Path) -> None:
    """What the target gets from a server tunnel, read by the independent parser: address, TLS facts, CN."""

    from tlskit import client_context
    from tlskit.tools.tunnel import TunnelSpec
    from tunnel_util import port_of, target, tls_exchange, tunnels

    async def main() -> tuple[bytes, tuple[bytes, str | None]]:
        async with target("reply") as t:
            spec = TunnelSpec(
                mode="server", listen="127.0.0.1:0", target=f"127.0.0.1:{t.port}", cert=pki.server_pem,
                key=pki.server_key, ca=[pki.root_pem], proxy_protocol="v2",
            )  # fmt: skip
            async with tunnels(spec) as group:
                ctx = client_context(ca=pki.root_pem, cert=pki.client_pem, key=pki.client_key)
                result = await tls_exchange(port_of(group), ctx, b"after the header")
            return t.first_bytes[0], result

    from tlskit.net.server import run

    first, (answer, error) = run(main())
    assert error is None and answer.startswith(b"got ")
    length = 16 + struct.unpack(">H", first[14:16])[0]
    seen = spec_parse_v2(first[:length])
    assert first[length:].startswith(b"after the header")
    assert seen["src"][0] == "127.0.0.1" and seen["dst"][0] == "127.0.0.1"
    assert seen["ssl"]["client"] == 0x07 and seen["ssl"]["verify"] == 0
    assert seen["ssl"]["subs"][0x21] == b"TLSv1.3" and seen["ssl"]["subs"][0x22] == b"client"
    assert seen["tlvs"][0x02] == b"localhost"
