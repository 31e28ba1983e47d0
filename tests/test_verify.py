"""Verification and diagnosis: tlskit verify (library and CLI) on deliberately broken chains, compared with
``openssl verify``; diagnose_chain reporting every problem; explain_ssl_error on real OpenSSL handshakes."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from peers import tool
from tlskit.pki.ca import CertificateAuthority
from tlskit.pki.certs import Profile, self_signed
from tlskit.pki.diagnose import Code, Purpose, diagnose_chain, explain_ssl_error
from tlskit.pki.files import certs_to_pem, load_certificates
from tlskit.pki.keys import generate_key
from tlskit.pki.verify import parse_time, verify_chain, verify_files

NOW = dt.datetime.now(dt.UTC)


def leaf(
    issuer: CertificateAuthority,
    *,
    names: Sequence[str] = ("localhost",),
    key: object = None,
    digest: hashes.HashAlgorithm | None = None,
    eku: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.SERVER_AUTH,),
    san: bool = True,
) -> x509.Certificate:
    """A conforming leaf signed by ``issuer`` with exactly one chosen defect (key, digest, EKU or no SAN)."""
    private = key or ec.generate_private_key(ec.SECP256R1())
    public = private.public_key()  # type: ignore[attr-defined]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuer.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.cert.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(issuer.key, digest or hashes.SHA256())


def sha1_leaf(pki, tmp_path: Path) -> Path:
    """A localhost server leaf signed by the session intermediate with ECDSA-SHA1 (cryptography refuses to)."""
    key, csr, ext, out = (tmp_path / n for n in ("sha1-key.pem", "sha1.csr", "ext.cnf", "sha1.pem"))
    ext.write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    req = [tool("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    subprocess.run(
        [*req, "-subj", "/CN=localhost", "-keyout", key, "-out", csr], check=True, capture_output=True, timeout=60
    )
    sign = [tool("openssl"), "x509", "-req", "-in", csr, "-CA", pki.ca_pem, "-CAkey", pki.ca_dir / "ca-key.pem"]
    sign += ["-sha1", "-days", "30", "-set_serial", "0x51a1", "-extfile", ext, "-out", out]
    subprocess.run(sign, check=True, capture_output=True, timeout=60)
    out.write_bytes(out.read_bytes() + pki.ca_pem.read_bytes())
    return out


def write(path: Path, certs: Sequence[x509.Certificate]) -> Path:
    path.write_bytes(certs_to_pem(list(certs)))
    return path


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlskit", "verify", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def openssl_ok(cert: Path, *, ca: Path, untrusted: Path | None = None, extra: Sequence[str] = ()) -> bool:
    args = [tool("openssl"), "verify", "-CAfile", str(ca), *extra]
    if untrusted is not None:
        args += ["-untrusted", str(untrusted)]
    return subprocess.run([*args, str(cert)], capture_output=True, text=True, timeout=60, check=False).returncode == 0


def codes(problems: Sequence[object]) -> list[str]:
    return [str(p.code) for p in problems]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def revoked_ca(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A root that issued two server certificates, revoked one, and published a CRL."""
    d = tmp_path_factory.mktemp("revoked")
    root = CertificateAuthority.create_root(d / "ca", name="tlskit Revoking CA")
    bad = root.issue(["localhost"])
    good = root.issue(["localhost"])
    root.revoke(bad.cert, reason="keyCompromise")
    crl = d / "ca.crl"
    crl.write_bytes(root.crl().public_bytes(serialization.Encoding.PEM))
    return {
        "root": d / "ca" / "ca.pem",
        "bad": write(d / "bad.pem", [bad.cert]),
        "good": write(d / "good.pem", [good.cert]),
        "crl": crl,
    }


# ------------------------------------------------------------------------------------------- library verify


def test_valid_chain_builds_the_full_path(pki) -> None:
    result = verify_files(pki.server_pem, ca_paths=[pki.root_pem], host="localhost")
    assert result.ok, result.problems
    assert [c.subject.rfc4514_string() for c in result.chain] == [
        "CN=localhost",
        "CN=tlskit Test Intermediate CA",
        "CN=tlskit Test Root CA",
    ]
    for host in ("127.0.0.1", "::1", "LOCALHOST", "localhost."):
        assert verify_files(pki.server_pem, ca_paths=[pki.root_pem], host=host).ok, host
    assert verify_files(pki.client_pem, ca_paths=[pki.root_pem], purpose=Purpose.CLIENT).ok
    assert verify_files(pki.both_pem, ca_paths=[pki.root_pem], purpose=Purpose.CLIENT, host="localhost").ok


def test_expired_and_not_yet_valid(pki, make_cert) -> None:
    expired, _ = make_cert(now=NOW - dt.timedelta(days=400), days=30, name="expired")
    future, _ = make_cert(now=NOW + dt.timedelta(days=3), name="future")
    result = verify_files(expired, ca_paths=[pki.root_pem], host="localhost")
    assert not result.ok and codes(result.problems) == ["expired"]
    assert "expired on" in result.problems[0].message
    assert codes(verify_files(future, ca_paths=[pki.root_pem], host="localhost").problems) == ["not_yet_valid"]
    # the same certificate is fine at a time inside its validity (injected clock)
    assert verify_files(future, ca_paths=[pki.root_pem], host="localhost", at=NOW + dt.timedelta(days=4)).ok


def test_hostname_mismatch_names_the_names_carried(pki) -> None:
    result = verify_files(pki.server_pem, ca_paths=[pki.root_pem], host="www.example.com")
    assert codes(result.problems) == ["hostname_mismatch"]
    assert "localhost, 127.0.0.1, ::1" in result.problems[0].message
    assert codes(verify_files(pki.server_pem, ca_paths=[pki.root_pem], host="10.9.8.7").problems) == [
        "hostname_mismatch"
    ]


@pytest.mark.parametrize(
    ("names", "host", "ok"),
    [
        (["*.co.uk"], "example.co.uk", False),  # ICANN section: a registry
        (["*.s3.amazonaws.com"], "bucket.s3.amazonaws.com", False),  # private section: a shared namespace
        (["*.github.io"], "someone.github.io", False),
        (["s3.amazonaws.com", "*.s3.amazonaws.com"], "s3.amazonaws.com", True),  # the exact name still counts
        (["*.example.co.uk"], "www.example.co.uk", True),  # under a registered domain: fine
        (["*.corp.internal"], "host.corp.internal", True),
    ],
)
def test_wildcards_over_a_public_suffix_do_not_match(pki, names: list[str], host: str, ok: bool) -> None:
    issued = pki.ca.issue(names)
    result = verify_chain(issued.cert, roots=[pki.root.cert], intermediates=issued.chain[1:], host=host)
    assert result.ok is ok, result.problems
    if not ok:
        assert result.problems[0].code == Code.HOSTNAME_MISMATCH and "public suffix" in result.problems[0].message


def test_untrusted_root_and_incomplete_chain(pki, tmp_path) -> None:
    other = verify_files(pki.server_pem, ca_paths=[pki.other_root_pem], host="localhost")
    assert codes(other.problems) == ["untrusted_root"]
    assert "tlskit Test Root CA" in other.problems[0].fix
    leaf_only = write(tmp_path / "leaf.pem", load_certificates(pki.server_pem)[:1])
    missing = verify_files(leaf_only, ca_paths=[pki.root_pem], host="localhost")
    assert codes(missing.problems) == ["incomplete_chain"]
    assert "tlskit Test Intermediate CA" in missing.problems[0].message
    assert verify_files(leaf_only, ca_paths=[pki.root_pem], chain_path=pki.intermediates_pem, host="localhost").ok
    # without --ca the system store is used, and it does not contain the test root
    assert codes(verify_files(pki.server_pem, host="localhost").problems) == ["untrusted_root"]


def test_self_signed_weak_key_weak_signature_wrong_purpose(pki, tmp_path) -> None:
    key = generate_key()
    own = self_signed(key, cn="localhost", sans=["localhost"])
    result = verify_chain(own, roots=[pki.root.cert], host="localhost")
    assert codes(result.problems) == ["self_signed"]
    assert verify_chain(own, roots=[own], host="localhost").ok  # trusted explicitly: a pinned certificate
    inter = list(pki.ca.chain[:1])
    rsa1024 = leaf(pki.ca, key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    assert "weak_key" in codes(verify_chain(rsa1024, roots=[pki.root.cert], intermediates=inter).problems)
    sha1 = verify_files(sha1_leaf(pki, tmp_path), ca_paths=[pki.root_pem], host="localhost")
    assert codes(sha1.problems) == ["weak_signature"]
    client = leaf(pki.ca, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    assert codes(verify_chain(client, roots=[pki.root.cert], intermediates=inter, host="localhost").problems) == [
        "wrong_purpose"
    ]
    server = verify_files(pki.server_pem, ca_paths=[pki.root_pem], purpose=Purpose.CLIENT)
    assert codes(server.problems) == ["wrong_purpose"]
    no_san = leaf(pki.ca, san=False)
    assert "no_san" in codes(
        verify_chain(no_san, roots=[pki.root.cert], intermediates=inter, host="localhost").problems
    )


def test_revocation_with_crl(revoked_ca) -> None:
    crls = [revoked_ca["crl"]]
    bad = verify_files(revoked_ca["bad"], ca_paths=[revoked_ca["root"]], host="localhost", crl_paths=crls)
    assert codes(bad.problems) == ["revoked"]
    assert "keyCompromise" in bad.problems[0].message
    assert verify_files(revoked_ca["good"], ca_paths=[revoked_ca["root"]], host="localhost", crl_paths=crls).ok
    # without the CRL nothing is known about revocation
    assert verify_files(revoked_ca["bad"], ca_paths=[revoked_ca["root"]], host="localhost").ok
    # a stale CRL cannot vouch for anything
    stale = verify_files(
        revoked_ca["good"], ca_paths=[revoked_ca["root"]], crl_paths=crls, at=NOW + dt.timedelta(days=30)
    )
    assert codes(stale.problems) == ["crl_invalid"]


def test_crl_of_another_ca_with_the_same_name_is_ignored(revoked_ca) -> None:
    twin = CertificateAuthority.create_root(None, name="tlskit Revoking CA")
    good = load_certificates(revoked_ca["good"])[0]
    entry = x509.RevokedCertificateBuilder().serial_number(good.serial_number).revocation_date(NOW).build()
    imposter = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(twin.cert.subject)
        .last_update(NOW - dt.timedelta(minutes=5))
        .next_update(NOW + dt.timedelta(days=1))
        .add_revoked_certificate(entry)
        .add_extension(x509.CRLNumber(1), critical=False)
        .sign(twin.key, hashes.SHA256())
    )
    result = verify_chain(good, roots=load_certificates(revoked_ca["root"]), crls=[imposter])
    assert result.ok, result.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-31", dt.datetime(2025, 1, 31, tzinfo=dt.UTC)),
        ("2025-01-31T12:30:00Z", dt.datetime(2025, 1, 31, 12, 30, tzinfo=dt.UTC)),
        ("2025-01-31T14:30:00+02:00", dt.datetime(2025, 1, 31, 12, 30, tzinfo=dt.UTC)),
        ("1738326600", dt.datetime(2025, 1, 31, 12, 30, tzinfo=dt.UTC)),
    ],
)
def test_parse_time(text: str, expected: dt.datetime) -> None:
    assert parse_time(text) == expected


# ------------------------------------------------------------------------------------ CLI, against openssl


def test_cli_exit_codes_and_output(pki, make_cert, tmp_path) -> None:
    ok = cli(pki.server_pem, "--ca", pki.root_pem, "--host", "localhost")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK:") and "tlskit Test Root CA" in ok.stdout
    expired, _ = make_cert(now=NOW - dt.timedelta(days=400), days=30)
    bad = cli(expired, "--ca", pki.root_pem, "--host", "localhost")
    assert bad.returncode == 1
    assert len(bad.stdout.splitlines()) == 1 and "expired" in bad.stdout and "fix:" in bad.stdout
    as_json = cli(pki.server_pem, "--ca", pki.root_pem, "--host", "nope.example", "--json")
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["problems"][0]["code"] == "hostname_mismatch"
    assert set(doc["problems"][0]) == {"code", "message", "fix"}
    # --at moves the clock: ISO date and Unix timestamp
    later = (load_certificates(pki.server_pem)[0].not_valid_after_utc + dt.timedelta(days=1)).date().isoformat()
    assert cli(pki.server_pem, "--ca", pki.root_pem, "--at", later).returncode == 1
    assert cli(pki.server_pem, "--ca", pki.root_pem, "--at", str(int(NOW.timestamp()))).returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ["missing.pem"],
        ["{key}", "--ca", "{root}"],
        ["{cert}", "--ca", "{root}", "--at", "next tuesday"],
        ["{cert}", "--ca", "{root}", "--host", "bad name!"],
        ["{cert}", "--purpose", "both"],
        ["{cert}", "--ca", "{garbage}"],
    ],
)
def test_cli_bad_input_exits_2(pki, tmp_path, args: list[str]) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    values = {"key": pki.server_key, "root": pki.root_pem, "cert": pki.server_pem, "garbage": garbage}
    result = cli(*[a.format(**values) for a in args])
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() and not result.stdout


def test_decisions_match_openssl_verify(pki, make_cert, revoked_ca, tmp_path) -> None:
    """tlskit verify and openssl verify agree, case by case (exit 0 <=> "OK")."""
    expired, _ = make_cert(now=NOW - dt.timedelta(days=400), days=30, name="expired")
    client, _ = make_cert(("client",), profile=Profile.CLIENT, name="client")
    leaf_only = write(tmp_path / "leaf.pem", load_certificates(pki.server_pem)[:1])
    inter = pki.intermediates_pem
    cases = [
        (pki.server_pem, pki.root_pem, inter, ["--host", "localhost"], ["-verify_hostname", "localhost"]),
        (pki.server_pem, pki.root_pem, inter, ["--host", "example.org"], ["-verify_hostname", "example.org"]),
        (expired, pki.root_pem, inter, [], []),
        (client, pki.root_pem, inter, ["--purpose", "server"], ["-purpose", "sslserver"]),
        (client, pki.root_pem, inter, ["--purpose", "client"], ["-purpose", "sslclient"]),
        (leaf_only, pki.other_root_pem, inter, [], []),
        (leaf_only, pki.root_pem, None, [], []),
        (revoked_ca["bad"], revoked_ca["root"], None, ["--crl", revoked_ca["crl"]],
         ["-crl_check", "-CRLfile", str(revoked_ca["crl"])]),
        (revoked_ca["good"], revoked_ca["root"], None, ["--crl", revoked_ca["crl"]],
         ["-crl_check", "-CRLfile", str(revoked_ca["crl"])]),
    ]  # fmt: skip
    for cert, root, untrusted, ours, theirs in cases:
        chain = ["--chain", untrusted] if untrusted else []
        mine = cli(cert, "--ca", root, *chain, *ours).returncode
        assert mine in (0, 1)
        assert (mine == 0) == openssl_ok(cert, ca=root, untrusted=untrusted, extra=theirs), (cert.name, ours)


# ------------------------------------------------------------------------------------------- diagnose_chain


def test_diagnose_reports_every_problem(pki, make_cert) -> None:
    expired, _ = make_cert(now=NOW - dt.timedelta(days=400), days=30)
    chain = load_certificates(expired)
    found = diagnose_chain(chain, roots=[pki.root.cert], host="example.net")
    assert set(codes(found)) == {"expired", "hostname_mismatch"}
    assert diagnose_chain(load_certificates(pki.server_pem), roots=[pki.root.cert], host="localhost") == []


def test_diagnose_wrong_order_and_missing_issuer() -> None:
    root = CertificateAuthority.create_root(None, name="Order Root")
    first = root.create_intermediate(None, name="Order Intermediate 1")
    second = first.create_intermediate(None, name="Order Intermediate 2")
    issued = second.issue(["localhost"])
    good = [issued.cert, second.cert, first.cert]
    assert diagnose_chain(good, roots=[root.cert], host="localhost") == []
    swapped = diagnose_chain([issued.cert, first.cert, second.cert], roots=[root.cert], host="localhost")
    assert codes(swapped) == ["wrong_order"]
    gap = diagnose_chain([issued.cert, first.cert], roots=[root.cert], host="localhost")
    assert codes(gap) == ["incomplete_chain"]
    assert "Order Intermediate 2" in gap[0].message
    untrusted = diagnose_chain(good, roots=[CertificateAuthority.create_root(None, name="Order Root").cert])
    assert codes(untrusted) == ["untrusted_root"]
    assert "different key" in untrusted[0].message  # same name, other key: named as such


def test_diagnose_no_san_alone(pki) -> None:
    cn_only = leaf(pki.ca, san=False)
    found = diagnose_chain([cn_only, *pki.ca.chain[:1]], roots=[pki.root.cert], host="localhost")
    assert codes(found) == ["no_san"]


# --------------------------------------------------------------------------------------- explain_ssl_error


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, name: str) -> tuple[ssl.SSLError | None, ...]:
    """A real OpenSSL handshake through memory BIOs, then a little data; returns (client, server) errors."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=name)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    errors: dict[str, ssl.SSLError | None] = {"client": None, "server": None}

    def attempt(side: str, action: Callable[[], object]) -> None:
        if errors[side] is None:
            try:
                action()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except ssl.SSLError as exc:
                errors[side] = exc
        s_in.write(c_out.read())
        c_in.write(s_out.read())

    for _ in range(10):
        attempt("client", c.do_handshake)
        attempt("server", s.do_handshake)
    # a TLS 1.3 server judges the client certificate after the client has finished: exchange data to see it
    attempt("client", lambda: c.write(b"ping"))
    for _ in range(5):
        attempt("server", lambda: s.read(4))
        attempt("client", lambda: c.read(4))
    return errors["client"], errors["server"]


def _server_ctx(cert: Path, key: Path, *, ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(ca)
    return ctx


def _client_ctx(ca: Path, *, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def test_explain_certificate_errors_from_real_handshakes(pki, make_cert) -> None:
    expired, expired_key = make_cert(now=NOW - dt.timedelta(days=400), days=30)
    client_err, _ = _handshake(_client_ctx(pki.root_pem), _server_ctx(expired, expired_key), "localhost")
    assert isinstance(client_err, ssl.SSLCertVerificationError)
    assert explain_ssl_error(client_err).code == Code.EXPIRED
    client_err, _ = _handshake(_client_ctx(pki.root_pem), _server_ctx(pki.server_pem, pki.server_key), "example.org")
    problem = explain_ssl_error(client_err, host="example.org", chain=load_certificates(pki.server_pem))
    assert problem.code == Code.HOSTNAME_MISMATCH and "localhost, 127.0.0.1, ::1" in problem.message
    client_err, _ = _handshake(
        _client_ctx(pki.other_root_pem), _server_ctx(pki.server_pem, pki.server_key), "localhost"
    )
    assert explain_ssl_error(client_err).code == Code.INCOMPLETE_CHAIN  # OpenSSL's code 20 alone is ambiguous
    with_chain = explain_ssl_error(client_err, chain=load_certificates(pki.server_pem))
    assert with_chain.code == Code.UNTRUSTED_ROOT and "tlskit Test Root CA" in with_chain.fix
    assert "turn" not in explain_ssl_error(client_err).fix.lower()


def test_explain_client_certificate_errors(pki) -> None:
    server = _server_ctx(pki.server_pem, pki.server_key, ca=pki.root_pem)
    client_err, server_err = _handshake(_client_ctx(pki.root_pem), server, "localhost")
    assert client_err is not None and server_err is not None
    assert explain_ssl_error(client_err).code == Code.CLIENT_CERT_REQUIRED
    assert explain_ssl_error(server_err, peer=Purpose.CLIENT).code == Code.CLIENT_CERT_REQUIRED
    other = _client_ctx(pki.root_pem, cert=pki.other_client_pem, key=pki.other_client_key)
    client_err, server_err = _handshake(other, server, "localhost")
    assert explain_ssl_error(client_err).code == Code.CLIENT_CERT_REJECTED
    rejected = explain_ssl_error(server_err, peer=Purpose.CLIENT)
    assert rejected.code == Code.CLIENT_CERT_REJECTED and "client's certificate" in rejected.message


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_explain_plaintext_peer_and_old_protocol(pki) -> None:
    c_in = ssl.MemoryBIO()
    client = _client_ctx(pki.root_pem).wrap_bio(c_in, ssl.MemoryBIO(), server_hostname="x")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    c_in.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ssl.SSLError) as plain:
        client.do_handshake()
    assert explain_ssl_error(plain.value).code == Code.NOT_TLS
    # a silent peer: the handshake times out on a real socket
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with (
            socket.create_connection(listener.getsockname(), timeout=0.3) as raw,
            pytest.raises(TimeoutError) as silent,
        ):
            _client_ctx(pki.root_pem).wrap_socket(raw, server_hostname="x")
    assert explain_ssl_error(silent.value).code == Code.TIMEOUT
    old = _server_ctx(pki.server_pem, pki.server_key)
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pytest.skip("this OpenSSL cannot configure TLS 1.1 at all")
    client_err, _ = _handshake(_client_ctx(pki.root_pem), old, "localhost")
    assert client_err is not None
    assert explain_ssl_error(client_err).code == Code.PROTOCOL_TOO_OLD


def test_cli_lists_every_further_problem_on_its_own_line(pki, make_cert) -> None:
    """Far in the future the leaf and its CAs have all expired: each further problem says which certificate."""
    leaf, _ = make_cert(name="late")
    proc = cli(leaf, "--ca", pki.root_pem, "--host", "localhost", "--at", "2099-01-01")
    assert proc.returncode == 1
    first, *more = proc.stdout.strip().splitlines()
    assert first.startswith("INVALID (expired): ")
    assert more and all(line.startswith("  also (") for line in more)
    assert len(set(more)) == len(more)  # no repeated lines: each names its certificate


def test_the_gnutls_hint_names_decode_error_only() -> None:
    """GnuTLS answers a missing client certificate with decode_error; other protocol alerts get no such hint."""

    def alert(reason: str) -> ssl.SSLError:
        exc = ssl.SSLError(1, f"[SSL: {reason}] alert")
        exc.reason = reason
        return exc

    decode = explain_ssl_error(alert("TLSV1_ALERT_DECODE_ERROR"), sent_cert=False)
    assert "GnuTLS" in decode.message and "cert=" in decode.fix
    for reason in ("SSLV3_ALERT_UNEXPECTED_MESSAGE", "SSLV3_ALERT_ILLEGAL_PARAMETER", "TLSV1_ALERT_INTERNAL_ERROR"):
        other = explain_ssl_error(alert(reason), sent_cert=False)
        assert other.code is Code.PROTOCOL_VIOLATION and "GnuTLS" not in other.message, (reason, other)
