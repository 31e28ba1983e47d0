"""Crafted OCSP messages: a duplicated nonce extension in an answer or a request.

cryptography refuses to build such messages, so they are built with a stand-in extension whose OID differs from
id-pkix-ocsp-nonce in its last byte, which is then patched (and the answer signed again: an RSA signature has a
fixed length, so nothing else moves).  An answer like that is an invalid answer (a problem, never an exception
out of verify_chain); a request like that gets malformedRequest from the responder, over HTTP too.
"""

from __future__ import annotations

import datetime as dt
import http.client

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ObjectIdentifier

from tlskit.net.responder import RevocationResponder, start_responder
from tlskit.net.revocation import Fetch, Revocation
from tlskit.pki.ca import CertificateAuthority, Issued
from tlskit.pki.certs import utc_now
from tlskit.pki.ocsp import REQUEST_HASH, build_request
from tlskit.pki.verify import verify_chain

_NONCE = x509.OCSPNonce.oid  # 1.3.6.1.5.5.7.48.1.2
_STAND_IN = ObjectIdentifier("1.3.6.1.5.5.7.48.1.9")  # same encoded length, last byte differs


def _encoded(oid: ObjectIdentifier) -> bytes:
    """The DER of ``oid`` (tag, length, content) for the arcs used here (all below 128 after the first two)."""
    arcs = [int(a) for a in oid.dotted_string.split(".")]
    content = bytes([40 * arcs[0] + arcs[1], *arcs[2:]])
    return bytes([0x06, len(content)]) + content


def _duplicate_nonce(der: bytes) -> bytes:
    """``der`` with the stand-in extension's OID turned into a second nonce OID."""
    stand_in, nonce = _encoded(_STAND_IN), _encoded(_NONCE)
    assert der.count(stand_in) == 1 and der.count(nonce) == 1
    return der.replace(stand_in, nonce)


def _stand_in(nonce: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(_STAND_IN, bytes([0x04, len(nonce)]) + nonce)  # an OCTET STRING, as a nonce


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    d = tmp_path_factory.mktemp("hostile")
    return CertificateAuthority.create_root(
        d / "root", name="Hostile Root", key_type="rsa-2048", ocsp_url="http://127.0.0.1:9/ocsp"
    )


@pytest.fixture(scope="module")
def leaf(ca: CertificateAuthority) -> Issued:
    return ca.issue(["localhost"])


def crafted_responder(ca: CertificateAuthority, *, duplicate: bool) -> Fetch:
    """A fetch answering "good", signed by ``ca``, echoing the request's nonce in a nonce extension and in the
    stand-in one, which becomes a second nonce when ``duplicate``."""

    def fetch(url: str, *, body: bytes | None, content_type: str | None, timeout: float, max_bytes: int) -> bytes:
        assert body is not None
        request = ocsp.load_der_ocsp_request(body)
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        now = utc_now(None).replace(microsecond=0)
        response = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=request.issuer_name_hash,
                issuer_key_hash=request.issuer_key_hash,
                serial_number=request.serial_number,
                algorithm=request.hash_algorithm,
                cert_status=ocsp.OCSPCertStatus.GOOD,
                this_update=now,
                next_update=now + dt.timedelta(hours=1),
                revocation_time=None,
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, ca.cert)
            .add_extension(x509.OCSPNonce(nonce), critical=False)
            .add_extension(_stand_in(nonce), critical=False)
            .sign(ca.key, hashes.SHA256())
        )
        der = response.public_bytes(serialization.Encoding.DER)
        if not duplicate:
            return der
        tbs = response.tbs_response_bytes
        patched = _duplicate_nonce(tbs)
        key = ca.key
        assert isinstance(key, rsa.RSAPrivateKey)
        signature = key.sign(patched, padding.PKCS1v15(), hashes.SHA256())
        assert len(signature) == len(response.signature) and der.count(response.signature) == 1
        return der.replace(tbs, patched).replace(response.signature, signature)

    return fetch


def test_an_answer_with_a_duplicated_nonce_is_an_invalid_answer(ca: CertificateAuthority, leaf: Issued) -> None:
    # The same answer with the stand-in left alone is good: the duplicated nonce is its only flaw.
    honest = verify_chain(
        leaf.cert, roots=[ca.cert], revocation=Revocation("ocsp", fetch=crafted_responder(ca, duplicate=False))
    )
    assert honest.ok, honest.problems
    for fail in ("closed", "open"):
        result = verify_chain(
            leaf.cert, roots=[ca.cert], revocation=Revocation("ocsp", fail, fetch=crafted_responder(ca, duplicate=True))
        )
        assert not result.ok and [p.code for p in result.problems] == ["ocsp_invalid"], result.problems
        assert "nonce" in result.problems[0].message and "\n" not in result.problems[0].message


def _request_with_duplicated_nonce(leaf: Issued, ca: CertificateAuthority) -> bytes:
    nonce = b"n" * 16
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf.cert, ca.cert, REQUEST_HASH)
        .add_extension(x509.OCSPNonce(nonce), critical=False)
        .add_extension(_stand_in(nonce), critical=False)
        .build()
    )
    return _duplicate_nonce(request.public_bytes(serialization.Encoding.DER))


def _status(der: bytes) -> ocsp.OCSPResponseStatus:
    return ocsp.load_der_ocsp_response(der).response_status


def test_a_request_with_a_duplicated_nonce_gets_malformed_request(ca: CertificateAuthority, leaf: Issued) -> None:
    responder = RevocationResponder([ca])
    # A well-formed request is answered, signed.
    answer, _ = responder.answer(build_request(leaf.cert, ca.cert).der)
    assert _status(answer) is ocsp.OCSPResponseStatus.SUCCESSFUL
    crafted = _request_with_duplicated_nonce(leaf, ca)
    answer, note = responder.answer(crafted)
    assert _status(answer) is ocsp.OCSPResponseStatus.MALFORMED_REQUEST and "malformed" in note
    # Over HTTP: an answer is sent, and the server goes on answering.
    with start_responder(responder) as server:
        for body in (crafted, build_request(leaf.cert, ca.cert).der):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                conn.request("POST", "/ocsp", body=body, headers={"Content-Type": "application/ocsp-request"})
                reply = conn.getresponse()
                assert (reply.status, reply.getheader("Content-Type")) == (200, "application/ocsp-response")
                data = reply.read()
            finally:
                conn.close()
            expected = (
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST if body is crafted else ocsp.OCSPResponseStatus.SUCCESSFUL
            )
            assert _status(data) is expected
