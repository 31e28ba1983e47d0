"""``tlskit demo`` (issue 3): it runs by itself, ends within seconds with exit 0, and shows every scene."""

from __future__ import annotations

import io
import os
import re
import subprocess

from rich.console import Console

from conftest import TLSKIT
from tlskit.cli.demo import TOTAL, run_scenes


def test_tlskit_demo_runs_every_scene_and_exits_0() -> None:
    result = subprocess.run(
        [str(TLSKIT), "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "100"},
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    for scene in (
        "1. A CA hierarchy",
        "2. Mutual TLS",
        "3. A client whose certificate comes from another CA",
        "4a. The login form over plain HTTP",
        "4b. The same login over HTTPS",
    ):
        assert scene in out, out
    assert re.search(r"server\s+connection from 127\.0\.0\.1:\d+: authorized, peer CN=demo-client", out), out
    assert re.search(r"client\s+connected: authorized, peer CN=localhost, TLSv1\.3", out), out
    assert f"received seq 0..{TOTAL - 1} in order, none missing, over 2 connections" in out
    assert "resumed session" in out
    assert re.search(r"client\s+refused: \(\w+\) .+?;\s+fix:\s", out, re.DOTALL), out
    assert "plaintext: the eavesdropper SAW the password" in out
    assert "TLS: the eavesdropper did not see the password" in out
    assert "every scene showed what it should" in out


def test_demo_report_facts() -> None:
    console = Console(file=io.StringIO(), width=120)
    report = run_scenes(console, tap=False)
    assert report.sequence == list(range(TOTAL)) and report.in_order
    assert report.connections == 2
    assert report.resumed == [False, True]  # the reconnect resumed the TLS session
    assert report.server_saw_authorized == [True, True]
    assert report.refused and report.refusal_client.startswith("(")
    assert report.tap_leaked_tls is None  # tap scene skipped on request
    assert report.ok
    assert not os.path.exists(report.directory)  # the temporary PKI is removed afterwards
