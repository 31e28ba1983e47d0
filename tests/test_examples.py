"""The programs in examples/ against the real thing: aiohttp + httpx, websockets, mosquitto + paho, amqtt.

Each example runs as a user would run it: as a program, from the directory where ``examples/make_pki.py``
wrote its certificates, with its default file names.  Servers listen on ports the OS picks; every process is
stopped at the end.  Refusals are checked too: a client certificate from another CA gets no WebSocket and no
MQTT session, and the client says why in tlskit's words.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, free_port
from peers import Peer, running, tool

EXAMPLES = ROOT / "examples"
PROGRAMS = ["make_pki.py", "https_server.py", "https_client.py", "wss_server.py", "wss_client.py", "mqtt_client.py"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding pki/, made by examples/make_pki.py, where the examples run with their defaults."""
    d = tmp_path_factory.mktemp("examples")
    done = subprocess.run(
        [sys.executable, EXAMPLES / "make_pki.py"], cwd=d, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return d


def example(workdir: Path, program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, EXAMPLES / program, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def serving(workdir: Path, program: str, *args: str) -> Iterator[Peer]:
    def port(peer: Peer) -> int:
        return int(peer.wait_for(r"^listening on \w+://127\.0\.0\.1:(\d+)/", timeout=30).group(1))

    with running([sys.executable, EXAMPLES / program, "--port", "0", *args], port_from=port, cwd=workdir) as peer:
        yield peer


@pytest.mark.parametrize("program", PROGRAMS)
def test_each_example_says_what_it_shows(program: str) -> None:
    done = subprocess.run(
        [sys.executable, EXAMPLES / program, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    first_line = (EXAMPLES / program).read_text().split('"""')[1].splitlines()[0]
    assert first_line in " ".join(done.stdout.split())


def test_examples_use_only_tlskit_public_names() -> None:
    import tlskit

    for program in PROGRAMS:
        source = (EXAMPLES / program).read_text()
        assert "from tlskit." not in source and "import tlskit." not in source, program
        used = set(re.findall(r"(?<![\"\w.])tlskit\.(\w+)", source))  # not a logger name in quotes
        assert used <= set(tlskit._EXPORTS), (program, used - set(tlskit._EXPORTS))


# --- HTTPS: aiohttp serving, httpx asking --------------------------------------------------------------------


@pytest.fixture(scope="module")
def https_server(workdir: Path) -> Iterator[Peer]:
    yield from serving(workdir, "https_server.py")


def test_https_authorized_client_gets_its_name(workdir: Path, https_server: Peer) -> None:
    done = example(workdir, "https_client.py", f"https://localhost:{https_server.port}/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("200 OK from localhost (TLSv1.3, ")
    assert "<h1>Hello alice</h1>" in done.stdout
    https_server.wait_for(r"GET /: 200 for 'alice'")


def test_https_client_without_certificate_gets_401_with_tlskits_reason(workdir: Path, https_server: Peer) -> None:
    done = example(workdir, "https_client.py", f"https://localhost:{https_server.port}/", "--no-cert")
    assert done.returncode == 1
    assert done.stdout.startswith("401 Unauthorized from localhost")
    assert "no client certificate offered" in done.stdout  # tlskit's words, as TLSConnection.authorization_error
    https_server.wait_for(r"GET /: 401 \(no client certificate offered\)")


def test_https_certificate_from_another_ca_is_refused_and_explained(workdir: Path, https_server: Peer) -> None:
    url = f"https://localhost:{https_server.port}/"
    done = example(workdir, "https_client.py", url, "--cert", "pki/mallory.pem", "--key", "pki/mallory-key.pem")
    assert done.returncode == 1
    assert "code: client_cert_rejected" in done.stderr
    assert "did not accept the client certificate" in done.stderr
    # and a server the client does not trust is named as such
    done = example(workdir, "https_client.py", url, "--ca", "pki/other-ca/ca.pem")
    assert done.returncode == 1
    assert "code: untrusted_root" in done.stderr


# --- secure WebSockets -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wss_server(workdir: Path) -> Iterator[Peer]:
    yield from serving(workdir, "wss_server.py", "--news-every", "0.05")


def test_wss_chat_broadcasts_to_everyone(workdir: Path, wss_server: Peer) -> None:
    url = f"wss://localhost:{wss_server.port}/chat"
    argv = [sys.executable, EXAMPLES / "wss_client.py", url, "--receive", "3"]
    with running(argv, port_from=lambda p: 0, cwd=workdir) as alice:
        alice.wait_for(r"^\* alice joined$")  # alice is in the room before bob speaks
        bob = example(workdir, "wss_client.py", url, "--cert", "pki/bob.pem", "--key", "pki/bob-key.pem",
                      "--send", "hello from bob", "--receive", "2")  # fmt: skip
        assert bob.returncode == 0, bob.stderr
        assert bob.stdout.splitlines()[1:] == ["* bob joined", "bob: hello from bob"]
        alice.wait_for(r"^bob: hello from bob$")
        assert alice.proc.wait(30) == 0
        assert alice.lines[1:] == ["* alice joined", "* bob joined", "bob: hello from bob"]


def test_wss_news_greets_each_client(workdir: Path, wss_server: Peer) -> None:
    url = f"wss://localhost:{wss_server.port}/news"
    done = example(workdir, "wss_client.py", url, "--receive", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == ["hello alice, welcome to the news", "headline 1: TLS still works"]
    bob = example(workdir, "wss_client.py", url, "--cert", "pki/bob.pem", "--key", "pki/bob-key.pem", "--receive", "1")
    assert bob.stdout.splitlines()[1:] == ["hello bob, welcome to the news"]


def test_wss_refuses_a_certificate_from_another_ca(workdir: Path, wss_server: Peer) -> None:
    url = f"wss://localhost:{wss_server.port}/chat"
    done = example(workdir, "wss_client.py", url, "--cert", "pki/mallory.pem", "--key", "pki/mallory-key.pem")
    assert done.returncode == 1
    assert "connected" not in done.stdout  # no WebSocket
    assert "code: client_cert_rejected" in done.stderr
    assert "did not accept the client certificate" in done.stderr
    assert "'mallory' joined" not in wss_server.output
    no_cert = example(workdir, "wss_client.py", url, "--no-cert")
    assert no_cert.returncode == 1 and "connected" not in no_cert.stdout
    unknown = example(workdir, "wss_client.py", f"wss://localhost:{wss_server.port}/nowhere")
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr


# --- MQTT: the embedded broker (amqtt behind tlskit) and mosquitto ----------------------------------------------


def test_mqtt_through_the_embedded_amqtt_broker(workdir: Path) -> None:
    done = example(workdir, "mqtt_client.py", "--message", "hello amqtt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "received on tlskit/example: hello amqtt" in done.stdout
    assert re.search(r"connected to localhost:\d+ \(localhost, TLSv1\.3\)", done.stdout)


def test_mqtt_embedded_broker_refuses_another_ca(workdir: Path) -> None:
    done = example(workdir, "mqtt_client.py", "--cert", "pki/mallory.pem", "--key", "pki/mallory-key.pem")
    assert done.returncode == 1
    assert "received" not in done.stdout and "connected" not in done.stdout.replace("broker:", "")
    # the alert (unknown ca), or, when the reset overtakes it, the connection closed after the handshake
    assert "code: client_cert_rejected" in done.stderr
    # the broker side says why too, through tlskit's server log
    assert "the client certificate was rejected" in done.stderr


@pytest.fixture(scope="module")
def mosquitto(workdir: Path) -> Iterator[Peer]:
    """mosquitto with examples/mosquitto.conf, on a free port, in the pki directory (the config's paths)."""
    program = tool("mosquitto")
    config = (EXAMPLES / "mosquitto.conf").read_text()
    port = free_port()
    config = re.sub(r"^listener 8883 ", f"listener {port} ", config, flags=re.M)
    if os.geteuid() == 0:
        config += "user root\n"  # as root, mosquitto would switch to a user that cannot read the test's files
    path = workdir / "mosquitto.conf"
    path.write_text(config)
    with running([program, "-c", str(path)], port_from=lambda p: port, cwd=workdir / "pki") as peer:
        peer.wait_for(r"mosquitto version [\d.]+ running")
        yield peer


def test_mqtt_through_mosquitto_with_identity_as_username(workdir: Path, mosquitto: Peer) -> None:
    done = example(workdir, "mqtt_client.py", "--broker", f"localhost:{mosquitto.port}", "--message", "hi mosquitto")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "received on tlskit/example: hi mosquitto" in done.stdout
    mosquitto.wait_for(r"New client connected from .* u'alice'\)")  # use_identity_as_username: the CN


def test_mosquitto_refuses_another_ca(workdir: Path, mosquitto: Peer) -> None:
    done = example(workdir, "mqtt_client.py", "--broker", f"localhost:{mosquitto.port}",
                   "--cert", "pki/mallory.pem", "--key", "pki/mallory-key.pem")  # fmt: skip
    assert done.returncode == 1
    assert "received" not in done.stdout
    assert "code: client_cert_rejected" in done.stderr
    mosquitto.wait_for(r"certificate verify failed")
    assert "u'mallory'" not in mosquitto.output
