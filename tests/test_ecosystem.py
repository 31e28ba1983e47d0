"""tlskit's contexts are plain ``ssl.SSLContext``s: the stdlib HTTP stack and curl use them as they are."""

from __future__ import annotations

import http.server
import subprocess
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from conftest import PKI
from peers import requires
from tlskit import ClientAuth, client_context, server_context


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        peer = self.connection.getpeercert()  # type: ignore[attr-defined]
        cn = dict(x[0] for x in peer["subject"])["commonName"] if peer else "-"
        body = f"hello {cn}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def https_server(pki: PKI) -> Iterator[int]:
    """``http.server`` on 127.0.0.1 behind a tlskit server context that requires client certificates."""
    ctx = server_context(
        cert=pki.server_pem, key=pki.server_key, ca=pki.root_pem, client_auth=ClientAuth.REQUIRED, alpn=["http/1.1"]
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_urllib_with_tlskit_client_context(pki: PKI, https_server: int) -> None:
    ctx = client_context(ca=pki.root_pem, cert=pki.client_pem, key=pki.client_key)
    with urllib.request.urlopen(f"https://localhost:{https_server}/", context=ctx, timeout=10) as response:
        assert response.status == 200
        assert response.read() == b"hello client\n"


def test_urllib_without_client_certificate_is_refused(pki: PKI, https_server: int) -> None:
    ctx = client_context(ca=pki.root_pem)
    # Under TLS 1.3 the server's certificate_required alert arrives after the client's side of the handshake;
    # depending on timing the client reads the alert or only the closed connection.
    with pytest.raises(OSError, match=r"(?i)certificate.required|EOF occurred|reset by peer|broken pipe"):
        urllib.request.urlopen(f"https://localhost:{https_server}/", context=ctx, timeout=10).read()


@requires("curl")
def test_curl_mutual_tls_against_tlskit_server_context(pki: PKI, https_server: int) -> None:
    url = f"https://localhost:{https_server}/"
    ok = subprocess.run(
        ["curl", "-sS", "--cacert", pki.root_pem, "--cert", pki.client_pem, "--key", pki.client_key, url],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "hello client\n"
    # curl trusting nothing but the system store refuses tlskit's private CA: verification is really on.
    refused = subprocess.run(
        ["curl", "-sS", "--cert", pki.client_pem, "--key", pki.client_key, url],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert refused.returncode == 60, refused.stderr  # CURLE_PEER_FAILED_VERIFICATION
