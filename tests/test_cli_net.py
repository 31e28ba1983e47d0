"""``tlskit serve`` and ``tlskit connect`` as processes, against real peers and each other (issue 3).

Covers: session resumption seen by ``openssl s_client -sess_out/-sess_in`` ("Reused") and in serve's log; JSON
messages terminated by U+FFFD between Node and tlskit in both directions (``--frames delim:efbfbd --json``);
the connect summary, handshake failures (exit 1 with code, sentence and fix), ``--insecure``, ``--pin``,
``--reconnect``; serve's per-connection and failed-handshake log lines, ``--exec``, ``--allow-cn``, SNI, SIGHUP
reload and SIGTERM; bad input exits 2 with one line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import TLSKIT
from peers import NODE, OPENSSL, Peer, openssl_server, port_from_port_line, requires, running, start
from tlskit.pki.inspect import spki_pin

NODE_DIR = Path(__file__).resolve().parent / "node"
TIMEOUT = 20.0
LISTENING = r"^serve: listening on 127\.0\.0\.1:(\d+)$"


def port_from_serve(peer: Peer) -> int:
    return int(peer.wait_for(LISTENING).group(1))


@contextmanager
def serve(*args: Any, env: dict[str, str] | None = None) -> Iterator[Peer]:
    """``tlskit serve 0 ARGS`` (stdout and stderr merged into ``peer.lines``), always stopped."""
    with running([str(TLSKIT), "serve", "0", *map(str, args)], port_from=port_from_serve, env=env) as peer:
        yield peer


def tlskit(*args: Any, stdin: bytes = b"", timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TLSKIT), *map(str, args)],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )


def server_args(pki: Any, *extra: Any) -> list[Any]:
    return ["--cert", pki.server_pem, "--key", pki.server_key, *extra]


def client_args(pki: Any, port: int, *extra: Any, cert: bool = True) -> list[Any]:
    args: list[Any] = ["connect", f"127.0.0.1:{port}", "--ca", pki.root_pem, "--servername", "localhost"]
    if cert:
        args += ["--cert", pki.client_pem, "--key", pki.client_key]
    return [*args, *extra]


# --- resumption with openssl s_client -----------------------------------------------------------------------


def s_client_session(port: int, pki: Any, version: str, sess: Path, *, reuse: bool) -> str:
    """One s_client connection that sends a line and waits for its echo before leaving (tickets included)."""
    assert OPENSSL is not None
    argv = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.root_pem), f"-tls1_{version[-1]}"]
    argv += ["-servername", "localhost", "-sess_in" if reuse else "-sess_out", str(sess)]
    peer = start(argv)
    try:
        peer.write(b"resume me\n")
        peer.wait_for(r"^resume me$")  # echoed: the session (and TLS 1.3 tickets) arrived long before
        assert peer.proc.stdin is not None
        peer.proc.stdin.close()
        peer.proc.wait(TIMEOUT)
    finally:
        peer.stop()
    return peer.output


@requires("openssl")
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_openssl_resumes_session_with_tlskit_serve(pki: Any, tmp_path: Path, version: str) -> None:
    sess = tmp_path / "session.pem"
    with serve(*server_args(pki, "--echo")) as server:
        first = s_client_session(server.port, pki, version, sess, reuse=False)
        second = s_client_session(server.port, pki, version, sess, reuse=True)
        server.wait_for(r"connected: .*resumed=yes$")
    assert re.search(rf"^New, TLSv{version}", first, re.MULTILINE), first
    assert re.search(rf"^Reused, TLSv{version}", second, re.MULTILINE), second
    log = server.output
    assert re.search(rf"connected: anonymous client \(.*\), TLSv{version}, .*resumed=no$", log, re.MULTILINE), log


# --- JSON messages terminated by U+FFFD, with Node on the other side ---------------------------------------


@requires("node")
def test_node_client_sends_fffd_json_to_tlskit_serve(pki: Any) -> None:
    args = server_args(pki, "--ca", pki.root_pem, "--echo", "--frames", "delim:efbfbd", "--json")
    with serve(*args) as server:
        cfg = {"port": server.port, "ca": str(pki.root_pem), "servername": "localhost", "mode": "json", "count": 50}
        cfg |= {"cert": str(pki.client_pem), "key": str(pki.client_key)}
        result = subprocess.run(
            [str(NODE), str(NODE_DIR / "client.js"), json.dumps(cfg)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        server.wait_for(r"closed$")
    assert result.returncode == 0, result.stdout + result.stderr
    conn = json.loads(re.search(r"^CONN (.*)$", result.stdout, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert conn["authorized"] is True  # Node verified tlskit's server
    messages = [json.loads(line[4:]) for line in result.stdout.splitlines() if line.startswith("MSG ")]
    assert [m["seq"] for m in messages] == list(range(50))  # echoed back by tlskit, in order
    assert "connected: authorized (CN=client), TLSv1.3" in server.output


@requires("node")
def test_tlskit_connect_reads_fffd_json_from_node_server(pki: Any) -> None:
    cfg = {"key": str(pki.server_key), "cert": str(pki.server_pem), "ca": str(pki.root_pem), "mode": "push"}
    cfg |= {"requestCert": True, "rejectUnauthorized": True, "count": 50, "intervalMs": 5, "lingerMs": 300}
    with running([str(NODE), str(NODE_DIR / "server.js"), json.dumps(cfg)], port_from=port_from_port_line) as node:
        client = start([str(TLSKIT), *map(str, client_args(pki, node.port, "--frames", "delim:efbfbd", "--json"))])
        try:
            # stdin stays open until Node ends the connection: EOF would half-close and Node would stop.
            client.write(b"".join(b'{"seq": %d, "from": "tlskit"}\n' % i for i in range(3)))
            assert client.proc.wait(TIMEOUT) == 0, client.output
        finally:
            client.stop()
        node.wait_for(r'^RECV \{"seq":2,')
        node_saw = json.loads(node.wait_for(r"^CONN (.*)$").group(1))
    # stdout (JSON lines) and stderr ("connect: ..." lines) arrive merged; the JSON lines are the messages.
    received = [json.loads(line) for line in client.lines if line.startswith("{")]
    assert [m["seq"] for m in received] == list(range(50))  # one JSON value per line, in order
    assert all(m["from"] == "node" for m in received)
    assert [json.loads(line[5:])["seq"] for line in node.output.splitlines() if line.startswith("RECV ")] == [0, 1, 2]
    assert node_saw["authorized"] is True and node_saw["peerCN"] == "client"
    assert "connect: verification: OK" in client.output


# --- connect: summary, failures, --insecure, --pin, --reconnect ----------------------------------------------


def test_connect_summary_alpn_sni_and_echo(pki: Any, make_cert: Any) -> None:
    api_pem, api_key = make_cert(("api.test",), name="api")
    args = server_args(pki, "--ca", pki.root_pem, "--echo", "--alpn", "h2", "--alpn", "http/1.1")
    with serve(*args, "--sni", f"api.test={api_pem},{api_key}") as server:
        result = tlskit(*client_args(pki, server.port, "--alpn", "http/1.1"), stdin=b"ping\n")
        sni = tlskit(*client_args(pki, server.port, "--servername", "api.test"), stdin=b"x\n")
        server.wait_for(r"sni=api\.test")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ping\n"
    err = result.stderr
    assert "protocol TLSv1.3" in err and "ALPN http/1.1" in err and "session new" in err
    assert re.search(r"^connect:\s+0 CN=localhost\s+\(issuer CN=tlskit Test Intermediate CA", err, re.MULTILINE), err
    assert "verification: OK" in err
    assert sni.returncode == 0 and "0 CN=api.test" in sni.stderr  # serve chose the SNI certificate
    assert re.search(
        r"authorized \(CN=client\), TLSv1\.3, \S+, sni=localhost, alpn=http/1\.1, resumed=no", server.output
    )


@requires("openssl")
@pytest.mark.parametrize(
    ("case", "codes"),
    [
        ("other-ca", {"untrusted_root", "incomplete_chain"}),
        ("wrong-name", {"hostname_mismatch"}),
    ],
)
def test_connect_handshake_failure_exits_1_with_reason(pki: Any, case: str, codes: set[str]) -> None:
    cert, key = (pki.other_server_pem, pki.other_server_key) if case == "other-ca" else (pki.server_pem, pki.server_key)
    with openssl_server("-cert", str(cert), "-key", str(key), "-CAfile", str(pki.ca_chain_pem)) as peer:
        name = "localhost" if case == "other-ca" else "wrong.example"
        result = tlskit("connect", f"127.0.0.1:{peer.port}", "--ca", pki.root_pem, "--servername", name)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    m = re.match(r"tlskit: error: handshake with 127\.0\.0\.1:\d+ failed \((\w+)\): (.+); fix: (.+)$", line)
    assert m and m.group(1) in codes, line
    if case == "wrong-name":
        assert "wrong.example" in line or "name" in m.group(2)


def test_connect_without_required_client_certificate_exits_1(pki: Any) -> None:
    with serve(*server_args(pki, "--ca", pki.root_pem, "--echo")) as server:
        result = tlskit(*client_args(pki, server.port, cert=False), stdin=b"hi\n")
        server.wait_for(r"handshake failed \(client_cert_required\): .+; fix: .+")
    assert result.returncode == 1
    assert re.search(r"^tlskit: error: .*\(client_cert_required\): .+; fix: .+", result.stderr, re.MULTILINE)


def test_connect_refused_port_exits_2(pki: Any) -> None:
    """No TCP connection is the environment (exit 2, as for a busy port), not a peer's refusal (exit 1)."""
    with serve(*server_args(pki)) as server:
        port = server.port
    result = tlskit(*client_args(pki, port))  # the server is gone: nothing listens there now
    assert result.returncode == 2
    assert result.stderr.startswith(f"tlskit: error: cannot connect to 127.0.0.1:{port}: connection refused")


@requires("openssl")
def test_connect_insecure_still_reports_verification(pki: Any) -> None:
    with openssl_server("-cert", str(pki.other_server_pem), "-key", str(pki.other_server_key), "-rev") as peer:
        result = tlskit("connect", f"127.0.0.1:{peer.port}", "--ca", pki.root_pem, "--insecure", stdin=b"abc\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "cba\n"
    assert re.search(r"verification: would fail: .+ \(not enforced: --insecure\)", result.stderr), result.stderr


def test_connect_pin(pki: Any) -> None:
    good = spki_pin(pki.server_cert)
    with serve(*server_args(pki, "--echo")) as server:
        ok = tlskit(*client_args(pki, server.port, "--pin", good, cert=False), stdin=b"pinned\n")
        bad = tlskit(*client_args(pki, server.port, "--pin", "sha256:" + "A" * 43 + "=", cert=False))
    assert ok.returncode == 0 and ok.stdout == "pinned\n", ok.stderr
    assert bad.returncode == 1
    assert re.match(r"tlskit: error: handshake with .* failed \(\w+\): .*pin", bad.stderr), bad.stderr


def test_connect_reconnect_resumes(pki: Any) -> None:
    # --exec 'echo ...' answers and ends every connection, so the client must reconnect.
    with serve(*server_args(pki, "--exec", "echo hello $TLSKIT_PROTOCOL")) as server:
        client = start([str(TLSKIT), *map(str, client_args(pki, server.port, "--reconnect", cert=False))])
        try:
            client.wait_for(r"session new$")
            client.wait_for(r"session resumed$")  # a later connection resumed the saved session
            server.wait_for(r"resumed=yes$")
            deadline = time.monotonic() + TIMEOUT
            while client.output.count("hello TLSv1.3") < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            client.stop()
    assert client.output.count("hello TLSv1.3") >= 2, client.output  # one answer per connection
    assert "disconnected; reconnecting" in client.output


# --- serve: log lines, exec, allow-list, signals -----------------------------------------------------------


def test_serve_prints_received_data_and_logs_connections(pki: Any) -> None:
    with serve(*server_args(pki)) as server:
        result = tlskit(*client_args(pki, server.port, cert=False), stdin=b"data for stdout\n")
        server.wait_for(r"^data for stdout$")
        server.wait_for(r"^serve: 127\.0\.0\.1:\d+ closed$")
    assert result.returncode == 0
    line = server.wait_for(r"^serve: 127\.0\.0\.1:\d+ connected: (.*)$").group(1)
    assert line.startswith(
        "anonymous client (client certificate not requested"
    )  # nothing was asked: no "not authorized"
    assert re.search(r"TLSv1\.3, TLS_\w+, sni=localhost, alpn=-, resumed=no$", line)


@requires("openssl")
def test_serve_logs_failed_handshake_with_reason_and_fix(pki: Any) -> None:
    with serve(*server_args(pki, "--ca", pki.root_pem)) as server:
        argv = ["s_client", "-connect", f"127.0.0.1:{server.port}", "-cert", pki.other_client_pem]
        argv += ["-key", pki.other_client_key, "-tls1_2"]
        subprocess.run([OPENSSL, *map(str, argv)], input=b"", capture_output=True, timeout=TIMEOUT, check=False)
        line = server.wait_for(r"^serve: 127\.0\.0\.1:\d+ handshake failed \((\w+)\): (.+); fix: (.+)$")
    assert line.group(2) and line.group(3)
    assert "connected:" not in server.output


def test_serve_exec_with_peer_environment(pki: Any) -> None:
    script = 'printf "hello %s %s\\n" "$TLSKIT_PEER_CN" "$TLSKIT_PEER_AUTHORIZED"; cat'
    with serve(*server_args(pki, "--ca", pki.root_pem, "--exec", script)) as server:
        result = tlskit(*client_args(pki, server.port), stdin=b"ping\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello client 1\nping\n"


def test_serve_allow_cn(pki: Any) -> None:
    with serve(*server_args(pki, "--ca", pki.root_pem, "--echo", "--allow-cn", "someone-else")) as server:
        refused = tlskit(*client_args(pki, server.port), stdin=b"hi\n")
        server.wait_for(r"refused \(peer_not_allowed\): .*not in the allow-list")
    # TLS 1.3: the client finished its handshake before the server refused; it gets no data back.
    assert refused.stdout == ""
    assert "connected:" not in server.output
    with serve(*server_args(pki, "--ca", pki.root_pem, "--echo", "--allow-cn", "client")) as server:
        allowed = tlskit(*client_args(pki, server.port), stdin=b"hi\n")
    assert allowed.returncode == 0 and allowed.stdout == "hi\n"


def test_serve_reloads_on_sighup_and_stops_on_sigterm(pki: Any, tmp_path: Path, make_cert: Any) -> None:
    cert, key = tmp_path / "live.pem", tmp_path / "live-key.pem"
    shutil.copyfile(pki.server_pem, cert)
    shutil.copyfile(pki.server_key, key)
    renewed = make_cert(("renewed.test", "localhost", "127.0.0.1"), name="renewed")
    with serve("--cert", cert, "--key", key, "--echo") as server:
        before = tlskit(*client_args(pki, server.port, cert=False), stdin=b"1\n")
        shutil.copyfile(renewed[0], cert)
        shutil.copyfile(renewed[1], key)
        os.kill(server.proc.pid, signal.SIGHUP)
        server.wait_for("reloaded")
        after = tlskit(*client_args(pki, server.port, cert=False), stdin=b"2\n")
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(TIMEOUT) == 0
        server.wait_for(r"^serve: stopped$")
    assert "0 CN=localhost" in before.stderr
    assert "0 CN=renewed.test" in after.stderr and after.stdout == "2\n"


def test_serve_workers_share_the_port_and_stop_on_sigterm(pki: Any) -> None:
    with serve(*server_args(pki, "--echo", "--workers", "2")) as server:
        results = [tlskit(*client_args(pki, server.port, cert=False), stdin=b"w%d\n" % i) for i in range(3)]
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(TIMEOUT) == 0, server.output
    assert [r.stdout for r in results] == ["w0\n", "w1\n", "w2\n"]
    assert server.output.count("connected: ") == 3


def ipv6_loopback() -> bool:
    """Whether this machine has an IPv6 loopback address to bind (kernels and containers may have none)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:  # EADDRNOTAVAIL: no ::1 configured; EAFNOSUPPORT: no IPv6 at all
        return False
    return True


def test_serve_and_connect_over_ipv6_loopback(pki: Any) -> None:
    if not ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback: ::1 cannot be bound")
    argv = [str(TLSKIT), "serve", "[::1]:0", *map(str, server_args(pki, "--echo"))]
    port_from = lambda peer: int(peer.wait_for(r"^serve: listening on \[::1\]:(\d+)$").group(1))  # noqa: E731
    with running(argv, port_from=port_from) as server:
        result = tlskit("connect", f"[::1]:{server.port}", "--ca", pki.root_pem, stdin=b"six\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "six\n"
    assert "server name ::1" in result.stderr


# --- bad input: exit 2, one line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing-cert", "no such"),
        ("switched", "switch"),
        ("bad-port", "port"),
        ("port-range", "port"),
        ("connect-no-port", "HOST:PORT"),
        ("connect-port-0", "port"),
        ("cert-without-key", "--cert and --key"),
        ("bad-frames", "framing"),
        ("json-over-raw", "--json"),
        ("echo-and-exec", "--echo and --exec"),
        ("bad-sni", "NAME=CERT,KEY"),
    ],
)
def test_bad_input_exits_2_with_one_line(pki: Any, tmp_path: Path, case: str, needle: str) -> None:
    srv = ["--cert", pki.server_pem, "--key", pki.server_key]
    argv = {
        "missing-cert": ["serve", "0", "--cert", tmp_path / "nope.pem", "--key", pki.server_key],
        "switched": ["serve", "0", "--cert", pki.server_key, "--key", pki.server_pem],
        "bad-port": ["serve", "localhost:https", *srv],
        "port-range": ["serve", "70000", *srv],
        "connect-no-port": ["connect", "localhost"],
        "connect-port-0": ["connect", "localhost:0"],
        "cert-without-key": ["connect", "localhost:443", "--cert", pki.client_pem],
        "bad-frames": ["serve", "0", *srv, "--frames", "words"],
        "json-over-raw": ["connect", "localhost:443", "--frames", "raw", "--json"],
        "echo-and-exec": ["serve", "0", *srv, "--echo", "--exec", "cat"],
        "bad-sni": ["serve", "0", *srv, "--sni", "api.test"],
    }[case]
    result = tlskit(*argv, timeout=10)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlskit: error: "), result.stderr
    assert needle.lower() in lines[0].lower()
