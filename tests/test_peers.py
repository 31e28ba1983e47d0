"""The test machinery of tests/peers.py: missing peers skip or fail, and the namespace relay for gnutls-serv."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from peers import isolated

TESTS = Path(__file__).resolve().parent
NO_SUCH_PEER = "tlskit-no-such-peer"
TINY_TESTS = f"""
import pytest
from peers import missing, requires, tool

@pytest.fixture
def expensive():
    raise AssertionError("a fixture ran before the requirement was checked")

@requires("{NO_SUCH_PEER}")
def test_marked(expensive):
    pass

@pytest.mark.parametrize("x", [pytest.param(1, marks=requires("{NO_SUCH_PEER}"))])
def test_marked_param(x):
    pass

def test_at_run_time():
    tool("{NO_SUCH_PEER}")

def test_data_set():
    missing("the frobnication data is not found", "put it somewhere")

@requires("{Path(sys.executable).name}")
def test_present():
    assert tool("{Path(sys.executable).name}")
"""


def run_tiny_suite(tmp_path: Path, *, require: str | None) -> dict[str, tuple[str, str]]:
    """Run TINY_TESTS in a pytest of its own; {test name: (outcome, message)}."""
    (tmp_path / "test_tiny.py").write_text(TINY_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TLSKIT_REQUIRE_PEERS", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if require is not None:
        env["TLSKIT_REQUIRE_PEERS"] = require
    argv = [sys.executable, "-m", "pytest", "-p", "peers", "-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini")]
    argv += ["--rootdir", str(tmp_path), "--junitxml", str(tmp_path / "report.xml"), "-q", "test_tiny.py"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert (tmp_path / "report.xml").is_file(), done.stdout + done.stderr
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ET.parse(tmp_path / "report.xml").iter("testcase"):
        ends = [(end.tag, end.get("message", "")) for end in case if end.tag in ("skipped", "failure", "error")]
        outcomes[case.get("name", "")] = ends[0] if ends else ("passed", "")
    return outcomes


@pytest.mark.parametrize("require", [None, "", "0"])
def test_a_missing_peer_skips_by_default(tmp_path: Path, require: str | None) -> None:
    outcomes = run_tiny_suite(tmp_path, require=require)
    assert {name: outcome for name, (outcome, _) in outcomes.items()} == {
        "test_marked": "skipped",
        "test_marked_param[1]": "skipped",
        "test_at_run_time": "skipped",
        "test_data_set": "skipped",
        "test_present": "passed",
    }
    assert f"{NO_SUCH_PEER} is not installed" in outcomes["test_at_run_time"][1]
    assert "the frobnication data is not found: put it somewhere" in outcomes["test_data_set"][1]


def test_a_missing_peer_fails_under_tlskit_require_peers(tmp_path: Path) -> None:
    outcomes = run_tiny_suite(tmp_path, require="1")
    # A marker is checked before the test's fixtures are set up, so pytest reports that failure as an error.
    assert {name: outcome for name, (outcome, _) in outcomes.items()} == {
        "test_marked": "error",
        "test_marked_param[1]": "error",
        "test_at_run_time": "failure",
        "test_data_set": "failure",
        "test_present": "passed",
    }
    for name in ("test_marked", "test_marked_param[1]", "test_at_run_time"):
        message = outcomes[name][1]
        assert f"{NO_SUCH_PEER} is not installed" in message and "install it" in message, message
        assert "TLSKIT_REQUIRE_PEERS" in message
        assert "a fixture ran" not in message
    assert "the frobnication data is not found: put it somewhere" in outcomes["test_data_set"][1]


# A server that, like gnutls-serv, listens on every interface: it answers one connection with what it read, in
# reverse, and its SHA-256, once the client has half-closed.
WILDCARD_SERVER = textwrap.dedent("""
    import hashlib, os, socket, sys
    server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
    print("namespace", os.readlink("/proc/self/ns/net"), "pid", os.getpid(), flush=True)
    conn, _ = server.accept()
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    conn.sendall(data[::-1] + hashlib.sha256(data).digest())
    conn.close()
""")


def test_isolated_server_is_reached_through_loopback_only() -> None:
    data = os.urandom(3 * 2**20)
    with isolated([sys.executable, "-c", WILDCARD_SERVER, "{port}"]) as peer:
        seen = peer.wait_for(r"^namespace (\S+) pid (\d+)$")
        with socket.create_connection(("127.0.0.1", peer.port), timeout=60) as conn:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)  # the server reads to EOF: the relay passes the half-close on
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
    assert reply == data[::-1] + hashlib.sha256(data).digest()  # byte-exact both ways, and the EOF came back
    assert seen.group(1) != os.readlink("/proc/self/ns/net")  # it listened in a network namespace of its own
    with pytest.raises(ProcessLookupError):  # and it is stopped once the context is left
        os.kill(int(seen.group(2)), 0)
    with pytest.raises(ProcessLookupError):
        os.kill(peer.proc.pid, 0)


def test_isolated_server_that_cannot_start_fails_with_its_output() -> None:
    with pytest.raises(AssertionError, match=r"(?s)relay: ready.*no such option.*exited with status 3"):
        with isolated([sys.executable, "-c", "import sys; print('no such option'); sys.exit(3)"]):
            pass
