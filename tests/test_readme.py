"""The README's tours run as written: the library example, and the PKI part of the command-line tour."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, TLSKIT
from peers import tool

README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_library_tour_runs(tmp_path: Path) -> None:
    (tmp_path / "tour.py").write_text(_blocks("python")[0])
    out = subprocess.run(
        [sys.executable, "tour.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "True <Name(CN=alice)> TLSv1.3" in out.stdout
    assert "{'echo': {'seq': 1}}" in out.stdout
    assert (tmp_path / "server-key.pem").stat().st_mode & 0o777 == 0o600


def test_library_revocation_tour_runs(tmp_path: Path) -> None:
    """The revocation example: good, then revoked through OCSP, from a one-off check and from a refresher."""
    (tmp_path / "revocation.py").write_text(_blocks("python")[1])
    out = subprocess.run(
        [sys.executable, "revocation.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "['revoked']", "['revoked']"]


def test_cli_tour_pki_part_runs(tmp_path: Path) -> None:
    """Every command of the tour up to the network part, with the exit code its comment promises."""
    tour = _blocks("sh")[1]
    commands = tour.split("# Mutual TLS")[0]
    env = {**os.environ, "PATH": f"{TLSKIT.parent}{os.pathsep}{os.environ['PATH']}"}
    ran = 0
    for raw in commands.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        expected = 1 if "exit 1" in line.split("#", 1)[-1] else 0
        argv = shlex.split(line, comments=True)
        if argv[0] != "tlskit":
            argv[0] = tool(argv[0])  # openssl, making a CSR as someone else would
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == expected, (line, result.stdout, result.stderr)
        ran += 1
    assert ran >= 10
    assert "revoked" in result.stdout + result.stderr  # the last command: the revoked client certificate
