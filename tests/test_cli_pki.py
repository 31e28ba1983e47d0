"""The PKI commands end to end, as a user runs them, checked by real verifiers.

A root, four intermediate levels and a server and a client certificate are made with the ``tlskit`` command
(subprocesses), then verified by ``openssl verify``, GnuTLS ``certtool --verify``, a Python ``ssl`` mutual-TLS
handshake with ``VERIFY_X509_STRICT`` on both sides, and a Node ``tls`` server/client pair.  Bad input must give
one ``tlskit: error:`` line naming the file, exit code 2, no traceback and no changed files.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from peers import requires, tool
from tlskit.errors import PassphraseError
from tlskit.pki.ca import CertificateAuthority
from tlskit.pki.files import load_certificates, load_crl, load_csr

ROOT_DIR = Path(__file__).resolve().parent.parent
TLSKIT = ROOT_DIR / ".venv" / "bin" / "tlskit"
TLSKIT_ARGV = [str(TLSKIT)] if TLSKIT.exists() else [sys.executable, "-m", "tlskit"]
LEVELS = 4


def tlskit(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI; never raises, the caller asserts on the result."""
    base = dict(os.environ)
    base.pop("TLSKIT_PASSPHRASE", None)
    base["NO_COLOR"] = "1"
    return subprocess.run(
        [*TLSKIT_ARGV, *map(str, args)],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class Hierarchy:
    """Files of the CLI-made hierarchy (all relative to ``dir``)."""

    dir: Path
    root: Path  # root/ca.pem
    untrusted: Path  # the intermediates, for -untrusted
    issuing: Path  # the last intermediate's directory
    server: Path
    server_key: Path
    client: Path
    client_key: Path


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Hierarchy:
    """root -> i1 -> i2 -> i3 -> i4 -> {server, client}, every step through the CLI."""
    d = tmp_path_factory.mktemp("cli-hierarchy")
    ok(tlskit("ca", "init", "root", "--name", "CLI Root CA", cwd=d))
    parent = "root"
    for level in range(1, LEVELS + 1):
        ok(tlskit("ca", "intermediate", parent, f"i{level}", "--name", f"CLI Intermediate {level}", cwd=d))
        parent = f"i{level}"
    out = ok(tlskit("ca", "issue", parent, "localhost", "127.0.0.1", "::1", "--out", "server", cwd=d))
    assert "server.pem" in out and "server-key.pem" in out
    ok(tlskit("ca", "issue", parent, "client", "--client", "--out", "client", cwd=d))
    return Hierarchy(
        dir=d,
        root=d / "root" / "ca.pem",
        untrusted=d / parent / "chain.pem",
        issuing=d / parent,
        server=d / "server.pem",
        server_key=d / "server-key.pem",
        client=d / "client.pem",
        client_key=d / "client-key.pem",
    )


def test_hierarchy_files(hierarchy: Hierarchy) -> None:
    chain = load_certificates(hierarchy.server)
    assert len(chain) == 1 + LEVELS  # leaf + intermediates, not the root
    assert chain[-1].issuer == load_certificates(hierarchy.root)[0].subject
    assert len(load_certificates(hierarchy.untrusted)) == LEVELS + 1  # chain.pem goes up to the root
    for key in (hierarchy.server_key, hierarchy.client_key, hierarchy.dir / "root" / "ca-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    index = json.loads((hierarchy.issuing / "index.json").read_text())
    assert [r["profile"] for r in index["certificates"]] == ["server", "client"]


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a peer tool (openssl, certtool, node); never raises, the caller asserts on the result."""
    return subprocess.run(
        [tool(str(argv[0])), *map(str, argv[1:])], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def openssl_verify(h: Hierarchy, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``openssl verify`` with the hierarchy's root as the only trust anchor and its intermediates untrusted."""
    return run("openssl", "verify", "-CAfile", h.root, "-untrusted", h.untrusted, *args, cwd=cwd)


@pytest.mark.parametrize(("leaf", "purpose"), [("server", "sslserver"), ("client", "sslclient")])
def test_openssl_verify(hierarchy: Hierarchy, leaf: str, purpose: str) -> None:
    extra = ["-verify_hostname", "localhost"] if leaf == "server" else []
    result = openssl_verify(hierarchy, "-x509_strict", "-purpose", purpose, *extra, hierarchy.dir / f"{leaf}.pem")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


def test_openssl_verify_rejects_wrong_purpose(hierarchy: Hierarchy) -> None:
    result = openssl_verify(hierarchy, "-purpose", "sslserver", hierarchy.client)
    assert result.returncode != 0
    assert "unsuitable certificate purpose" in result.stdout + result.stderr


@requires("certtool")
@pytest.mark.parametrize(
    ("leaf", "extra"),
    [
        ("server", ["--verify-purpose=1.3.6.1.5.5.7.3.1", "--verify-hostname=localhost"]),
        ("client", ["--verify-purpose=1.3.6.1.5.5.7.3.2"]),
    ],
)
def test_certtool_verify(hierarchy: Hierarchy, leaf: str, extra: list[str]) -> None:
    chain_file = hierarchy.dir / f"{leaf}.pem"  # leaf + intermediates, exactly what a server would send
    result = run(
        "certtool", "--verify", "--verify-profile=high", *extra, "--load-ca-certificate", hierarchy.root,
        "--infile", chain_file,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Chain verification output: Verified." in result.stdout


def _strict(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def test_python_ssl_mutual_tls_strict(hierarchy: Hierarchy) -> None:
    server_ctx = _strict(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    server_ctx.load_cert_chain(hierarchy.server, hierarchy.server_key)
    server_ctx.load_verify_locations(hierarchy.root)
    client_ctx = _strict(ssl.create_default_context(cafile=str(hierarchy.root)))
    client_ctx.load_cert_chain(hierarchy.client, hierarchy.client_key)
    seen: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(20)

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["client"] = tls.getpeercert()
                tls.sendall(b"hello")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with socket.create_connection(listener.getsockname(), timeout=20) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.recv(5) == b"hello"
                server_cert = tls.getpeercert()
        thread.join(20)
    assert server_cert is not None and ("DNS", "localhost") in server_cert["subjectAltName"]
    client = seen["client"]
    assert isinstance(client, dict) and client["subject"] == ((("commonName", "client"),),)


NODE_MTLS = r"""
const tls = require('tls'); const fs = require('fs');
const [root, cert, key, ccert, ckey] = process.argv.slice(1).map(f => fs.readFileSync(f));
const result = {};
const server = tls.createServer({cert, key, ca: [root], requestCert: true, rejectUnauthorized: false}, (s) => {
  result.server = {authorized: s.authorized, error: s.authorizationError ? String(s.authorizationError) : null,
                   peer: s.getPeerCertificate().subject.CN};
  s.end('ok');
});
server.listen(0, '127.0.0.1', () => {
  const c = tls.connect({port: server.address().port, host: '127.0.0.1', servername: 'localhost', ca: [root],
                         cert: ccert, key: ckey, rejectUnauthorized: false}, () => {
    result.client = {authorized: c.authorized, error: c.authorizationError ? String(c.authorizationError) : null,
                     peer: c.getPeerCertificate().subject.CN};
  });
  c.on('data', () => {}); c.on('end', () => { server.close(); console.log(JSON.stringify(result)); });
  c.on('error', (e) => { console.log(JSON.stringify({error: String(e)})); process.exit(3); });
});
setTimeout(() => { console.log(JSON.stringify({timeout: true, result})); process.exit(4); }, 20000).unref();
"""


@requires("node")
def test_node_mutual_tls(hierarchy: Hierarchy) -> None:
    files = [hierarchy.root, hierarchy.server, hierarchy.server_key, hierarchy.client, hierarchy.client_key]
    result = run("node", "-e", NODE_MTLS, *files)
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["server"] == {"authorized": True, "error": None, "peer": "client"}
    assert outcome["client"] == {"authorized": True, "error": None, "peer": "localhost"}


def test_openssl_csr_signed_by_ca_sign(hierarchy: Hierarchy, tmp_path: Path) -> None:
    made = run(
        "openssl", "req", "-new", "-sha256", "-newkey", "rsa:2048", "-nodes", "-keyout", "req-key.pem",
        "-subj", "/O=Example/CN=req.example", "-addext", "subjectAltName=DNS:req.example", "-out", "req.csr",
        cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    ok(tlskit("ca", "sign", hierarchy.issuing, "req.csr", "--out", "req.pem", cwd=tmp_path))
    result = openssl_verify(
        hierarchy, "-x509_strict", "-purpose", "sslserver", "-verify_hostname", "req.example", "req.pem", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    leaf = load_certificates(tmp_path / "req.pem")[0]
    assert leaf.subject.rfc4514_string() == "CN=req.example,O=Example"


def test_ca_sign_refuses_ca_request_unless_allowed(hierarchy: Hierarchy, tmp_path: Path) -> None:
    made = run(
        "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "k.pem", "-subj", "/CN=Sub CA", "-addext", "basicConstraints=critical,CA:true", "-out", "ca.csr",
        cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    refused = tlskit("ca", "sign", hierarchy.issuing, "ca.csr", "--out", "sub.pem", cwd=tmp_path)
    assert refused.returncode == 2 and "CA:true" in refused.stderr and "--allow-ca" in refused.stderr
    assert not (tmp_path / "sub.pem").exists()
    ok(tlskit("ca", "sign", hierarchy.issuing, "ca.csr", "--out", "sub.pem", "--allow-ca", cwd=tmp_path))
    sub = load_certificates(tmp_path / "sub.pem")[0]
    assert sub.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_revoked_certificate_rejected_by_openssl_crl_check(hierarchy: Hierarchy, tmp_path: Path) -> None:
    ok(tlskit("ca", "issue", hierarchy.issuing, "doomed.example", "--out", "doomed", cwd=tmp_path))
    ok(tlskit("ca", "crl", hierarchy.issuing, "--out", "before.pem", cwd=tmp_path))
    before = openssl_verify(hierarchy, "-crl_check", "-CRLfile", "before.pem", "doomed.pem", cwd=tmp_path)
    assert before.returncode == 0, before.stdout + before.stderr
    out = ok(tlskit("ca", "revoke", hierarchy.issuing, "doomed.pem", "--reason", "key-compromise", cwd=tmp_path))
    assert "keyCompromise" in out
    ok(tlskit("ca", "crl", hierarchy.issuing, "--out", "after.pem", cwd=tmp_path))
    after = openssl_verify(hierarchy, "-crl_check", "-CRLfile", "after.pem", "doomed.pem", cwd=tmp_path)
    assert after.returncode != 0
    assert "certificate revoked" in after.stdout + after.stderr
    crl = load_crl(tmp_path / "after.pem")
    doomed = load_certificates(tmp_path / "doomed.pem")[0]
    assert crl.get_revoked_certificate_by_serial_number(doomed.serial_number) is not None
    listing = json.loads(ok(tlskit("ca", "list", hierarchy.issuing, "--json", cwd=tmp_path)))
    assert any(r["status"] == "revoked" and r["reason"] == "keyCompromise" for r in listing)


def test_key_csr_selfsign_pkcs12_round_trip(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("correct horse\n")
    ok(tlskit("key", "new", "k.pem", "--type", "rsa-2048", cwd=tmp_path))
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    check = run("openssl", "pkey", "-check", "-noout", "-in", "k.pem", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    subject = ("--subject", "/O=Acme/CN=me.example", "--san", "me.example")
    ok(tlskit("csr", "new", "r.csr", "--key", "k.pem", *subject, cwd=tmp_path))
    ok(tlskit("cert", "selfsign", "c.pem", "--key", "k.pem", "--csr", "r.csr", cwd=tmp_path))
    bundle = ("--cert", "c.pem", "--key", "k.pem", "--passphrase-file", "pw")
    ok(tlskit("pkcs12", "export", "b.p12", *bundle, cwd=tmp_path))
    info = run("openssl", "pkcs12", "-info", "-nokeys", "-passin", "file:pw", "-in", "b.p12", cwd=tmp_path)
    assert info.returncode == 0, info.stderr  # OpenSSL 3 without -legacy
    assert "AES-256-CBC" in info.stdout + info.stderr
    ok(tlskit("pkcs12", "import", "b.p12", "--out", "back", "--passphrase-file", "pw", cwd=tmp_path))
    assert (tmp_path / "back.pem").read_bytes() == (tmp_path / "c.pem").read_bytes()
    assert stat.S_IMODE((tmp_path / "back-key.pem").stat().st_mode) == 0o600


def test_encrypted_key_via_environment(tmp_path: Path) -> None:
    env = {"TLSKIT_PASSPHRASE": "s3cret"}
    ok(tlskit("key", "new", "enc.pem", cwd=tmp_path, env=env))
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "enc.pem").read_bytes()
    check = run("openssl", "pkey", "-check", "-noout", "-in", "enc.pem", "-passin", "pass:s3cret", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    ok(tlskit("csr", "new", "r.csr", "--key", "enc.pem", "--cn", "x.example", cwd=tmp_path, env=env))


def on_terminal(argv: list[str], *, cwd: Path, answers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """Run ``argv`` with a pseudo-terminal as its controlling terminal (stdin, stdout and stderr), answering each
    prompt (a regular expression) in turn; returns (exit status, everything the terminal showed)."""
    env = {k: v for k, v in os.environ.items() if k != "TLSKIT_PASSPHRASE"} | {"NO_COLOR": "1", "TERM": "dumb"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, whatever happens
        try:
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    shown, pending = b"", list(answers)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child exited and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if pending and re.search(pending[0][0], shown):
                os.write(fd, pending.pop(0)[1])
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"no end after 60 s; the terminal showed: {shown!r}")
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    assert not pending, f"never prompted for {pending}; the terminal showed: {shown!r}"
    return os.waitstatus_to_exitcode(status), shown


def _assert_encrypted_ca(directory: Path, passphrase: bytes) -> None:
    assert b"ENCRYPTED PRIVATE KEY" in (directory / "ca-key.pem").read_bytes()
    assert stat.S_IMODE((directory / "ca-key.pem").stat().st_mode) == 0o600
    with pytest.raises(PassphraseError):
        CertificateAuthority.load(directory)
    assert CertificateAuthority.load(directory, passphrase=passphrase).key_encrypted


def test_intermediate_of_encrypted_ca_prompted_on_a_terminal_is_encrypted(tmp_path: Path) -> None:
    """The parent's passphrase, typed at the prompt, also protects the new CA key (it was written in clear)."""
    (tmp_path / "pw").write_text("typed secret\n")
    ok(tlskit("ca", "init", "root", "--passphrase-file", "pw", cwd=tmp_path))
    argv = [*TLSKIT_ARGV, "ca", "intermediate", "root", "int", "--name", "Terminal Intermediate"]
    code, shown = on_terminal(argv, cwd=tmp_path, answers=[(rb"Passphrase: ", b"typed secret\n")])
    assert code == 0, shown
    assert b"created intermediate CA" in shown and b"typed secret" not in shown  # not echoed
    assert b"encrypted" in shown
    _assert_encrypted_ca(tmp_path / "int", b"typed secret")
    assert CertificateAuthority.load(tmp_path / "int", passphrase=b"typed secret").issue(["t.example"])


@pytest.mark.parametrize("source", ["file", "environment"])
def test_intermediate_of_encrypted_ca_non_interactive_is_encrypted(tmp_path: Path, source: str) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    ok(tlskit("ca", "init", "root", "--passphrase-file", "pw", cwd=tmp_path))
    if source == "file":
        ok(tlskit("ca", "intermediate", "root", "int", "--passphrase-file", "pw", cwd=tmp_path))
    else:
        ok(tlskit("ca", "intermediate", "root", "int", cwd=tmp_path, env={"TLSKIT_PASSPHRASE": "s3cret"}))
    _assert_encrypted_ca(tmp_path / "int", b"s3cret")


# -- bad input -------------------------------------------------------------------------------------------------


def _snapshot(d: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(d)): (p.read_bytes(), p.stat().st_mode)
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def workdir(hierarchy: Hierarchy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with inputs for the negative cases: a CA, a cert + key, an encrypted key, a malformed PEM."""
    d = tmp_path_factory.mktemp("cli-bad")
    shutil.copytree(hierarchy.issuing, d / "ca")
    for name in ("server.pem", "server-key.pem", "client-key.pem"):
        shutil.copy(hierarchy.dir / name, d / name)
    (d / "pw").write_text("right\n")
    (d / "wrong-pw").write_text("wrong\n")
    ok(tlskit("key", "new", "enc-key.pem", "--passphrase-file", "pw", cwd=d))
    (d / "broken.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    (d / "existing.pem").write_text("keep me\n")
    ok(tlskit("csr", "new", "good.csr", "--key", "client-key.pem", "--cn", "a", cwd=d))
    der = bytearray(load_csr(d / "good.csr").public_bytes(serialization.Encoding.DER))
    der[-5] ^= 1  # inside the signature: the CSR still parses but its self-signature no longer verifies
    (d / "badsig.csr").write_bytes(bytes(der))
    return d


BAD_CASES = {
    "malformed-pem": (["csr", "new", "out.csr", "--key", "broken.pem", "--cn", "a"], "broken.pem", "malformed"),
    "switched-inputs": (["csr", "new", "out.csr", "--key", "server.pem", "--cn", "a"], "server.pem", "switched"),
    "wrong-passphrase": (
        ["csr", "new", "out.csr", "--key", "enc-key.pem", "--cn", "a", "--passphrase-file", "wrong-pw"],
        "enc-key.pem",
        "wrong passphrase",
    ),
    "missing-passphrase": (["csr", "new", "out.csr", "--key", "enc-key.pem", "--cn", "a"], "enc-key.pem", "encrypted"),
    "key-mismatch": (
        ["pkcs12", "export", "out.p12", "--cert", "server.pem", "--key", "client-key.pem", "--passphrase-file", "pw"],
        "client-key.pem",
        "does not belong",
    ),
    "existing-output": (["key", "new", "existing.pem"], "existing.pem", "--force"),
    "existing-issue-output": (["ca", "issue", "ca", "x.example", "--out", "existing"], "existing.pem", "--force"),
    "not-a-ca": (["ca", "issue", "server.pem", "x.example", "--out", "new"], "server.pem", "tlskit ca init"),
    "bad-san": (["ca", "issue", "ca", "bad..name", "--out", "new"], "bad..name", "DNS name"),
    "bad-csr-signature": (["ca", "sign", "ca", "badsig.csr", "--out", "new.pem"], "badsig.csr", "does not verify"),
    "pem-as-passphrase-file": (["key", "new", "new.pem", "--passphrase-file", "server.pem"], "server.pem", "not a"),
    "ca-init-non-empty-dir": (["ca", "init", "."], ".: directory is not empty", "empty directory"),
    # click's own usage errors get the same one line, pointing at the command's --help
    "usage-bad-days": (["ca", "issue", "ca", "x", "--out", "new", "--days", "0"], "--days", "tlskit ca issue --help"),
    "usage-directory-as-file": (["verify", "server.pem", "--ca", "ca"], "'ca' is a directory", "--help"),
    "usage-bad-key-type": (["key", "new", "new.pem", "--type", "dsa"], "'dsa'", "tlskit key new --help"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_one_line_exit_2_nothing_changed(workdir: Path, case: str) -> None:
    args, names, says = BAD_CASES[case]
    before = _snapshot(workdir)
    result = tlskit(*args, cwd=workdir)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tlskit: error: ")
    assert names in lines[0] and says in lines[0]
    assert "Traceback" not in result.stderr
    assert _snapshot(workdir) == before  # no partial, new or changed files (and the CA index is untouched)


def test_unwritable_directory(workdir: Path, tmp_path: Path) -> None:
    # Root ignores directory permissions, so as root write into /sys (a real "permission denied" target).
    if os.geteuid() == 0:
        target = Path("/sys")
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o555)
    before = _snapshot(workdir)
    for args in (
        ["key", "new", str(target / "k.pem")],
        ["ca", "issue", "ca", "x.example", "--out", str(target / "x")],
        ["ca", "crl", "ca", "--out", str(target / "crl.pem")],
    ):
        result = tlskit(*args, cwd=workdir)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert f"{target}: directory is not writable" in result.stderr and "writable directory" in result.stderr
    assert _snapshot(workdir) == before  # the CA did not record a certificate it could not write
    assert not list(target.glob("x*.pem"))


def test_revoke_by_serial_and_list(hierarchy: Hierarchy, tmp_path: Path) -> None:
    shutil.copytree(hierarchy.issuing, tmp_path / "ca")
    ok(tlskit("ca", "issue", "ca", "gone.example", "--out", "gone", cwd=tmp_path))
    serial = f"{load_certificates(tmp_path / 'gone.pem')[0].serial_number:X}"
    both = tlskit("ca", "revoke", "ca", "gone.pem", "--serial", serial, cwd=tmp_path)
    assert both.returncode == 2 and "either CERT or --serial" in both.stderr
    out = ok(tlskit("ca", "revoke", "ca", "--serial", serial.lower(), "--reason", "superseded", cwd=tmp_path))
    assert "reason superseded" in out
    again = tlskit("ca", "revoke", "ca", "--serial", serial, cwd=tmp_path)
    assert again.returncode == 2 and "already revoked" in again.stderr
    lines = ok(tlskit("ca", "list", "ca", cwd=tmp_path)).splitlines()
    assert lines[1].split() == ["SERIAL", "EXPIRES", "STATUS", "PROFILE", "SUBJECT", "NAMES"]
    row = next(line for line in lines if "gone.example" in line)
    assert row.split()[2] == "revoked" and row.split()[0].lstrip("0") == serial
