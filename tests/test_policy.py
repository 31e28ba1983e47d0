"""The peer policy holds in every mode it can meet (issue 7): one check, after every handshake, in one place.

Server side: client authentication none/optional/required x one worker and two x allow-list, pin and callback x
clients with no certificate, the allowed certificate, another certificate of the same CA and one of another CA.
Client side: verification on and off x pins (leaf, intermediate, wrong), allow-lists and a callback, through
``connect`` and ``ReconnectingClient``.  Every refusal is checked end to end: the handler never runs, the refused
peer's bytes reach no handler, and no application byte reaches the refused peer.  Processes report through files
so that the same assertions hold for forked workers.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import NameOID

from conftest import PKI, MakeCert
from tlskit import (
    ClientAuth,
    InputError,
    PeerPolicy,
    ReconnectingClient,
    TLSConnection,
    TLSError,
    TLSVerificationError,
    client_context,
    connect,
    server_context,
    spki_pin,
    start_server,
)
from tlskit.net.client import Jitter
from tlskit.net.server import loop_factory
from tlskit.pki.certs import Profile
from tlskit.pki.files import load_certificates


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(asyncio.wait_for(coro, 60))


def cn_of(conn: TLSConnection) -> str | None:
    cert = conn.peer_certificate
    if cert is None:
        return None
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


class Journal:
    """An append-only JSON-lines file: what handlers and error hooks saw, in any process (forked workers)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def add(self, **entry: Any) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines()]

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        for _ in range(200):
            if len(self.entries()) >= count:
                break
            await asyncio.sleep(0.025)
        return self.entries()

    def handler(self) -> Any:
        async def handle(conn: TLSConnection) -> None:
            received = b""
            while data := await conn.read():
                received += data
                await conn.write(b"echo:" + data)
            self.add(event="served", cn=cn_of(conn), authorized=conn.authorized, received=received.decode())

        return handle

    def on_error(self, error: TLSError, peer: Any) -> None:
        self.add(event="error", code=error.code, message=error.message)


@dataclass
class Outcome:
    """What a client saw: a handshake error, or the bytes the server sent after the handshake."""

    error: TLSError | None = None
    reply: bytes = b""
    cut: bool = False  # the connection ended abnormally after the handshake (reset or an alert)


async def attempt(port: int, ctx: ssl.SSLContext, *, send: bytes = b"ping") -> Outcome:
    try:
        conn = await connect("127.0.0.1", port, context=ctx, server_name="localhost")
    except TLSError as exc:
        return Outcome(error=exc)
    out = Outcome()
    try:
        await conn.write(send)
        while data := await conn.read():
            out.reply += data
            if out.reply.endswith(send):
                break
    except (ConnectionError, TLSError):
        out.cut = True
    finally:
        await conn.close(timeout=2.0)
    return out


# --- server side -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bob(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A valid client certificate from the session CA for someone not on any list (CN bob)."""
    return pki.ca.issue(["bob"], profile=Profile.CLIENT).write(tmp_path_factory.mktemp("bob") / "bob")


def client_contexts(pki: PKI, bob: tuple[Path, Path]) -> dict[str, ssl.SSLContext]:
    ca = pki.root_pem
    return {
        "none": client_context(ca=ca),
        "allowed": client_context(ca=ca, cert=pki.client_pem, key=pki.client_key),
        "other": client_context(ca=ca, cert=bob[0], key=bob[1]),
        "other-ca": client_context(ca=ca, cert=pki.other_client_pem, key=pki.other_client_key),
    }


def make_policy(kind: str, pki: PKI) -> PeerPolicy:
    if kind == "allow-cn":
        return PeerPolicy(allow_cn=["CLIENT"])  # case-insensitive
    if kind == "allow-dns":
        return PeerPolicy(allow_dns=["client."])  # the trailing dot and case do not matter
    if kind == "pin":
        return PeerPolicy(pins=[spki_pin(pki.client_cert)])
    return PeerPolicy(check=lambda conn: None if cn_of(conn) == "client" else f"{cn_of(conn)} is not client")


# The policy's own refusal code, per kind, for a client with a valid certificate that is not the allowed one.
REFUSAL = {
    "allow-cn": "peer_not_allowed",
    "allow-dns": "peer_not_allowed",
    "pin": "pin_mismatch",
    "check": "peer_refused",
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("kind", ["allow-cn", "allow-dns", "pin", "check"])
@pytest.mark.parametrize("auth", [ClientAuth.OPTIONAL, ClientAuth.REQUIRED])
def test_server_policy_refuses_in_every_mode(
    pki: PKI, bob: tuple[Path, Path], tmp_path: Path, auth: ClientAuth, kind: str, workers: int
) -> None:
    journal = Journal(tmp_path / "journal")
    contexts = client_contexts(pki, bob)

    async def main() -> None:
        ctx = server_context(cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth=auth)
        server = await start_server(
            journal.handler(),
            "127.0.0.1",
            0,
            context=ctx,
            policy=make_policy(kind, pki),
            on_tls_error=journal.on_error,
            workers=workers,
        )
        async with server:
            outcomes = {name: await attempt(server.port, cctx, send=name.encode()) for name, cctx in contexts.items()}
            entries = await journal.wait_for(4)

        served = [e for e in entries if e["event"] == "served"]
        errors = [e for e in entries if e["event"] == "error"]
        # Only the allowed client reached the handler, and only its bytes were read by it.
        assert served == [{"event": "served", "cn": "client", "authorized": True, "received": "allowed"}], entries
        assert outcomes["allowed"].reply == b"echo:allowed" and outcomes["allowed"].error is None
        # The others never got an application byte.
        for name in ("none", "other", "other-ca"):
            assert outcomes[name].reply == b"", (name, outcomes[name])
        codes = sorted(e["code"] for e in errors)
        # Another CA's certificate and (when required) a missing certificate fail in OpenSSL's handshake; the
        # policy refuses the rest after it.
        expected = ["client_cert_rejected", REFUSAL[kind]]
        if auth is ClientAuth.REQUIRED:
            expected.append("client_cert_required")  # OpenSSL: certificate required
            assert outcomes["none"].error is not None or outcomes["none"].cut or outcomes["none"].reply == b""
        else:
            # Optional client authentication, no certificate: an allow-list or pin means "only these peers".
            expected.append("peer_refused" if kind == "check" else "peer_not_allowed")
        assert codes == sorted(expected), errors

    run(main())


@pytest.mark.parametrize("kind", ["allow-cn", "pin"])
def test_identity_policy_needs_a_server_that_asks_for_certificates(pki: PKI, kind: str) -> None:
    async def main() -> None:
        ctx = server_context(cert=pki.server_pem, key=pki.server_key)
        with pytest.raises(InputError, match="client_auth=optional"):
            await start_server(
                lambda conn: asyncio.sleep(0), "127.0.0.1", 0, context=ctx, policy=make_policy(kind, pki)
            )

    run(main())


def test_check_only_policy_with_client_auth_none(pki: PKI, tmp_path: Path) -> None:
    """A callback needs no certificate: with client authentication off it still runs, and can refuse."""
    journal = Journal(tmp_path / "journal")
    seen: list[bool] = []

    def check(conn: TLSConnection) -> str | None:
        seen.append(conn.peer_certificate is None)
        return None if conn.alpn_protocol == "good" else "wrong ALPN"

    async def main() -> None:
        ctx = server_context(cert=pki.server_pem, key=pki.server_key, alpn=["good", "bad"])
        policy = PeerPolicy(check=check)
        async with await start_server(
            journal.handler(), "127.0.0.1", 0, context=ctx, policy=policy, on_tls_error=journal.on_error
        ) as server:
            good = await attempt(server.port, client_context(ca=pki.root_pem, alpn=["good"]))
            bad = await attempt(server.port, client_context(ca=pki.root_pem, alpn=["bad"]))
            entries = await journal.wait_for(2)
        assert good.reply == b"echo:ping" and bad.reply == b""
        assert {e["event"]: e.get("code") for e in entries} == {"served": None, "error": "peer_refused"}
        assert seen == [True, True]

    run(main())


def test_a_raising_check_refuses(pki: PKI, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")

    def check(conn: TLSConnection) -> str | None:
        raise RuntimeError("database down")

    async def main() -> None:
        ctx = server_context(cert=pki.server_pem, key=pki.server_key)
        async with await start_server(
            journal.handler(),
            "127.0.0.1",
            0,
            context=ctx,
            policy=PeerPolicy(check=check),
            on_tls_error=journal.on_error,
        ) as server:
            out = await attempt(server.port, client_context(ca=pki.root_pem))
            entries = await journal.wait_for(1)
        assert out.reply == b""
        assert (
            entries == [{"event": "error", "code": "peer_refused", "message": entries[0]["message"]}]
            and "RuntimeError: database down" in entries[0]["message"]
        )

    run(main())


def test_refused_client_stays_refused_when_it_resumes(pki: PKI, bob: tuple[Path, Path], tmp_path: Path) -> None:
    """A refused client may have received a session ticket; resuming with it is judged again, and refused."""
    journal = Journal(tmp_path / "journal")

    async def main() -> None:
        ctx = server_context(cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth=ClientAuth.OPTIONAL)
        cctx = client_context(ca=pki.root_pem, cert=bob[0], key=bob[1])
        async with await start_server(
            journal.handler(), "127.0.0.1", 0, context=ctx, policy=PeerPolicy(allow_cn=["client"]),
            on_tls_error=journal.on_error,
        ) as server:  # fmt: skip
            resumed = []
            session = None
            for _ in range(3):
                conn = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost", session=session)
                resumed.append(conn.session_reused)
                await conn.write(b"let me in")
                with _eof_or_reset():
                    assert await conn.read() == b""
                session = conn.session or session
                await conn.close(timeout=2.0)
            entries = await journal.wait_for(3)
        assert [e["code"] for e in entries] == ["peer_not_allowed"] * 3, entries
        assert any(resumed), "the client never resumed: the test would not show what it claims"

    run(main())


class _eof_or_reset:
    """Around a read that must return no application byte: a clean EOF, or a reset, both qualify."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, ConnectionError | TLSError)


# --- client side -------------------------------------------------------------------------------------------


@pytest.fixture
def pins(pki: PKI) -> dict[str, str]:
    leaf, intermediate = load_certificates(pki.server_pem)
    return {
        "leaf": spki_pin(leaf),
        "intermediate": spki_pin(intermediate),
        "root": spki_pin(load_certificates(pki.root_pem)[0]),
        "wrong": spki_pin(pki.client_cert),
    }


def client_policies(pins: dict[str, str]) -> dict[str, PeerPolicy]:
    return {
        "pin-leaf": PeerPolicy(pins=[pins["leaf"]]),
        "pin-intermediate": PeerPolicy(pins=[pins["intermediate"]]),
        "pin-root": PeerPolicy(pins=[pins["root"]]),
        "pin-wrong": PeerPolicy(pins=[pins["wrong"], "sha256//" + pins["wrong"].split(":")[1]]),
        "allow-dns": PeerPolicy(allow_dns=["LOCALHOST"]),
        "allow-ip": PeerPolicy(allow_ip=["::1"]),
        "allow-dns-wrong": PeerPolicy(allow_dns=["api.example"]),
        "allow-uri-wrong": PeerPolicy(allow_uri=["spiffe://example.org/api"]),
        "pinned-allow": PeerPolicy(allow_dns=["localhost"], pins=[pins["leaf"]]),
        "pinned-allow-wrong": PeerPolicy(allow_cn=["someone"], pins=[pins["leaf"]]),
        "check": PeerPolicy(check=lambda conn: "no thanks" if conn.protocol == "TLSv1.3" else None),
    }


# policy -> (verified, unverified): None = accepted, a code = refused, "input" = refused when set up.
CLIENT_EXPECTED: dict[str, tuple[str | None, str | None]] = {
    "pin-leaf": (None, None),
    "pin-intermediate": (None, "pin_mismatch"),  # unverified: only the leaf's key was proven
    "pin-root": (None, "pin_mismatch"),
    "pin-wrong": ("pin_mismatch", "pin_mismatch"),
    "allow-dns": (None, "input"),  # unverified names prove nothing without a pin
    "allow-ip": (None, "input"),
    "allow-dns-wrong": ("peer_not_allowed", "input"),
    "allow-uri-wrong": ("peer_not_allowed", "input"),
    "pinned-allow": (None, None),
    "pinned-allow-wrong": ("peer_not_allowed", "peer_not_allowed"),
    "check": ("peer_refused", "peer_refused"),
}


@pytest.mark.parametrize("how", ["connect", "reconnecting"])
@pytest.mark.parametrize("verify", [True, False])
def test_client_policy_in_every_mode(pki: PKI, pins: dict[str, str], tmp_path: Path, verify: bool, how: str) -> None:
    journal = Journal(tmp_path / "journal")
    ctx = client_context(ca=pki.root_pem, verify=verify)

    async def exchange(conn: TLSConnection, name: str) -> None:
        await conn.write(name.encode())
        assert await conn.readexactly(5 + len(name)) == b"echo:" + name.encode()
        assert conn.authorized  # the chain verifies, so even unverified it would have passed
        await conn.close()

    async def once(port: int, policy: PeerPolicy, name: str) -> None:
        if how == "connect":
            await exchange(await connect("127.0.0.1", port, context=ctx, policy=policy, server_name="localhost"), name)
            return
        client = ReconnectingClient(
            "127.0.0.1", port, context=ctx, policy=policy, server_name="localhost", max_attempts=1, jitter=Jitter.NONE
        )
        async for conn in client:
            await exchange(conn, name)
            await client.stop()

    async def main() -> None:
        srv = server_context(cert=pki.server_pem, key=pki.server_key)
        async with await start_server(journal.handler(), "127.0.0.1", 0, context=srv) as server:
            for name, policy in client_policies(pins).items():
                expected = CLIENT_EXPECTED[name][0 if verify else 1]
                if expected == "input":
                    with pytest.raises(InputError, match="pin the server's key"):
                        await once(server.port, policy, name)
                elif expected is not None:
                    with pytest.raises(TLSVerificationError) as info:
                        await once(server.port, policy, name)
                    assert isinstance(info.value, ssl.SSLCertVerificationError)
                    assert info.value.code == expected, (name, info.value)
                    assert info.value.fix
                else:
                    await once(server.port, policy, name)
            entries = await journal.wait_for(
                sum(1 for n in CLIENT_EXPECTED if CLIENT_EXPECTED[n][not verify] != "input")
            )
        # Every refused server got its connection closed before the client sent a byte: the server's handler
        # read nothing from those.
        received = sorted(e["received"] for e in entries)
        accepted = sorted(n for n, exp in CLIENT_EXPECTED.items() if exp[0 if verify else 1] is None)
        refused = [e for e in entries if e["received"] == ""]
        assert [r for r in received if r] == accepted
        assert len(refused) == sum(
            1 for exp in CLIENT_EXPECTED.values() if exp[0 if verify else 1] not in (None, "input")
        )

    run(main())


def test_policy_validation() -> None:
    for bad in ("sha1:AAAA", "sha256:not base64!", "sha256:" + "A" * 20, "nothing"):
        with pytest.raises(InputError, match="invalid pin"):
            PeerPolicy(pins=[bad])
    with pytest.raises(InputError, match="invalid IP address"):
        PeerPolicy(allow_ip=["localhost"])
    with pytest.raises(InputError, match="empty CN"):
        PeerPolicy(allow_cn=[" "])
    with pytest.raises(InputError, match="callable"):
        PeerPolicy(check="yes")  # type: ignore[arg-type]
    policy = PeerPolicy(allow_cn="alice", pins="sha256:" + "q" * 43 + "=")  # a single string is one entry
    assert policy.allow_cn == {"alice"} and len(policy.pins) == 1 and policy.needs_certificate
    assert not PeerPolicy() and PeerPolicy(check=lambda c: None) and not PeerPolicy(check=None).needs_certificate
    with pytest.raises(AttributeError):
        policy.allow_cn = frozenset()  # type: ignore[misc]


def test_contexts_carry_no_policy(pki: PKI) -> None:
    """A context is a plain ssl.SSLContext: what tlskit cannot make OpenSSL enforce is not hidden on it."""
    with pytest.raises(TypeError):
        server_context(cert=pki.server_pem, key=pki.server_key, allow_peers=["CN:x"])  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        client_context(ca=pki.root_pem, pins=["sha256:" + "q" * 43 + "="])  # type: ignore[call-arg]
    assert not hasattr(client_context(ca=pki.root_pem), "tlskit_peer_policy")


def test_server_reload_swaps_the_policy(pki: PKI, bob: tuple[Path, Path], tmp_path: Path, make_cert: MakeCert) -> None:
    journal = Journal(tmp_path / "journal")

    async def main() -> None:
        ctx = server_context(cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth="required")
        cctx = client_context(ca=pki.root_pem, cert=bob[0], key=bob[1])
        async with await start_server(
            journal.handler(), "127.0.0.1", 0, context=ctx, policy=PeerPolicy(allow_cn=["client"]),
            on_tls_error=journal.on_error,
        ) as server:  # fmt: skip
            assert (await attempt(server.port, cctx)).reply == b""
            server.reload(ctx, policy=PeerPolicy(allow_cn=["bob"]))
            assert (await attempt(server.port, cctx)).reply == b"echo:ping"
            server.reload(ctx)  # the policy stays
            assert (await attempt(server.port, cctx)).reply == b"echo:ping"
            with pytest.raises(InputError):
                server.reload(server_context(cert=pki.server_pem, key=pki.server_key))  # can no longer hold
            assert server.policy == PeerPolicy(allow_cn=["bob"])

    run(main())
