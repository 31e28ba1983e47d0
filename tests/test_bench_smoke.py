"""Smoke test of the benchmark harness's parsing and reporting helpers (bench/ is not a test; this is fast)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402

S_TIME_OUTPUT = """Collecting connection statistics for 3 seconds
*****************************************************************

3631 connections in 1.50s; 2420.67 connections/user sec, bytes read 0
3631 connections in 4 real seconds, 0 bytes read per connection
"""


def test_parse_s_time_counts_connections() -> None:
    assert harness.parse_s_time(S_TIME_OUTPUT) == 3631


def test_parse_s_time_without_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="no s_time summary"):
        harness.parse_s_time("connect: Connection refused\nconnect:errno=111\n")


def test_parse_ready() -> None:
    assert harness.parse_ready("READY 40123\n") == 40123
    with pytest.raises(ValueError):
        harness.parse_ready("listening on 40123")


def test_parse_stat_handles_spaces_and_parens_in_the_command_name() -> None:
    # Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    tick = harness.CLK_TCK
    line = f"4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 {3 * tick} {tick} 0 0 20 0 1 0"
    assert harness.parse_stat_cpu(line) == pytest.approx(4.0)
    assert harness.parse_stat_ppid(line) == 17


def test_parse_kib() -> None:
    status = "Name:\tnode\nVmPeak:\t  900 kB\nVmRSS:\t   53300 kB\nRssAnon:\t 1 kB\n"
    assert harness.parse_kib(status, "VmRSS") == 53300
    with pytest.raises(ValueError):
        harness.parse_kib(status, "Pss")


def test_reading_our_own_process() -> None:
    mem = harness.memory(os.getpid())
    assert mem.rss_kib > 1000 and mem.pss_kib > 0
    assert harness.cpu_seconds([os.getpid()]) > 0
    assert os.getpid() in harness.descendants(os.getpid())


# What ``openssl s_client -msg`` prints around a TLS 1.3 handshake (hex dumps cut), ending with the echo.
S_CLIENT_MSG = """<<< TLS 1.3, Handshake [length 0034], Finished
    14 00 00 30 72 9a df 2e 2a e3 3a 97 05 9e 2a e5
>>> TLS 1.3, Handshake [length 0034], Finished
    14 00 00 30 c5 2e 45 33 2a 27 48 11 18 e1 78 93
>>> TLS 1.2, RecordHeader [length 0005]
    17 03 03 00 16
<<< TLS 1.2, RecordHeader [length 0005]
    17 03 03 00 fa
<<< TLS 1.3, InnerContent [length 0001]
    16
<<< TLS 1.3, Handshake [length 00e9], NewSessionTicket
    04 00 00 e5 00 00 1c 20 d8 89 fe 46 08 00 00 00
<<< TLS 1.3, Handshake [length 0109], NewSessionTicket
    04 00 01 05 00 00 1c 20 11 22 33 44 08 00 00 00
<<< TLS 1.3, InnerContent [length 0001]
    17
ping
"""


def test_parse_ticket_count_counts_received_new_session_tickets() -> None:
    assert harness.parse_ticket_count(S_CLIENT_MSG) == 2
    # A ticket the client sent (">>>") is not the server's; a line quoting the name is not a message.
    assert harness.parse_ticket_count(">>> TLS 1.3, Handshake [length 00e9], NewSessionTicket\nNewSessionTicket\n") == 0


def test_parse_brief() -> None:
    text = "CONNECTION ESTABLISHED\nProtocol version: TLSv1.3\nCiphersuite: TLS_AES_256_GCM_SHA384\n"
    assert harness.parse_brief(text, "Ciphersuite") == "TLS_AES_256_GCM_SHA384"
    assert harness.parse_brief(text, "Server Temp Key") == "?"


def test_openssl_number() -> None:
    assert harness.openssl_number("OpenSSL 3.0.19 27 Jan 2026") == "3.0.19"
    assert harness.openssl_number("3.0.13+quic") == "3.0.13"
    assert harness.openssl_number("OpenSSL 1.1.1w  11 Sep 2023") == "1.1.1w"
    assert harness.openssl_number("unknown") == "unknown"


def test_parse_libssl() -> None:
    maps = (
        "55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 123 /usr/bin/python3.11\n"
        "7f0e2c000000-7f0e2c021000 rw-p 00000000 00:00 0 \n"
        "7f0e2d000000-7f0e2d01f000 r--p 00000000 08:01 456 /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
    )
    assert harness.parse_libssl(maps) == "/usr/lib/x86_64-linux-gnu/libssl.so.3"
    assert harness.parse_libssl(maps.replace("libssl", "libcrypto")) == ""
    mapped = Path("/proc/self/maps").read_text().split()
    assert harness.mapped_libssl(os.getpid()) in ("", *mapped)


def test_parse_listening() -> None:
    log = "serve: listening on 127.0.0.1:40123\nserve: 127.0.0.1:5555 connected: ...\n"
    assert harness.parse_listening(log) == 40123
    assert harness.parse_listening("==123== Callgrind, a call-graph generating cache profiler\n") is None


STRACE_C = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.10    0.004011           2      1500           write
 30.00    0.003000           1      1800       300 read
  0.50    0.000050           0       200           setsockopt
------ ----------- ----------- --------- --------- ----------------
100.00    0.010000           2      3500       300 total
"""


def test_parse_strace_summary() -> None:
    assert harness.parse_strace_summary(STRACE_C) == {"write": 1500, "read": 1800, "setsockopt": 200}


def test_parse_context_switches() -> None:
    status = "Name:\tpython\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n"
    assert harness.parse_context_switches(status) == (1234, 56)


def test_interpolate_between_samples() -> None:
    samples = [
        harness.Sample(10.0, {7: (1.0, 0.5)}, {7: (100, 1)}),
        harness.Sample(12.0, {7: (3.0, 1.5)}, {7: (300, 4)}),
    ]
    assert harness.interpolate(samples, 10.5) == ({7: (1.5, 0.75)}, {7: (100, 1)})
    assert harness.interpolate(samples, 9.0) == ({7: (1.0, 0.5)}, {7: (100, 1)})
    assert harness.interpolate(samples, 13.0) == ({7: (3.0, 1.5)}, {7: (300, 4)})
    sampler = harness.CpuSampler([7])
    sampler.samples = samples
    assert sampler.between(10.0, 12.0) == ({7: (2.0, 1.0)}, {7: (200, 3)})


# A callgrind output file, names compressed as callgrind writes them.
CALLGRIND = """version: 1
creator: callgrind-3.19.0
events: Ir

ob=(1) /usr/lib/x86_64-linux-gnu/libcrypto.so.3
fl=(1) ???
fn=(1) EVP_DigestVerify
0 1000
cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
cfi=(2) ???
cfn=(2) malloc
calls=2 0
0 300
+1 50

ob=(2)
fl=(2)
fn=(2)
0 300

ob=(3) /usr/bin/node
fl=(3) ../deps/openssl/openssl/crypto/ec/ecp_nistz256.c
fn=(3) ecp_nistz256_point_mul
0 700
fi=(4) ../deps/v8/src/heap/heap.cc
+2 20
fn=(4) node::Start
fl=(5) ../src/node.cc
0 5

totals: 2375
"""


def test_callgrind_self_cost_by_object_and_file() -> None:
    import breakdown
    import callgrind

    costs = callgrind.by_object_file(CALLGRIND.splitlines())
    crypto, node = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "/usr/bin/node"
    assert costs[(crypto, "???", "EVP_DigestVerify")] == 1050  # the call's inclusive 300 is skipped
    assert costs[("/usr/lib/x86_64-linux-gnu/libc.so.6", "???", "malloc")] == 300
    assert costs[(node, "../deps/openssl/openssl/crypto/ec/ecp_nistz256.c", "ecp_nistz256_point_mul")] == 700
    assert costs[(node, "../deps/v8/src/heap/heap.cc", "ecp_nistz256_point_mul")] == 20
    assert callgrind.by_object(CALLGRIND.splitlines())["/usr/bin/node"] == 725
    assert breakdown.grouped(costs, 5) == {
        "libcrypto (OpenSSL)": 210.0,
        "node: OpenSSL": 140.0,
        "libc": 60.0,
        "node: V8": 4.0,
        "node: its own C++": 1.0,
    }
    # Without debug information, Node's parts are told apart by function name.
    for function, part in (
        ("tls_process_client_hello", "OpenSSL"), ("v8::internal::Heap::Scavenge", "V8"), ("Builtins_Call", "V8"),
        ("node::crypto::TLSWrap::ClearOut", "its own C++"), ("uv__io_poll", "libuv"), ("ares_init", "other code"),
        ("ossl_ec_key_gen'2", "OpenSSL"),
    ):  # fmt: skip
        assert breakdown.group(node, "???", function) == f"node: {part}"


def test_missing_tools_stop_the_run_with_one_line_or_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import run

    # Every other tool present, whatever this machine has: only the two taken away may be reported missing.
    monkeypatch.setattr(run.shutil, "which", lambda name: None if name in ("valgrind", "node") else f"/usr/bin/{name}")
    monkeypatch.setattr(run.tunnel_bench, "stunnel_binary", lambda: None)
    args = run.parse_args([])
    missing = run.missing_tools(args)
    assert missing == {"node": ["node"], "valgrind": ["breakdown"], "stunnel4": ["tunnel"]}
    hint = run.leave_out_missing(args, missing)
    assert hint is not None and "\n" not in hint
    assert hint.startswith("make bench needs node, valgrind, stunnel4: apt-get install nodejs stunnel4 valgrind")
    args = run.parse_args(["--skip-missing"])
    assert run.leave_out_missing(args, run.missing_tools(args)) is None
    assert "node" not in args.servers and not {"breakdown", "tunnel"} & set(args.phases)
    assert args.skipped == {
        "node": "node is not installed",
        "breakdown": "valgrind is not installed",
        "tunnel": "stunnel4 is not installed",
    }
