"""The scanners people judge a TLS endpoint with, against ``tlskit serve`` (issue 12, items 1 and 2).

- sslyze (its own virtual environment: pinned dependencies; ``make scanners`` builds it from the package index,
  ``make test`` does so first): the default ``tlskit serve`` is compliant with Mozilla's intermediate
  configuration and not with modern; ``--profile modern`` with a certificate from ``tlskit ca issue --days 90``
  is compliant with modern.
- testssl.sh (Debian's ``testssl.sh``), run once per session against the default ``tlskit serve`` with a
  certificate from a CA made with ``--crl-url``/``--ocsp-url`` (issue 11), trusting that CA: no finding of
  severity MEDIUM or above, each LOW finding explained in docs/security.md, and not one failed handshake that
  serve logs without a precise code.  (The same certificate without revocation URLs is rated HIGH
  ``cert_revocation``: a CA without URLs is the one way to get it.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from peers import Peer, missing, requires, tool
from test_cli_net import serve
from test_cli_pki import ok, tlskit

SSLYZE = Path(os.environ.get("TLSKIT_SSLYZE") or ROOT / ".pytest_cache" / "sslyze" / "bin" / "sslyze")
SECURITY_DOC = ROOT / "docs" / "security.md"

# testssl.sh checks: protocols (-p), server defaults incl. the certificate (-S), the server's preferences (-P) and
# the vulnerability checks (-U), without DNS (loopback only): about 40 s, where a full run takes over two minutes.
TESTSSL_CHECKS = ("-p", "-S", "-P", "-U", "--nodns", "none")
SERIOUS = {"MEDIUM", "HIGH", "CRITICAL"}


def sslyze() -> str:
    if not SSLYZE.is_file():
        missing(f"sslyze is not installed at {SSLYZE}", "run 'make scanners' (make test does), or set TLSKIT_SSLYZE")
    return str(SSLYZE)


@dataclass(frozen=True)
class Served:
    cert: Path
    key: Path
    root: Path


def cli_pki(d: Path, *init: str, days: str = "365") -> Served:
    """A root CA from ``tlskit ca init ca INIT...`` and a server certificate from ``tlskit ca issue --days DAYS``."""
    ok(tlskit("ca", "init", "ca", "--name", "Scanner Test Root", *init, cwd=d))
    ok(tlskit("ca", "issue", "ca", "localhost", "127.0.0.1", "--days", days, "--out", "server", cwd=d))
    return Served(d / "server.pem", d / "server-key.pem", d / "ca" / "ca.pem")


@pytest.fixture(scope="module")
def revocable(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """A CA made with ``--crl-url``/``--ocsp-url`` (issue 11): its certificates name both."""
    urls = ["--crl-url", "http://127.0.0.1:8080/root.crl", "--ocsp-url", "http://127.0.0.1:8080/ocsp"]
    return cli_pki(tmp_path_factory.mktemp("revocable-pki"), *urls)


@pytest.fixture(scope="module")
def pki90(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """A 90-day server certificate, as Mozilla's modern configuration asks."""
    return cli_pki(tmp_path_factory.mktemp("scanner-pki"), days="90")


def mozilla(config: str, port: int, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sslyze(), f"--mozilla_config={config}", "--certinfo_ca_file", str(root), f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_sslyze_default_serve_is_mozilla_intermediate_not_modern(pki: Any) -> None:
    with serve("--cert", pki.server_pem, "--key", pki.server_key, "--echo") as server:
        intermediate = mozilla("intermediate", server.port, pki.root_pem)
        modern = mozilla("modern", server.port, pki.root_pem)
    assert intermediate.returncode == 0 and "OK - Compliant" in intermediate.stdout, intermediate.stdout
    # The check discriminates: TLS 1.2 and a one-year certificate are not "modern".
    assert modern.returncode != 0 and "tls_versions" in modern.stdout, modern.stdout


def test_sslyze_profile_modern_with_a_90_day_certificate_is_mozilla_modern(pki90: Served) -> None:
    with serve("--cert", pki90.cert, "--key", pki90.key, "--profile", "modern", "--echo") as server:
        modern = mozilla("modern", server.port, pki90.root)
    assert modern.returncode == 0 and "OK - Compliant" in modern.stdout, modern.stdout


# --- testssl.sh ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanRun:
    findings: list[dict[str, Any]]
    serve_log: str

    def of(self, *severities: str) -> dict[str, str]:
        return {f["id"]: f["finding"] for f in self.findings if f["severity"] in severities}


@pytest.fixture(scope="module")
def testssl_run(revocable: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScanRun]:
    """One testssl.sh scan of the default ``tlskit serve`` per session (it takes about 40 s)."""
    testssl = tool("testssl")
    out = tmp_path_factory.mktemp("testssl") / "findings.json"
    with serve("--cert", revocable.cert, "--key", revocable.key, "--echo") as server:
        argv = [testssl, "--quiet", "--color", "0", "--warnings", "off", "--add-ca", str(revocable.root)]
        done = subprocess.run(
            [*argv, "--jsonfile", str(out), *TESTSSL_CHECKS, f"127.0.0.1:{server.port}"],
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        assert out.is_file(), done.stdout + done.stderr
        yield ScanRun(json.loads(out.read_text()), serve_log(server))


def serve_log(server: Peer) -> str:
    server.wait_for(r"connected: ", timeout=5)
    return server.output


@requires("testssl")
def test_testssl_finds_nothing_serious(testssl_run: ScanRun) -> None:
    assert testssl_run.of(*SERIOUS) == {}  # cipher_order and cert_revocation (HIGH on earlier versions) are gone
    checked = {f["id"] for f in testssl_run.findings}
    assert {"cipher_order", "cert_crlDistributionPoints", "cert_ocspURL"} <= checked  # no cert_revocation: URLs


@requires("testssl")
def test_every_low_testssl_finding_is_explained_in_security_md(testssl_run: ScanRun) -> None:
    doc = SECURITY_DOC.read_text()
    unexplained = [name for name in testssl_run.of("LOW") if f"`{name}`" not in doc]
    assert not unexplained, f"LOW findings without a word in docs/security.md: {unexplained}"


@requires("testssl")
def test_every_handshake_testssl_made_fail_is_logged_in_words(testssl_run: ScanRun) -> None:
    """testssl.sh sends SSLv2 hellos, old versions, odd suites and renegotiations: every failure has a precise code."""
    failures = re.findall(r"^serve: \S+ (?:handshake failed|closed) ?\((\w+)\)?", testssl_run.serve_log, re.M)
    codes = set(re.findall(r"^serve: \S+ handshake failed \((\w+)\)", testssl_run.serve_log, re.M))
    assert failures and codes, testssl_run.serve_log[-2000:]
    assert "unknown" not in codes, testssl_run.serve_log
    assert "Traceback" not in testssl_run.serve_log
    assert codes <= {
        "protocol_too_old",
        "not_tls",
        "no_shared_cipher",
        "no_shared_group",
        "truncated_handshake",
        "connection_closed",
        "malformed_handshake",
        "protocol_violation",
        "oversized_message",
    }, codes
