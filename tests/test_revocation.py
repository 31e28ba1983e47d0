"""Revocation online (issue 11), in the library: URLs in certificates, the responder, fetching and judging.

A module PKI publishes through a real responder on a loopback port the OS picked: a root that signs its own
OCSP answers and issues leaves directly, and an intermediate with a delegated OCSP responder; both share one
OCSP URL.  Bad input first: unreachable responders, answers that must not be trusted, CRLs from other keys,
stale data (an injected clock, no sleeping), then what works, then concurrent revocations while serving.
Interop with openssl, curl and the CLI is in test_revocation_cli.py.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.client
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from conftest import free_port
from tlskit.errors import InputError
from tlskit.net.responder import ResponderServer, RevocationResponder, start_responder
from tlskit.net.revocation import Fetch, FetchError, Revocation, RevocationRefresher, http_fetch
from tlskit.pki.ca import CertificateAuthority, Issued
from tlskit.pki.certs import Profile, utc_now
from tlskit.pki.inspect import summarize
from tlskit.pki.ocsp import build_request, respond
from tlskit.pki.verify import verify_chain


@dataclass
class Clock:
    """The responder's time: real time plus ``offset`` (tests that move it put it back)."""

    offset: dt.timedelta = field(default_factory=dt.timedelta)

    def __call__(self) -> dt.datetime:
        return utc_now(None) + self.offset


@dataclass
class Published:
    """The module PKI and its responder.  ``base`` is ``http://127.0.0.1:PORT``."""

    dir: Path
    base: str
    server: ResponderServer
    responder: RevocationResponder
    clock: Clock
    root_dir: Path
    int_dir: Path

    @property
    def root(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.root_dir)

    @property
    def int(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.int_dir)

    def leaf(self, *names: str, by_root: bool = False, profile: Profile = Profile.SERVER) -> Issued:
        return (self.root if by_root else self.int).issue(list(names) or ["localhost"], profile=profile)

    def check(self, issued: Issued, spec: Revocation, *, at: dt.datetime | None = None) -> tuple[bool, list[str]]:
        result = verify_chain(
            issued.cert, roots=[self.root.cert], intermediates=issued.chain[1:], revocation=spec, at=at
        )
        return result.ok, [str(p.code) for p in (*result.problems, *result.warnings)]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    d = tmp_path_factory.mktemp("revocation")
    server = start_responder(None)  # listen first: the CAs' URLs name the port the OS picked
    base = f"http://127.0.0.1:{server.port}"
    try:
        root = CertificateAuthority.create_root(
            d / "root", name="Revocation Root", crl_url=f"{base}/root.crl", ocsp_url=f"{base}/ocsp"
        )
        inter = root.create_intermediate(
            d / "int", name="Revocation Intermediate", crl_url=f"{base}/int.crl", ocsp_url=f"{base}/ocsp"
        )
        inter.create_ocsp_signer()
        clock = Clock()
        inter = CertificateAuthority.load(d / "int")
        responder = RevocationResponder(
            [CertificateAuthority.load(d / "root"), inter], signers=[None, inter.ocsp_signer()], clock=clock
        )
        server.responder = responder
        yield Published(d, base, server, responder, clock, d / "root", d / "int")
    finally:
        server.close()


def fetch(published: Published, method: str, path: str, body: bytes | None = None) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", published.server.port, timeout=10)
    try:
        headers = {"Content-Type": "application/ocsp-request"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://pki.example/int.crl", "https"),
        ("ftp://pki.example/int.crl", "not an http URL"),
        ("http:///int.crl", "no host"),
        ("http://pki.example/int.crl?x=1", "query"),
        ("http://user:pw@pki.example/int.crl", "password"),
        ("http://pki.example/a b.crl", "not a URL"),
    ],
)
def test_bad_urls_are_refused_before_any_key_is_made(tmp_path: Path, url: str, said: str) -> None:
    with pytest.raises(InputError, match=said) as err:
        CertificateAuthority.create_root(tmp_path / "ca", crl_url=url)
    assert not (tmp_path / "ca").exists()
    if said == "https":  # says why http is the rule
        assert "RFC 5280" in str(err.value)


def test_unreachable_responder_fails_closed_or_open(published: Published) -> None:
    port = free_port()
    ca = CertificateAuthority.create_root(
        None, name="Nobody Answers", crl_url=f"http://127.0.0.1:{port}/x.crl", ocsp_url=f"http://127.0.0.1:{port}/ocsp"
    )
    issued = ca.issue(["localhost"])
    for mode in ("ocsp", "crl", "any"):
        result = verify_chain(issued.cert, roots=[ca.cert], revocation=Revocation(mode, timeout=2))
        assert [p.code for p in result.problems] == ["revocation_unavailable"], mode
        assert "connection refused" in result.problems[0].message
    opened = verify_chain(issued.cert, roots=[ca.cert], revocation=Revocation("ocsp", "open", timeout=2))
    assert opened.ok and [w.code for w in opened.warnings] == ["revocation_unavailable"]


def test_no_url_is_its_own_problem(pki: object) -> None:
    ca = CertificateAuthority.create_root(None, name="No URLs")
    issued = ca.issue(["localhost"])
    closed = verify_chain(issued.cert, roots=[ca.cert], revocation=Revocation("ocsp"))
    assert [p.code for p in closed.problems] == ["no_revocation_url"]
    assert "names no OCSP responder" in closed.problems[0].message
    assert verify_chain(issued.cert, roots=[ca.cert], revocation=Revocation("ocsp", "open")).ok


def fake(answer: bytes) -> Fetch:
    """A fetch that answers ``answer`` whatever is asked (a responder or CRL server gone wrong, or forged)."""

    def fetch(url: str, *, body: bytes | None, content_type: str | None, timeout: float, max_bytes: int) -> bytes:
        return answer

    return fetch


def test_malformed_ocsp_answer(published: Published) -> None:
    issued = published.leaf()
    for garbage in (b"", b"<html>hello</html>", b"\x30\x03\x0a\x01\x00" * 3):
        ok, codes = published.check(issued, Revocation("ocsp", fetch=fake(garbage)))
        assert not ok and codes == ["ocsp_invalid"], garbage


def test_ocsp_answer_signed_by_someone_else(published: Published) -> None:
    issued = published.leaf()
    intruder = CertificateAuthority.create_root(None, name="Intruder")
    request = ocsp.load_der_ocsp_request(build_request(issued.cert, published.int.cert).der)
    from tlskit.pki.ocsp import OcspAuthority

    # An answer "good" for the right CertID, signed by a key the CA never authorized.
    forged, _ = respond(
        request, OcspAuthority(intruder.cert, intruder.cert, intruder.key), status=ocsp.OCSPCertStatus.GOOD
    )
    ok, codes = published.check(issued, Revocation("ocsp", fetch=fake(forged)))
    assert not ok and codes == ["ocsp_invalid"]
    # A responder certificate the CA issued, but without id-kp-OCSPSigning (any leaf of that CA).
    leaf = published.leaf("not-a-responder")
    forged, _ = respond(
        request, OcspAuthority(published.int.cert, leaf.cert, leaf.key), status=ocsp.OCSPCertStatus.GOOD
    )
    result = verify_chain(issued.cert, roots=[published.root.cert], intermediates=issued.chain[1:],
                          revocation=Revocation("ocsp", fetch=fake(forged)))  # fmt: skip
    assert [p.code for p in result.problems] == ["ocsp_invalid"]
    assert "OCSPSigning" in result.problems[0].message


def test_replayed_and_stale_ocsp_answers(published: Published) -> None:
    issued = published.leaf()
    # An answer to another request (another nonce) replayed.
    status, _, replayed = fetch(published, "POST", "/ocsp", build_request(issued.cert, published.int.cert).der)
    assert status == 200
    ok, codes = published.check(issued, Revocation("ocsp", fetch=fake(replayed)))
    assert not ok and codes == ["ocsp_invalid"]
    # An answer without a nonce is accepted while current, refused once stale (the clock moves, no sleeping).
    _, _, plain = fetch(published, "POST", "/ocsp", build_request(issued.cert, published.int.cert, nonce=False).der)
    assert published.check(issued, Revocation("ocsp", fetch=fake(plain)))[0]
    later = utc_now(None) + published.responder.ocsp_validity + dt.timedelta(minutes=10)
    ok, codes = published.check(issued, Revocation("ocsp", fetch=fake(plain)), at=later)
    assert not ok and codes == ["ocsp_invalid"]


def test_crl_signed_by_another_key_and_stale_crl(published: Published) -> None:
    issued = published.leaf()
    # Same name, another key: what a CRL from an impostor CA looks like.
    impostor = CertificateAuthority.create_root(None, name="Revocation Intermediate")
    forged = impostor.crl().public_bytes(serialization.Encoding.DER)
    result = verify_chain(issued.cert, roots=[published.root.cert], intermediates=issued.chain[1:],
                          revocation=Revocation("crl", fetch=fake(forged)))  # fmt: skip
    assert [p.code for p in result.problems] == ["crl_invalid"]
    assert "signed by another key" in result.problems[0].message
    # The published CRL, judged after its nextUpdate.
    later = utc_now(None) + published.responder.crl_validity + dt.timedelta(hours=1)
    ok, codes = published.check(issued, Revocation("crl"), at=later)
    assert not ok and codes == ["crl_invalid"]
    assert not published.check(issued, Revocation("crl", fetch=fake(b"not a crl")))[0]


def test_unknown_certificate_and_unserved_ca(published: Published) -> None:
    # A certificate the intermediate never recorded: its name and key, a serial not in its records.
    real = published.int
    ghost = CertificateAuthority(cert=real.cert, key=real.key, chain=real.chain, urls=real.urls)
    unknown = ghost.issue(["ghost"])  # signed by the real key, never recorded in the directory
    ok, codes = published.check(unknown, Revocation("ocsp"))
    assert not ok and codes == ["revocation_unknown"]
    # A CA this responder does not serve: unauthorized, judged as an untrustworthy answer.
    other = CertificateAuthority.create_root(None, name="Elsewhere", ocsp_url=f"{published.base}/ocsp")
    elsewhere = other.issue(["elsewhere"])
    result = verify_chain(elsewhere.cert, roots=[other.cert], revocation=Revocation("ocsp"))
    assert [p.code for p in result.problems] == ["ocsp_invalid"]
    assert "unauthorized" in result.problems[0].message


def test_responder_refuses_what_it_does_not_serve(published: Published) -> None:
    assert fetch(published, "GET", "/nothing")[0] == 404
    assert fetch(published, "PUT", "/ocsp")[0] == 501  # the stdlib server: no handler for PUT
    status, kind, body = fetch(published, "POST", "/ocsp", b"\x00garbage")
    assert (status, kind) == (200, "application/ocsp-response")
    assert ocsp.load_der_ocsp_response(body).response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert fetch(published, "POST", "/ocsp", b"x" * 20000)[0] == 413
    assert fetch(published, "GET", "/ocsp/%%%")[0] == 200  # a malformed GET request gets a malformed answer


def test_fetch_limits(published: Published) -> None:
    with pytest.raises(FetchError, match="the limit of 64"):
        http_fetch(f"{published.base}/root.crt", timeout=5, max_bytes=64)
    with pytest.raises(FetchError, match="HTTP 404"):
        http_fetch(f"{published.base}/missing", timeout=5, max_bytes=4096)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts (in the kernel) and never answers
    try:
        with pytest.raises(FetchError, match="no answer within"):
            http_fetch(f"http://127.0.0.1:{silent.getsockname()[1]}/x.crl", timeout=0.3, max_bytes=4096)
    finally:
        silent.close()
    with pytest.raises(FetchError, match="not a valid port"):  # a URL from a hostile certificate: no ValueError
        http_fetch("http://127.0.0.1:99999/x.crl", timeout=1, max_bytes=4096)
    with pytest.raises(InputError, match="timeout"):
        Revocation(timeout=0)
    with pytest.raises(InputError, match="revocation mode"):
        Revocation("carrier-pigeon")


# --- what certificates carry -----------------------------------------------------------------------------------


def test_certificates_carry_the_issuing_cas_urls(published: Published) -> None:
    base = published.base
    leaf = published.leaf().cert
    dp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for p in dp for n in p.full_name or ()] == [f"{base}/int.crl"]
    aia = {
        (d.access_method, d.access_location.value)
        for d in leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    }
    assert aia == {
        (AuthorityInformationAccessOID.OCSP, f"{base}/ocsp"),
        (AuthorityInformationAccessOID.CA_ISSUERS, f"{base}/int.crt"),
    }
    assert summarize(leaf)["ocsp_urls"] == [f"{base}/ocsp"]  # tlskit inspect shows them
    # the intermediate's certificate names the root's URLs; the root itself names none
    inter = published.int.cert
    assert (
        inter.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0].full_name[0].value
        == f"{base}/root.crl"
    )  # type: ignore[index]
    with pytest.raises(x509.ExtensionNotFound):
        published.root.cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    # a signed CSR too
    from tlskit.pki.certs import build_csr
    from tlskit.pki.keys import generate_key

    signed = published.int.sign_csr(build_csr(generate_key("ec-p256"), cn="csr.example", sans=["csr.example"]))
    assert signed.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    # the delegated responder: id-kp-OCSPSigning and nocheck
    signer = published.int.ocsp_signer()
    assert signer is not None
    assert (
        ExtendedKeyUsageOID.OCSP_SIGNING in signer.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    assert signer.cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    # the caIssuers URL serves the CA certificate
    status, kind, body = fetch(published, "GET", "/int.crt")
    assert (status, kind) == (200, "application/pkix-cert") and x509.load_der_x509_certificate(body) == inter


def test_an_existing_ca_gets_urls(tmp_path: Path) -> None:
    ca = CertificateAuthority.create_root(tmp_path / "ca")
    before = ca.issue(["before"]).cert
    ca.set_urls(crl_url="http://pki.example/ca.crl")
    reopened = CertificateAuthority.load(tmp_path / "ca")
    assert (reopened.urls.crl, reopened.urls.issuer) == ("http://pki.example/ca.crl", "http://pki.example/ca.crt")
    after = reopened.issue(["after"]).cert
    assert after.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    with pytest.raises(x509.ExtensionNotFound):
        before.extensions.get_extension_for_class(x509.CRLDistributionPoints)


# --- the responder -------------------------------------------------------------------------------------------------


def test_ocsp_good_then_revoked_by_post_and_get(published: Published) -> None:
    issued = published.leaf()
    assert published.check(issued, Revocation("ocsp")) == (True, [])
    query = build_request(issued.cert, published.int.cert, nonce=False)
    get = "/ocsp/" + urllib.parse.quote(base64.b64encode(query.der).decode(), safe="")
    first = fetch(published, "GET", get)[2]
    assert fetch(published, "GET", get)[2] == first  # cached until half its validity
    published.int.revoke(issued.cert, reason="keyCompromise")
    ok, codes = published.check(issued, Revocation("ocsp"))
    assert not ok and codes == ["revoked"]
    answer = ocsp.load_der_ocsp_response(fetch(published, "GET", get)[2])
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason is x509.ReasonFlags.key_compromise
    assert answer.certificates  # a delegated responder sends its certificate
    # the root answers for itself (no delegated responder): the intermediate's status, signed by the root's key
    assert published.check(published.leaf(by_root=True), Revocation("ocsp")) == (True, [])


def test_crl_published_renewed_after_revocation_and_before_expiry(published: Published) -> None:
    status, kind, body = fetch(published, "GET", "/int.crl")
    assert (status, kind) == (200, "application/pkix-crl")
    first = x509.load_der_x509_crl(body)
    assert fetch(published, "GET", "/int.crl")[2] == body  # nothing changed: the same CRL
    issued = published.leaf()
    published.int.revoke(issued.cert)
    after = x509.load_der_x509_crl(fetch(published, "GET", "/int.crl")[2])
    assert after.get_revoked_certificate_by_serial_number(issued.cert.serial_number) is not None
    number = after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    # past half its validity, a new one is signed before anyone could see it expire
    published.clock.offset = published.responder.crl_validity * 0.6
    try:
        renewed = x509.load_der_x509_crl(fetch(published, "GET", "/int.crl")[2])
    finally:
        published.clock.offset = dt.timedelta()
    assert renewed.next_update_utc is not None and after.next_update_utc is not None
    assert renewed.next_update_utc > after.next_update_utc
    ok, codes = published.check(issued, Revocation("crl"))
    assert not ok and codes == ["revoked"]


def test_whole_chain_and_fallback_to_crl(published: Published) -> None:
    issued = published.leaf()
    ok, codes = published.check(issued, Revocation("any", whole_chain=True))
    assert ok, codes
    result = verify_chain(issued.cert, roots=[published.root.cert], intermediates=issued.chain[1:],
                          revocation=Revocation("any", whole_chain=True))  # fmt: skip
    assert [(s, src.rsplit("/", 1)[1]) for _, s, src in result.revocation] == [("good", "ocsp"), ("good", "ocsp")]


def test_concurrent_revocations_while_serving_lose_nothing(published: Published) -> None:
    leaves = [published.leaf(f"c{i}") for i in range(12)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def readers() -> None:  # the responder signs CRLs (and writes the CRL number) all along
        while not stop.is_set():
            try:
                fetch(published, "GET", "/int.crl")
            except BaseException as exc:
                errors.append(exc)

    def revoke(issued: Issued) -> None:
        try:
            CertificateAuthority.load(published.int_dir).revoke(issued.cert, reason="superseded")
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=readers)
    reader.start()
    writers = [threading.Thread(target=revoke, args=(issued,)) for issued in leaves]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert not errors
    crl = x509.load_der_x509_crl(fetch(published, "GET", "/int.crl")[2])
    for issued in leaves:
        assert crl.get_revoked_certificate_by_serial_number(issued.cert.serial_number) is not None
        assert published.check(issued, Revocation("ocsp"))[1] == ["revoked"]
    assert sum(r.revoked_at is not None for r in published.int.records()) >= len(leaves)


# --- the background refresher ------------------------------------------------------------------------------------


def test_refresher_notices_a_revocation_within_one_interval(published: Published) -> None:
    issued = published.leaf(profile=Profile.CLIENT)
    chain = list(issued.chain)
    with RevocationRefresher(Revocation("ocsp"), issuers=[published.root.cert], interval=0.1) as refresher:
        assert refresher.check(chain).problems == ()
        published.int.revoke(issued.cert)
        seen = refresher.refreshes
        # no sleeping on a guess: wait for the refresher's own count of refreshes to move past this one
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)
        while refresher.refreshes < seen + 2 and dt.datetime.now(dt.UTC) < deadline:
            threading.Event().wait(0.02)
        assert [p.code for p in refresher.check(chain).problems] == ["revoked"]


# --- the refusal in every mode (a revocation source is a policy on who may talk) ---------------------------------

SOURCES = ["crl-file", "ocsp", "crl-url"]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("source", SOURCES)
def test_revocation_on_a_server_that_asks_for_no_certificate_is_refused(published: Published, source: str,
                                                                      workers: int) -> None:  # fmt: skip
    """client_auth=none: no certificate would ever be checked, so the combination is refused, not ignored."""
    from test_policy import run
    from tlskit import start_server

    async def main() -> None:
        ctx, policy, refresher = _server_side_revocation(published, source, "none")
        try:
            await start_server(lambda conn: None, "127.0.0.1", 0, context=ctx, policy=policy, workers=workers)  # type: ignore[arg-type]
        finally:
            if refresher is not None:
                refresher.close()  # type: ignore[attr-defined]

    with pytest.raises(InputError, match="does not ask for") as err:
        run(main())
    assert "client_auth=optional" in err.value.fix


def _server_side_revocation(published: Published, source: str, auth: object) -> tuple[object, object, object]:
    """The server context, the peer policy and the refresher (or None) for one revocation ``source``."""
    from tlskit import PeerPolicy, server_context

    leaf = published.leaf()
    crls = [published.int.crl()] if source == "crl-file" else []
    ctx = server_context(cert=list(leaf.chain), key=leaf.key, ca=published.root.cert, client_auth=auth, crls=crls)
    if source == "crl-file":
        return ctx, None, None
    refresher = RevocationRefresher(Revocation("ocsp" if source == "ocsp" else "crl"), issuers=[published.root.cert])
    return ctx, PeerPolicy(check=refresher.peer_check), refresher


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("auth", ["optional", "required"])
@pytest.mark.parametrize("source", SOURCES)
def test_a_revoked_client_is_refused_in_every_mode(published: Published, tmp_path: Path, source: str, auth: str,
                                                    workers: int) -> None:  # fmt: skip
    """Negative first: a revoked client certificate never reaches the handler, in one process or forked workers,
    with client certificates optional or required, whether OpenSSL reads a CRL file or the peer check asks online."""
    from test_policy import Journal, attempt, run
    from tlskit import client_context, start_server

    good, revoked = (
        published.leaf("good-client", profile=Profile.CLIENT),
        published.leaf("gone", profile=Profile.CLIENT),
    )
    published.int.revoke(revoked.cert)
    ctx, policy, refresher = _server_side_revocation(published, source, auth)
    anchors = published.root.cert
    clients = {
        "revoked": client_context(ca=anchors, cert=list(revoked.chain), key=revoked.key),
        "good": client_context(ca=anchors, cert=list(good.chain), key=good.key),
        "none": client_context(ca=anchors),
    }
    journal = Journal(tmp_path / "journal")

    async def main() -> dict[str, object]:
        server = await start_server(journal.handler(), "127.0.0.1", 0, context=ctx, policy=policy,  # type: ignore[arg-type]
                                    on_tls_error=journal.on_error, workers=workers)  # fmt: skip
        async with server:
            outcomes = {name: await attempt(server.port, c, send=name.encode()) for name, c in clients.items()}
            await journal.wait_for(3)
        return outcomes  # type: ignore[return-value]

    try:
        outcomes = run(main())
    finally:
        if refresher is not None:
            refresher.close()  # type: ignore[attr-defined]
    entries = journal.entries()
    served = sorted(e["received"] for e in entries if e["event"] == "served")
    codes = sorted(e["code"] for e in entries if e["event"] == "error")
    assert outcomes["revoked"].reply == b"", outcomes["revoked"]  # type: ignore[attr-defined]
    assert outcomes["good"].reply == b"echo:good"  # type: ignore[attr-defined]
    revoked_code = "client_cert_rejected" if source == "crl-file" else "revoked"  # OpenSSL's refusal, or ours
    if auth == "required":
        assert served == ["good"], entries
        assert codes == sorted([revoked_code, "client_cert_required"]), entries
    else:  # optional: a client without a certificate is served as anonymous; revocation concerns certificates
        assert served == ["good", "none"], entries
        assert codes == [revoked_code], entries


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("source", SOURCES)
def test_a_revoked_server_is_refused_with_verification_on_and_off(published: Published, source: str,
                                                                  verify: bool) -> None:  # fmt: skip
    """Client side: a CRL file needs verification (refused up front without it); the online check holds either way."""
    from test_policy import run
    from tlskit import PeerPolicy, TLSError, client_context, connect, server_context, start_server

    leaf = published.leaf("localhost")
    published.int.revoke(leaf.cert)
    srv = server_context(cert=list(leaf.chain), key=leaf.key)
    anchors = published.root.cert
    if source == "crl-file":
        if not verify:
            with pytest.raises(InputError, match="verification is off"):
                client_context(ca=anchors, verify=False, crls=[published.int.crl()])
            return
        cctx, policy, refresher = client_context(ca=anchors, crls=[published.int.crl()]), None, None
    else:
        cctx = client_context(ca=anchors, verify=verify)
        refresher = RevocationRefresher(Revocation("ocsp" if source == "ocsp" else "crl"), issuers=[anchors])
        policy = PeerPolicy(check=refresher.peer_check)
    served: list[bytes] = []

    async def handler(conn: object) -> None:
        served.append(await conn.read())  # type: ignore[attr-defined]

    async def main() -> TLSError | None:
        async with await start_server(handler, "127.0.0.1", 0, context=srv) as server:
            try:
                conn = await connect("127.0.0.1", server.port, context=cctx, server_name="localhost", policy=policy)
            except TLSError as exc:
                return exc
            await conn.write(b"secret")  # what a client that accepted the server would send
            await conn.close()
            return None

    try:
        error = run(main())
    finally:
        if refresher is not None:
            refresher.close()
    assert error is not None, "a revoked server was accepted"
    assert error.code == "revoked", error  # OpenSSL's verdict (CRL file) and the online check say the same
    assert all(b"secret" not in data for data in served), served


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("source", ["ocsp", "crl-url"])
def test_a_client_revoked_after_its_first_connection_cannot_resume_its_way_back(
    published: Published, source: str, workers: int
) -> None:
    """A resumed session carries no chain: the check puts the remembered intermediates back and still refuses."""
    from tlskit import PeerPolicy, TLSError, client_context, connect, server_context, start_server

    leaf, client_cert = published.leaf(), published.leaf("comes-back", profile=Profile.CLIENT)
    anchors = published.root.cert
    ctx = server_context(cert=list(leaf.chain), key=leaf.key, ca=anchors, client_auth="required")
    # One process remembers the intermediates of the full handshakes it served; a worker may resume a session
    # another worker began, so with several the intermediates must be among the issuers (documented).
    issuers = [anchors] if workers == 1 else [anchors, published.int.cert]
    refresher = RevocationRefresher(Revocation("ocsp" if source == "ocsp" else "crl"), issuers=issuers, interval=0.1)
    cctx = client_context(ca=anchors, cert=list(client_cert.chain), key=client_cert.key)

    async def echo(conn: object) -> None:
        data = await conn.read()  # type: ignore[attr-defined]
        await conn.write(data)  # type: ignore[attr-defined]

    async def once(port: int, session: object = None) -> tuple[object, bool]:
        """(the session to resume next, whether this one resumed); raises TLSError when refused."""
        conn = await connect("127.0.0.1", port, context=cctx, server_name="localhost", session=session)
        try:
            await conn.write(b"x")
            if await conn.read() != b"x":
                raise ConnectionResetError("no echo")
            for _ in range(100):  # the TLS 1.3 ticket comes after the handshake
                if conn.session is not None and conn.session.has_ticket:
                    break
                await asyncio.sleep(0.01)
            return conn.session, conn.session_reused
        finally:
            await conn.close(timeout=2.0)

    async def refused(port: int, session: object = None) -> bool:
        try:
            await once(port, session)
        except (TLSError, ConnectionError):
            return True
        return False

    async def main() -> None:
        policy = PeerPolicy(check=refresher.peer_check)
        async with await start_server(echo, "127.0.0.1", 0, context=ctx, policy=policy, workers=workers) as server:
            session, _ = await once(server.port)
            for _ in range(20):  # resumption works while the client is good (every worker shares the ticket key)
                _, resumed = await once(server.port, session)
                if resumed:
                    break
            assert resumed, "the client never resumed: the case below would test nothing"
            published.int.revoke(client_cert.cert)
            deadline = asyncio.get_running_loop().time() + 60
            while not await refused(server.port):  # a full handshake: refused once the refresher has seen it
                assert asyncio.get_running_loop().time() < deadline, "the revocation was never noticed"
            while not await refused(server.port, session):  # and the resumed session too, never served for good
                assert asyncio.get_running_loop().time() < deadline, "a revoked client is served by resuming"

    try:
        from test_policy import run

        run(main())
    finally:
        refresher.close()
