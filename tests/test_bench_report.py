"""docs/benchmarks.md says only what its run measured: every number and claim in it is computed from the data.

The report is rendered from small fake runs (no benchmark is run): once from a run, once from the same run with
every number in it changed, once from a run where every verdict goes the other way.  A figure or a claim written
into a template would survive those changes.  The committed document and the README's figures are checked
against the committed data (docs/benchmarks.json).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import report  # noqa: E402
from harness import Memory  # noqa: E402
from results import (  # noqa: E402
    Breakdown,
    ClientResult,
    HandshakeResult,
    MemoryResult,
    Probe,
    Results,
    ScaleResult,
    Settings,
    SplitResult,
    StreamResult,
    SyscallResult,
    from_json,
    to_json,
)

RERENDER = (
    "after a change to bench/report.py, re-render the saved run: .venv/bin/python bench/report.py --readme README.md"
)
# Literal text of the templates that contains digits but is a name, not a figure.
NAMES = ("TLS 1.3", "V8 ")
# The phrases in which the report states a verdict; a line saying one must change when the verdicts do.
CLAIMS = re.compile(
    r"\| yes \||\*\*no\*\*|\bmet\b(?!\?)|µs over|pass: \d|\| pass \||FAIL|same OpenSSL version|"
    r"different OpenSSL versions|same library file|separate builds|same libssl file|not on Python's libssl|"
    r"saturated|saves|costs|within the|Resumption failed|no comparison|Not measured|"
    r"did not run with the same settings|each sent|\*\*Warning"
)


def fake_run() -> Results:
    """A run where every target is met, every server has the same settings, one worker is saturated."""
    mem = Memory
    probe = {
        key: Probe(key, "TLSv1.3", "TLS_AES_256_GCM_SHA384", "X25519, 253 bits", 1, lib, setting)
        for key, lib, setting in (
            ("tlskit", "/usr/lib/libssl.so.3", "server_context: num_tickets = 1"),
            ("tlskit-asyncio", "/usr/lib/libssl.so.3", "server_context: num_tickets = 1"),
            ("stdlib", "/usr/lib/libssl.so.3", "server_context: num_tickets = 1"),
            ("node", "", "--openssl-config NODE_CNF: NumTickets = 1"),
            ("openssl", "/usr/lib/libssl.so.3", "-num_tickets 1"),
        )
    }
    full = {
        "tlskit": HandshakeResult("tlskit", 8, 20_734, 12.0, 4.2, 1.06, 11.8, (), 0),
        "tlskit-asyncio": HandshakeResult("tlskit-asyncio", 8, 21_912, 12.0, 6.66, 1.23, 11.79, (), 0),
        "stdlib": HandshakeResult("stdlib", 8, 21_602, 12.0, 7.67, 1.06, 11.73, (), 0),
        "node": HandshakeResult("node", 8, 20_713, 12.0, 5.86, 1.08, 11.51, (), 0),
        "openssl": HandshakeResult("openssl", 8, 15_261, 12.0, 3.75, 2.26, 8.22, (), 0),
    }
    return Results(
        facts={"CPU": "Example CPU 9000 x 2", "Python": "3.11.7 (OpenSSL 3.0.19 27 Jan 2026)"},
        settings=Settings(
            date="2031-04-05 06:07 UTC",
            command=".venv/bin/python bench/run.py",
            data_file="benchmarks.json",
            cpus=2,
            server_cpu="0",
            load_cpu="1",
            idle=2000,
            idle_procs=2,
            scale=10_000,
            scale_procs=4,
            fresh=5,
            warmup_conns=50,
            handshake_seconds=3,
            bench_concurrency=8,
            rounds=2,
            client_seconds=4,
            client_rounds=2,
            workers_seconds=4,
            workers_rounds=1,
            workers_concurrency=32,
            workers_load=0.5,
            breakdown_handshakes=200,
            breakdown_warmup=20,
            scaling_cores=(1, 2, 4, 8, 16),
            sample_ms=20.0,
            stream_mib=1024,
            stream_rounds=2,
            stream_warmup_mib=16,
            stream_chunk_kib=64,
            split_rounds=8,
            split_count=300,
            quiet_wait=60.0,
            quiet_phase_max=10.0,
            quiet_threshold=0.1,
            saturated=0.9,
            noisy_phase=0.2,
            certificate="EC secp256r1 leaf for localhost, 127.0.0.1",
            node_config="nodejs_conf = nodejs_init\n[system_default_sect]\nNumTickets = 1\n",
            tlskit_loop="uvloop 0.23.0",
            stdlib_read_buffer=262_144,
        ),
        targets={"memory": 0.5, "handshake": 0.8, "resumed": 0.7, "gib": 0.6, "clients": 1.0, "workers": 1.05},
        tickets_configured=1,
        openssl={
            "python": "OpenSSL 3.0.19 27 Jan 2026",
            "node": "3.0.19",
            "openssl": "OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)",
        },
        commands=[("server node", "taskset -c 0 node --openssl-config=NODE_CNF --expose-gc bench/node_echo.js")],
        probes=probe,
        memory={
            "tlskit": MemoryResult("tlskit", 2000, 0, 1.6, mem(42_872, 32_688), mem(80_916, 68_009)),
            "tlskit-asyncio": MemoryResult("tlskit-asyncio", 2000, 0, 1.4, mem(40_248, 30_441), mem(78_892, 66_429)),
            "stdlib": MemoryResult("stdlib", 2000, 0, 1.7, mem(53_044, 43_238), mem(601_008, 588_551)),
            "node": MemoryResult("node", 2000, 0, 1.9, mem(53_392, 51_107), mem(147_616, 145_012)),
        },
        handshakes=full,
        resumed={  # cheaper than the full ones, every one resumed
            k: dataclasses.replace(
                h,
                handshakes=h.handshakes + 3_367,
                resumed=h.handshakes + 3_367,
                server_user_seconds=(0.5 if k == "tlskit" else 0.71) * h.server_user_seconds,
            )
            for k, h in full.items()
        },
        clients={
            "s_time": ClientResult("s_time", 9_013, 8.1, 8.02, 8.02),
            "tlskit bench": ClientResult("tlskit bench", 10_511, 8.0, 7.91, 8.83),
        },
        breakdown={
            "tlskit full": Breakdown(
                "tlskit full", 200, {"libcrypto (OpenSSL)": 2_101_000.0, "libc": 251_000.0, "libpython": 203_000.0}
            ),
            "tlskit resumed": Breakdown(
                "tlskit resumed", 200, {"libcrypto (OpenSSL)": 1_201_000.0, "libc": 211_000.0, "libpython": 199_000.0}
            ),
            "node full": Breakdown("node full", 200, {"node: OpenSSL": 2_401_000.0, "node: V8": 811_000.0}),
            "node resumed": Breakdown("node resumed", 200, {"node: OpenSSL": 1_903_000.0, "node: V8": 791_000.0}),
        },
        syscalls={
            "tlskit": SyscallResult("tlskit", 200, {"write": 4.0, "read": 3.0, "setsockopt": 1.0, "epoll_wait": 3.1}),
            "node": SyscallResult("node", 200, {"write": 2.0, "read": 3.0, "epoll_wait": 2.9}),
            "tlskit --workers 1": SyscallResult("tlskit --workers 1", 200, {"write": 4.0, "epoll_wait": 1.6}),
            "tlskit --workers 2": SyscallResult("tlskit --workers 2", 200, {"write": 4.0, "epoll_wait": 1.9}),
        },
        workers_rate=310.0,
        example="tlskit bench localhost:8443: TLSv1.3, TLS_AES_256_GCM_SHA384, 8 connections at a time\n"
        "full handshakes: 500 of 500 in 1.91 s, 262/s",
        example_command="tlskit bench localhost:8443 --ca root.pem --resume --bytes 64M --plain-port 8080",
        streams={
            key: StreamResult(key, 2**30, secs, cpu, 1.1, "TLSv1.3 TLS_AES_256_GCM_SHA384")
            for key, secs, cpu in (
                ("tlskit", 1.104, 1.02),
                ("tlskit-asyncio", 1.176, 1.16),
                ("stdlib", 1.689, 1.69),
                ("node", 1.804, 1.76),
            )
        },
        scale={
            "tlskit": ScaleResult("tlskit", 10_000, 10_000, 0, 7.5, mem(42_824, 1), mem(236_780, 2), 5, 5, (0.0027,)),
            "node": ScaleResult("node", 10_000, 10_000, 0, 9.5, mem(53_352, 1), mem(413_220, 2), 5, 5, (0.0021,)),
        },
        workers={
            "1|0|1": HandshakeResult("1|0|1", 32, 1_241, 4.01, 1.01, 0.21, 2.11, (1.22,), -1, (1_402,), (11,)),
            "2|0|1": HandshakeResult(
                "2|0|1", 32, 1_239, 4.02, 1.02, 0.22, 2.1, (0.01, 0.62, 0.61), -1, (31, 801, 799), (0, 41, 39)
            ),
            "1|0,1|0,1": HandshakeResult("1|0,1|0,1", 32, 1_240, 4.0, 1.03, 0.23, 2.2, (1.26,), -1, (1_391,), (19,)),
            "2|0,1|0,1": HandshakeResult(
                "2|0,1|0,1", 32, 1_238, 4.03, 1.05, 0.26, 2.3, (0.02, 0.66, 0.63), -1, (40, 821, 812), (9, 23, 29)
            ),
        },
        split={
            "raw:tickets2": SplitResult("raw:tickets2", 2, 2, (181.0, 182.5, 183.1)),
            "raw:tickets1": SplitResult("raw:tickets1", 1, 1, (162.0, 163.3, 164.0)),
            "raw:tickets0": SplitResult("raw:tickets0", 0, 0, (147.2, 147.9, 149.0)),
            "engine": SplitResult("engine", 1, 1, (164.1, 165.2, 170.4)),
            "raw:tickets1,resume": SplitResult("raw:tickets1,resume", 1, 1, (131.0, 132.4, 133.9)),
            "engine:resume": SplitResult("engine:resume", 1, 1, (160.2, 163.0, 166.1)),
        },
        foreign={"memory tlskit": (3.8, 0.04), "handshakes node (round 1)": (7.5, 0.05)},
        total_seconds=151.4,
    )


def flipped_run() -> Results:
    """The same run with every verdict the other way: targets missed, settings differ, noise, errors."""
    r = fake_run()
    r.probes["node"] = dataclasses.replace(r.probes["node"], tickets=2, libssl="/usr/lib/libssl.so.3")
    r.probes["openssl"] = dataclasses.replace(r.probes["openssl"], libssl="/opt/libssl.so.3")
    r.openssl["node"] = "3.2.4+quic"
    r.memory["tlskit"] = dataclasses.replace(r.memory["tlskit"], after=Memory(142_872, 132_688))
    r.handshakes["tlskit"] = dataclasses.replace(r.handshakes["tlskit"], server_user_seconds=6.61)
    r.streams["tlskit"] = dataclasses.replace(r.streams["tlskit"], server_cpu_seconds=1.62)
    r.scale["tlskit"] = dataclasses.replace(r.scale["tlskit"], opened=9_000)
    r.workers["2|0|1"] = dataclasses.replace(r.workers["2|0|1"], server_user_seconds=1.6)
    r.resumed["node"] = dataclasses.replace(r.resumed["node"], resumed=12)
    r.clients["tlskit bench"] = dataclasses.replace(r.clients["tlskit bench"], cpu_seconds=11.2)
    r.skipped["tunnel"] = "stunnel4 is not installed"
    r.breakdown["tlskit resumed"] = Breakdown("tlskit resumed", 200, {"libcrypto (OpenSSL)": 2_901_000.0})
    r.split["raw:tickets1"] = SplitResult("raw:tickets1", 1, 1, (175.0, 181.9, 190.0))
    r.split["engine"] = SplitResult("engine", 1, 1, (201.0, 202.2, 203.0))
    r.foreign["memory tlskit"] = (3.8, 2.5)
    r.errors["scale node"] = "TimeoutError: boom"
    return r


def perturbed(value: Any) -> Any:
    """``value`` with every number changed: floats non-linearly (so ratios change too), ints, digits in text.

    A pure function of the value, so equal inputs stay equal (the servers still agree on their settings).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value, **{f.name: perturbed(getattr(value, f.name)) for f in dataclasses.fields(value)}
        )
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value + 3 + value * value % 9967
    if isinstance(value, float):  # a power, so that ratios of large numbers change too
        return (1.37 * abs(value) ** 1.07 + 0.71) * (1 if value >= 0 else -1)
    if isinstance(value, str):
        return re.sub(r"\d", lambda m: str((int(m.group()) + 3) % 10), value)
    if isinstance(value, dict):
        return {perturbed(k): perturbed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(perturbed(v) for v in value)
    if isinstance(value, list):
        return [perturbed(v) for v in value]
    raise TypeError(type(value))


def everything(r: Results) -> str:
    """All the text a run produces: the document and the README's block."""
    return report.render(r) + "\n" + report.readme_block(r)


def _tokens(text: str) -> list[str]:
    for name in NAMES:
        text = text.replace(name, " ")
    return re.findall(r"\d+(?:[.,:]\d+)*|[^\W\d]+|[^\w\s]", text)


def _is_number(token: str) -> bool:
    return token[0].isdigit()


def test_every_number_in_the_report_changes_with_the_data() -> None:
    before, after = _tokens(everything(fake_run())), _tokens(everything(perturbed(fake_run())))
    skeleton = [("#" if _is_number(t) else t) for t in before], [("#" if _is_number(t) else t) for t in after]
    matcher = difflib.SequenceMatcher(None, *skeleton, autojunk=False)
    unchanged = []
    compared = 0
    for tag, i1, i2, j1, _j2 in matcher.get_opcodes():
        if tag != "equal":
            continue
        for offset in range(i2 - i1):
            token = before[i1 + offset]
            if _is_number(token):
                compared += 1
                if token == after[j1 + offset]:
                    context = " ".join(before[max(0, i1 + offset - 8) : i1 + offset + 3])
                    unchanged.append(f"{token!r} in ...{context}...")
    assert compared > 300  # the comparison really walked the document
    assert not unchanged, "numbers that do not come from the data:\n" + "\n".join(unchanged)


def test_every_claim_in_the_report_changes_with_the_verdicts() -> None:
    good, bad = everything(fake_run()), everything(flipped_run())
    bad_lines = set(bad.splitlines())
    static = [line for line in good.splitlines() if line in bad_lines and CLAIMS.search(line)]
    assert not static, "lines stating a verdict that did not change with the data:\n" + "\n".join(static)
    # And each verdict really turned over.
    for claim, opposite in (
        ("| yes |", "| **no** |"),
        ("the same OpenSSL version, 3.0.19", "different OpenSSL versions: 3.0.19 and 3.2.4"),
        ("Node reports OpenSSL 3.0.19, built into its executable", "Node reports OpenSSL 3.2.4+quic, loaded from"),
        ("from separate builds", "from the same library file"),
        ("on the same libssl file that Python loads", "(not on Python's libssl file)"),
        ("each sent 1 session ticket", "**The servers did not run with the same settings**"),
        (
            "Sending tlskit's 1 ticket instead of 2 saves",
            "Sending tlskit's 1 ticket instead of 2 changes that by",
        ),
        ("(within the", "µs against the bare `SSLObject` with the same 1 ticket."),
        ("(met).", "µs over."),
        (
            "| tlskit bench / s_time |  |  | 1.18x | >= 1x | yes |",
            "| tlskit bench / s_time |  |  | 0.84x | >= 1x | **no** |",
        ),
        ("Met in this run: server memory", "Not met in this run: server memory"),
        ("24080 of 24080 resumed)", "**Resumption failed on Node tls (12 of 24080 resumed)**"),
        ("| <= 0.7x Node | yes |", "| <= 0.7x Node: no comparison, resumption failed | n/a |"),
        ("(same offered load, server on CPU 0) | 1.02x", "(same offered load, server on CPU 0) | 1.49x"),
        ("| 1.02x | <= 1.05x | yes |", "| 1.49x | <= 1.05x | **no** |"),
        ("| One process holds 10,000 TLS connections and serves new ones | pass", "| FAIL:"),
        (
            "every server negotiated TLS_AES_256_GCM_SHA384",
            "(2031-04-05 06:07 UTC, 2 cores). Other processes used more than",
        ),
    ):
        assert claim in good and claim not in bad, claim
        assert opposite in bad and opposite not in good, opposite
    assert "**Warning:**" in bad and "**Warning:**" not in good
    assert "## Errors in this run" in bad and "## Errors" not in good
    assert "**Not measured in this run:** tunnel (stunnel4 is not installed)." in bad and "Not measured" not in good


def test_report_verdicts_follow_the_targets_in_the_data() -> None:
    r = fake_run()
    by_metric = {row.metric.split(" (")[0]: row for row in report.rows(r)}
    handshake = by_metric["Server CPU per full TLS 1.3 handshake"]
    assert handshake.ratio == pytest.approx(
        r.handshakes["tlskit"].cpu_per_handshake_us / r.handshakes["node"].cpu_per_handshake_us
    )
    assert handshake.met is True
    r.targets["handshake"] = handshake.ratio - 0.01
    assert not {row.metric.split(" (")[0]: row for row in report.rows(r)}["Server CPU per full TLS 1.3 handshake"].met


def test_settings_mismatch_is_found() -> None:
    r = fake_run()
    assert r.mismatches(list(r.probes)) == []
    r.probes["node"] = dataclasses.replace(r.probes["node"], tickets=2)
    r.probes["stdlib"] = dataclasses.replace(r.probes["stdlib"], cipher="TLS_AES_128_GCM_SHA256")
    problems = r.mismatches([*r.probes, "missing"])
    assert "missing: not probed" in problems
    assert any(p.startswith("cipher differs") for p in problems)
    assert any(p.startswith("tickets differs") for p in problems)
    assert "node sent 2 session tickets, tlskit's server_context sets 1" in problems


def test_run_data_survives_json() -> None:
    r = flipped_run()
    again = from_json(to_json(r))
    assert again == r
    assert report.render(again) == report.render(r)
    assert next(iter(again.workers)) == "1|0|1"


def test_committed_document_is_the_committed_data_rendered() -> None:
    data = from_json((ROOT / "docs" / "benchmarks.json").read_text())
    assert (ROOT / "docs" / "benchmarks.md").read_text() == report.render(data), RERENDER


def test_readme_figures_are_the_committed_data() -> None:
    data = from_json((ROOT / "docs" / "benchmarks.json").read_text())
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(report.README_BEGIN), readme.index(report.README_END) + len(report.README_END)
    assert readme[start:end] == report.readme_block(data), RERENDER
    assert report.replace_readme_block(readme, data) == readme
