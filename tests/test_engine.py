"""The sans-IO engine alone: two :class:`TLSEngine` objects talking through memory, no sockets.

The engine follows the TLS record headers in the ciphertext it is fed (``_scan``) so that, once open, it never asks
OpenSSL for a record that has not fully arrived.  These tests cut the ciphertext at random places, headers split in
two included, and check the bookkeeping against a plain walk over everything fed so far, and that no plaintext is
lost, held back or reordered.
"""

from __future__ import annotations

import random
import ssl

import pytest

from conftest import PKI
from tlskit.net.context import client_context, server_context
from tlskit.net.engine import TLSEngine

TLS1_2, TLS1_3 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


def incomplete_tail(stream: bytes) -> int:
    """How many bytes at the end of ``stream`` belong to a record not fully there (the reference walk)."""
    i = 0
    while i + 5 <= len(stream):
        end = i + 5 + int.from_bytes(stream[i + 3 : i + 5], "big")
        if end > len(stream):
            break
        i = end
    return len(stream) - i


def feed_in_pieces(engine: TLSEngine, data: bytes, rng: random.Random, fed: bytearray) -> bytes:
    """Feed ``data`` cut at random places (1 byte to a few records); check the scan after each piece."""
    got = bytearray()
    i = 0
    while i < len(data):
        step = rng.choice((1, 2, 3, 4, 5, 6, 7, rng.randint(8, 600), rng.randint(600, 70_000)))
        piece = data[i : i + step]
        i += len(piece)
        fed += piece
        for chunk in engine.receive(piece):
            got += chunk
        assert engine._partial == incomplete_tail(bytes(fed))  # the state under test
    return bytes(got)


@pytest.mark.parametrize("version", [TLS1_2, TLS1_3])
@pytest.mark.parametrize("seed", range(4))
def test_plaintext_survives_any_cut_of_the_ciphertext(pki: PKI, version: ssl.TLSVersion, seed: int) -> None:
    rng = random.Random(seed)
    fed_server, fed_client = bytearray(), bytearray()  # the walk starts at the first byte, the handshake's
    client, server = _recorded_pair(pki, version, fed_server, fed_client)
    messages = [rng.randbytes(rng.choice((1, 17, 1000, 16_384, 16_385, 100_000))) for _ in range(12)]
    wire = bytearray()
    for message in messages:
        wire += b"".join(client.encrypt_pieces(message))
    wire += b"".join(client.encrypt_chunks([b"a", b"b" * 20_000, b"c"]))
    sent = b"".join(messages) + b"a" + b"b" * 20_000 + b"c"
    received = feed_in_pieces(server, bytes(wire), rng, fed_server)
    assert received == sent
    assert server._partial == 0  # every record complete: nothing may be waiting

    # The other way, and the close: the server's answer (TLS 1.3 tickets came before it) and its close_notify.
    for message in messages[:4]:
        server.encrypt(message)
    server.close_notify()
    back = feed_in_pieces(client, server.data_to_send(), rng, fed_client)
    assert back == b"".join(messages[:4])
    assert client.eof


def _recorded_pair(
    pki: PKI, version: ssl.TLSVersion, fed_server: bytearray, fed_client: bytearray
) -> tuple[TLSEngine, TLSEngine]:
    """A handshake in memory that records every byte each side was fed."""
    server = server_context(cert=pki.server_pem, key=pki.server_key, min_version=version, max_version=version)
    client = client_context(ca=pki.root_pem, min_version=version, max_version=version)
    c = TLSEngine(client, server_side=False, server_hostname="localhost")
    s = TLSEngine(server, server_side=True)
    c.start()
    for _ in range(10):
        to_server = c.data_to_send()
        fed_server += to_server
        s.receive(to_server)
        to_client = s.data_to_send()
        fed_client += to_client
        c.receive(to_client)
        if c.handshake_complete and s.handshake_complete:
            return c, s
    raise AssertionError("the in-memory handshake did not finish")


def test_a_record_announced_but_not_sent_is_waited_for(pki: PKI) -> None:
    fed_server, fed_client = bytearray(), bytearray()
    client, server = _recorded_pair(pki, TLS1_3, fed_server, fed_client)
    record = b"".join(client.encrypt_pieces(b"hello"))
    assert server.receive(record[:-1]) == []  # all but the last byte: nothing to decrypt, and no error
    assert server._partial == len(record) - 1
    assert server.receive(record[-1:]) == [b"hello"]
    assert server._partial == 0


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not a TLS record at all
        b"\x17\x03\x03\xff\xff" + b"x" * 100,  # application data announcing more than any record may hold
    ],
)
def test_bytes_that_are_no_tls_record_fail_at_once(pki: PKI, garbage: bytes) -> None:
    """The record tracking never makes the engine wait for the rest of something that is not a record."""
    fed_server, fed_client = bytearray(), bytearray()
    _, server = _recorded_pair(pki, TLS1_3, fed_server, fed_client)
    with pytest.raises(ssl.SSLError):  # not [] while waiting for thousands of bytes that will never come
        server.receive(garbage)


@pytest.mark.parametrize("version", [TLS1_2, TLS1_3])
@pytest.mark.parametrize("seed", range(3))
def test_the_handshake_itself_cut_anywhere(pki: PKI, version: ssl.TLSVersion, seed: int) -> None:
    """Every flight, the handshake's included, cut at random places: the engines finish it and the data arrives.

    (Only liveness and the plaintext are checked here: OpenSSL consumes a partial handshake record itself, so the
    record tracking has nothing to compare against until the connection is open.)"""
    rng = random.Random(seed)
    server_ctx = server_context(cert=pki.server_pem, key=pki.server_key, min_version=version, max_version=version)
    client_ctx = client_context(ca=pki.root_pem, min_version=version, max_version=version)
    client = TLSEngine(client_ctx, server_side=False, server_hostname="localhost")
    server = TLSEngine(server_ctx, server_side=True)
    client.start()
    got_server, got_client = bytearray(), bytearray()

    def cut(engine: TLSEngine, data: bytes, into: bytearray) -> None:
        i = 0
        while i < len(data):
            step = rng.choice((1, 3, 5, 6, rng.randint(7, 400), rng.randint(400, 5000)))
            for chunk in engine.receive(data[i : i + step]):
                into += chunk
            i += step

    for _ in range(10):
        cut(server, client.data_to_send(), got_server)
        cut(client, server.data_to_send(), got_client)
        if client.handshake_complete and server.handshake_complete:
            break
    assert client.handshake_complete and server.handshake_complete
    # Finished and the first application data in the same flight, cut anywhere.
    client.encrypt(b"first" * 5000)
    cut(server, client.data_to_send(), got_server)
    server.encrypt(b"back" * 5000)
    cut(client, server.data_to_send(), got_client)
    assert bytes(got_server) == b"first" * 5000 and bytes(got_client) == b"back" * 5000
