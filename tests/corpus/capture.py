"""Regenerate the fuzzing corpus from real peers: ``python tests/corpus/capture.py`` (from the repository root).

``tls/``: real handshakes, each direction of one connection as its own file (``NAME.c2s``, ``NAME.s2c``, at most
16 KiB), recorded by a relay between a client (openssl s_client, gnutls-cli, Node's tls, tlskit) and
``openssl s_server``, in TLS 1.2 (certificates in clear, a client certificate too) and TLS 1.3.
``pki/``: files the loaders read, made by openssl, certtool and tlskit (PEM and DER certificates, keys in every
encoding, encrypted keys, a CSR, a CRL, PKCS#12 bundles).  Everything is generated on loopback and in a
temporary directory; the files are small and committed, so the fuzz tests need none of the peers.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent / "src")]

from peers import openssl_server  # noqa: E402
from tlskit.pki.ca import CertificateAuthority  # noqa: E402
from tlskit.pki.certs import Profile  # noqa: E402

LIMIT = 16 * 1024
NODE_CLIENT = HERE.parent / "node" / "client.js"


def record(server_port: int, name: str, client: list[str], stdin: bytes = b"hello\n") -> None:
    """Relay one connection from ``client`` to the server, keeping the first bytes of each direction."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    kept = {"c2s": bytearray(), "s2c": bytearray()}

    def pump(src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while data := src.recv(65536):
                if len(kept[direction]) < LIMIT:
                    kept[direction] += data[: LIMIT - len(kept[direction])]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def relay() -> None:
        downstream, _ = listener.accept()
        upstream = socket.create_connection(("127.0.0.1", server_port))
        threads = [
            threading.Thread(target=pump, args=(downstream, upstream, "c2s")),
            threading.Thread(target=pump, args=(upstream, downstream, "s2c")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        downstream.close()
        upstream.close()

    thread = threading.Thread(target=relay)
    thread.start()
    argv = [part.replace("{port}", str(port)) for part in client]
    subprocess.run(argv, input=stdin, capture_output=True, timeout=20, check=False)
    thread.join(30)
    listener.close()
    for direction, data in kept.items():
        (HERE / "tls" / f"{name}.{direction}").write_bytes(bytes(data))


def tls_corpus(d: Path, ca: CertificateAuthority) -> None:
    server, server_key = ca.issue(["localhost"]).write(d / "server")
    client, client_key = ca.issue(["corpus-client"], profile=Profile.CLIENT).write(d / "client")
    root = d / "ca" / "ca.pem"
    (HERE / "tls").mkdir(exist_ok=True)
    for version in ("1.2", "1.3"):
        flag = f"-tls1_{version[-1]}"
        args = ["-cert", str(server), "-key", str(server_key), "-CAfile", str(root), "-verify", "1", "-rev", flag]
        tag = f"tls1{version[-1]}"
        clients = {
            "openssl": ["openssl", "s_client", "-connect", "127.0.0.1:{port}", "-servername", "localhost", flag,
                        "-CAfile", str(root), "-cert", str(client), "-key", str(client_key)],
            "gnutls": ["gnutls-cli", "--port", "{port}", "--x509cafile", str(root), "--sni-hostname", "localhost",
                       "--priority", f"NORMAL:-VERS-ALL:+VERS-TLS{version}", "--verify-hostname", "localhost",
                       "127.0.0.1"],
            "node": ["node", str(NODE_CLIENT), json.dumps({
                "port": "{port}", "ca": str(root), "servername": "localhost", "alpn": ["h2", "http/1.1"],
                "minVersion": f"TLSv{version}", "maxVersion": f"TLSv{version}", "mode": "echo", "text": "hello",
                "timeoutMs": 2000,
            })],
            "tlskit": [sys.executable, "-m", "tlskit", "connect", "127.0.0.1:{port}", "--ca", str(root),
                       "--servername", "localhost", "--alpn", "h2"],
        }  # fmt: skip
        for client_name, argv in clients.items():
            if client_name == "node":
                argv[-1] = argv[-1].replace('"{port}"', "{port}")
            if shutil.which(argv[0]) is None and argv[0] != sys.executable:
                print(f"skipped {client_name}: not installed")
                continue
            with openssl_server(*args) as peer:
                record(peer.port, f"{client_name}-{tag}", argv)


def pki_corpus(d: Path, ca: CertificateAuthority) -> None:
    out = HERE / "pki"
    out.mkdir(exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            "ec-pkcs8.pem", "-out", "selfsigned.pem", "-subj", "/CN=corpus", "-days", "30",
            "-addext", "subjectAltName=DNS:corpus.example,IP:127.0.0.1")  # fmt: skip
    openssl("x509", "-in", "selfsigned.pem", "-outform", "DER", "-out", "selfsigned.der")
    openssl("ec", "-in", "ec-pkcs8.pem", "-out", "ec-sec1.pem")
    openssl("ec", "-in", "ec-pkcs8.pem", "-outform", "DER", "-out", "ec-sec1.der")
    openssl("genrsa", "-traditional", "-out", "rsa-pkcs1.pem", "1024")  # small: the corpus stays small
    openssl("pkcs8", "-topk8", "-in", "ec-pkcs8.pem", "-v2", "aes-256-cbc", "-passout", "pass:corpus", "-out",
            "ec-encrypted.pem")  # fmt: skip
    openssl("req", "-new", "-key", "ec-pkcs8.pem", "-subj", "/CN=corpus csr", "-addext",
            "subjectAltName=DNS:a.example,DNS:*.b.example,email:x@example.com,URI:spiffe://corpus/x", "-out",
            "request.csr")  # fmt: skip
    openssl("req", "-in", "request.csr", "-outform", "DER", "-out", "request.csr.der")
    openssl("pkcs12", "-export", "-in", "selfsigned.pem", "-inkey", "ec-pkcs8.pem", "-passout", "pass:corpus",
            "-out", "bundle.p12")  # fmt: skip
    openssl("pkcs12", "-export", "-in", "selfsigned.pem", "-inkey", "ec-pkcs8.pem", "-nodes", "-passout", "pass:",
            "-keypbe", "NONE", "-certpbe", "NONE", "-out", "bundle-plain.p12")  # fmt: skip
    if shutil.which("certtool"):
        subprocess.run(["certtool", "--generate-privkey", "--key-type", "ed25519", "--outfile", "ed25519.pem"],
                       cwd=d, check=True, capture_output=True)  # fmt: skip
    (d / "chain.pem").write_bytes((d / "ca" / "ca.pem").read_bytes())
    ca.revoke(ca.issue(["revoked.example"]).cert)
    from cryptography.hazmat.primitives.serialization import Encoding

    (d / "ca.crl").write_bytes(ca.crl().public_bytes(Encoding.PEM))
    (d / "ca.crl.der").write_bytes(ca.crl().public_bytes(Encoding.DER))
    for path in sorted(d.iterdir()):
        if path.is_file() and path.name not in ("server.pem", "server-key.pem", "client.pem", "client-key.pem"):
            shutil.copyfile(path, out / path.name)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ca = CertificateAuthority.create_root(d / "ca", name="tlskit corpus CA")
        tls_corpus(d, ca)
        pki_corpus(d, ca)
    print("corpus written under", HERE)


if __name__ == "__main__":
    main()
