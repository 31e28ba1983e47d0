"""``tlskit bench`` against real servers: tlskit's own, Node's ``tls`` and ``openssl s_server`` (issue 10).

Checked: the figures are sane (every phase completes, percentiles are ordered, rates positive), resumption really
resumed (the server agrees), mutual TLS works, a plaintext port is compared, and a refused handshake is reported
with tlskit's problem code and exit 1.  Nothing here asserts on how fast anything is.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import PKI, TLSKIT, echo_target
from peers import openssl_server, port_from_port_line, requires, running, tool
from test_cli_net import serve, server_args
from tlskit.cli.bench_cmds import parse_size
from tlskit.errors import InputError
from tlskit.net.context import client_context, server_context
from tlskit.tools.loadgen import BenchSpec, Percentiles

NODE_DIR = Path(__file__).resolve().parent / "node"


def bench(*args: Any) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [str(TLSKIT), "bench", *map(str, args), "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, report, done.stderr


def check_phase(phase: dict[str, Any], count: int, *, tls: bool = True) -> None:
    assert phase["attempted"] == count and phase["completed"] == count, phase
    assert phase["failures"] == {}
    assert phase["per_second"] > 0 and phase["per_client_cpu_second"] > 0 and phase["client_cpu_seconds"] > 0
    metrics = ["tcp_connect", "first_byte", *(["handshake"] if tls else [])]
    for name in metrics:
        p = phase[name]
        assert p["count"] == count
        assert 0 <= p["min"] <= p["p50"] <= p["p90"] <= p["p99"] <= p["max"], (name, p)
        assert p["min"] <= p["mean"] <= p["max"]
    # The first byte comes after the TCP connection (and the handshake) it needed.
    assert phase["first_byte"]["p50"] >= phase["tcp_connect"]["p50"]


def test_against_tlskit_serve_with_resumption_bulk_and_a_plaintext_port(pki: PKI) -> None:
    with serve(*server_args(pki, "--echo")) as server, echo_target() as plain:
        code, report, err = bench(
            f"127.0.0.1:{server.port}", "--ca", pki.root_pem, "--servername", "localhost",
            "--connections", 60, "--concurrency", 4, "--resume", "--bytes", "2M",
            "--plain-port", plain.server_address[1],
        )  # fmt: skip
        resumed_on_server = server.output.count("resumed=yes")
    assert code == 0, err
    assert report["protocol"] == "TLSv1.3" and report["cipher"].startswith("TLS_")
    check_phase(report["full"], 60)
    check_phase(report["resumed"], 60)
    check_phase(report["plain"], 60, tls=False)
    assert report["full"]["resumed"] == 0
    assert report["resumed"]["resumed"] == 60 and resumed_on_server >= 60  # both sides agree it resumed
    assert report["bulk"]["bytes"] == report["plain_bulk"]["bytes"] == 2 * 2**20
    assert report["bulk"]["cpu_seconds_per_gib"] > 0 and report["bulk"]["mib_per_second"] > 0
    summary = report["summary"]
    assert "a new TLS connection costs" in summary and "more than a plaintext one" in summary
    assert "a resumed one" in summary and "1 GiB costs" in summary and report["notes"] == []


@requires("node")
def test_against_node_with_mutual_tls_and_tls12_resumption(pki: PKI) -> None:
    cfg = {"key": str(pki.server_key), "cert": str(pki.server_pem), "ca": str(pki.root_pem), "mode": "echo"}
    cfg |= {"requestCert": True, "rejectUnauthorized": True}
    with running([tool("node"), str(NODE_DIR / "server.js"), json.dumps(cfg)], port_from=port_from_port_line) as node:
        code, report, err = bench(
            f"127.0.0.1:{node.port}", "--ca", pki.root_pem, "--servername", "localhost", "--cert", pki.client_pem,
            "--key", pki.client_key, "--connections", 40, "--concurrency", 4, "--resume", "--tls", "1.2",
        )  # fmt: skip
        node.wait_for(r"^CONN ")
    assert code == 0, err
    assert report["protocol"] == "TLSv1.2"
    check_phase(report["full"], 40)
    check_phase(report["resumed"], 40)
    assert report["resumed"]["resumed"] == 40  # TLS 1.2 session resumption, with a client certificate
    assert '"authorized":true' in node.output.replace(" ", "")  # Node verified the client certificate


@requires("openssl")
def test_against_openssl_s_server_handshakes_only(pki: PKI) -> None:
    args = ["-cert", str(pki.server_pem), "-key", str(pki.server_key), "-naccept", "30"]
    with openssl_server(*args) as peer:
        code, report, err = bench(
            f"127.0.0.1:{peer.port}", "--insecure", "--connections", 30, "--concurrency", 1, "--request", ""
        )
    assert code == 0, err
    full = report["full"]
    assert full["completed"] == 30 and full["first_byte"] is None and full["handshake"]["count"] == 30
    assert 0 <= full["handshake"]["p50"] <= full["handshake"]["p99"]
    assert "to finish its handshake" in report["summary"]


def test_refused_handshakes_are_reported_with_problem_codes(pki: PKI) -> None:
    # The server requires a client certificate and none is given: TLS 1.3 says so right after the handshake.
    with serve(*server_args(pki, "--ca", pki.root_pem, "--echo")) as server:
        code, report, err = bench(
            f"127.0.0.1:{server.port}", "--ca", pki.root_pem, "--servername", "localhost", "--connections", 5
        )
    assert code == 1, (report, err)
    assert report["full"]["completed"] == 0 and report["full"]["failures"] == {"client_cert_required": 5}
    assert report["summary"].startswith("no TLS connection")
    # A server from another CA: refused by the client.
    with serve("--cert", pki.other_server_pem, "--key", pki.other_server_key, "--echo") as server:
        code, report, _ = bench(f"127.0.0.1:{server.port}", "--ca", pki.root_pem, "--connections", 3)
    assert code == 1 and list(report["full"]["failures"]) in (["untrusted_root"], ["incomplete_chain"]), report
    # Nothing listening.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    code, report, _ = bench(f"127.0.0.1:{port}", "--connections", 2)
    assert code == 1 and report["full"]["failures"] == {"ConnectionRefusedError": 2}


def test_text_report_and_bad_input(pki: PKI) -> None:
    with serve(*server_args(pki, "--echo")) as server:
        done = subprocess.run(
            [str(TLSKIT), "bench", f"127.0.0.1:{server.port}", "--ca", str(pki.root_pem), "--servername",
             "localhost", "--connections", "10"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for text in ("full handshakes", "TCP connect", "handshake", "first byte", "p99 ms", "10 of 10"):
        assert text in done.stdout, done.stdout
    bad = subprocess.run(
        [str(TLSKIT), "bench", "127.0.0.1:1", "--bytes", "lots"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and bad.stderr.startswith("tlskit: error: --bytes 'lots' is not a size")
    # Library parameter names come out as the flags that set them.
    bad = subprocess.run(
        [str(TLSKIT), "bench", "127.0.0.1:1", "--request", "", "--bytes", "1M"], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.splitlines() == [
        "tlskit: error: --bytes needs a service that answers: give --request too"
    ], bad.stderr


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlskit: error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_a_failed_bulk_transfer_is_one_error_line(pki: PKI) -> None:
    # A TLS service that answers but does not echo: what comes back falls short of --bytes.
    with serve(*server_args(pki, "--exec", "echo hello; cat >/dev/null")) as server:
        done = subprocess.run(
            [str(TLSKIT), "bench", f"127.0.0.1:{server.port}", "--ca", str(pki.root_pem), "--servername",
             "localhost", "--connections", "2", "--bytes", "1M", "--timeout", "1"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    line = one_error_line(done)
    assert done.returncode == 1, done.stderr
    assert "TLS transfer: the service sent 6 of 1048576 bytes back within 1 s" in line, line
    assert "--bytes" in line and "bulk_bytes=" not in line
    # A plaintext port nothing listens on: the shared network wording.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    with serve(*server_args(pki, "--echo")) as server:
        done = subprocess.run(
            [str(TLSKIT), "bench", f"127.0.0.1:{server.port}", "--ca", str(pki.root_pem), "--servername",
             "localhost", "--connections", "2", "--bytes", "64k", "--plain-port", str(closed)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    line = one_error_line(done)
    assert done.returncode == 1, done.stderr
    assert f"plaintext transfer: cannot connect to 127.0.0.1:{closed}: connection refused" in line, line


def test_a_bad_event_loop_is_one_error_line() -> None:
    done = subprocess.run(
        [str(TLSKIT), "bench", "127.0.0.1:1"], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TLSKIT_EVENT_LOOP": "foo", "PYTHONWARNINGS": "default"},
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        one_error_line(done)
        == "tlskit: error: TLSKIT_EVENT_LOOP='foo' is not an event loop: set it to asyncio or uvloop"
    )


def test_spec_and_units(pki: PKI) -> None:
    ctx = client_context(ca=pki.root_pem)
    assert parse_size("64M") == 64 * 2**20 and parse_size("1GiB") == 2**30 and parse_size("1000") == 1000
    assert parse_size("1.5k") == 1536
    for bad in ({"connections": 0}, {"concurrency": 0}, {"duration": -1.0}, {"port": 70000}, {"rate": 0.0}):
        with pytest.raises(InputError):
            BenchSpec(**{"host": "127.0.0.1", "port": 443, "context": ctx, **bad})  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"client ssl\.SSLContext"):
        BenchSpec(host="h", port=1, context=server_context(cert=pki.server_pem, key=pki.server_key))
    with pytest.raises(InputError, match="needs a service that answers"):
        BenchSpec(host="h", port=1, context=ctx, request=b"", bulk_bytes=10)
    with pytest.raises(InputError, match=r"^bulk_bytes= must be 0 \(no transfer\) or more"):
        BenchSpec(host="h", port=1, context=ctx, bulk_bytes=-1)
    with pytest.raises(InputError, match=r"^timeout= must be positive"):
        BenchSpec(host="h", port=1, context=ctx, timeout=0)
    BenchSpec(host="h", port=1, context=ctx, bulk_bytes=0)  # 0: no bulk transfer
    p = Percentiles.of([0.001 * i for i in range(1, 101)])
    assert p is not None and (p.p50, p.p90, p.p99, p.min, p.max) == pytest.approx((50.0, 90.0, 99.0, 1.0, 100.0))
    assert Percentiles.of([]) is None


def test_handshake_only_resumption_and_phase_times(pki: PKI) -> None:
    # Without a request the ticket comes after the handshake: the load generator waits for it before closing.
    with serve(*server_args(pki, "--echo")) as server:
        code, report, err = bench(
            f"127.0.0.1:{server.port}", "--ca", pki.root_pem, "--servername", "localhost", "--connections", 20,
            "--concurrency", 4, "--resume", "--request", "", "--rate", 1000,
        )  # fmt: skip
    assert code == 0, err
    full, resumed = report["full"], report["resumed"]
    assert full["completed"] == resumed["completed"] == resumed["resumed"] == 20 and report["notes"] == []
    assert full["first_byte"] is None and resumed["handshake"]["count"] == 20
    # The phases' wall-clock stamps let another process's measurements be matched to each phase.
    assert 0 < full["started_at"] <= full["ended_at"] <= resumed["started_at"] <= resumed["ended_at"]


def test_a_silent_service_is_counted_as_timeouts() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (in the kernel), never answers
        code, report, _ = bench(
            f"127.0.0.1:{silent.getsockname()[1]}", "--insecure", "--connections", 3, "--concurrency", 3,
            "--timeout", 0.2,
        )  # fmt: skip
    assert code == 1 and report["full"]["failures"] == {"timeout": 3} and report["full"]["attempted"] == 3
