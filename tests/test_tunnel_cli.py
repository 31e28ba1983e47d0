"""``tlskit tunnel`` as a process, against real peers (issue 8).

``openssl s_client`` and ``curl`` (mutual TLS) through ``tunnel server`` to a plaintext echo and a plaintext
HTTP server; ``tunnel client`` from plain ``curl`` and a plain socket to ``openssl s_server -Verify 1`` and to
Node's ``tls``; refused clients that never reach the target; metrics scraped and checked; SIGTERM drain; SIGHUP
and file-change reload under load with zero failed connections; a bad new file that keeps the old configuration;
``--config`` files (two tunnels, JSON log lines) and the one-line errors of bad flags and bad files.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import PKI, TLSKIT, echo_target, serving
from peers import CURL, NODE, OPENSSL, Peer, openssl_server, port_from_port_line, requires, running, start

NODE_DIR = Path(__file__).resolve().parent / "node"
TIMEOUT = 30.0


def port_from_tunnel(peer: Peer) -> int:
    return int(peer.wait_for(r"^tunnel: \[\S+\] listening on 127\.0\.0\.1:(\d+) ").group(1))


@contextlib.contextmanager
def tunnel_cli(*args: Any) -> Iterator[Peer]:
    """``tlskit tunnel ARGS`` with its log collected; the port is the first tunnel's; always stopped."""
    with running([str(TLSKIT), "tunnel", *map(str, args)], port_from=port_from_tunnel) as peer:
        yield peer


def metrics_port(peer: Peer) -> int:
    return int(peer.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))


# --- plaintext targets (threads in the test process, counting what reaches them) ----------------------------


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: Any = self.server
        server.connections += 1
        body = f"hello from plaintext, you are {self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _CountingHTTP(http.server.ThreadingHTTPServer):
    connections = 0


def http_target() -> contextlib.AbstractContextManager[_CountingHTTP]:
    return serving(_CountingHTTP(("127.0.0.1", 0), _Hello))


def server_args(pki: PKI, target_port: int, *extra: Any) -> list[Any]:
    return ["server", "--listen", "127.0.0.1:0", "--target", f"127.0.0.1:{target_port}", "--cert", pki.server_pem,
            "--key", pki.server_key, *extra]  # fmt: skip


def curl(*args: Any) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, check=False)


def mtls_curl(pki: PKI, port: int, *extra: Any) -> subprocess.CompletedProcess[str]:
    return curl("--cacert", pki.root_pem, "--cert", pki.client_pem, "--key", pki.client_key, *extra,
                f"https://localhost:{port}/")  # fmt: skip


# --- tunnel server with real clients -------------------------------------------------------------------------


@requires("curl")
def test_curl_mutual_tls_through_the_tunnel_to_plain_http(pki: PKI) -> None:
    with http_target() as web, tunnel_cli(*server_args(pki, web.server_address[1], "--ca", pki.root_pem)) as tunnel:
        refused = curl("--cacert", pki.root_pem, f"https://localhost:{tunnel.port}/")  # no client certificate
        ok = mtls_curl(pki, tunnel.port)
        tunnel.wait_for(r"\(CN=client\) -> 127\.0\.0\.1:\d+: TLSv1\.3 .* B to target, .* B to client, .*s, ")
    assert refused.returncode != 0 and refused.stdout == ""
    assert ok.returncode == 0 and ok.stdout == "hello from plaintext, you are 127.0.0.1\n", ok.stderr
    assert web.connections == 1  # the refused client never reached it
    assert re.search(r"refused: client_cert_required|handshake failed: client_cert_required", tunnel.output)


@requires("openssl")
def test_openssl_s_client_through_the_tunnel_to_a_plain_echo(pki: PKI) -> None:
    assert OPENSSL is not None
    with echo_target() as echo, tunnel_cli(*server_args(pki, echo.server_address[1], "--ca", pki.root_pem,
                                                        "--allow-cn", "client")) as tunnel:  # fmt: skip
        client = start([OPENSSL, "s_client", "-connect", f"127.0.0.1:{tunnel.port}", "-CAfile", str(pki.root_pem),
                        "-cert", str(pki.client_pem), "-cert_chain", str(pki.intermediates_pem), "-key",
                        str(pki.client_key), "-servername", "localhost",
                        "-quiet", "-verify_return_error"])  # fmt: skip
        try:
            client.write(b"through the tunnel\n")
            client.wait_for(r"^through the tunnel$")
        finally:
            client.stop()
    assert echo.connections == 1


@requires("curl")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_client_outside_the_allow_list_never_reaches_the_target(pki: PKI, workers: int) -> None:
    args = server_args(pki, 0, "--ca", pki.root_pem, "--allow-cn", "someone-else", "--workers", workers)
    with http_target() as web:
        args[4] = f"127.0.0.1:{web.server_address[1]}"
        with tunnel_cli(*args) as tunnel:
            refused = mtls_curl(pki, tunnel.port)
            tunnel.wait_for(
                r"refused: peer_not_allowed: the client's identity \(CN:client.*\) is not in the allow-list"
            )
    assert refused.returncode != 0 and refused.stdout == ""
    assert web.connections == 0


# --- tunnel client from plain clients ------------------------------------------------------------------------


@requires("openssl", "curl")
def test_plain_curl_through_a_client_tunnel_to_openssl_s_server_verify(pki: PKI) -> None:
    with openssl_server("-cert", str(pki.server_pem), "-cert_chain", str(pki.intermediates_pem), "-key",
                        str(pki.server_key), "-CAfile", str(pki.root_pem),
                        "-Verify", "1", "-www") as s_server:  # fmt: skip
        args = ["client", "--listen", "127.0.0.1:0", "--target", f"127.0.0.1:{s_server.port}", "--ca", pki.root_pem,
                "--cert", pki.client_pem, "--key", pki.client_key, "--servername", "localhost"]  # fmt: skip
        with tunnel_cli(*args) as tunnel:
            first = curl("--http1.0", f"http://127.0.0.1:{tunnel.port}/")
            second = curl("--http1.0", f"http://127.0.0.1:{tunnel.port}/")
            tunnel.wait_for(r"\(CN=localhost\) -> 127\.0\.0\.1:\d+: TLSv1\.3 .*, resumed, ")
    assert first.returncode == 0 and "TLSv1.3" in first.stdout, first.stderr
    # s_server's page shows the certificate the tunnel presented: the client's, not just a word on the page
    assert "Client certificate" in first.stdout, first.stdout
    assert re.search(r"^\s*Subject: *CN ?= ?client$", first.stdout, re.MULTILINE), first.stdout
    assert second.returncode == 0 and "Reused" in second.stdout  # s_server says the session was resumed


@requires("node")
def test_plain_socket_through_a_client_tunnel_to_node_tls(pki: PKI) -> None:
    assert NODE is not None
    cfg = {"key": str(pki.server_key), "cert": str(pki.server_pem), "ca": str(pki.root_pem), "requestCert": True,
           "rejectUnauthorized": True, "mode": "echo"}  # fmt: skip
    with running([NODE, str(NODE_DIR / "server.js"), json.dumps(cfg)], port_from=port_from_port_line) as node:
        args = ["client", "--listen", "127.0.0.1:0", "--target", f"127.0.0.1:{node.port}", "--ca", pki.root_pem,
                "--cert", pki.client_pem, "--key", pki.client_key, "--servername", "localhost"]  # fmt: skip
        with tunnel_cli(*args) as tunnel, socket.create_connection(("127.0.0.1", tunnel.port), timeout=10) as s:
            payload = bytes(range(256)) * 1024
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                got += s.recv(65536)
            assert got == payload
        line = node.wait_for(r"^CONN (.*)$").group(1)
    seen = json.loads(line)
    assert seen["authorized"] is True and seen["peerCN"] == "client" and seen["protocol"] == "TLSv1.3"


# --- metrics, drain, reload ----------------------------------------------------------------------------------


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def tls_echo(pki: PKI, port: int, data: bytes, *, cert: bool = True) -> bytes:
    ctx = ssl.create_default_context(cafile=str(pki.root_pem))
    if cert:
        ctx.load_cert_chain(pki.client_pem, pki.client_key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = tls.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_metrics_are_scraped_and_add_up(pki: PKI) -> None:
    with echo_target() as echo:
        args = server_args(pki, echo.server_address[1], "--ca", pki.root_pem, "--allow-cn", "client", "--name", "api",
                           "--metrics", "127.0.0.1:0")  # fmt: skip
        with tunnel_cli(*args) as tunnel:
            port = metrics_port(tunnel)
            assert scrape(port, "/healthz") == (200, "ok\n")
            assert tls_echo(pki, tunnel.port, b"a" * 1000) == b"a" * 1000
            assert tls_echo(pki, tunnel.port, b"b" * 234) == b"b" * 234
            with contextlib.suppress(OSError, ssl.SSLError):
                tls_echo(pki, tunnel.port, b"c", cert=False)  # refused: no certificate
            tunnel.wait_for(r"handshake failed|refused")
            for _ in range(100):  # the two good connections are logged (and counted) once they are closed
                if tunnel.output.count("B to client") == 2:
                    break
                time.sleep(0.05)
            status, text = scrape(port)
    assert status == 200
    got = samples(text)
    api = (("tunnel", "api"),)
    assert got[("tlskit_tunnel_connections_total", api)] == 2
    assert got[("tlskit_tunnel_connections_open", api)] == 0
    assert got[("tlskit_tunnel_bytes_total", (("direction", "to_target"), ("tunnel", "api")))] == 1234
    assert got[("tlskit_tunnel_bytes_total", (("direction", "to_client"), ("tunnel", "api")))] == 1234
    failures = {labels: v for (name, labels), v in got.items() if name == "tlskit_tunnel_handshake_failures_total"}
    assert sum(failures.values()) == 1 and dict(next(iter(failures)))["code"] == "client_cert_required", failures
    assert got[("tlskit_tunnel_handshake_seconds_count", api)] == 2
    assert got[("tlskit_tunnel_connection_seconds_count", api)] == 2
    expiry = got[("tlskit_tunnel_certificate_expiry_seconds", api)]
    assert 360 * 86400 < expiry <= 366 * 86400  # a fresh 365-day certificate


def test_sigterm_drains_open_connections(pki: PKI) -> None:
    with echo_target() as echo:
        args = server_args(pki, echo.server_address[1], "--metrics", "127.0.0.1:0", "--drain-timeout", "20")
        with tunnel_cli(*args) as tunnel:
            mport = metrics_port(tunnel)
            ctx = ssl.create_default_context(cafile=str(pki.root_pem))
            with (
                socket.create_connection(("127.0.0.1", tunnel.port), timeout=10) as raw,
                ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                tls.sendall(b"one")
                assert tls.recv(10) == b"one"
                os.kill(tunnel.proc.pid, signal.SIGTERM)
                tunnel.wait_for("draining")
                assert scrape(mport, "/healthz")[0] == 503  # load balancers stop sending
                with pytest.raises(OSError):
                    socket.create_connection(("127.0.0.1", tunnel.port), timeout=5).close()
                tls.sendall(b"two")  # the open connection is still served
                assert tls.recv(10) == b"two"
                assert tunnel.proc.poll() is None
            assert tunnel.proc.wait(TIMEOUT) == 0  # and the process ends when it closes, not at the deadline
            tunnel.wait_for("^tunnel: stopped$")


def test_reload_under_load_on_sighup_and_on_file_change(pki: PKI, tmp_path: Path, make_cert: Any) -> None:
    cert, key = tmp_path / "live.pem", tmp_path / "live-key.pem"
    shutil.copyfile(pki.server_pem, cert)
    shutil.copyfile(pki.server_key, key)
    renewed = make_cert(("renewed.test", "localhost"), name="renewed")
    names: set[str] = set()
    failures: list[str] = []
    stop = threading.Event()
    count = 0

    def served_more(since: int) -> int:
        """Connections completed since ``since`` was taken, once there is one (0 if none in a long while)."""
        for _ in range(400):
            if count > since:
                break
            time.sleep(0.05)
        return count - since

    def load(port: int) -> None:
        nonlocal count
        ctx = ssl.create_default_context(cafile=str(pki.root_pem))
        while not stop.is_set():
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                    ctx.wrap_socket(raw, server_hostname="localhost") as tls,
                ):
                    names.add(str(tls.getpeercert()["subject"]))
                    tls.sendall(b"x" * 100)
                    got = b""
                    while len(got) < 100:
                        got += tls.recv(100)
                count += 1
            except (OSError, ssl.SSLError) as exc:
                failures.append(repr(exc))

    with echo_target() as echo:
        args = ["server", "--listen", "127.0.0.1:0", "--target", f"127.0.0.1:{echo.server_address[1]}",
                "--cert", cert, "--key", key]  # fmt: skip
        with tunnel_cli(*args) as tunnel:
            threads = [threading.Thread(target=load, args=(tunnel.port,)) for _ in range(3)]
            for thread in threads:
                thread.start()
            progress = []  # connections completed after each step: the tunnel kept serving through it
            try:
                progress.append(served_more(0))
                os.kill(tunnel.proc.pid, signal.SIGHUP)
                tunnel.wait_for(r"\[tunnel\] reloaded")
                progress.append(served_more(count))
                # A renewal on disk: picked up by the watcher, no signal needed.
                shutil.copyfile(renewed[1], tmp_path / "k.tmp")
                shutil.copyfile(renewed[0], tmp_path / "c.tmp")
                os.replace(tmp_path / "k.tmp", key)
                os.replace(tmp_path / "c.tmp", cert)
                tunnel.wait_for(r"file changed: reloading")
                for _ in range(200):
                    if any("renewed.test" in n for n in names):
                        break
                    time.sleep(0.05)
                progress.append(served_more(count))
                # A broken file: the tunnel keeps serving with what it has, and says why.
                key.write_text("garbage")
                os.kill(tunnel.proc.pid, signal.SIGHUP)
                tunnel.wait_for(r"reload failed, keeping the current configuration: .*live-key\.pem")
                progress.append(served_more(count))
            finally:
                stop.set()
                for thread in threads:
                    thread.join(TIMEOUT)
    assert failures == [], failures[:3]
    assert all(progress) and len(progress) == 4, progress
    assert any("renewed.test" in n for n in names), names


# --- configuration files and bad input -----------------------------------------------------------------------


def tlskit(*args: Any) -> Any:
    """Bad input is rejected before anything runs: in process (click's runner), to keep the suite fast."""
    from click.testing import CliRunner

    from tlskit.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="tlskit")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    result.returncode = result.exit_code
    return result


def test_config_file_with_two_tunnels_and_json_logs(pki: PKI, tmp_path: Path) -> None:
    with echo_target() as echo:
        config = tmp_path / "tunnels.toml"
        shutil.copyfile(pki.server_pem, tmp_path / "server.pem")
        shutil.copyfile(pki.server_key, tmp_path / "server-key.pem")
        config.write_text(f"""
log-format = "json"

[tunnel.inner]
mode = "server"
listen = "127.0.0.1:0"
target = "127.0.0.1:{echo.server_address[1]}"
cert = "server.pem"          # relative to this file
key = "server-key.pem"
ca = ["{pki.root_pem}"]
allow-cn = ["client"]
""")
        with tunnel_cli_json("--config", config) as tunnel:
            port = tunnel.port
            assert tls_echo(pki, port, b"json") == b"json"
            line = tunnel.wait_for(r'"event": "connection"').string
    event = json.loads(line)
    assert event["tunnel"] == "inner" and event["identity"] == "CN=client" and event["protocol"] == "TLSv1.3"
    assert event["bytes_to_target"] == 4 and event["bytes_to_client"] == 4 and event["level"] == "info"
    assert set(event) >= {"time", "peer", "target", "cipher", "resumed", "seconds", "ended"}


@contextlib.contextmanager
def tunnel_cli_json(*args: Any) -> Iterator[Peer]:
    def port_from(peer: Peer) -> int:
        return int(json.loads(peer.wait_for(r'"event": "listening"').string)["listen"].rsplit(":", 1)[1])

    with running([str(TLSKIT), "tunnel", *map(str, args)], port_from=port_from) as peer:
        yield peer


BAD_CONFIGS = {
    "syntax": ("[tunnel.a]\nmode = server\n", r"not valid TOML .*line 2"),
    "unknown key": ('[tunnel.a]\nmode = "server"\nlisten = "0"\ntarget = "h:1"\nallow_cn = ["x"]\n',
                    r"\[tunnel\.a\] unknown key 'allow_cn': did you mean allow-cn\?"),
    "bad target": ('[tunnel.a]\nmode = "server"\nlisten = "0"\ntarget = "nohost"\ncert = "c"\nkey = "k"\n',
                   r"\[tunnel\.a\] target 'nohost' is not HOST:PORT: write it like localhost:8443"),
    "bad number": ('[tunnel.a]\nmode = "client"\nlisten = "0"\ntarget = "h:1"\nmax-connections = "ten"\n',
                   r"\[tunnel\.a\] max-connections must be a whole number of at least 1, not 'ten'"),
    "bad mode": ('[tunnel.a]\nmode = "both"\nlisten = "0"\ntarget = "h:1"\n', r"unknown mode 'both': use one of"),
    "missing": ('[tunnel.a]\nmode = "server"\nlisten = "0"\n', r"\[tunnel\.a\] has no target: add target = "),
    "no tunnel": ('log-format = "json"\n', r"no tunnel is defined"),
    "missing file": ('[tunnel.a]\nmode = "server"\nlisten = "0"\ntarget = "h:1"\ncert = "none.pem"\nkey = "k.pem"\n',
                     r"\[tunnel\.a\] .*none\.pem"),
    "policy": ('[tunnel.a]\nmode = "server"\nlisten = "0"\ntarget = "h:1"\ncert = "c"\nkey = "k"\nallow-cn = ["x"]\n',
               r"client-auth = \"optional\""),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_with_one_line_naming_file_and_key(tmp_path: Path, case: str) -> None:
    text, pattern = BAD_CONFIGS[case]
    config = tmp_path / "tunnels.toml"
    config.write_text(text)
    result = tlskit("tunnel", "--config", config)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"tlskit: error: {config}: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]


PIN = "sha256:" + "A" * 43 + "="  # well formed: the error is about what it needs

BAD_FLAGS = {
    "target": (["server", "--listen", "0", "--target", "nohost"], r"--target 'nohost' is not HOST:PORT"),
    "policy": (["server", "--listen", "0", "--target", "h:1", "--allow-cn", "x"], r"give --ca .*--client-auth opt"),
    "proxy in client": (["client", "--listen", "0", "--target", "h:1", "--proxy-protocol", "v1"], r"no such option"),
    "pin": (["client", "--listen", "0", "--target", "h:1", "--pin", "sha256:x"], r"invalid pin"),
    "pin with client-auth none": (["server", "--listen", "0", "--target", "h:1", "--ca", "ca.pem", "--client-auth",
                                   "none", "--pin", PIN],
                                  r"^(?!.*give --ca).*: use --client-auth optional or --client-auth required$"),
    "timeout": (["client", "--listen", "0", "--target", "h:1", "--connect-timeout", "0"],
                r"--connect-timeout must be a positive number"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flags_exit_2_with_one_line(pki: PKI, case: str) -> None:
    args, pattern = BAD_FLAGS[case]
    if args[0] == "server":
        args = [*args, "--cert", str(pki.server_pem), "--key", str(pki.server_key)]
    result = tlskit("tunnel", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    assert len(result.stderr.splitlines()) == 1 and re.search(pattern, result.stderr), result.stderr


BAD_LISTENERS = {
    "metrics host": (["server", "--listen", "0", "--target", "127.0.0.1:9", "--metrics", "bogus.invalid:9100"],
                     r"metrics endpoint \(--metrics\): cannot resolve the host name 'bogus\.invalid'"),
    "unix directory": (["client", "--listen", "unix:/nonexistent/dir/s.sock", "--target", "127.0.0.1:9"],
                       r"--listen unix:/nonexistent/dir/s\.sock: cannot listen there: the directory /nonexistent/dir "
                       r"does not exist: create it"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_LISTENERS))
def test_listeners_that_cannot_listen_exit_2_with_one_line(pki: PKI, case: str) -> None:
    """These fail once the tunnel starts, so in a process of their own (the CLI sets up process-wide logging)."""
    args, pattern = BAD_LISTENERS[case]
    if args[0] == "server":
        args = [*args, "--cert", str(pki.server_pem), "--key", str(pki.server_key)]
    done = subprocess.run([str(TLSKIT), "tunnel", *args], capture_output=True, text=True, timeout=TIMEOUT,
                          check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("tlskit: error: "), done.stderr
    assert re.search(pattern, lines[0]), lines[0]
