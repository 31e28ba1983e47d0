"""Strings from certificates and from the network are printed as text, never obeyed by the terminal.

A certificate whose CN and SAN carry an ESC sequence (clear screen, set the window title), a C1 CSI, DEL, a
newline, a right-to-left override and rich markup goes through ``tlskit inspect``, ``verify``, ``probe`` and a
``serve``/``connect`` pair (with a hostile ALPN too); the tap and demo renderers get the same names.  Every
output must show the escaped form (``\\x1b[2J``) and hold no raw control character.
"""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rich.console import Console

from conftest import PKI, TLSKIT
from peers import Peer, running
from tlskit._text import printable
from tlskit.pki.files import certs_to_pem
from tlskit.pki.keys import key_to_pem

HOSTILE_CN = "\x1b[2J\x1b]0;pwned\x07[bold red]evil[/]\u202etxt.exe\x9b31m\x7f\nnext\u200b"
HOSTILE_DNS = "\x1b[2J.example"
HOSTILE_ALPN = "\x1b[2Jh\x1b[31m"  # ALPN is ASCII: ESC sequences only
ESCAPED = (
    "\\x1b[2J",
    "\\x1b]0",
    "pwned\\x07",
    "[bold red]evil[/]",
    "\\u202etxt.exe",
    "\\x9b31m",
    "\\x7f\\nnext\\u200b",
)
TIMEOUT = 30.0


def assert_harmless(output: str, *expected: str) -> None:
    """No character that could act on a terminal; every ``expected`` escaped form is there to read."""
    raw = sorted({c for c in output if not c.isprintable() and c != "\n"})
    assert not raw, f"raw control characters {raw!r} in:\n{output}"
    for text in expected:
        assert text in output, f"{text!r} not in:\n{output}"


# --- the one function ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain CN=example.com, O=Acme\\, Inc.", "plain CN=example.com, O=Acme\\, Inc."),  # RFC 4514 escapes kept
        ("Müller 例え", "Müller 例え"),  # printable in any script
        ("\x1b[2J", "\\x1b[2J"),
        ("a\nb\rc\td\x00", "a\\nb\\rc\\td\\x00"),
        ("\x7f\x80\x9b\x9f", "\\x7f\\x80\\x9b\\x9f"),  # DEL and C1 (U+009B is CSI)
        ("\u202eexe.txt\u202c\u2066\u200f", "\\u202eexe.txt\\u202c\\u2066\\u200f"),  # bidi controls
        ("zero\u200bwidth\ufeff\u2028", "zero\\u200bwidth\\ufeff\\u2028"),
        ("\U000e0041\ud800", "\\U000e0041\\ud800"),  # tag characters, a lone surrogate
        ("[bold red]markup[/]", "[bold red]markup[/]"),  # markup is the renderer's job: kept as text
    ],
)
def test_printable_escapes_like_repr_without_quotes(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(shown) == shown  # escaping twice is harmless
    assert printable(raw).isprintable()


# --- a certificate with hostile names ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A server-and-client leaf issued by the session intermediate, CN and one SAN hostile (built by hand: the
    CA refuses such names).  Returns (chain.pem, key.pem)."""
    d = tmp_path_factory.mktemp("hostile")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName(HOSTILE_DNS)]
    usage = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "key_cert_sign"), False
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTILE_CN)]))
        .issuer_name(pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, crl_sign=False, encipher_only=False, decipher_only=False, **usage),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.ca.key.public_key()), critical=False)
        .sign(pki.ca.key, hashes.SHA256())
    )
    chain, key_path = d / "hostile.pem", d / "hostile-key.pem"
    chain.write_bytes(certs_to_pem([cert, pki.ca.cert]))
    key_path.write_bytes(key_to_pem(key))
    key_path.chmod(0o600)
    return chain, key_path


def tlskit(*args: Any, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TLSKIT_PASSPHRASE"} | {"NO_COLOR": "1"}
    return subprocess.run(
        [str(TLSKIT), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
    )


def test_inspect_prints_hostile_names_as_text(hostile: tuple[Path, Path]) -> None:
    result = tlskit("inspect", hostile[0])
    assert result.returncode == 0, result.stderr
    assert_harmless(result.stdout, *ESCAPED, "DNS:\\x1b[2J.example")


def test_verify_prints_hostile_names_as_text(hostile: tuple[Path, Path], pki: PKI) -> None:
    ok = tlskit("verify", hostile[0], "--ca", pki.root_pem, "--host", "localhost")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert_harmless(ok.stdout, *ESCAPED)
    bad = tlskit("verify", hostile[0], "--ca", pki.root_pem, "--host", "other.example")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert_harmless(bad.stdout, *ESCAPED[1:], "\\x1b[2J.example")


@contextmanager
def serve_hostile(hostile: tuple[Path, Path], pki: PKI) -> Iterator[Peer]:
    argv = [str(TLSKIT), "serve", "0", "--cert", str(hostile[0]), "--key", str(hostile[1]), "--echo"]
    argv += ["--ca", str(pki.root_pem), "--client-auth", "optional", "--alpn", HOSTILE_ALPN]
    port_from = lambda peer: int(peer.wait_for(r"^serve: listening on 127\.0\.0\.1:(\d+)$").group(1))  # noqa: E731
    with running(argv, port_from=port_from) as server:
        yield server


def test_serve_and_connect_print_hostile_names_and_alpn_as_text(hostile: tuple[Path, Path], pki: PKI) -> None:
    with serve_hostile(hostile, pki) as server:
        client = tlskit(
            "connect", f"127.0.0.1:{server.port}", "--ca", pki.root_pem, "--servername", "localhost",
            "--cert", hostile[0], "--key", hostile[1], "--alpn", HOSTILE_ALPN, stdin="ping\n",
        )  # fmt: skip
        server.wait_for(r"closed$")
    assert client.returncode == 0, client.stderr
    assert client.stdout == "ping\n"
    assert_harmless(client.stderr, *ESCAPED, "ALPN \\x1b[2Jh\\x1b[31m")
    assert_harmless(server.output, *ESCAPED, "alpn=\\x1b[2Jh\\x1b[31m")
    assert "connected: authorized (CN=\\x1b[2J" in server.output


def test_probe_prints_hostile_names_and_alpn_as_text(hostile: tuple[Path, Path], pki: PKI) -> None:
    with serve_hostile(hostile, pki) as server:
        result = tlskit(
            "probe", f"127.0.0.1:{server.port}", "--ca", pki.root_pem, "--servername", "localhost",
            "--alpn", HOSTILE_ALPN, "--no-scan",
        )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    assert_harmless(result.stdout, *ESCAPED, "\\x1b[2Jh\\x1b[31m", "DNS:\\x1b[2J.example")


# --- renderers fed directly --------------------------------------------------------------------------------


def test_tap_text_renderer_prints_hostile_certificate_names_as_text() -> None:
    from tlskit.cli.tap_render import TextRenderer
    from tlskit.tools.records import Direction
    from tlskit.tools.tap_observer import Observation

    cert = {"subject": f"CN={HOSTILE_CN}", "issuer": "CN=\x1b[5mCA", "dns_names": [HOSTILE_DNS]}
    obs = Observation(
        conn=1,
        event="certificate",
        direction=Direction.SERVER_TO_CLIENT,
        time=dt.datetime.now(dt.UTC),
        elapsed=0.1,
        fields={"certificates": [{**cert, "not_after": "2030-01-01T00:00:00Z"}]},
    )
    buf = io.StringIO()
    TextRenderer(Console(file=buf, width=300, no_color=True, highlight=False, soft_wrap=True))(obs)
    assert_harmless(buf.getvalue(), *ESCAPED, "CN=\\x1b[5mCA", "DNS \\x1b[2J.example")


def test_demo_narration_prints_peer_text_as_text() -> None:
    from tlskit.cli.demo import _Show

    buf = io.StringIO()
    _Show(Console(file=buf, width=300, no_color=True, highlight=False)).line("server", f"peer CN={HOSTILE_CN}")
    assert_harmless(buf.getvalue().replace("\n", " "), "\\x1b[2J", "[bold red]evil[/]")


def test_serve_log_lines_escape_what_the_library_logs() -> None:
    from tlskit.cli.net_io import PrintableFormatter

    record = logging.LogRecord(
        "tlskit.server", logging.WARNING, __file__, 1, "%s: TLS error: %s", ("peer", "\x1b[2J"), None
    )
    assert PrintableFormatter("serve: %(message)s").format(record) == "serve: peer: TLS error: \\x1b[2J"
