"""The bench gives Node and ``openssl s_server`` tlskit's session-ticket count, and its probe really sees it.

The servers are the bench's own (bench/run.py, started as ``make bench`` starts them); the probe is the one
that runs before every measurement.  As a control, Node without the bench's OpenSSL config sends OpenSSL's
default count, which the probe must see too, and the run must refuse to compare.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import sys
from pathlib import Path

import pytest

from peers import requires

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import run  # noqa: E402

pytestmark = requires("node", "openssl")


def test_every_server_sends_tlskits_ticket_count_and_the_same_suite_and_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = str(min(os.sched_getaffinity(0)))  # one CPU for all: the test measures nothing
    monkeypatch.setattr(run, "SERVER_CPU", cpu)
    monkeypatch.setattr(run, "LOAD_CPU", cpu)
    bench = run.Bench(run.parse_args([]), tmp_path)
    default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).num_tickets
    try:
        for key in ("tlskit", "stdlib", "node", run.OPENSSL):
            bench.phase_settings(key)
        probes = dict(bench.results.probes)
        assert bench.tickets != default  # otherwise the control below proves nothing
        assert {k: p.tickets for k, p in probes.items()} == dict.fromkeys(probes, bench.tickets)
        assert {(p.protocol, p.cipher, p.temp_key) for p in probes.values()} == {
            ("TLSv1.3", run.TLS13_SUITE, probes["tlskit"].temp_key)
        }
        assert bench.results.mismatches(list(probes)) == []
        assert probes["tlskit"].libssl  # Python's ssl module loads a libssl; the probe read its maps

        # Control: Node as configured by nothing but its own defaults.
        node = bench.kinds["node"]
        argv = tuple(a for a in node.argv if not a.startswith("--openssl-config"))
        bench.kinds["node"] = dataclasses.replace(node, argv=argv)
        bench.phase_settings("node")
    finally:
        bench.procs.stop_all()
    assert bench.results.probes["node"].tickets == default
    problems = bench.results.mismatches(list(probes))
    assert f"node sent {default} session tickets, tlskit's server_context sets {bench.tickets}" in problems
