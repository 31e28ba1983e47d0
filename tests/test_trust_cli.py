"""Regression tests for the trust holes of issue 7, as a user meets them on the command line.

- ``serve --client-auth optional --allow-cn alice``: a client with no certificate used to be served.
- ``connect --insecure --pin <wrong>``: used to send stdin and exit 0 ("would fail").
- ``serve --exec``: children used to inherit ``TLSKIT_PASSPHRASE`` and ``SSLKEYLOGFILE``.
- ``SSLKEYLOGFILE``: used to be honoured by servers, and the key log created with the umask.
Each runs the real ``tlskit`` program against a real peer on 127.0.0.1.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from conftest import PKI, TLSKIT
from test_cli_net import TIMEOUT, client_args, serve, server_args, tlskit
from tlskit.pki.certs import Profile
from tlskit.pki.inspect import spki_pin


def test_allow_list_refuses_a_client_without_certificate_in_optional_mode(pki: PKI, tmp_path: Path) -> None:
    alice = pki.ca.issue(["alice"], profile=Profile.CLIENT).write(tmp_path / "alice")
    bob = pki.ca.issue(["bob"], profile=Profile.CLIENT).write(tmp_path / "bob")
    args = server_args(pki, "--ca", pki.root_pem, "--client-auth", "optional", "--allow-cn", "alice", "--echo")
    with serve(*args) as server:
        anonymous = tlskit(*client_args(pki, server.port, cert=False), stdin=b"no certificate\n")
        server.wait_for(r"refused \(peer_not_allowed\): the client sent no certificate")
        other = tlskit(*client_args(pki, server.port, *_identity(bob), cert=False), stdin=b"bob here\n")
        server.wait_for(r"refused \(peer_not_allowed\): the client's identity \(CN:bob, DNS:bob\)")
        allowed = tlskit(*client_args(pki, server.port, *_identity(alice), cert=False), stdin=b"alice here\n")
        server.wait_for(r"connected: authorized \(CN=alice\)")
    assert anonymous.stdout == "" and other.stdout == "", (anonymous, other)  # nothing echoed to either
    assert allowed.returncode == 0 and allowed.stdout == "alice here\n", allowed.stderr
    assert server.output.count("connected:") == 1, server.output  # the handler ran for alice only


def test_allow_list_without_client_auth_is_a_usage_error(pki: PKI) -> None:
    result = tlskit("serve", "0", *server_args(pki, "--allow-cn", "alice", "--echo"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    # The library's fix names parameters (client_auth=...); the command line names flags.
    assert "--client-auth optional" in result.stderr and "client_auth=" not in result.stderr, result.stderr


def test_insecure_connect_with_a_crl_is_a_usage_error(pki: PKI, tmp_path: Path) -> None:
    # With --insecure nothing would read the CRL: a revoked server would be served the input, so refuse up front.
    crl = tmp_path / "int.crl"
    crl.write_bytes(pki.ca.crl().public_bytes(serialization.Encoding.PEM))
    result = tlskit("connect", "127.0.0.1:9", "--insecure", "--crl", str(crl), stdin=b"secret\n")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "--crl" in result.stderr and "--insecure" in result.stderr and "crls=" not in result.stderr, result.stderr


def test_insecure_connect_with_a_wrong_pin_sends_nothing_and_fails(pki: PKI) -> None:
    wrong = spki_pin(pki.client_cert)
    with serve(*server_args(pki)) as server:  # prints what it receives on stdout
        result = tlskit("connect", f"127.0.0.1:{server.port}", "--insecure", "--pin", wrong, stdin=b"top secret\n")
        server.wait_for(r"closed$")
    assert result.returncode == 1, result
    assert "(pin_mismatch)" in result.stderr and result.stdout == ""
    assert "top secret" not in server.output, server.output
    # The right pin with --insecure (a self-signed server, as with curl -k --pinnedpubkey) works.
    with serve(*server_args(pki, "--echo")) as server:
        good = tlskit(
            "connect", f"127.0.0.1:{server.port}", "--insecure", "--pin", spki_pin(pki.server_cert), stdin=b"hi\n"
        )
    assert good.returncode == 0 and good.stdout == "hi\n", good.stderr


def test_insecure_allow_list_without_pin_is_refused_before_connecting(pki: PKI) -> None:
    result = tlskit("connect", "127.0.0.1:9", "--insecure", "--allow-dns", "localhost")
    assert result.returncode == 2 and "proves nothing" in result.stderr and "--pin" in result.stderr, result.stderr


def test_exec_children_get_no_secrets(pki: PKI, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TLSKIT_PASSPHRASE": "hunter2",
        "SSLKEYLOGFILE": str(tmp_path / "inherited-keys.log"),
        "TLSKIT_OTHER_SECRET": "s3cret",
        "HARMLESS": "kept",
    }
    with serve(*server_args(pki, "--exec", "env"), env=env) as server:
        result = tlskit(*client_args(pki, server.port, cert=False))
    assert result.returncode == 0, result.stderr
    child = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert "TLSKIT_PASSPHRASE" not in child and "SSLKEYLOGFILE" not in child and "TLSKIT_OTHER_SECRET" not in child
    assert "hunter2" not in result.stdout and "s3cret" not in result.stdout
    assert child["HARMLESS"] == "kept" and child["TLSKIT_PEER_ADDR"].startswith("127.0.0.1:")
    assert child["TLSKIT_PROTOCOL"] == "TLSv1.3"
    # The server itself did not start a key log because of the inherited SSLKEYLOGFILE.
    assert not (tmp_path / "inherited-keys.log").exists()


def test_keylog_only_when_asked_and_private(pki: PKI, tmp_path: Path) -> None:
    log = tmp_path / "server-keys.log"
    old = os.umask(0o022)
    try:
        with serve(*server_args(pki, "--echo", "--keylog", log)) as server:
            done = tlskit(*client_args(pki, server.port, cert=False), stdin=b"x\n")
    finally:
        os.umask(old)
    assert done.returncode == 0
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in log.read_text()
    # A client honours SSLKEYLOGFILE, with a warning on stderr.
    client_log = tmp_path / "client-keys.log"
    with serve(*server_args(pki, "--echo")) as server:
        env_run = _tlskit_env({"SSLKEYLOGFILE": str(client_log)}, *client_args(pki, server.port, cert=False))
    assert env_run.returncode == 0 and "SSLKEYLOGFILE is set" in env_run.stderr
    assert stat.S_IMODE(client_log.stat().st_mode) == 0o600


def _identity(paths: tuple[Path, Path]) -> list[Any]:
    return ["--cert", paths[0], "--key", paths[1]]


def _tlskit_env(extra: dict[str, str], *args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TLSKIT), *map(str, args)],
        input="y\n",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "NO_COLOR": "1", **extra},
    )
