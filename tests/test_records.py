"""The sans-IO TLS record/handshake parser against real handshakes (Python ssl, openssl s_client).

Transcripts are captured in memory from real OpenSSL handshakes (``ssl.MemoryBIO``), so the bytes are
exactly what would cross a network; ClientHellos are also captured from ``openssl s_client`` over a real
socket.  Property tests check that any split of a valid stream yields the same events, that re-fragmenting
handshake messages over records changes nothing but the record events, and that arbitrary or mutated input
never raises.
"""

from __future__ import annotations

import random
import socket
import ssl
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PKI
from peers import OPENSSL, requires
from tlskit.tools._iana import cipher_suite_name, group_name, version_name
from tlskit.tools.records import (
    MAX_RECORD_LENGTH,
    Alert,
    Certificates,
    ChangeCipherSpec,
    ClientHello,
    ConnectionParser,
    ContentType,
    Direction,
    EndOfStream,
    Event,
    HandshakeMessage,
    Malformed,
    Plaintext,
    Record,
    ServerHello,
    ServerKeyExchange,
    StreamDetected,
    StreamKind,
    StreamParser,
    describe_certificate,
)

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
Transcript = list[tuple[Direction, bytes]]
SECRET = b"password=hunter2-transcript"


# -- capturing real handshakes ---------------------------------------------------------------------


def transcript(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, *, sni: str = "localhost") -> Transcript:
    """Run a full handshake, one request/response and a close_notify in memory; return the flights."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=sni)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    flights: Transcript = []

    def move() -> None:
        for src, dst, direction in ((c_out, s_in, C2S), (s_out, c_in, S2C)):
            if data := src.read():
                flights.append((direction, data))
                dst.write(data)

    done = {id(client): False, id(server): False}
    for _ in range(20):
        for side in (client, server):
            if not done[id(side)]:
                try:
                    side.do_handshake()
                    done[id(side)] = True
                except ssl.SSLWantReadError:
                    pass
            move()
        if all(done.values()):
            break
    assert all(done.values()), "in-memory handshake did not complete"
    client.write(SECRET)
    move()
    assert server.read(1024) == SECRET
    server.write(b"reply:" + SECRET)
    move()
    assert client.read(1024) == b"reply:" + SECRET
    with pytest.raises(ssl.SSLWantReadError):
        client.unwrap()  # sends close_notify, waits for the server's
    move()
    return flights


def contexts(
    pki: PKI, *, version: ssl.TLSVersion, mutual: bool = False, server_groups: str | None = None
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.server_pem, pki.server_key)
    server.maximum_version = version
    server.set_alpn_protocols(["h2", "http/1.1"])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(pki.root_pem)
    client.set_alpn_protocols(["h2", "http/1.1"])
    if mutual:
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(pki.root_pem)
        client.load_cert_chain(pki.client_pem, pki.client_key)
    if server_groups:
        server.set_ecdh_curve(server_groups)  # forces a HelloRetryRequest when the client guessed x25519
    return server, client


@pytest.fixture(scope="module")
def transcripts(pki: PKI) -> dict[str, Transcript]:
    tls13, tls12 = ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2
    return {
        "tls13": transcript(*contexts(pki, version=tls13)),
        "tls12": transcript(*contexts(pki, version=tls12)),
        "tls12-mutual": transcript(*contexts(pki, version=tls12, mutual=True)),
        "tls13-hrr": transcript(*contexts(pki, version=tls13, server_groups="secp384r1")),
    }


def parse(flights: Iterable[tuple[Direction, bytes]], *, end: bool = True) -> list[Event]:
    parser = ConnectionParser()
    events: list[Event] = []
    for direction, data in flights:
        events += parser.feed(direction, data)
    if end:
        events += parser.end(C2S) + parser.end(S2C)
    return events


def of(events: Sequence[Event], kind: type[Event], direction: Direction | None = None) -> list[Event]:
    return [e for e in events if isinstance(e, kind) and (direction is None or e.direction is direction)]


def client_hello_bytes(flights: Transcript) -> bytes:
    """The first client flight: a single handshake record holding the ClientHello."""
    return next(data for direction, data in flights if direction is C2S)


# -- decoding real handshakes ------------------------------------------------------------------------------


def test_tls13_handshake_decodes_what_is_clear_and_nothing_else(transcripts: dict[str, Transcript]) -> None:
    events = parse(transcripts["tls13"])
    assert [e.kind for e in of(events, StreamDetected)] == [StreamKind.TLS, StreamKind.TLS]  # type: ignore[attr-defined]
    (ch,) = of(events, ClientHello)
    assert isinstance(ch, ClientHello)
    assert ch.server_name == "localhost"
    assert ch.alpn == ("h2", "http/1.1")
    assert [version_name(v) for v in ch.supported_versions] == ["TLS 1.3", "TLS 1.2"]
    assert ch.session_id_length == 32  # middlebox compatibility mode
    assert "TLS_AES_256_GCM_SHA384" in [cipher_suite_name(s) for s in ch.cipher_suites]
    assert [group_name(g) for g in ch.key_share_groups] == ["x25519"]
    (sh,) = of(events, ServerHello)
    assert isinstance(sh, ServerHello)
    assert version_name(sh.version) == "TLS 1.3" and version_name(sh.legacy_version) == "TLS 1.2"
    assert cipher_suite_name(sh.cipher_suite).startswith("TLS_AES_")
    assert sh.alpn is None  # under TLS 1.3 the chosen ALPN travels in EncryptedExtensions
    assert not of(events, Certificates)  # the certificate is encrypted
    server_records = [e for e in of(events, Record, S2C) if isinstance(e, Record)]
    after_hello = [r for r in server_records if r.content_type is not ContentType.CHANGE_CIPHER_SPEC][1:]
    assert after_hello and all(r.encrypted and r.content_type is ContentType.APPLICATION_DATA for r in after_hello)
    assert [e.incomplete for e in of(events, EndOfStream)] == [0, 0]  # type: ignore[attr-defined]
    assert not of(events, Malformed)


def test_tls12_handshake_shows_certificate_chain_and_group(transcripts: dict[str, Transcript], pki: PKI) -> None:
    events = parse(transcripts["tls12"])
    (sh,) = of(events, ServerHello)
    assert isinstance(sh, ServerHello)
    assert version_name(sh.version) == "TLS 1.2" and sh.alpn == "h2"
    (certs,) = of(events, Certificates, S2C)
    assert isinstance(certs, Certificates)
    assert [c.subject for c in certs.certificates] == ["CN=localhost", "CN=tlskit Test Intermediate CA"]
    assert certs.certificates[0].issuer == "CN=tlskit Test Intermediate CA"
    assert certs.certificates[0].dns_names == ("localhost",)
    (ske,) = of(events, ServerKeyExchange)
    assert isinstance(ske, ServerKeyExchange) and ske.group is not None and group_name(ske.group) == "x25519"
    names = [e.msg_type for e in of(events, HandshakeMessage)]  # type: ignore[attr-defined]
    assert 14 in names and 16 in names  # ServerHelloDone, ClientKeyExchange
    # After each ChangeCipherSpec the Finished handshake record is encrypted, and so is everything after it.
    for direction in Direction:
        records = [e for e in events if e.direction is direction and isinstance(e, Record | ChangeCipherSpec)]
        ccs = next(i for i, e in enumerate(records) if isinstance(e, ChangeCipherSpec))
        after = [r for r in records[ccs + 1 :] if isinstance(r, Record)]
        assert after and all(r.encrypted for r in after)
        assert after[0].content_type is ContentType.HANDSHAKE
    alerts = [e for e in of(events, Alert) if isinstance(e, Alert)]
    assert alerts and all(a.encrypted for a in alerts)  # close_notify after the handshake is encrypted


def test_tls12_client_certificate_travels_in_clear(transcripts: dict[str, Transcript]) -> None:
    events = parse(transcripts["tls12-mutual"])
    (client_certs,) = of(events, Certificates, C2S)
    assert isinstance(client_certs, Certificates)
    assert client_certs.certificates[0].subject == "CN=client"
    assert 13 in [e.msg_type for e in of(events, HandshakeMessage, S2C)]  # type: ignore[attr-defined]


def test_hello_retry_request_then_second_client_hello_in_clear(transcripts: dict[str, Transcript]) -> None:
    events = parse(transcripts["tls13-hrr"])
    hellos = [e for e in of(events, ServerHello) if isinstance(e, ServerHello)]
    assert [h.hello_retry_request for h in hellos] == [True, False]
    assert hellos[0].key_share_group is not None and group_name(hellos[0].key_share_group) == "secp384r1"
    client_hellos = [e for e in of(events, ClientHello) if isinstance(e, ClientHello)]
    assert [[group_name(g) for g in ch.key_share_groups] for ch in client_hellos] == [["x25519"], ["secp384r1"]]
    assert not of(events, Malformed)


@requires("openssl")
def test_tls12_finite_field_dhe_reports_the_prime_size(pki: PKI, tmp_path: Path) -> None:
    assert OPENSSL is not None
    params = tmp_path / "ffdhe2048.pem"
    subprocess.run(
        [OPENSSL, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048", "-out", str(params)],
        check=True,
        capture_output=True,
    )
    server, client = contexts(pki, version=ssl.TLSVersion.TLSv1_2)
    server.load_cert_chain(pki.rsa_server_pem, pki.rsa_server_key)
    server.load_dh_params(str(params))
    server.set_ciphers("DHE-RSA-AES128-GCM-SHA256")
    events = parse(transcript(server, client))
    (sh,) = of(events, ServerHello)
    assert isinstance(sh, ServerHello) and cipher_suite_name(sh.cipher_suite) == "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"
    (ske,) = of(events, ServerKeyExchange)
    assert ske == ServerKeyExchange(S2C, length=ske.length, group=None, dh_bits=2048)  # type: ignore[attr-defined]


def test_plaintext_stream_is_detected_and_passed_through() -> None:
    request = b"POST /login HTTP/1.1\r\n\r\nusername=alice&password=hunter2"
    events = parse([(C2S, request[:5]), (C2S, request[5:])])
    assert of(events, StreamDetected) == [StreamDetected(C2S, StreamKind.PLAINTEXT)]
    assert b"".join(e.data for e in of(events, Plaintext)) == request  # type: ignore[attr-defined]


def test_lone_byte_that_could_start_a_record_is_plaintext_at_eof() -> None:
    events = parse([(C2S, b"\x16")])
    assert of(events, StreamDetected) == [StreamDetected(C2S, StreamKind.PLAINTEXT)]
    assert of(events, Plaintext) == [Plaintext(C2S, b"\x16")]


def test_truncated_stream_reports_incomplete_bytes(transcripts: dict[str, Transcript]) -> None:
    hello = client_hello_bytes(transcripts["tls13"])
    events = parse([(C2S, hello[:-10])])
    assert of(events, EndOfStream, C2S) == [EndOfStream(C2S, len(hello) - 10)]
    assert not of(events, ClientHello)


# -- malformed input -------------------------------------------------------------------------------------


def _record(content_type: int, body: bytes, version: bytes = b"\x03\x03") -> bytes:
    return bytes([content_type]) + version + len(body).to_bytes(2, "big") + body


def _handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


MALFORMED = {
    "record version 4.1": (_record(22, _handshake(14, b"")) + _record(23, b"x", version=b"\x04\x01"), "version 4.1"),
    "oversized record": (b"\x16\x03\x03" + (MAX_RECORD_LENGTH + 1).to_bytes(2, "big"), "exceeds the TLS maximum"),
    "unknown type later": (_record(22, _handshake(14, b"")) + _record(99, b"x"), "unknown record type 99"),
    "truncated ClientHello": (_record(22, _handshake(1, b"\x03\x03" + b"\x00" * 10)), "ClientHello is truncated"),
    "trailing bytes": (
        _record(
            22, _handshake(1, b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + b"\x00\x00!")
        ),
        "unexpected trailing bytes",
    ),
    "huge handshake message": (_record(22, b"\x0b\xff\xff\xff"), "exceeds"),
    "odd cipher suite list": (_record(22, _handshake(1, b"\x03\x03" + bytes(32) + b"\x00\x00\x03abc\x01\x00")), "odd"),
    "interrupted handshake": (_record(22, b"\x01\x00\x01\x00") + _record(20, b"\x01"), "interrupted"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_input_stops_the_direction_with_one_event(name: str) -> None:
    data, reason = MALFORMED[name]
    parser = StreamParser(C2S)
    events = parser.feed(data)
    malformed = [e for e in events if isinstance(e, Malformed)]
    assert len(malformed) == 1 and reason in malformed[0].reason
    assert isinstance(events[-1], Malformed)
    assert parser.stopped
    assert parser.feed(client_hello_like()) == [] and parser.end() == []


def client_hello_like() -> bytes:
    return _record(22, _handshake(1, b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"))


def test_minimal_client_hello_without_extensions_decodes() -> None:
    (ch,) = [e for e in StreamParser(C2S).feed(client_hello_like()) if isinstance(e, ClientHello)]
    assert ch.cipher_suites == (0x1301,) and ch.extensions == () and ch.server_name is None


def test_certificate_garbage_is_described_not_raised() -> None:
    body = _handshake(11, (7).to_bytes(3, "big") + (4).to_bytes(3, "big") + b"junk")
    events = StreamParser(S2C).feed(_record(22, body))
    (certs,) = [e for e in events if isinstance(e, Certificates)]
    assert certs.certificates[0].error is not None and "X.509" in certs.certificates[0].error


# -- properties ----------------------------------------------------------------------------------------------


def split(flights: Transcript, cuts: list[int]) -> Transcript:
    """Cut each flight at the given (wrapped) offsets: the same bytes in other reads."""
    out: Transcript = []
    it = iter(cuts)
    for direction, data in flights:
        pos = 0
        while pos < len(data):
            step = next(it, len(data))
            out.append((direction, data[pos : pos + step]))
            pos += step
    return out


def normalize(events: list[Event]) -> list[Event]:
    """Merge adjacent Plaintext events: how plaintext is chunked depends on the reads, by design."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, Plaintext) and out and isinstance(out[-1], Plaintext) and out[-1].direction is e.direction:
            out[-1] = Plaintext(e.direction, out[-1].data + e.data)
        else:
            out.append(e)
    return out


NAMES = ["tls13", "tls12", "tls12-mutual", "tls13-hrr"]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(name=st.sampled_from(NAMES), cuts=st.lists(st.integers(1, 700), max_size=80))
def test_any_split_of_a_valid_stream_yields_the_same_events(
    transcripts: dict[str, Transcript], name: str, cuts: list[int]
) -> None:
    flights = transcripts[name]
    assert normalize(parse(split(flights, cuts))) == normalize(parse(flights))


@PROPERTY
@given(name=st.sampled_from(NAMES), sizes=st.lists(st.integers(1, 300), min_size=1, max_size=40))
def test_refragmenting_handshake_messages_over_records_changes_only_record_events(
    transcripts: dict[str, Transcript], name: str, sizes: list[int]
) -> None:
    """Coalesced or split handshake messages: same messages, whatever the record boundaries."""
    flights = transcripts[name]
    first_client = client_hello_bytes(flights)
    body = first_client[5:]  # one record holding the whole ClientHello
    pieces, pos, i = [], 0, 0
    while pos < len(body):
        n = sizes[i % len(sizes)]
        pieces.append(_record(22, body[pos : pos + n], version=first_client[1:3]))
        pos, i = pos + n, i + 1
    refragmented = b"".join(pieces)
    original = [e for e in parse([(C2S, first_client)]) if not isinstance(e, Record)]
    assert [e for e in parse([(C2S, refragmented)]) if not isinstance(e, Record)] == original


def test_server_flight_coalesced_into_one_record(transcripts: dict[str, Transcript]) -> None:
    """All of a TLS 1.2 server's clear handshake messages packed into a single record decode the same."""
    flights = transcripts["tls12"]
    server_first = next(data for direction, data in flights if direction is S2C)
    records, pos = [], 0
    while pos < len(server_first):
        length = int.from_bytes(server_first[pos + 3 : pos + 5], "big")
        records.append(server_first[pos : pos + 5 + length])
        pos += 5 + length
    handshake = b"".join(r[5:] for r in records if r[0] == 22)
    packed = [(C2S, client_hello_bytes(flights)), (S2C, _record(22, handshake))]
    expected = [(C2S, client_hello_bytes(flights)), (S2C, server_first)]
    assert [e for e in parse(packed) if not isinstance(e, Record)] == [
        e for e in parse(expected) if not isinstance(e, Record)
    ]


def check_total(events: list[Event]) -> None:
    """Invariants for any input: at most one Malformed per direction, and nothing after it."""
    for direction in Direction:
        mine = [e for e in events if e.direction is direction]
        bad = [i for i, e in enumerate(mine) if isinstance(e, Malformed)]
        assert len(bad) <= 1
        if bad:
            assert bad[0] == len(mine) - 1


@settings(max_examples=1000, deadline=None)
@given(
    first=st.sampled_from([b"", b"\x16\x03\x01", b"\x16\x03\x03", b"\x17\x03\x03", b"\x15\x03\x03\x00\x02"]),
    data=st.binary(max_size=600),
    cuts=st.lists(st.integers(1, 64), max_size=20),
)
def test_arbitrary_bytes_never_raise(first: bytes, data: bytes, cuts: list[int]) -> None:
    stream = first + data
    events = parse(split([(C2S, stream), (S2C, data)], cuts))
    check_total(events)


HANDSHAKE_TYPES = [0, 1, 2, 4, 11, 12, 13, 14, 16, 20, 255]


@settings(max_examples=1000, deadline=None)
@given(
    server_first=st.booleans(),
    records=st.lists(
        st.tuples(st.sampled_from([20, 21, 22, 23, 24]), st.sampled_from(HANDSHAKE_TYPES), st.binary(max_size=200)),
        max_size=8,
    ),
)
def test_well_framed_records_with_garbage_bodies_never_raise(
    server_first: bool, records: list[tuple[int, int, bytes]]
) -> None:
    """Valid record headers around garbage messages drive every message decoder, not just the framing."""
    stream = b"".join(
        _record(ct, _handshake(mt, body) if ct == 22 else body[:2] if ct == 21 else body) for ct, mt, body in records
    )
    direction = S2C if server_first else C2S
    events = parse([(direction, stream)])
    check_total(events)


# -- fuzzing with real ClientHellos ---------------------------------------------------------------------------


def openssl_client_hello(*args: str) -> bytes:
    """The first bytes ``openssl s_client`` sends, captured by a real listening socket on 127.0.0.1."""
    assert OPENSSL is not None
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]
        argv = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *args]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                data = b""
                while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
                    chunk = conn.recv(65536)
                    assert chunk, "s_client closed before sending its ClientHello"
                    data += chunk
        finally:
            proc.kill()
            proc.wait(10)
    return data


@pytest.fixture(scope="module")
def real_client_hellos(transcripts: dict[str, Transcript]) -> dict[str, bytes]:
    hellos = {name: client_hello_bytes(flights) for name, flights in transcripts.items()}
    hellos["openssl-h2"] = openssl_client_hello("-servername", "example.test", "-alpn", "h2,http/1.1")
    hellos["openssl-tls12"] = openssl_client_hello("-tls1_2", "-servername", "legacy.example", "-cipher", "ALL")
    return hellos


@requires("openssl")
def test_openssl_client_hellos_decode(real_client_hellos: dict[str, bytes]) -> None:
    (ch,) = of(parse([(C2S, real_client_hellos["openssl-h2"])]), ClientHello)
    assert isinstance(ch, ClientHello) and ch.server_name == "example.test" and ch.alpn == ("h2", "http/1.1")
    assert "TLS 1.3" in [version_name(v) for v in ch.supported_versions]
    (legacy,) = of(parse([(C2S, real_client_hellos["openssl-tls12"])]), ClientHello)
    assert (
        isinstance(legacy, ClientHello) and legacy.supported_versions == () and legacy.server_name == "legacy.example"
    )


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf)) if buf else 0
        if op == 0 and buf:
            buf[pos] ^= 1 << rng.randrange(8)  # bit flip (lengths, types, versions alike)
        elif op == 1 and buf:
            buf[pos] = rng.choice([0, 1, 0x7F, 0x80, 0xFF])  # boundary byte
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 16)]  # cut
        else:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))  # insert
    return bytes(buf)


@requires("openssl")
def test_mutated_real_client_hellos_never_raise(real_client_hellos: dict[str, bytes]) -> None:
    rng = random.Random(4)  # fixed seed: reproducible, yet 4000 distinct mutants
    outcomes = {"decoded": 0, "malformed": 0, "other": 0}
    for i in range(4000):
        original = list(real_client_hellos.values())[i % len(real_client_hellos)]
        mutant = mutate(original, rng)
        cut = rng.randint(1, max(1, len(mutant)))
        events = parse([(C2S, mutant[:cut]), (C2S, mutant[cut:])])
        check_total(events)
        if of(events, ClientHello):
            outcomes["decoded"] += 1
        elif of(events, Malformed):
            outcomes["malformed"] += 1
        else:
            outcomes["other"] += 1
    # Both paths are exercised: many mutants still decode (a flipped bit in a random), many are rejected.
    assert outcomes["decoded"] > 200 and outcomes["malformed"] > 200, outcomes


def test_mutated_certificates_are_described_never_raised(pki: PKI) -> None:
    der = pki.server_cert.public_bytes(serialization.Encoding.DER)
    rng = random.Random(7)
    errors = 0
    for _ in range(1500):
        info = describe_certificate(mutate(der, rng))
        errors += info.error is not None
        assert info.error is not None or info.subject  # either described or explained
    assert errors > 100
