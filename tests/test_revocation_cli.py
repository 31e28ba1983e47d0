"""Revocation online (issue 11) through the command line, against the real tools.

One module hierarchy made with the CLI: a root (signs its own OCSP answers) and an intermediate with a
delegated OCSP responder (``tlskit ca ocsp-signer``), both published by one ``tlskit ca serve`` process.
``openssl ocsp`` sees good, then revoked (CA-signed, delegated with ``-VAfile``, with a nonce); ``openssl verify
-crl_download -crl_check`` and curl + ``openssl crl`` accept the published CRL; ``tlskit verify --ocsp`` and
``--crl-fetch``; ``tlskit serve --ocsp`` and ``--crl-url`` refuse a client revoked while they run; ``tlskit
probe`` reports a revoked server; concurrent ``tlskit ca revoke`` processes while serving lose nothing.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from conftest import TLSKIT, free_port
from peers import Peer, openssl_server, requires, running, tool
from tlskit.pki.inspect import serial_hex

TIMEOUT = 30.0


def tlskit(*args: Any, cwd: Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TLSKIT_PASSPHRASE"} | {"NO_COLOR": "1"}
    result = subprocess.run(
        [str(TLSKIT), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=env
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def openssl(*args: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("openssl"), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


@dataclass
class Hierarchy:
    dir: Path
    base: str
    responder: Peer

    def issue(self, ca: str, name: str, *extra: str) -> Path:
        tlskit("ca", "issue", ca, name, "--out", name, *extra, cwd=self.dir, check=True)
        return self.dir / f"{name}.pem"

    def revoke(self, ca: str, cert: Path, reason: str = "keyCompromise") -> None:
        tlskit("ca", "revoke", ca, cert, "--reason", reason, cwd=self.dir, check=True)


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hierarchy]:
    d = tmp_path_factory.mktemp("published")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    urls = ["--crl-url", f"{base}/root.crl", "--ocsp-url", f"{base}/ocsp"]
    tlskit("ca", "init", "root", "--name", "CLI Root", *urls, cwd=d, check=True)
    tlskit("ca", "intermediate", "root", "int", "--name", "CLI Intermediate", "--crl-url", f"{base}/int.crl",
           "--ocsp-url", f"{base}/ocsp", cwd=d, check=True)  # fmt: skip
    tlskit("ca", "ocsp-signer", "int", cwd=d, check=True)
    argv = [str(TLSKIT), "ca", "serve", "root", "int", "--listen", f"127.0.0.1:{port}"]
    with running(
        argv, port_from=lambda p: int(p.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1)), cwd=d
    ) as peer:
        yield Hierarchy(d, base, peer)


# --- bad input -------------------------------------------------------------------------------------------------


def test_https_url_refused_with_the_reason(tmp_path: Path) -> None:
    result = tlskit("ca", "init", "ca", "--crl-url", "https://pki.example/root.crl", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("tlskit: error: --crl-url 'https://pki.example/root.crl' uses https")
    assert "RFC 5280" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ca").exists()


def test_verify_unreachable_responder_closed_then_open(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    tlskit("ca", "init", "ca", "--ocsp-url", f"{dead}/ocsp", "--crl-url", f"{dead}/ca.crl", cwd=tmp_path, check=True)
    tlskit("ca", "issue", "ca", "localhost", "--out", "leaf", cwd=tmp_path, check=True)
    closed = tlskit("verify", "leaf.pem", "--ca", "ca/ca.pem", "--ocsp", "--timeout", "2", cwd=tmp_path)
    assert closed.returncode == 1, closed.stdout + closed.stderr
    assert closed.stdout.startswith("INVALID (revocation_unavailable): could not get an OCSP answer from")
    assert "connection refused" in closed.stdout
    opened = tlskit("verify", "leaf.pem", "--ca", "ca/ca.pem", "--crl-fetch", "--fail-open", "--json", cwd=tmp_path)
    assert opened.returncode == 0, opened.stdout + opened.stderr
    assert [w["code"] for w in json.loads(opened.stdout)["warnings"]] == ["revocation_unavailable"]
    assert tlskit("verify", "leaf.pem", "--ca", "ca/ca.pem", "--fail-open", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--ocsp"], "does not ask for any"),
        (["--crl-url", "http://127.0.0.1:9/int.crl"], "does not ask for any"),
        (["--ocsp", "--ca", "root/ca.pem", "--client-auth", "none"], "does not ask for any"),
        (["--fail-open"], "--fail-open goes with --crl-url or --ocsp"),
        (["--revocation-interval", "5", "--ca", "root/ca.pem"], "--revocation-interval goes with --crl-url or --ocsp"),
        (["--crl-url", "https://127.0.0.1:9/int.crl", "--ca", "root/ca.pem"], "https"),
    ],
)
def test_serve_revocation_bad_combinations_are_one_line(hierarchy: Hierarchy, extra: list[str], said: str) -> None:
    issued = hierarchy.dir / "lonely-server.pem"
    if not issued.exists():  # one server certificate for every case of this module-scoped hierarchy
        hierarchy.issue("int", "lonely-server")
    key = hierarchy.dir / "lonely-server-key.pem"
    result = tlskit("serve", "0", "--cert", issued, "--key", key, "--echo", *extra, cwd=hierarchy.dir)
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert said in result.stderr and result.stdout == "", result.stderr


# --- openssl and curl ------------------------------------------------------------------------------------------


@requires("openssl")
def test_openssl_ocsp_ca_signed_good_then_revoked_with_nonce(hierarchy: Hierarchy) -> None:
    cert = hierarchy.issue("root", "direct")  # the root answers with its own key
    url = f"{hierarchy.base}/ocsp"
    argv = ["ocsp", "-issuer", "root/ca.pem", "-cert", cert, "-url", url, "-CAfile", "root/ca.pem", "-resp_text"]
    good = openssl(*argv, cwd=hierarchy.dir)
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"{cert}: good" in good.stdout and "Response verify OK" in good.stderr
    assert "OCSP Nonce" in good.stdout and "WARNING" not in good.stderr  # the nonce was echoed
    hierarchy.revoke("root", cert)
    revoked = openssl(*argv, cwd=hierarchy.dir)
    assert f"{cert}: revoked" in revoked.stdout, revoked.stdout + revoked.stderr
    assert "Reason: keyCompromise" in revoked.stdout and "Response verify OK" in revoked.stderr


@requires("openssl")
def test_openssl_ocsp_delegated_responder_vafile(hierarchy: Hierarchy) -> None:
    cert = hierarchy.issue("int", "delegated")
    for trust in (["-VAfile", "int/ocsp.pem"], ["-CAfile", "root/ca.pem", "-verify_other", "int/ca.pem"]):
        argv = ["ocsp", "-issuer", "int/ca.pem", "-cert", cert, "-url", f"{hierarchy.base}/ocsp", *trust, "-resp_text"]
        good = openssl(*argv, cwd=hierarchy.dir)
        assert f"{cert}: good" in good.stdout and "Response verify OK" in good.stderr, good.stdout + good.stderr
        assert "OCSP Responder" in good.stdout  # signed by the delegated responder, which it sends along
    hierarchy.revoke("int", cert, "superseded")
    revoked = openssl("ocsp", "-issuer", "int/ca.pem", "-cert", cert, "-url", f"{hierarchy.base}/ocsp", "-VAfile",
                      "int/ocsp.pem", cwd=hierarchy.dir)  # fmt: skip
    assert f"{cert}: revoked" in revoked.stdout and "Reason: superseded" in revoked.stdout, revoked.stdout


@requires("openssl", "curl")
def test_openssl_verify_downloads_the_published_crl(hierarchy: Hierarchy) -> None:
    cert = hierarchy.issue("int", "crl-leaf")
    argv = ["verify", "-crl_download", "-crl_check", "-CAfile", "root/ca.pem", "-untrusted", "int/ca.pem", cert]
    good = openssl(*argv, cwd=hierarchy.dir)
    assert good.returncode == 0 and f"{cert}: OK" in good.stdout, good.stdout + good.stderr
    hierarchy.revoke("int", cert)
    refused = openssl(*argv, cwd=hierarchy.dir)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    # curl fetches the same CRL (DER, application/pkix-crl) and openssl crl reads and verifies it
    fetched = subprocess.run(
        [tool("curl"), "-sSf", "-o", "int.crl", "-w", "%{content_type}", f"{hierarchy.base}/int.crl"],
        cwd=hierarchy.dir, capture_output=True, text=True, timeout=TIMEOUT, check=True,
    )  # fmt: skip
    assert fetched.stdout == "application/pkix-crl"
    text = openssl(
        "crl", "-inform", "DER", "-in", "int.crl", "-noout", "-text", "-CAfile", "int/ca.pem", cwd=hierarchy.dir
    )
    assert "verify OK" in text.stderr + text.stdout and "Revoked Certificates" in text.stdout
    serial = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    assert f"{serial:X}" in text.stdout.replace(":", "").upper()


def test_tlskit_verify_ocsp_and_crl_fetch(hierarchy: Hierarchy) -> None:
    cert = hierarchy.issue("int", "verified")
    for flag in ("--ocsp", "--crl-fetch"):
        good = tlskit("verify", cert, "--ca", "root/ca.pem", flag, "--whole-chain", cwd=hierarchy.dir)
        assert good.returncode == 0, good.stdout + good.stderr
        assert (
            "revocation of 'verified': good" in good.stdout and "revocation of 'CLI Intermediate': good" in good.stdout
        )
    hierarchy.revoke("int", cert)
    for flag in ("--ocsp", "--crl-fetch"):
        bad = tlskit("verify", cert, "--ca", "root/ca.pem", flag, cwd=hierarchy.dir)
        assert bad.returncode == 1 and bad.stdout.startswith("INVALID (revoked): 'verified'"), bad.stdout


# --- servers that refuse revoked clients ------------------------------------------------------------------------


def _talk(h: Hierarchy, port: int, name: str) -> bytes:
    """One mutual-TLS connection as ``name``: what the echo server sends back (b"" when refused)."""
    ctx = ssl.create_default_context(cafile=h.dir / "root" / "ca.pem")
    ctx.load_cert_chain(h.dir / f"{name}.pem", h.dir / f"{name}-key.pem")
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"ping\n")
            return tls.recv(16)
    except (ssl.SSLError, ConnectionError):
        return b""


@pytest.mark.parametrize("how", ["ocsp", "crl-url"])
def test_serve_refuses_a_client_revoked_while_it_runs(hierarchy: Hierarchy, how: str) -> None:
    server = hierarchy.issue("int", f"server-{how}", "localhost")
    client = f"client-{how}"
    hierarchy.issue("int", client, "--client")
    check = ["--ocsp"] if how == "ocsp" else ["--crl-url", f"{hierarchy.base}/int.crl"]
    argv = [str(TLSKIT), "serve", "0", "--cert", server, "--key", hierarchy.dir / f"server-{how}-key.pem", "--ca",
            hierarchy.dir / "root" / "ca.pem", "--echo", *check, "--revocation-interval", "0.2"]  # fmt: skip
    with running(argv, port_from=lambda p: int(p.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))) as serve:
        assert _talk(hierarchy, serve.port, client) == b"ping\n", serve.output
        hierarchy.revoke("int", hierarchy.dir / f"{client}.pem")
        # Each new handshake is a question; the server answers "refused ... revoked" within its refresh interval.
        deadline = time.monotonic() + 20
        while "revoked" not in serve.output and time.monotonic() < deadline:
            assert _talk(hierarchy, serve.port, client) in (b"", b"ping\n")
        line = serve.wait_for(r"refused \(revoked\): '" + client + "' .* was revoked by 'CLI Intermediate'", timeout=1)
        assert "reason: keyCompromise" in line.string
        assert _talk(hierarchy, serve.port, client) == b""


@requires("openssl")
def test_probe_reports_a_revoked_server(hierarchy: Hierarchy) -> None:
    chain = hierarchy.issue("int", "probed", "127.0.0.1")
    key = hierarchy.dir / "probed-key.pem"
    with openssl_server("-cert", chain, "-key", key, "-cert_chain", chain, cwd=hierarchy.dir) as peer:
        argv = [
            "probe",
            f"127.0.0.1:{peer.port}",
            "--ca",
            "root/ca.pem",
            "--servername",
            "probed",
            "--no-scan",
            "--json",
        ]
        before = json.loads(tlskit(*argv, cwd=hierarchy.dir).stdout)
        assert "revoked" not in [p["code"] for p in before["problems"]]
        hierarchy.revoke("int", chain)
        after = json.loads(tlskit(*argv, cwd=hierarchy.dir).stdout)
        assert "revoked" in [p["code"] for p in after["problems"]]


def test_concurrent_revoke_processes_while_serving_lose_nothing(hierarchy: Hierarchy) -> None:
    certs = [hierarchy.issue("int", f"many{i}") for i in range(6)]
    stop = threading.Event()

    def fetch_crls() -> None:  # ca serve signs a new CRL (and writes its number) after every revocation
        while not stop.is_set():
            with urllib.request.urlopen(f"{hierarchy.base}/int.crl", timeout=TIMEOUT) as response:
                response.read()

    reader = threading.Thread(target=fetch_crls)
    reader.start()
    env = {k: v for k, v in os.environ.items() if k != "TLSKIT_PASSPHRASE"}
    procs = [subprocess.Popen([str(TLSKIT), "ca", "revoke", "int", str(c)], cwd=hierarchy.dir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in certs]  # fmt: skip
    try:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        stop.set()
        reader.join()
    assert all(p.returncode == 0 for p in procs), outputs
    with urllib.request.urlopen(f"{hierarchy.base}/int.crl", timeout=TIMEOUT) as response:
        crl = x509.load_der_x509_crl(response.read())
    for cert in certs:
        serial = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    listed = json.loads(tlskit("ca", "list", "int", "--json", cwd=hierarchy.dir, check=True).stdout)
    serials = {serial_hex(x509.load_pem_x509_certificate(c.read_bytes()).serial_number) for c in certs}
    assert {r["serial"] for r in listed if r["status"] == "revoked"} >= serials
