"""``tlskit probe`` against a matrix of deliberately broken ``openssl s_server`` peers (issue 4, done-means 1).

Each server's certificates are made in the test with tlskit's own PKI (cryptography builders or the openssl
CLI only where tlskit's CA rightly refuses: RSA-1024 and SHA-1).  For each one ``tlskit probe --json``
must report exactly the expected problem codes, and a verifying client (``tlskit.connect`` and the ``tlskit
connect`` CLI) must fail with the matching code, sentence and fix.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import PKI, TLSKIT
from peers import OPENSSL, openssl_server, requires
from tlskit.errors import TLSError
from tlskit.pki.ca import CertificateAuthority
from tlskit.pki.certs import Profile, self_signed
from tlskit.pki.files import certs_to_pem
from tlskit.pki.keys import generate_key, key_to_pem, load_private_key
from tlskit.tools.probe import VersionSupport, probe
from tlskit.tools.scan import ProtocolVersion, parse_server_flight, probe_context

pytestmark = requires("openssl")

NAMES = ("localhost", "127.0.0.1")
NOW = dt.datetime.now(dt.UTC)
# Servers that must load a weak leaf run at security level 0; old protocols stay off so only the leaf is wrong.
LOW_SECLEVEL = ("-cipher", "DEFAULT@SECLEVEL=0", "-no_tls1", "-no_tls1_1")


@dataclass
class Setup:
    """How to run one broken server and what the clients bring (trust anchor, CRL, client certificate)."""

    server: list[str]
    ca: Path | None = None  # default: the session root
    crl: Path | None = None
    client: tuple[Path, Path] | None = None


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _serve(chain: list[x509.Certificate], key: object, tmp: Path, name: str = "leaf") -> list[str]:
    """Write chain + key and return ``s_server`` options serving them (``-cert`` takes only the first one)."""
    cert = _write(tmp / f"{name}.pem", certs_to_pem(chain[:1]))
    key_pem = _write(tmp / f"{name}-key.pem", key_to_pem(key))  # type: ignore[arg-type]
    rest = ["-cert_chain", str(_write(tmp / f"{name}-chain.pem", certs_to_pem(chain[1:])))] if chain[1:] else []
    return ["-cert", str(cert), "-key", str(key_pem), *rest]


def _serve_files(cert: Path, key: Path, tmp: Path) -> list[str]:
    return _serve(x509.load_pem_x509_certificates(cert.read_bytes()), load_private_key(key), tmp, name=cert.stem)


def _issued(pki: PKI, tmp: Path, names: tuple[str, ...] = NAMES, **kwargs: object) -> list[str]:
    issued = pki.ca.issue(names, **kwargs)  # type: ignore[arg-type]
    return _serve(list(issued.chain), issued.key, tmp)


def _rsa1024_leaf(pki: PKI, tmp: Path) -> list[str]:
    # tlskit's CA refuses RSA keys under 2048 bits, so this one is built by hand (still signed by our CA).
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(pki.ca.key, hashes.SHA256())
    )
    return _serve([cert, pki.ca.cert], key, tmp)


def _sha1_leaf(pki: PKI, tmp: Path) -> list[str]:
    # cryptography refuses to sign with SHA-1 (rightly); the openssl CLI still can, with our CA's key.
    key = generate_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .sign(key, hashes.SHA256())
    )
    csr_path = _write(tmp / "sha1.csr", csr.public_bytes(serialization.Encoding.PEM))
    ext = _write(tmp / "sha1.ext", b"subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n")
    out = tmp / "sha1-leaf.pem"
    assert OPENSSL is not None
    subprocess.run(
        [OPENSSL, "x509", "-req", "-in", csr_path, "-CA", pki.ca_pem, "-CAkey", pki.ca_dir / "ca-key.pem",
         "-sha1", "-days", "30", "-extfile", ext, "-out", out],
        check=True, capture_output=True,
    )  # fmt: skip
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    return _serve([cert, pki.ca.cert], key, tmp)


def _revoked(pki: PKI, tmp: Path) -> Setup:
    # A CA of its own: revoking from the shared session CA would leak into other tests' CRLs.
    ca = CertificateAuthority.create_root(None, name="tlskit Probe Revocation CA")
    issued = ca.issue(NAMES)
    ca.revoke(issued.cert)
    root = _write(tmp / "revoking-root.pem", certs_to_pem([ca.cert]))
    crl = _write(tmp / "revoked.crl", ca.crl().public_bytes(serialization.Encoding.PEM))
    return Setup(_serve(list(issued.chain), issued.key, tmp), ca=root, crl=crl)


def _wrong_order(pki: PKI, tmp: Path) -> Setup:
    # leaf, root, intermediate: every certificate is there, but the leaf is not followed by its issuer.
    issued = pki.ca.issue(NAMES)
    server = _serve([issued.cert], issued.key, tmp)
    extra = _write(tmp / "extra-chain.pem", certs_to_pem([pki.root.cert, pki.ca.cert]))
    return Setup([*server, "-cert_chain", str(extra)])


def _self_signed(pki: PKI, tmp: Path) -> list[str]:
    key = generate_key()
    return _serve([self_signed(key, cn="localhost", sans=NAMES)], key, tmp)


def _client_auth(pki: PKI, tmp: Path, *, tls12: bool, wrong_ca: bool) -> Setup:
    # -verify_return_error: without it s_server logs a bad client certificate and carries on.
    verify = ["-Verify", "1", "-verify_return_error", "-CAfile", str(pki.root_pem)]
    server = [*_issued(pki, tmp), *verify, *(["-no_tls1_3"] if tls12 else [])]
    return Setup(server, client=(pki.other_client_pem, pki.other_client_key) if wrong_ca else None)


@dataclass(frozen=True)
class Case:
    """A broken server, the codes ``tlskit probe`` must report, and the codes a verifying client may fail with.

    ``connect`` is None when a verifying client connects fine (OpenSSL reorders chains itself).
    """

    name: str
    build: Callable[[PKI, Path], Setup | list[str]]
    codes: frozenset[str]
    connect: frozenset[str] | None
    mentions: tuple[str, ...] = ()


def _case(
    name: str,
    build: Callable[[PKI, Path], Setup | list[str]],
    codes: str,
    connect: str | None = "",
    mentions: tuple[str, ...] = (),
) -> Case:
    wanted = frozenset(codes.split())
    return Case(name, build, wanted, None if connect is None else frozenset(connect.split()) or wanted, mentions)


CASES = [
    _case("healthy", _issued, "", connect=None),
    _case("expired", lambda p, t: _issued(p, t, now=NOW - dt.timedelta(days=400), days=30), "expired"),
    _case("not_yet_valid", lambda p, t: _issued(p, t, now=NOW + dt.timedelta(days=2)), "not_yet_valid"),
    _case(
        "wrong_host",
        lambda p, t: _issued(p, t, ("www.example.net",)),
        "hostname_mismatch",
        mentions=("www.example.net",),
    ),
    _case("self_signed", _self_signed, "self_signed"),
    _case(
        "untrusted_root",
        lambda p, t: _serve([(i := p.other_ca.issue(NAMES)).cert, p.other_ca.cert], i.key, t),
        "untrusted_root",
    ),
    _case(
        "missing_intermediate",
        lambda p, t: _serve([(i := p.ca.issue(NAMES)).cert], i.key, t),
        "incomplete_chain",
        mentions=("tlskit Test Intermediate CA",),
    ),
    _case("wrong_order", _wrong_order, "wrong_order", connect=None),
    _case("no_san", lambda p, t: _issued(p, t, (), cn="localhost"), "no_san", connect="no_san hostname_mismatch"),
    _case("wrong_purpose", lambda p, t: _issued(p, t, profile=Profile.CLIENT), "wrong_purpose"),
    _case("rsa1024", lambda p, t: Setup([*_rsa1024_leaf(p, t), *LOW_SECLEVEL]), "weak_key"),
    _case("sha1", lambda p, t: Setup([*_sha1_leaf(p, t), *LOW_SECLEVEL]), "weak_signature"),
    _case("revoked", _revoked, "revoked"),
    _case("client_cert_required", lambda p, t: _client_auth(p, t, tls12=False, wrong_ca=False), "client_cert_required"),
    _case(
        "client_cert_required_tls12",
        lambda p, t: _client_auth(p, t, tls12=True, wrong_ca=False),
        "client_cert_required",
    ),
    _case("client_cert_rejected", lambda p, t: _client_auth(p, t, tls12=False, wrong_ca=True), "client_cert_rejected"),
    _case(
        "client_cert_rejected_tls12", lambda p, t: _client_auth(p, t, tls12=True, wrong_ca=True), "client_cert_rejected"
    ),
    _case(
        "tls1_0_only",
        lambda p, t: Setup([*_issued(p, t), "-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]),
        "protocol_too_old",
    ),
    _case(
        "tls1_1_only",
        lambda p, t: Setup([*_issued(p, t), "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]),
        "protocol_too_old",
    ),
]


def _local_openssl_can(version: ProtocolVersion) -> bool:
    try:
        probe_context(version=version)
    except (ValueError, ssl.SSLError):
        return False
    return True


def _run_probe(address: str, args: list[str], env: dict[str, str]) -> tuple[int, dict[str, object], str]:
    proc = subprocess.run(
        [TLSKIT, "probe", address, "--json", *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, report, proc.stderr


async def _connect_error(port: int, setup: Setup, pki: PKI) -> ssl.SSLError | None:
    """What ``tlskit.connect`` with a verifying context raises against the server (None: it connected)."""
    from tlskit import client_context, connect

    cert, key = setup.client or (None, None)
    ctx = client_context(ca=setup.ca or pki.root_pem, crls=[setup.crl] if setup.crl else (), cert=cert, key=key)
    try:
        conn = await connect("127.0.0.1", port, context=ctx, server_name="localhost", handshake_timeout=10)
    except ssl.SSLError as exc:
        return exc
    try:
        # A TLS 1.3 server judges the client certificate after the client's handshake is done: read for the alert.
        async with asyncio.timeout(2):
            await conn.read()
    except ssl.SSLError as exc:
        return exc
    except TimeoutError:
        pass
    finally:
        conn.abort()
    return None


def _run_connect(port: int, setup: Setup, pki: PKI, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = ["--servername", "localhost", "--ca", str(setup.ca or pki.root_pem)]
    args += ["--crl", str(setup.crl)] if setup.crl else []
    args += ["--cert", str(setup.client[0]), "--key", str(setup.client[1])] if setup.client else []
    return subprocess.run(
        [TLSKIT, "connect", f"127.0.0.1:{port}", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_server(case: Case, pki: PKI, tmp_path: Path, tlskit_env: dict[str, str]) -> None:
    """``tlskit probe --json`` reports exactly the expected codes; ``tlskit.connect`` fails with a matching one."""
    if case.name.startswith("tls1_"):
        version = ProtocolVersion.TLS1_0 if case.name == "tls1_0_only" else ProtocolVersion.TLS1_1
        if not _local_openssl_can(version):
            pytest.skip(f"the local OpenSSL cannot offer {version}")
    setup = case.build(pki, tmp_path)
    if isinstance(setup, list):
        setup = Setup(setup)
    args = ["--servername", "localhost", "--ca", str(setup.ca or pki.root_pem)]
    args += ["--crl", str(setup.crl)] if setup.crl else []
    args += ["--cert", str(setup.client[0]), "--key", str(setup.client[1])] if setup.client else []
    with openssl_server(*setup.server) as server:
        code, report, err = _run_probe(f"127.0.0.1:{server.port}", args, tlskit_env)
        error = asyncio.run(_connect_error(server.port, setup, pki))
        cli = _run_connect(server.port, setup, pki, tlskit_env)

    problems = report.get("problems", [])
    assert isinstance(problems, list), err
    assert {p["code"] for p in problems} == case.codes, json.dumps(problems, indent=1)
    assert code == (1 if case.codes else 0), err
    for p in problems:
        assert p["message"] and p["fix"], p
    text = " ".join(p["message"] for p in problems)
    for needle in case.mentions:
        assert needle in text
    assert report["chain"], "the chain as sent is always reported"

    if case.connect is None:
        assert error is None, error
        assert cli.returncode == 0 and "verification: OK" in cli.stderr, cli.stderr
        return
    assert isinstance(error, TLSError), repr(error)  # still an ssl.SSLError, with code, sentence and fix
    assert error.code in case.connect, (error.code, str(error))
    assert error.message and error.fix
    if "hostname_mismatch" in case.connect or case.codes & {"expired", "not_yet_valid", "self_signed", "revoked"}:
        assert isinstance(error, ssl.SSLCertVerificationError)

    # The CLI: exit 1 and one line "tlskit: error: ... failed (CODE): sentence; fix: ..." (after the summary of a
    # TLS 1.3 handshake that completed before the server's alert arrived).
    assert cli.returncode == 1, cli.stderr
    last = cli.stderr.strip().splitlines()[-1]
    assert last.startswith("tlskit: error: ") and "fix: " in last, last
    assert any(f"({code})" in last for code in case.connect), last
    assert "Traceback" not in cli.stderr


# --- what the report says besides problems -----------------------------------------------------------------


def test_report_describes_handshake_chain_versions_and_profiles(pki: PKI, tmp_path: Path) -> None:
    chain = _serve_files(pki.rsa_server_pem, pki.rsa_server_key, tmp_path)
    with openssl_server(*chain, "-alpn", "h2,http/1.1", "-groups", "P-384") as server:
        report = probe("127.0.0.1", server.port, ca=[pki.root_pem], server_name="localhost", alpn=["h2"], timeout=10)
    assert report.ok, report.problems
    assert report.protocol is ProtocolVersion.TLS1_3
    assert report.cipher and report.cipher.startswith("TLS_")
    assert report.group == "secp384r1"  # from the ServerHello key_share, after a HelloRetryRequest
    assert report.alpn == "h2"
    leaf, intermediate = report.chain
    assert leaf.subject == "CN=localhost" and leaf.issuer == intermediate.subject
    assert (leaf.key_type, leaf.key_bits) == ("RSA", 2048)
    assert leaf.signature_algorithm == "ecdsa-with-sha256"
    assert leaf.sans == ("DNS:localhost", "IP:127.0.0.1", "IP:::1")
    assert leaf.eku == ("serverAuth",)
    assert 0 < leaf.days_left <= 398
    assert report.versions[ProtocolVersion.TLS1_2] is VersionSupport.ACCEPTED
    assert report.versions[ProtocolVersion.TLS1_3] is VersionSupport.ACCEPTED
    # OpenSSL 3's default security level makes a default s_server refuse TLS 1.0/1.1.
    assert report.versions[ProtocolVersion.TLS1_0] is not VersionSupport.ACCEPTED
    assert "ECDHE-RSA-AES128-GCM-SHA256" in report.tls12_ciphers
    assert "ECDHE-RSA-AES128-SHA" in report.tls12_ciphers  # s_server's defaults still include CBC suites
    modern, intermediate_profile = report.profiles
    assert modern.met is False and "accepts TLS 1.2" in modern.reasons
    assert intermediate_profile.met is False and "ECDHE-RSA-AES128-SHA" in intermediate_profile.reasons[0]


def test_profiles_met_by_tls13_only_server(pki: PKI, tmp_path: Path) -> None:
    with openssl_server(*_serve_files(pki.server_pem, pki.server_key, tmp_path), "-tls1_3") as server:
        report = probe("127.0.0.1", server.port, ca=[pki.root_pem], server_name="localhost")
    assert report.ok
    assert report.versions[ProtocolVersion.TLS1_2] is VersionSupport.REFUSED
    assert report.tls12_ciphers == ()
    assert {p.name: p.met for p in report.profiles} == {"modern": True, "intermediate": True}


def test_intermediate_profile_met_with_aead_suites_only(pki: PKI, tmp_path: Path) -> None:
    suites = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"
    with openssl_server(*_serve_files(pki.server_pem, pki.server_key, tmp_path), "-cipher", suites) as server:
        report = probe("127.0.0.1", server.port, ca=[pki.root_pem], server_name="localhost")
    assert report.group == "x25519"
    assert set(report.tls12_ciphers) == set(suites.split(":"))
    assert {p.name: p.met for p in report.profiles} == {"modern": False, "intermediate": True}


def test_text_output_names_problems_and_fixes(pki: PKI, tmp_path: Path, tlskit_env: dict[str, str]) -> None:
    server_args = _issued(pki, tmp_path, ("www.example.net",), now=NOW - dt.timedelta(days=400), days=30)
    with openssl_server(*server_args) as server:
        proc = subprocess.run(
            [TLSKIT, "probe", f"127.0.0.1:{server.port}", "--ca", str(pki.root_pem), "--servername", "localhost"],
            capture_output=True, text=True, timeout=60, env=tlskit_env, check=False,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "Chain as sent (2 certificates)" in out
    assert "expired" in out and "hostname_mismatch" in out and "www.example.net" in out
    assert out.count("fix: ") == 2
    assert "Protocol versions" in out and "Mozilla modern" in out


def test_unreachable_is_one_line_and_exit_2(tlskit_env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        proc = subprocess.run(
            [TLSKIT, "probe", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            env=tlskit_env,
            check=False,
        )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"tlskit: error: cannot connect to 127.0.0.1:{port}: connection refused (nothing listens there): "
        "check the host and port, and that the server is running"
    ]


def test_bad_usage_exits_2(tlskit_env: dict[str, str], pki: PKI) -> None:
    for args in (["no-port"], ["127.0.0.1:1", "--cert", str(pki.client_pem)], ["127.0.0.1:1", "--ca", "/nonexistent"]):
        proc = subprocess.run(
            [TLSKIT, "probe", *args], capture_output=True, text=True, timeout=60, env=tlskit_env, check=False
        )
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("tlskit: error: ") or "Usage" in proc.stderr
        assert "Traceback" not in proc.stderr


# --- the sans-IO flight parser ------------------------------------------------------------------------------


def test_flight_parser_reads_tls12_flight_and_survives_truncation(pki: PKI, tmp_path: Path) -> None:
    from tlskit.tools.scan import handshake

    # -verify 1: the server asks for a client certificate but does not insist; TLS 1.2 shows that in clear.
    server_args = [*_serve_files(pki.server_pem, pki.server_key, tmp_path), "-no_tls1_3", "-verify", "1"]
    with openssl_server(*server_args) as server:
        result = handshake("127.0.0.1", server.port, context=probe_context(), server_name="localhost")
    assert result.completed and len(result.chain) == 2
    full = parse_server_flight(result.received)
    assert full.version is ProtocolVersion.TLS1_2 and full.group == "x25519" and full.certificate_request
    assert full.cipher_suite is not None and full.alert is None
    for cut in range(0, len(result.received), 3):
        partial = parse_server_flight(result.received[:cut])  # what a handshake cut short would leave
        assert partial.version in (None, ProtocolVersion.TLS1_2)
        assert partial.group in (None, "x25519")
    for data in (
        b"\x16\x03\x03\x00\x05\x02\x00\x00\x01",
        b"\x16\x03\x03\xff\xff" + b"\x00" * 10,
        bytes(range(256)) * 4,
    ):
        assert parse_server_flight(data).version is None


def test_plaintext_port_reports_not_tls_once_without_scanning(tlskit_env: dict[str, str]) -> None:
    """A port that answers HTTP, not TLS: one ``not_tls`` problem, and no version or suite scan of a non-TLS peer."""
    import http.server
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        code, report, _ = _run_probe(f"127.0.0.1:{httpd.server_address[1]}", [], tlskit_env)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert code == 1
    assert [p["code"] for p in report["problems"]] == ["not_tls"]  # type: ignore[index, union-attr]
    assert not report["versions"] and not report["profiles"]
