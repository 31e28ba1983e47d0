"""tlskit's transport against real TLS peers (issue 3, done-means 1 and 2).

tlskit's server (``start_server``) is driven by ``openssl s_client``, ``gnutls-cli`` and Node's ``tls.connect``;
tlskit's client (``connect``) talks to ``openssl s_server``, ``gnutls-serv`` and Node's ``tls.createServer``
with ``requestCert``/``rejectUnauthorized``.  TLS 1.2 and 1.3, with and without client certificates; ALPN and
SNI observed on both sides; session resumption between tlskit's own client and server; ``tlskit connect``
against gnutls-serv.  Resumption against ``openssl s_client -sess_out/-sess_in``, the U+FFFD JSON exchanges
with Node and the other ``tlskit connect``/``tlskit serve`` peers are in test_cli_net.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import NameOID

from conftest import TLSKIT
from peers import (
    GNUTLS_CLI,
    NODE,
    OPENSSL,
    gnutls_server,
    openssl_server,
    port_from_port_line,
    requires,
    running,
)
from tlskit.errors import TLSError
from tlskit.net.client import connect
from tlskit.net.connection import TLSConnection
from tlskit.net.context import ClientAuth, client_context, server_context
from tlskit.net.server import Server, start_server

NODE_DIR = Path(__file__).resolve().parent / "node"
VERSIONS = ["1.2", "1.3"]
TIMEOUT = 15.0


# --- tlskit's server in a background thread -------------------------------------------------------------


@dataclass
class Seen:
    """What tlskit's server saw of one connection."""

    authorized: bool
    authorization_error: str | None
    protocol: str | None
    alpn: str | None
    sni: str | None
    resumed: bool
    peer_cn: str | None


def seen(conn: TLSConnection) -> Seen:
    cert = conn.peer_certificate
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) if cert is not None else []
    return Seen(
        authorized=conn.authorized,
        authorization_error=conn.authorization_error,
        protocol=conn.protocol,
        alpn=conn.alpn_protocol,
        sni=conn.server_name,
        resumed=conn.session_reused,
        peer_cn=str(attrs[0].value) if attrs else None,
    )


async def echo_line(conn: TLSConnection) -> None:
    """Echo one line back (or whatever arrived before EOF), then close: every peer tool ends cleanly on that."""
    data = b""
    while b"\n" not in data:
        chunk = await conn.read()
        if not chunk:
            break
        data += chunk
    await conn.write(data)


@dataclass
class LibServer:
    """tlskit's ``start_server`` running on its own event loop in a thread, so tests stay synchronous."""

    context: Any
    handler: Any = echo_line
    connections: queue.Queue[Seen] = field(default_factory=queue.Queue)
    tls_errors: queue.Queue[TLSError] = field(default_factory=queue.Queue)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _server: Server | None = None

    async def _handle(self, conn: TLSConnection) -> None:
        self.connections.put(seen(conn))
        await self.handler(conn)

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()

        async def main() -> None:
            self._server = await start_server(
                self._handle, "127.0.0.1", 0, context=self.context, on_tls_error=lambda e, _: self.tls_errors.put(e)
            )
            self.port = self._server.port
            ready.set()
            await self._server.wait_closed()

        try:
            loop.run_until_complete(main())
        finally:
            ready.set()
            loop.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[LibServer]:
        ready = threading.Event()
        thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        thread.start()
        assert ready.wait(TIMEOUT) and self.port, "tlskit server did not start"
        try:
            yield self
        finally:
            assert self._loop is not None and self._server is not None
            asyncio.run_coroutine_threadsafe(self._server.close(deadline=1.0), self._loop).result(TIMEOUT)
            thread.join(TIMEOUT)

    def next_connection(self) -> Seen:
        return self.connections.get(timeout=TIMEOUT)

    def next_tls_error(self) -> TLSError:
        return self.tls_errors.get(timeout=TIMEOUT)

    def drain(self) -> None:
        for q in (self.connections, self.tls_errors):
            while not q.empty():
                q.get_nowait()


@pytest.fixture(scope="module")
def lib_server(pki: Any) -> Iterator[LibServer]:
    """One tlskit server for the peer matrix: client certificates optional (so both cases work), ALPN h2 and
    http/1.1, and a second certificate for SNI name ``api.test``."""
    api = pki.ca.issue(["api.test"])
    ctx = server_context(
        cert=pki.server_pem,
        key=pki.server_key,
        ca=pki.root_pem,
        client_auth=ClientAuth.OPTIONAL,
        alpn=["h2", "http/1.1"],
        sni={"api.test": (list(api.chain), api.key)},
    )
    with LibServer(ctx).running() as server:
        yield server


@pytest.fixture
def server(lib_server: LibServer) -> LibServer:
    lib_server.drain()
    return lib_server


# --- peers as clients of tlskit's server ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClientView:
    """What a peer client reported: negotiated protocol, ALPN, whether it verified tlskit's server, the echo."""

    protocol: str | None
    alpn: str | None
    verified: bool
    echoed: bool
    output: str


def _grep(pattern: str, text: str) -> str | None:
    import re

    m = re.search(pattern, text, re.MULTILINE)
    return m.group(1) if m else None


def openssl_client(
    pki: Any, port: int, *, version: str, cert: bool, alpn: str = "h2", sni: str = "localhost"
) -> ClientView:
    argv = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.root_pem)]
    argv += ["-servername", sni, "-verify_return_error", "-ign_eof", "-alpn", alpn, f"-tls1_{version[-1]}"]
    if cert:
        argv += ["-cert", str(pki.client_pem), "-cert_chain", str(pki.client_pem), "-key", str(pki.client_key)]
    out = _run(argv, b"hello from openssl\n")
    return ClientView(
        protocol=_grep(r"^\s*Protocol\s*:\s*(\S+)", out),
        alpn=_grep(r"^ALPN protocol: (\S+)", out),
        verified="Verify return code: 0 (ok)" in out,
        echoed="hello from openssl" in out,  # s_client does not print what it sends
        output=out,
    )


def gnutls_client(
    pki: Any, port: int, *, version: str, cert: bool, alpn: str = "h2", sni: str = "localhost"
) -> ClientView:
    priority = f"NORMAL:-VERS-ALL:+VERS-TLS{version}"
    argv = [GNUTLS_CLI, "--x509cafile", str(pki.root_pem), "--port", str(port), "--priority", priority]
    argv += ["--sni-hostname", sni, "--verify-hostname", sni, "--alpn", alpn, "127.0.0.1"]
    if cert:
        argv += ["--x509certfile", str(pki.client_pem), "--x509keyfile", str(pki.client_key)]
    out = _run(argv, b"hello from gnutls\n")
    return ClientView(
        protocol=_grep(r"^- Description: \((TLS1\.\d)", out),
        alpn=_grep(r"^- Application protocol: (\S+)", out),
        verified="The certificate is trusted" in out,
        echoed=any(line.strip() == "hello from gnutls" for line in out.splitlines()),
        output=out,
    )


def node_client(
    pki: Any, port: int, *, version: str, cert: bool, alpn: str = "h2", sni: str = "localhost"
) -> ClientView:
    cfg: dict[str, Any] = {"port": port, "ca": str(pki.root_pem), "servername": sni, "alpn": [alpn]}
    cfg |= {"minVersion": f"TLSv{version}", "maxVersion": f"TLSv{version}", "text": "hello from node\n"}
    if cert:
        cfg |= {"cert": str(pki.client_pem), "key": str(pki.client_key)}
    out = _run([NODE, NODE_DIR / "client.js", json.dumps(cfg)], b"")
    conn = json.loads(_grep(r"^CONN (.*)$", out) or "{}")
    return ClientView(
        protocol=conn.get("protocol"),
        alpn=conn.get("alpn"),
        verified=conn.get("authorized") is True,
        echoed="ECHO hello from node" in out,
        output=out,
    )


def _run(argv: list[Any], data: bytes) -> str:
    result = subprocess.run([str(a) for a in argv], input=data, capture_output=True, timeout=TIMEOUT, check=False)
    return (result.stdout + result.stderr).decode("utf-8", "replace")


CLIENTS = {
    "openssl": pytest.param(openssl_client, marks=requires("openssl"), id="openssl"),
    "gnutls": pytest.param(gnutls_client, marks=requires("gnutls-cli"), id="gnutls"),
    "node": pytest.param(node_client, marks=requires("node"), id="node"),
}
_TLS_NAME = {"1.2": ("TLSv1.2", "TLS1.2"), "1.3": ("TLSv1.3", "TLS1.3")}


@pytest.mark.parametrize("with_cert", [True, False], ids=["client-cert", "no-client-cert"])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("client", list(CLIENTS.values()))
def test_peer_clients_against_tlskit_server(
    server: LibServer, pki: Any, client: Any, version: str, with_cert: bool
) -> None:
    view = client(pki, server.port, version=version, cert=with_cert)
    assert view.verified, view.output  # the peer verified tlskit's server (Node: authorized === true)
    assert view.protocol in _TLS_NAME[version], view.output
    assert view.alpn == "h2", view.output
    assert view.echoed, view.output
    got = server.next_connection()
    assert got.protocol == f"TLSv{version}"
    assert got.alpn == "h2"
    assert got.sni == "localhost"
    if with_cert:
        assert got.authorized and got.peer_cn == "client"
    else:
        assert not got.authorized and got.peer_cn is None
        assert "no client certificate" in (got.authorization_error or "")


@pytest.mark.parametrize("client", list(CLIENTS.values()))
def test_alpn_and_sni_selection_seen_on_both_sides(server: LibServer, pki: Any, client: Any) -> None:
    # The client prefers http/1.1 and asks for api.test: tlskit picks the SNI certificate and the protocol.
    view = client(pki, server.port, version="1.3", cert=False, alpn="http/1.1", sni="api.test")
    assert view.alpn == "http/1.1", view.output
    assert view.verified, view.output  # verified against the name api.test: the SNI certificate was served
    got = server.next_connection()
    assert (got.sni, got.alpn) == ("api.test", "http/1.1")


@requires("openssl")
def test_client_from_another_ca_is_refused_with_reason(server: LibServer, pki: Any) -> None:
    argv = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile", pki.root_pem, "-ign_eof"]
    argv += ["-cert", pki.other_client_pem, "-key", pki.other_client_key, "-tls1_2"]
    out = _run(argv, b"hi\n")
    assert "alert" in out.lower(), out
    error = server.next_tls_error()
    assert error.code and error.message
    assert server.connections.empty()  # the handler never ran for the refused client


# --- tlskit's client against peer servers --------------------------------------------------------------------


def client_ctx(pki: Any, *, version: str | None = None, cert: bool = False, alpn: tuple[str, ...] = ("h2",)) -> Any:
    return client_context(
        ca=pki.root_pem,
        cert=pki.client_pem if cert else None,
        key=pki.client_key if cert else None,
        alpn=alpn,
        min_version=version or "1.2",
        max_version=version,
    )


async def _exchange(host: str, port: int, ctx: Any, *, server_name: str = "localhost", session: Any = None) -> Any:
    """Connect, send a line, read the reply line; return (what tlskit saw, the reply, the session)."""
    conn = await connect(host, port, context=ctx, server_name=server_name, session=session)
    try:
        await conn.write(b"hello from tlskit\n")
        reply = b""
        async with asyncio.timeout(TIMEOUT):
            while b"\n" not in reply:
                chunk = await conn.read()
                if not chunk:
                    break
                reply += chunk
        return seen(conn), reply, conn.session
    finally:
        await conn.close(timeout=2.0)


def exchange(host: str, port: int, ctx: Any, **kwargs: Any) -> Any:
    return asyncio.run(_exchange(host, port, ctx, **kwargs))


@requires("openssl")
@pytest.mark.parametrize("with_cert", [True, False], ids=["client-cert", "no-client-cert"])
@pytest.mark.parametrize("version", VERSIONS)
def test_tlskit_client_against_openssl_server(pki: Any, version: str, with_cert: bool) -> None:
    args = ["-cert", pki.server_pem, "-cert_chain", pki.server_pem, "-key", pki.server_key, "-rev", "-naccept", "1"]
    args += ["-alpn", "h2,http/1.1", f"-tls1_{version[-1]}"]
    if with_cert:
        args += ["-CAfile", pki.root_pem, "-Verify", "2", "-verify_return_error"]
    with openssl_server(*map(str, args)) as peer:
        got, reply, _ = exchange("127.0.0.1", peer.port, client_ctx(pki, version=version, cert=with_cert))
        assert reply == b"hello from tlskit\n"[-2::-1] + b"\n"  # s_server -rev answers each line reversed
        peer.proc.wait(TIMEOUT)  # -naccept 1: it exits, flushing the ALPN lines it buffered
        peer.wait_for("ALPN protocols selected: h2")
        if with_cert:
            peer.wait_for(r"Peer certificate: CN = client")
    assert got.authorized and got.peer_cn == "localhost"
    assert (got.protocol, got.alpn) == (f"TLSv{version}", "h2")


@requires("gnutls-serv")
@pytest.mark.parametrize("with_cert", [True, False], ids=["client-cert", "no-client-cert"])
@pytest.mark.parametrize("version", VERSIONS)
def test_tlskit_client_against_gnutls_server(pki: Any, version: str, with_cert: bool) -> None:
    args = ["--echo", "--x509certfile", pki.server_pem, "--x509keyfile", pki.server_key, "--alpn", "h2"]
    args += ["--priority", f"NORMAL:-VERS-ALL:+VERS-TLS{version}"]
    if with_cert:
        args += ["--x509cafile", pki.root_pem, "--require-client-cert", "--verify-client-cert"]
    with gnutls_server(*args) as peer:
        got, reply, _ = exchange("127.0.0.1", peer.port, client_ctx(pki, version=version, cert=with_cert))
    assert reply == b"hello from tlskit\n"
    assert got.authorized and got.peer_cn == "localhost"
    assert (got.protocol, got.alpn) == (f"TLSv{version}", "h2")


@requires("gnutls-serv")
def test_tlskit_connect_cli_against_gnutls_server(pki: Any) -> None:
    args = ["--echo", "--x509certfile", pki.server_pem, "--x509keyfile", pki.server_key, "--alpn", "h2"]
    args += ["--x509cafile", pki.root_pem, "--require-client-cert", "--verify-client-cert"]
    with gnutls_server(*args) as peer:
        argv = [TLSKIT, "connect", f"127.0.0.1:{peer.port}", "--ca", pki.root_pem, "--servername", "localhost"]
        argv += ["--cert", pki.client_pem, "--key", pki.client_key, "--alpn", "h2"]
        result = subprocess.run(
            [str(a) for a in argv], input="over gnutls\n", capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    assert result.returncode == 0, result.stderr + peer.output
    assert result.stdout == "over gnutls\n"
    assert "ALPN h2" in result.stderr and "verification: OK" in result.stderr


def node_server(pki: Any, **cfg: Any) -> Any:
    assert NODE is not None
    base = {"key": str(pki.server_key), "cert": str(pki.server_pem), "ca": str(pki.root_pem), "alpn": ["h2"]}
    return running([NODE, str(NODE_DIR / "server.js"), json.dumps(base | cfg)], port_from=port_from_port_line)


@requires("node")
@pytest.mark.parametrize("version", VERSIONS)
def test_tlskit_client_against_node_server_requiring_certificates(pki: Any, version: str) -> None:
    tls = f"TLSv{version}"
    with node_server(pki, requestCert=True, rejectUnauthorized=True, minVersion=tls, maxVersion=tls) as peer:
        got, reply, _ = exchange("127.0.0.1", peer.port, client_ctx(pki, version=version, cert=True))
        node_saw = json.loads(peer.wait_for(r"^CONN (.*)$").group(1))
    assert reply == b"hello from tlskit\n"
    assert got.authorized and (got.protocol, got.alpn) == (tls, "h2")
    assert node_saw["authorized"] is True and node_saw["peerCN"] == "client"
    assert (node_saw["protocol"], node_saw["alpn"]) == (tls, "h2")


@requires("node")
@pytest.mark.parametrize("version", VERSIONS)
def test_node_server_refuses_tlskit_client_without_certificate(pki: Any, version: str) -> None:
    tls = f"TLSv{version}"
    with node_server(pki, requestCert=True, rejectUnauthorized=True, minVersion=tls, maxVersion=tls) as peer:
        with pytest.raises(TLSError) as info:
            exchange("127.0.0.1", peer.port, client_ctx(pki, version=version, cert=False))
        peer.wait_for("TLSERR")
    assert info.value.code in {"client_cert_required", "handshake_failure", "peer_rejected_certificate"}
    assert info.value.fix


@requires("node")
def test_tlskit_client_without_verification_reports_why(pki: Any) -> None:
    # Node serves a certificate from another CA; verify=False still says why it would not verify (Node's
    # authorizationError on a client with rejectUnauthorized: false).
    with node_server(pki, key=str(pki.other_server_key), cert=str(pki.other_server_pem)) as peer:
        ctx = client_context(ca=pki.root_pem, verify=False)
        got, reply, _ = exchange("127.0.0.1", peer.port, ctx)
        with pytest.raises(TLSError) as info:
            exchange("127.0.0.1", peer.port, client_context(ca=pki.root_pem))
    assert reply == b"hello from tlskit\n"
    assert not got.authorized and got.authorization_error
    assert info.value.code in {"untrusted_root", "incomplete_chain"}  # the other root is unknown


# --- SNI and ALPN observed on both sides (tlskit as the client) ----------------------------------------------


@requires("openssl")
def test_sni_from_tlskit_client_seen_by_openssl(pki: Any, make_cert: Any) -> None:
    # (s_server sets ALPN up on its first certificate only, so ALPN is checked in the matrix above instead.)
    api_pem, api_key = make_cert(("api.test",), name="api")
    # -CAfile lets s_server complete both chains (-cert2 has no chain option of its own).
    args = ["-cert", pki.server_pem, "-key", pki.server_key, "-CAfile", pki.ca_chain_pem, "-rev", "-naccept", "1"]
    args += ["-servername", "api.test", "-cert2", api_pem, "-key2", api_key]
    with openssl_server(*map(str, args)) as peer:
        got, reply, _ = exchange("127.0.0.1", peer.port, client_ctx(pki), server_name="api.test")
        peer.proc.wait(TIMEOUT)
        peer.wait_for('Hostname in TLS extension: "api.test"')
    assert reply == b"hello from tlskit\n"[-2::-1] + b"\n"
    assert got.authorized and got.peer_cn == "api.test"  # the SNI certificate, verified for api.test
    assert got.sni == "api.test"


@requires("node")
def test_sni_and_alpn_from_tlskit_client_seen_by_node(pki: Any, make_cert: Any) -> None:
    api_pem, api_key = make_cert(("api.test",), name="api")
    sni = {"api.test": {"key": str(api_key), "cert": str(api_pem)}}
    with node_server(pki, sni=sni, alpn=["h2", "http/1.1"]) as peer:
        got, _, _ = exchange("127.0.0.1", peer.port, client_ctx(pki, alpn=("http/1.1",)), server_name="api.test")
        node_saw = json.loads(peer.wait_for(r"^CONN (.*)$").group(1))
    assert got.authorized and got.peer_cn == "api.test" and got.alpn == "http/1.1"
    assert (node_saw["servername"], node_saw["alpn"]) == ("api.test", "http/1.1")


# --- session resumption between tlskit's client and server ---------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_session_resumption_between_tlskit_client_and_server(server: LibServer, pki: Any, version: str) -> None:
    ctx = client_ctx(pki, version=version, cert=True)
    first, _, session = exchange("127.0.0.1", server.port, ctx)
    second, reply, _ = exchange("127.0.0.1", server.port, ctx, session=session)
    assert reply == b"hello from tlskit\n"
    assert session is not None
    assert not first.resumed and second.resumed  # the client's view
    assert not server.next_connection().resumed and server.next_connection().resumed  # the server's view
    assert second.authorized  # a resumed session keeps the verified identity
