"""Smoke test of the benchmark harness's parsing and reporting helpers (bench/ is not a test; this is fast)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import report  # noqa: E402
from results import HandshakeResult, MemoryResult, Results, ScaleResult, StreamResult  # noqa: E402

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


def test_report_computes_ratios_and_verdicts() -> None:
    mem = harness.Memory
    r = Results()
    r.memory = {
        "tlskit": MemoryResult("tlskit", 1000, 0, 1.0, mem(10_000, 9_000), mem(25_000, 24_000)),
        "node": MemoryResult("node", 1000, 0, 1.0, mem(50_000, 40_000), mem(90_000, 80_000)),
    }
    r.handshakes = {
        "tlskit": HandshakeResult("tlskit", 4, 1000, 2.0, 0.25, 0.05, 1.5),
        "node": HandshakeResult("node", 4, 1000, 2.0, 0.3, 0.05, 1.5),
    }
    r.streams = {
        "tlskit": StreamResult("tlskit", 2**30, 1.0, 1.0, 0.5, "TLSv1.3 X"),
        "node": StreamResult("node", 2**30, 2.0, 2.5, 0.5, "TLSv1.3 X"),
    }
    r.scale = {"tlskit": ScaleResult("tlskit", 100, 100, 0, 1.0, mem(1, 1), mem(2, 2), 2, 2, (0.001, 0.002))}
    r.workers = {
        1: HandshakeResult("w1", 4, 1000, 1.0, 0.3, 0.0, 1.0),
        2: HandshakeResult("w2", 4, 1500, 1.0, 0.4, 0.05, 1.0),
    }
    by_metric = {row.metric.split(" (")[0]: row for row in report.rows(r)}
    memory_row = by_metric["Server memory per idle TLS connection"]
    assert memory_row.ratio == pytest.approx(15 / 40) and memory_row.met
    handshake_row = by_metric["Server CPU per full TLS 1.3 handshake"]
    assert handshake_row.ratio == pytest.approx(300 / 350) and handshake_row.met is False
    assert by_metric["Server CPU per GiB echoed"].met
    workers_row = by_metric["Handshake rate, workers=2 / workers=1"]
    assert workers_row.ratio == pytest.approx(1.5) and workers_row.met is False
    r.split = {"raw": 180.0, "raw:tickets1": 169.0, "raw:tickets0": 152.0, "engine": 187.0}
    text = report.render(r)
    assert "one session ticket instead of two saves 11 µs per handshake" in text
    assert "0.8x target is 280 µs in this run and tlskit needs 300 µs, 20 µs over" in text
    assert (
        "| Server CPU per full TLS 1.3 handshake (µs) | 300 | - | - | 350 | - | 0.86x | <= 0.8x Node | **no** |" in text
    )
    assert "pass: 100 open" in text
