"""Fuzzing of everything that parses outside input (issue 12, item 5), driven by hypothesis.

Seeds come from tests/corpus/ (real handshakes recorded between openssl, gnutls-cli, Node, tlskit and
``openssl s_server``, and PKI files made by openssl, certtool and tlskit; ``tests/corpus/capture.py`` makes them
again), mutated (bit flips, insertions, deletions, truncation, splices) or replaced by random bytes.  The rule for
every target: no input raises anything but tlskit's own errors, and none hangs (each example runs under a
watchdog of :data:`EXAMPLE_SECONDS`; a hang fails it).

Budget: a few seconds per target in ``make test``; ``TLSKIT_FUZZ=long`` (``make fuzz``) runs each target with
many more examples.  Targets: the tap's record parser and its handshake decoders, PEM/DER certificate, CSR and CRL
loaders, private keys in every encoding, PKCS#12, CSR signing, the framers, and the tunnel's PROXY protocol parser
(:func:`test_proxy_protocol_parser`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tlskit.errors import FrameError, TlskitError
from tlskit.net.framing import DelimitedFramer, JsonCodec, LengthPrefixedFramer
from tlskit.pki.ca import CertificateAuthority
from tlskit.pki.certs import Profile
from tlskit.pki.files import detect_kind, parse_certificates, parse_crl, parse_csr
from tlskit.pki.keys import KeyType, generate_key, parse_private_key
from tlskit.pki.pkcs12 import import_pkcs12
from tlskit.tools import handshake
from tlskit.tools.handshake import DecodeError
from tlskit.tools.records import ConnectionParser, Direction
from tlskit.tools.tunnel import proxy

CORPUS = Path(__file__).with_name("corpus")
LONG = os.environ.get("TLSKIT_FUZZ", "") == "long"
EXAMPLES = 5000 if LONG else 300
EXAMPLE_SECONDS = 20.0

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # time is bounded by the watchdog instead: a shared machine makes deadlines flaky
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


class Hang(BaseException):
    """An example ran past its watchdog (a BaseException, so no ``except Exception`` in the code swallows it)."""


@contextlib.contextmanager
def watchdog(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"an example ran over {seconds:g} s")

    # ITIMER_REAL is one timer per process, shared with whoever set it before (pytest-timeout's signal method
    # does): take it over for this example, then give it back with the time it had left (less the time spent
    # here), so an outer alarm still goes off, and no later than it would have.
    previous = signal.signal(signal.SIGALRM, expired)
    outer_left, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left > 0:
            # An outer alarm whose time ran out while this one was set goes off at once (setitimer needs > 0).
            left = max(outer_left - (time.monotonic() - started), 1e-6)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


def only(allowed: tuple[type[BaseException], ...], call: Callable[[], Any]) -> Any:
    """Run ``call`` under the watchdog; an exception outside ``allowed`` fails the example."""
    with watchdog():
        try:
            return call()
        except allowed:
            return None


# --- seeds and mutations -----------------------------------------------------------------------------------------


def captures() -> dict[str, tuple[bytes, bytes]]:
    names = sorted({p.stem for p in (CORPUS / "tls").iterdir()})
    return {n: ((CORPUS / "tls" / f"{n}.c2s").read_bytes(), (CORPUS / "tls" / f"{n}.s2c").read_bytes()) for n in names}


def pki_files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((CORPUS / "pki").iterdir())}


def handshake_messages(stream: bytes) -> list[tuple[int, bytes]]:
    """The clear handshake messages at the start of a recorded direction: (type, body)."""
    buf, pos = bytearray(), 0
    while pos + 5 <= len(stream) and stream[pos] == 22:
        length = int.from_bytes(stream[pos + 3 : pos + 5], "big")
        buf += stream[pos + 5 : pos + 5 + length]
        pos += 5 + length
    messages = []
    while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[1:4], "big"):
        length = int.from_bytes(buf[1:4], "big")
        messages.append((buf[0], bytes(buf[4 : 4 + length])))
        del buf[: 4 + length]
    return messages


CAPTURES = list(captures().values())
# Every clear handshake message of every recorded stream, (type, body), parsed once.
MESSAGES = [m for c2s, s2c in CAPTURES for m in handshake_messages(c2s) + handshake_messages(s2c)]


def messages_of(kind: int) -> list[bytes]:
    return [body for t, body in MESSAGES if t == kind]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            cut = draw(st.integers(0, len(other)))
            data[at:] = other[cut:]
    return bytes(data)


def inputs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated(seeds), st.binary(max_size=2048))


def test_the_corpus_holds_real_handshakes() -> None:
    found = captures()
    assert {name.split("-")[0] for name in found} >= {"openssl", "gnutls", "node", "tlskit"}
    assert all(c2s[:1] == b"\x16" and s2c[:1] == b"\x16" for c2s, s2c in found.values())
    assert messages_of(1) and messages_of(2) and messages_of(11) and messages_of(12)  # TLS 1.2 shows certificates


# --- the tap's parser ---------------------------------------------------------------------------------------------


@FUZZ
@given(
    client=inputs([c for c, _ in CAPTURES]),
    server=inputs([s for _, s in CAPTURES]),
    cuts=st.lists(st.integers(1, 600), max_size=12),
)
def test_record_parser_never_raises(client: bytes, server: bytes, cuts: list[int]) -> None:
    """The tap's parser is total: any bytes, split anywhere, interleaved both ways, give events and no exception."""
    with watchdog():
        parser = ConnectionParser()
        streams = {Direction.CLIENT_TO_SERVER: client, Direction.SERVER_TO_CLIENT: server}
        positions = dict.fromkeys(streams, 0)
        for i, cut in enumerate([*cuts, 1 << 20, 1 << 20]):
            direction = list(streams)[i % 2]
            start = positions[direction]
            parser.feed(direction, streams[direction][start : start + cut])
            positions[direction] = start + cut
        for direction in streams:
            parser.end(direction)


@FUZZ
@given(data=inputs(messages_of(1)))
def test_client_hello_decoder(data: bytes) -> None:
    only((DecodeError,), lambda: handshake.parse_client_hello(Direction.CLIENT_TO_SERVER, data))


@FUZZ
@given(data=inputs(messages_of(2)), suite=st.none() | st.integers(0, 0xFFFF), tls13=st.booleans())
def test_server_flight_decoders(data: bytes, suite: int | None, tls13: bool) -> None:
    only((DecodeError,), lambda: handshake.parse_server_hello(Direction.SERVER_TO_CLIENT, data))
    only((DecodeError,), lambda: handshake.parse_server_key_exchange(Direction.SERVER_TO_CLIENT, data, suite=suite))
    only((DecodeError,), lambda: handshake.parse_certificate(Direction.SERVER_TO_CLIENT, data, tls13=tls13))


@FUZZ
@given(data=inputs(messages_of(11)), tls13=st.booleans())
def test_certificate_decoder(data: bytes, tls13: bool) -> None:
    only((DecodeError,), lambda: handshake.parse_certificate(Direction.SERVER_TO_CLIENT, data, tls13=tls13))


DERS = [(CORPUS / "pki" / "selfsigned.der").read_bytes()]


@FUZZ
@given(data=inputs(DERS))
def test_certificate_description_of_any_der(data: bytes) -> None:
    only((DecodeError,), lambda: handshake.describe_certificate(data))


# --- PKI loaders --------------------------------------------------------------------------------------------------


PKI_SEEDS = list(pki_files().values())


@FUZZ
@given(data=inputs(PKI_SEEDS))
def test_certificate_csr_and_crl_loaders(data: bytes) -> None:
    only((TlskitError,), lambda: detect_kind(data))
    only((TlskitError,), lambda: parse_certificates(data, source="fuzz"))
    only((TlskitError,), lambda: parse_csr(data, source="fuzz"))
    only((TlskitError,), lambda: parse_crl(data, source="fuzz"))


def _corpus_variant(name: str, old: bytes, new: bytes) -> bytes:
    data = (CORPUS / "pki" / name).read_bytes()
    assert old in data
    return data.replace(old, new, 1)


# Inputs the fuzzer found, kept as regression examples: a curve OID cryptography does not know, an empty passphrase
# for an encrypted key, a CSR of an undefined version, a CSR whose key algorithm OID is unknown.
UNKNOWN_CURVE = _corpus_variant("ec-sec1.der", b"\x2a\x86\x48\xce\x3d\x03\x01\x07", b"\x2a\x86\x48\xce\x3d\x03\x01\x17")
BAD_CSR_VERSION = _corpus_variant("request.csr.der", b"\x02\x01\x000", b"\x02\x01\x010")
UNKNOWN_KEY_OID = _corpus_variant("request.csr.der", b"\x06\x07\x2a\x86\x48", b"\x06\x07\x2b\x86\x48")


@FUZZ
@given(data=inputs(PKI_SEEDS), passphrase=st.sampled_from([None, b"corpus", b"", b"wrong"]))
@example(data=UNKNOWN_CURVE, passphrase=None)
@example(data=(CORPUS / "pki" / "ec-encrypted.pem").read_bytes(), passphrase=b"")
def test_private_key_loader(data: bytes, passphrase: bytes | None) -> None:
    only((TlskitError,), lambda: parse_private_key(data, passphrase=passphrase, source="fuzz"))


P12_SEEDS = [v for k, v in pki_files().items() if k.endswith(".p12")]


@FUZZ
@given(data=inputs(P12_SEEDS), passphrase=st.sampled_from([None, b"corpus", b"", b"wrong"]))
def test_pkcs12_loader(data: bytes, passphrase: bytes | None) -> None:
    only((TlskitError,), lambda: import_pkcs12(data, passphrase=passphrase, source="fuzz"))


# --- CSR signing --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer() -> CertificateAuthority:
    return CertificateAuthority.create_root(None, name="tlskit fuzz CA")


CSR_SEEDS = [v for k, v in pki_files().items() if k.startswith("request.csr")]
KEY = generate_key(KeyType.EC_P256)
TEXT = st.text(min_size=0, max_size=80)
NAMES = st.one_of(
    st.from_regex(r"(\*\.)?([a-z0-9-]{1,20}\.){0,3}[a-z]{2,6}", fullmatch=True),
    TEXT,
    st.sampled_from(["*", "*.com", "xn--", "-a.example", "a..b", "ünïcode.example", "127.0.0.1", "::1", ""]),
)


@st.composite
def built_csrs(draw: st.DrawFn) -> bytes:
    """CSRs that parse and carry a valid signature, with subjects and SANs of every odd kind."""
    attributes = []
    for oid in draw(st.lists(st.sampled_from([NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.EMAIL_ADDRESS]))):
        value = draw(TEXT)
        with contextlib.suppress(ValueError):
            x509.NameAttribute(oid, value)
            attributes.append(x509.NameAttribute(oid, value))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    sans: list[x509.GeneralName] = []
    for name in draw(st.lists(NAMES, max_size=4)):
        with contextlib.suppress(ValueError, TypeError):
            sans.append(x509.DNSName(name))
    for kind in draw(st.lists(st.sampled_from([x509.UniformResourceIdentifier, x509.RFC822Name]), max_size=2)):
        with contextlib.suppress(ValueError, TypeError):  # what cryptography refuses to build is no CSR
            sans.append(kind(draw(TEXT)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=draw(st.booleans()))
    if draw(st.booleans()):
        path = draw(st.none() | st.integers(0, 3))
        ca = draw(st.booleans())
        builder = builder.add_extension(x509.BasicConstraints(ca, path if ca else None), critical=True)
    from cryptography.hazmat.primitives.serialization import Encoding

    return builder.sign(KEY, hashes.SHA256()).public_bytes(Encoding.PEM)


@FUZZ
@given(
    data=st.one_of(built_csrs(), inputs(CSR_SEEDS)),
    profile=st.sampled_from(list(Profile)),
    allow_ca=st.booleans(),
)
@example(data=BAD_CSR_VERSION, profile=Profile.SERVER, allow_ca=False)
@example(data=UNKNOWN_KEY_OID, profile=Profile.SERVER, allow_ca=False)
def test_csr_signing(signer: CertificateAuthority, data: bytes, profile: Profile, allow_ca: bool) -> None:
    def sign() -> None:
        csr = parse_csr(data, source="fuzz")
        cert = signer.sign_csr(csr, profile=profile, allow_ca=allow_ca, days=30, source="fuzz")
        assert cert.issuer == signer.cert.subject

    only((TlskitError,), sign)


# --- framers -------------------------------------------------------------------------------------------------------


FRAMERS: dict[str, Callable[[], Any]] = {
    "length": lambda: LengthPrefixedFramer(max_size=4096),
    "lines": lambda: DelimitedFramer(b"\n", max_size=4096),
    "fffd": lambda: DelimitedFramer(b"\xef\xbf\xbd", max_size=4096),
    "json-lines": lambda: JsonCodec(DelimitedFramer(b"\n", max_size=4096)),
    "json-length": lambda: JsonCodec(LengthPrefixedFramer(max_size=4096)),
}
FRAME_SEEDS = [
    b'\x00\x00\x00\x05hello{"a":1}\n',
    b'{"seq":1}\xef\xbf\xbd{"seq":2}\xef\xbf\xbd',
    b"\x00\x00\x10\x00" + b"x" * 64,
]


@FUZZ
@given(kind=st.sampled_from(sorted(FRAMERS)), chunks=st.lists(inputs(FRAME_SEEDS), max_size=8), end=st.booleans())
def test_framers(kind: str, chunks: list[bytes], end: bool) -> None:
    framer = FRAMERS[kind]()
    inner = getattr(framer, "framer", framer)

    def feed() -> None:
        for chunk in chunks:
            framer.feed(chunk)
            assert inner.buffered <= inner.max_size + len(chunk) + 4  # memory bounded by the limit
        if end:
            framer.end_of_stream()

    only((FrameError,), feed)


# --- the PROXY protocol parser (comes with the tunnel) --------------------------------------------------------

PROXY_SEEDS = [
    b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
    b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
    b"PROXY UNKNOWN\r\n",
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\xc6\x33\x64\x02\xdc\x04\x01\xbb",
]


@FUZZ
@given(data=inputs(PROXY_SEEDS))
def test_proxy_protocol_parser(data: bytes) -> None:
    only((TlskitError,), lambda: proxy.parse(data))
