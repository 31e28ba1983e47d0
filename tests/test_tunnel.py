"""The tunnel as a library (issue 8), in process, on loopback: who reaches the target, and how bytes get there.

Negative tests first: a peer the policy refuses never reaches the target (the target counts zero connections,
or zero bytes in client mode, where the TLS server is the target), in every mode the policy can meet.  Then the
relay: byte-exact both ways, half-close both ways, a dead target, bounded buffers with a slow target, reload
under load without a failed connection, drain, Unix sockets, and the ``TLSConnection.attach`` hook it rests on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from conftest import PKI
from tlskit import (
    ClientAuth,
    InputError,
    TLSConnection,
    client_context,
    connect,
    server_context,
    spki_pin,
    start_server,
)
from tlskit.pki.certs import Profile
from tlskit.tools.tunnel import TunnelSpec
from tunnel_util import plain_exchange, port_of, reload_under_load, run, target, tls_exchange, tunnels


@pytest.fixture(scope="module")
def people(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Client certificates: the allowed one (CN client), bob (same CA, not listed), a SPIFFE workload, and a
    client named by an IP address SAN."""
    d = tmp_path_factory.mktemp("people")
    return {
        "allowed": (pki.client_pem, pki.client_key),
        "bob": pki.ca.issue(["bob"], profile=Profile.CLIENT).write(d / "bob"),
        "spiffe": pki.ca.issue(["api", "spiffe://example.org/ns/prod/sa/api"], profile=Profile.CLIENT).write(
            d / "spiffe"
        ),
        "ip": pki.ca.issue(["ip-client", "192.0.2.7"], profile=Profile.CLIENT).write(d / "ip"),
    }


def server_spec(pki: PKI, port: int, **kw: Any) -> TunnelSpec:
    return TunnelSpec(
        mode="server", listen="127.0.0.1:0", target=f"127.0.0.1:{port}", cert=pki.server_pem, key=pki.server_key, **kw
    )


def client_ctx(pki: PKI, who: tuple[Path, Path] | None) -> ssl.SSLContext:
    if who is None:
        return client_context(ca=pki.root_pem)
    return client_context(ca=pki.root_pem, cert=who[0], key=who[1])


# --- negative: a refused peer never reaches the target ------------------------------------------------------

POLICIES = {
    "allow-cn": {"allow_cn": ["client"]},
    "allow-dns": {"allow_dns": ["client"]},
    "allow-uri": {"allow_uri": ["spiffe://example.org/ns/prod/sa/api"]},
    "allow-ip": {"allow_ip": ["192.0.2.7"]},
}
ALLOWED = {"allow-uri": "spiffe", "allow-ip": "ip"}  # whom each kind lets in (default: "allowed", CN client)


KINDS = ("allow-cn", "allow-dns", "allow-uri", "allow-ip", "pin")
MATRIX = [
    *((auth, kind, 1) for auth in ("required", "optional") for kind in KINDS),
    # With two workers (forked processes), one allow-list and the pin per mode: the check is the same code.
    *((auth, kind, 2) for auth in ("required", "optional") for kind in ("allow-cn", "pin")),
]


@pytest.mark.parametrize(("auth", "kind", "workers"), MATRIX)
def test_refused_clients_never_reach_the_target(
    pki: PKI, people: dict[str, tuple[Path, Path]], auth: str, kind: str, workers: int
) -> None:
    allowed = people[ALLOWED.get(kind, "allowed")]
    policy = POLICIES.get(kind) or {"pins": [spki_pin(_leaf(allowed[0]))]}

    async def main() -> None:
        async with target("echo") as t:
            spec = server_spec(pki, t.port, ca=[pki.root_pem], client_auth=auth, workers=workers, **policy)
            async with tunnels(spec) as group:
                port = port_of(group)
                refused = {}
                for name, who in (("no certificate", None), ("bob", people["bob"]),
                                  ("other CA", (pki.other_client_pem, pki.other_client_key))):  # fmt: skip
                    refused[name] = await tls_exchange(port, client_ctx(pki, who), b"secret from " + name.encode())
                assert t.connections == 0, refused  # nobody refused ever reached the target
                assert t.received == 0
                for name, (got, _) in refused.items():
                    assert got == b"", name  # and got no byte from it
                got, error = await tls_exchange(port, client_ctx(pki, allowed), b"hello")
                assert (got, error) == (b"hello", None)
                assert t.connections == 1

    run(main())


def _leaf(path: Path) -> Any:
    from tlskit.pki.files import load_certificates

    return load_certificates(path)[0]


def test_refusals_are_logged_with_who_and_why(
    pki: PKI, people: dict[str, tuple[Path, Path]], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with target("echo") as t:
            spec = server_spec(pki, t.port, ca=[pki.root_pem], allow_cn=["client"], name="api")
            async with tunnels(spec) as group:
                with caplog.at_level(logging.INFO, logger="tlskit.tunnel"):
                    await tls_exchange(port_of(group), client_ctx(pki, people["bob"]))
                    await asyncio.sleep(0.05)
        lines = [r for r in caplog.records if r.name == "tlskit.tunnel" and "refused" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in caplog.records]
        text = lines[0].getMessage()
        assert text.startswith("[api] 127.0.0.1:") and "refused: peer_not_allowed" in text and "CN:bob" in text
        assert lines[0].tunnel_event["code"] == "peer_not_allowed"  # type: ignore[attr-defined]

    run(main())


def test_allow_list_without_client_certificates_is_refused_early(pki: PKI) -> None:
    with pytest.raises(InputError, match=r"ca=.*client_auth=optional"):
        server_spec(pki, 1, allow_cn=["client"])
    with pytest.raises(InputError, match="ca="):
        server_spec(pki, 1, client_auth="required")
    with pytest.raises(InputError, match="invalid pin"):
        server_spec(pki, 1, ca=[pki.root_pem], pins=["sha256:nope"])


def test_pins_with_ca_and_client_auth_none_are_told_to_ask_for_certificates(pki: PKI) -> None:
    """ca= is given: the fix is client_auth=, not "give ca=" again."""
    with pytest.raises(InputError) as info:
        server_spec(pki, 1, ca=[pki.root_pem], client_auth="none", pins=[spki_pin(pki.client_cert)])
    assert "ca=" not in info.value.fix, info.value.fix
    assert "client_auth=optional" in info.value.fix and "client_auth=required" in info.value.fix


@pytest.mark.parametrize("policy", ["pin", "allow-dns"])
def test_client_tunnel_refuses_the_wrong_server_before_any_byte(pki: PKI, policy: str) -> None:
    """Client mode: the plain client's bytes never reach a server the policy refuses; it gets a close."""
    received: list[bytes] = []

    async def handler(conn: TLSConnection) -> None:
        data = await conn.read()
        received.append(data)

    wrong = {"pins": [spki_pin(pki.client_cert)]} if policy == "pin" else {"allow_dns": ["api.example"]}

    async def main() -> None:
        ctx = server_context(cert=pki.server_pem, key=pki.server_key)
        async with await start_server(handler, "127.0.0.1", 0, context=ctx) as server:
            spec = TunnelSpec(
                mode="client", listen="127.0.0.1:0", target=f"127.0.0.1:{server.port}", ca=[pki.root_pem],
                servername="localhost", **wrong,
            )  # fmt: skip
            async with tunnels(spec) as group:
                got = await asyncio.to_thread(plain_exchange, port_of(group), b"secret")
                assert got == b""
                await asyncio.sleep(0.1)
        assert received in ([], [b""]), received  # the server's handler read nothing from the tunnel

    run(main())


# --- the relay -----------------------------------------------------------------------------------------------


def test_byte_exact_both_ways_through_both_modes_with_half_close(pki: PKI) -> None:
    """plain client -> client tunnel -> (mutual TLS) -> server tunnel -> target, 8 MiB of every byte value.

    The plain client half-closes (FIN); the target reads to EOF and only then answers, so the answer can only
    arrive if the FIN became close_notify and close_notify became a FIN again, and the way back stayed open.
    """
    payload = os.urandom(1 << 20) + bytes(range(256)) * 28672

    async def main() -> None:
        async with target("reply") as t:
            server = server_spec(pki, t.port, ca=[pki.root_pem], allow_cn=["client"], name="in")
            async with tunnels(server) as inner:
                client = TunnelSpec(
                    mode="client", listen="127.0.0.1:0", target=f"127.0.0.1:{port_of(inner)}", ca=[pki.root_pem],
                    cert=pki.client_pem, key=pki.client_key, servername="localhost", name="out",
                )  # fmt: skip
                async with tunnels(client) as outer:
                    for _ in range(2):  # the second one resumes the session
                        got = await asyncio.to_thread(plain_exchange, port_of(outer), payload)
                        assert got == f"got {len(payload)} bytes sha256 {hashlib.sha256(payload).hexdigest()}".encode()
                    assert outer.tunnels[0].session is not None  # type: ignore[attr-defined]

    run(main())


def test_echo_both_ways_and_tls_half_close(pki: PKI) -> None:
    """A TLS client's close_notify reaches the target as a FIN; the target's FIN comes back as close_notify."""

    async def main() -> None:
        async with target("echo") as t, tunnels(server_spec(pki, t.port)) as group:
            data = os.urandom(3 << 20)
            got, error = await tls_exchange(port_of(group), client_context(ca=pki.root_pem), data)
            assert error is None and got == data

    run(main())


def test_dead_target_gets_the_client_a_clean_close_and_one_log_line(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens once the socket is closed

    async def main() -> None:
        spec = server_spec(pki, dead, name="api", connect_timeout=5)
        async with tunnels(spec) as group:
            with caplog.at_level(logging.INFO, logger="tlskit.tunnel"):
                got, error = await tls_exchange(port_of(group), client_context(ca=pki.root_pem))
                await asyncio.sleep(0.05)
        assert (got, error) == (b"", None)  # the handshake worked, then a clean close_notify, no reset
        lines = [r.getMessage() for r in caplog.records if r.name == "tlskit.tunnel"]
        assert len(lines) == 1, lines
        assert f"cannot connect to target 127.0.0.1:{dead}: Connection refused" in lines[0]

    run(main())


def test_dead_target_of_a_client_tunnel(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]

    async def main() -> None:
        spec = TunnelSpec(mode="client", listen="127.0.0.1:0", target=f"127.0.0.1:{dead}", ca=[pki.root_pem])
        async with tunnels(spec) as group:
            with caplog.at_level(logging.INFO, logger="tlskit.tunnel"):
                assert await asyncio.to_thread(plain_exchange, port_of(group), b"x") == b""
        lines = [r.getMessage() for r in caplog.records if r.name == "tlskit.tunnel"]
        assert len(lines) == 1 and f"cannot connect to target 127.0.0.1:{dead}: Connection refused" in lines[0]

    run(main())


def test_a_slow_target_does_not_grow_the_tunnels_memory(pki: PKI) -> None:
    """The target reads nothing: the tunnel's buffers stop at their high-water marks and the client is slowed.

    Then the target reads everything, and all of it arrives, in order.
    """
    total = 48 << 20
    payload = os.urandom(1 << 20) * 48

    async def main() -> None:
        async with target("hold") as t, tunnels(server_spec(pki, t.port)) as group:
            tunnel = group.tunnels[0]
            conn = await connect("127.0.0.1", port_of(group), context=client_context(ca=pki.root_pem),
                                 server_name="localhost")  # fmt: skip
            sent = 0

            async def push() -> None:
                nonlocal sent
                view = memoryview(payload)
                for start in range(0, total, 1 << 20):
                    await conn.write(view[start : start + (1 << 20)])
                    sent += 1 << 20
                conn.write_eof()

            pusher = asyncio.create_task(push())
            peak, last, still = 0, -1, 0
            while still < 20:  # until nothing moves for 20 samples: everything is stuck at the high-water marks
                await asyncio.sleep(0.05)
                peak = max(peak, tunnel.buffered_bytes())
                now = tunnel.relayed_bytes()
                still = still + 1 if now == last else 0
                last = now
            assert sent < total, "the client was never slowed down"
            assert peak < 2 << 20, f"the tunnel buffered {peak} bytes"
            t.release()
            answer = b""
            while chunk := await conn.read():
                answer += chunk
            await pusher
            await conn.close()
            assert answer == f"got {total} bytes sha256 {hashlib.sha256(payload).hexdigest()}".encode()

    run(main())


def test_reload_under_load_fails_no_connection(pki: PKI, tmp_path: Path) -> None:
    """Certificate files replaced on disk (watched) and reload() calls while clients keep connecting."""
    result = run(reload_under_load(pki, tmp_path, clients=4, reloads=6, interval=0.15, size=1000, watch_interval=0.05))
    assert result.failures == [], result.failures[:3]
    assert len(result.after_reload) == 6 and all(result.after_reload), result.after_reload  # served after each
    assert len(result.serials) >= 3, "the new certificates were never served"


def test_drain_lets_open_connections_finish_and_refuses_new_ones(pki: PKI) -> None:
    async def main() -> None:
        async with target("echo") as t:
            group_cm = tunnels(server_spec(pki, t.port, drain_timeout=5))
            group = await group_cm.__aenter__()
            port = port_of(group)
            conn = await connect("127.0.0.1", port, context=client_context(ca=pki.root_pem), server_name="localhost")
            await conn.write(b"before")
            assert await conn.readexactly(6) == b"before"
            closing = asyncio.create_task(group.close(deadline=5))
            await asyncio.sleep(0.1)
            assert not group.healthy()
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", port)
            await conn.write(b"during")  # the open connection still works while draining
            assert await conn.readexactly(6) == b"during"
            assert not closing.done()
            await conn.close()
            await asyncio.wait_for(closing, 5)  # drained: returns once the last connection ended
            await group_cm.__aexit__(None, None, None)

    run(main())


def test_unix_sockets_on_both_ends(pki: PKI, tmp_path: Path) -> None:
    async def main() -> None:
        async with target("reply", unix=tmp_path / "app.sock") as t:
            spec = TunnelSpec(
                mode="server", listen="127.0.0.1:0", target=f"unix:{tmp_path / 'app.sock'}", cert=pki.server_pem,
                key=pki.server_key,
            )  # fmt: skip
            async with tunnels(spec) as inner:
                client = TunnelSpec(
                    mode="client", listen=f"unix:{tmp_path / 'in.sock'}", target=f"127.0.0.1:{port_of(inner)}",
                    ca=[pki.root_pem], servername="localhost",
                )  # fmt: skip
                async with tunnels(client):
                    reader, writer = await asyncio.open_unix_connection(str(tmp_path / "in.sock"))
                    writer.write(b"over unix")
                    writer.write_eof()
                    answer = await reader.read()
                    writer.close()
            assert answer.startswith(b"got 9 bytes") and t.connections == 1
        assert not (tmp_path / "in.sock").exists()

    run(main())


# --- the hook in TLSConnection ----------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.eof = asyncio.Event()

    def tls_data(self, chunks: list[bytes]) -> None:
        self.events.append(b"".join(chunks))

    def tls_eof(self) -> None:
        self.events.append("eof")
        self.eof.set()

    def tls_writing(self, paused: bool) -> None:
        self.events.append(("writing", paused))

    def tls_lost(self, exc: BaseException | None) -> None:
        self.events.append(("lost", exc))


def test_attach_hands_over_what_was_buffered_then_the_rest(pki: PKI) -> None:
    sink = Sink()
    arrived = asyncio.Event()

    async def handler(conn: TLSConnection) -> None:
        await arrived.wait()
        await asyncio.sleep(0.05)  # "first" is buffered in the connection by now
        conn.attach(sink)
        await sink.eof.wait()
        conn.start_close()
        await conn.wait_closed()

    async def main() -> None:
        ctx = server_context(cert=pki.server_pem, key=pki.server_key)
        async with await start_server(handler, "127.0.0.1", 0, context=ctx) as server:
            conn = await connect("127.0.0.1", server.port, context=client_context(ca=pki.root_pem),
                                 server_name="localhost")  # fmt: skip
            await conn.write(b"first")
            arrived.set()
            await asyncio.sleep(0.2)
            await conn.write(b"second")
            conn.write_eof()
            assert await conn.read() == b""  # the server's close_notify, sent once the sink saw ours
            await conn.close()
            await asyncio.sleep(0.05)
        assert sink.events[:3] == [b"first", b"second", "eof"], sink.events
        assert sink.events[-1] == ("lost", None)

    run(main())


def test_client_auth_none_and_optional_pass_unlisted_clients_without_a_policy(pki: PKI) -> None:
    """Without an allow-list, optional client authentication lets a client without a certificate through."""

    async def main() -> None:
        async with target("echo") as t:
            spec = server_spec(pki, t.port, ca=[pki.root_pem], client_auth=ClientAuth.OPTIONAL)
            async with tunnels(spec) as group:
                got, error = await tls_exchange(port_of(group), client_ctx(pki, None), b"anyone")
                assert (got, error) == (b"anyone", None)

    run(main())


def test_bulk_writes_make_full_records_only(pki: PKI) -> None:
    """64 KiB of plaintext is four full TLS records, not four full ones and four tiny ones (one AEAD call each)."""
    from tlskit.net.engine import RECORD, TLSEngine

    server = TLSEngine(server_context(cert=pki.server_pem, key=pki.server_key), server_side=True)
    client = TLSEngine(client_context(ca=pki.root_pem), server_side=False, server_hostname="localhost")
    client.start()
    for _ in range(4):  # the handshake, through memory
        server.receive(client.data_to_send())
        client.receive(server.data_to_send())
    assert client.handshake_complete and server.handshake_complete
    client.receive(server.data_to_send())  # the session tickets
    wire = b"".join(server.encrypt_pieces(b"x" * (4 * RECORD)))
    assert b"".join(client.receive(wire)) == b"x" * (4 * RECORD)
    lengths = []
    while wire:
        size = int.from_bytes(wire[3:5], "big")
        lengths.append(size)
        wire = wire[5 + size :]
    assert lengths == [RECORD + 17] * 4  # TLS 1.3: content type byte and 16-byte tag


@pytest.mark.parametrize(
    "change", [{"max_connections": 5}, {"handshake_timeout": 3.0}, {"idle_timeout": 30.0}], ids=lambda c: next(iter(c))
)
def test_reload_changing_server_limits_is_refused_and_the_old_configuration_serves(
    pki: PKI, change: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The server takes its limits when it starts listening: a reload cannot change them, so it refuses, and says so."""
    from tlskit.tools.tunnel import TunnelGroup

    async def main() -> None:
        async with target("echo") as old, target("echo") as new:
            before = server_spec(pki, old.port, name="api")
            after = server_spec(pki, new.port, name="api", **change)  # a new target too: nothing of it is taken
            group = TunnelGroup([before], reload_specs=lambda: [after], watch_interval=None)
            await group.start()
            try:
                with caplog.at_level(logging.INFO, logger="tlskit.tunnel"):
                    group.reload()
                assert group.tunnels[0].spec is before
                assert await tls_exchange(port_of(group), client_context(ca=pki.root_pem), b"old") == (b"old", None)
            finally:
                await group.close(deadline=2.0)
            assert (old.connections, new.connections) == (1, 0)
        lines = [r.getMessage() for r in caplog.records if r.name == "tlskit.tunnel"]
        param = next(iter(change))
        assert lines == [f"[api] reload: changing {param}= needs a restart; keeping the current configuration"], lines

    run(main())


def test_reload_with_workers_takes_the_new_allow_list_and_target(pki: PKI) -> None:
    """Two workers, reloaded with a new allow-list and a new target: the new workers (a rolling restart) take both."""
    from tlskit.tools.tunnel import TunnelGroup

    async def main() -> None:
        async with target("echo") as old, target("echo") as new:
            before = server_spec(pki, old.port, ca=[pki.root_pem], allow_cn=["someone-else"], workers=2)
            after = server_spec(pki, new.port, ca=[pki.root_pem], allow_cn=["client"], workers=2)
            group = TunnelGroup([before], reload_specs=lambda: [after], watch_interval=None)
            await group.start()
            try:
                port = port_of(group)
                ctx = client_ctx(pki, (pki.client_pem, pki.client_key))
                assert await tls_exchange(port, ctx, b"refused") == (b"", None)
                group.reload()
                for _ in range(200):  # until the new workers serve (bounded)
                    got, _error = await tls_exchange(port, ctx, b"let in")
                    if got:
                        break
                    await asyncio.sleep(0.05)
                assert got == b"let in"
            finally:
                await group.close(deadline=2.0)
            assert old.connections == 0 and new.connections >= 1

    run(main())
