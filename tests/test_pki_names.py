"""subjectAltName and subject DN parsing: every common kind, and clear errors for the rest."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from tlskit.errors import InputError
from tlskit.pki.names import common_name, format_san, parse_san, parse_sans, parse_subject


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com", x509.DNSName("example.com")),
        ("DNS:Example.COM.", x509.DNSName("example.com")),
        ("*.example.com", x509.DNSName("*.example.com")),
        ("bücher.example", x509.DNSName("xn--bcher-kva.example")),
        ("*.münchen.de", x509.DNSName("*.xn--mnchen-3ya.de")),
        ("127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
        ("::1", x509.IPAddress(ipaddress.ip_address("::1"))),
        ("[2001:db8::1]", x509.IPAddress(ipaddress.ip_address("2001:db8::1"))),
        ("IP:10.1.2.3", x509.IPAddress(ipaddress.ip_address("10.1.2.3"))),
        ("alice@example.com", x509.RFC822Name("alice@example.com")),
        ("email:bob@bücher.example", x509.RFC822Name("bob@xn--bcher-kva.example")),
        ("https://example.com/path?q=1", x509.UniformResourceIdentifier("https://example.com/path?q=1")),
        ("URI:spiffe://trust.example/ns/web", x509.UniformResourceIdentifier("spiffe://trust.example/ns/web")),
        ("localhost", x509.DNSName("localhost")),
    ],
)
def test_parse_san(text: str, expected: x509.GeneralName) -> None:
    assert parse_san(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("a..b", "label"),
        ("*", "wildcard"),
        ("*.com", "wildcard"),
        ("foo.*.example.com", "left-most"),
        ("f*o.example.com", "left-most"),
        ("-bad.example", "label"),
        ("under_score.example", "label"),
        ("IP:999.1.1.1", "IPv4 or IPv6"),
        ("IP:example.com", "IPv4 or IPv6"),
        ("email:no-at-sign", "email"),
        ("URI:not a uri", "URI"),
        ("a" * 64 + ".example", "label"),
        (".".join(["abcdefgh"] * 30), "253"),
    ],
)
def test_parse_san_rejects(text: str, why: str) -> None:
    with pytest.raises(InputError) as info:
        parse_san(text)
    assert why in str(info.value)
    assert info.value.fix  # every error says what to do


@given(st.ip_addresses())
def test_ip_addresses_round_trip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    name = parse_san(str(address))
    assert name == x509.IPAddress(address)
    assert format_san(name) == f"IP:{address}"


@given(st.from_regex(r"[a-z][a-z0-9]{0,20}(\.[a-z][a-z0-9-]{0,20}[a-z0-9]){1,4}", fullmatch=True))
def test_dns_names_round_trip(name: str) -> None:
    parsed = parse_san(name)
    assert parsed == x509.DNSName(name)
    assert parse_san(format_san(parsed)) == parsed


def test_parse_sans_drops_duplicates_keeping_order() -> None:
    names = parse_sans(["b.example", "a.example", "DNS:b.example", "::1", "0:0::1"])
    assert [format_san(n) for n in names] == ["DNS:b.example", "DNS:a.example", "IP:::1"]


def test_parse_subject_openssl_style_keeps_order() -> None:
    name = parse_subject("/C=DE/O=Acme\\/Labs/OU=Ops/CN=host.example")
    assert [a.oid for a in name] == [
        NameOID.COUNTRY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COMMON_NAME,
    ]
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Acme/Labs"
    assert common_name(name) == "host.example"


def test_parse_subject_rfc4514_round_trips() -> None:
    text = "CN=host.example,O=Acme\\, Inc.,C=DE"
    name = parse_subject(text)
    assert name.rfc4514_string() == text
    assert name == parse_subject("/C=DE/O=Acme, Inc./CN=host.example")
    assert parse_subject("emailAddress=a@b.example,CN=x").get_attributes_for_oid(NameOID.EMAIL_ADDRESS)


@pytest.mark.parametrize(
    ("text", "says"),
    [("/XX=1/CN=a", "unknown attribute"), ("/CN", "KEY=VALUE"), ("/C=Germany", "invalid subject"), ("Q=1", "unknown")],
)
def test_parse_subject_rejects(text: str, says: str) -> None:
    with pytest.raises(InputError) as info:
        parse_subject(text)
    assert says in str(info.value)


def test_empty_subject_is_allowed() -> None:
    assert parse_subject("") == x509.Name([])
    assert common_name(x509.Name([])) is None
