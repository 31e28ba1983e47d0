"""x509-limbo conformance: ``tlskit verify`` semantics on every case of shared/conformance/limbo.json.

Each case is written to files and verified with :func:`tlskit.pki.verify.verify_files`, the code path of the
``tlskit verify`` command (a sample also goes through the real command).  Every case either agrees with its
``expected_result`` or is listed in ``limbo_exceptions.json`` with a reason; cases that need something the
command line cannot say (a maximum chain depth, a required keyUsage) are skipped and counted.  Each case runs
in a worker process with a generous timeout, so pathological inputs must finish in bounded time.

The data is found through ``TLSKIT_LIMBO`` (the file's path) or as ``shared/conformance/limbo.json`` beside the
checkout (CI clones the repository next to ``shared/``) or one level above it (a worktree in a subfolder).
Without it the tests skip, or fail under ``TLSKIT_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from peers import missing

_REPO = Path(__file__).resolve().parents[1]
LIMBO_CANDIDATES = (
    [Path(os.environ["TLSKIT_LIMBO"])]
    if os.environ.get("TLSKIT_LIMBO")
    else [folder / "shared" / "conformance" / "limbo.json" for folder in (_REPO.parent, _REPO.parent.parent)]
)
EXCEPTIONS = Path(__file__).with_name("limbo_exceptions.json")
PER_CASE_TIMEOUT = 120.0  # seconds; cases take milliseconds, the bound only catches runaway path building

# The SERVER cases the CLI can express, and the floor tlskit holds on them: the figures measured on limbo.json
# (x509-limbo 8a2e6f41, 208 cases) with cryptography 50.0.2 and the Public Suffix List of publicsuffixlist.  The 7
# still wrongly accepted are deliberate, each with its reason in limbo_exceptions.json.  When tlskit does better,
# raise the floor to match.
SERVER_CASES, MIN_AGREE, MAX_WRONGLY_ACCEPTED = 174, 164, 7
# Cycles, exponential chains and name-constraint bombs the CLI can express, all of which must run and be decided.
MIN_PATHOLOGICAL = 10

Case = dict[str, Any]


def unsupported(case: Case) -> str | None:
    """Why ``tlskit verify`` cannot express this case, or None."""
    if case["max_chain_depth"] is not None:
        return "a maximum chain depth (no such option)"
    if case["key_usage"]:
        return "a required leaf keyUsage (no such option)"
    if case["signature_algorithms"]:
        return "a restricted set of signature algorithms (no such option)"
    peer = case["expected_peer_name"]
    if peer is not None and peer["kind"] not in ("DNS", "IP"):
        return f"an {peer['kind']} peer name (--host takes DNS names and IPs)"
    return None


def expressible_server_case(case: Case) -> bool:
    """The done-means population: a SERVER case with a DNS/IP name, serverAuth, no CRL, depth or DoS."""
    peer = case["expected_peer_name"]
    return (
        case["validation_kind"] == "SERVER"
        and peer is not None
        and peer["kind"] in ("DNS", "IP")
        and set(case["extended_key_usage"]) <= {"serverAuth"}
        and not case["crls"]
        and "denial-of-service" not in case["features"]
        and unsupported(case) is None
    )


def materialize(case: Case, directory: Path) -> tuple[dict[str, Any], list[str]]:
    """Write the case's PEMs into ``directory``: (verify_files keyword arguments, the same as CLI arguments)."""

    def put(name: str, pems: list[str]) -> str:
        path = directory / name
        path.write_text("".join(pems))
        return str(path)

    leaf = put("leaf.pem", [case["peer_certificate"]])
    kwargs: dict[str, Any] = {"ca_paths": [put("roots.pem", case["trusted_certs"])]}
    argv = [leaf, "--ca", kwargs["ca_paths"][0]]
    if case["untrusted_intermediates"]:
        kwargs["chain_path"] = put("chain.pem", case["untrusted_intermediates"])
        argv += ["--chain", kwargs["chain_path"]]
    kwargs["crl_paths"] = [put(f"crl{i}.pem", [crl]) for i, crl in enumerate(case["crls"])]
    for path in kwargs["crl_paths"]:
        argv += ["--crl", path]
    if case["expected_peer_name"] is not None:
        kwargs["host"] = case["expected_peer_name"]["value"]
        argv += ["--host", kwargs["host"]]
    purpose = "client" if case["validation_kind"] == "CLIENT" else "server"
    kwargs["purpose"] = purpose
    argv += ["--purpose", purpose]
    if case["validation_time"]:
        kwargs["at"] = dt.datetime.fromisoformat(case["validation_time"])
        argv += ["--at", case["validation_time"]]
    return {"cert_path": leaf, **kwargs}, argv


class Outcome(NamedTuple):
    """One case verified: tlskit's decision, its first problem (or input error), the time it took, and for the
    SERVER cases the CLI can express, the decision of cryptography's verifier alone (for comparison)."""

    accepted: bool
    why: str
    seconds: float
    cryptography_alone: bool | None


def cryptography_accepts(case: Case) -> bool:
    """Whether cryptography's own web PKI server verifier, without anything of tlskit, accepts a SERVER case."""
    import ipaddress

    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    def load(pems: list[str]) -> list[x509.Certificate]:
        return [x509.load_pem_x509_certificate(pem.encode()) for pem in pems]

    builder = PolicyBuilder().store(Store(load(case["trusted_certs"])))
    if case["validation_time"]:
        builder = builder.time(dt.datetime.fromisoformat(case["validation_time"]))
    peer = case["expected_peer_name"]
    name = x509.IPAddress(ipaddress.ip_address(peer["value"])) if peer["kind"] == "IP" else x509.DNSName(peer["value"])
    try:  # ValueError: a name cryptography refuses to verify for
        verifier = builder.build_server_verifier(name)
        verifier.verify(load([case["peer_certificate"]])[0], load(case["untrusted_intermediates"]))
    except (VerificationError, ValueError):
        return False
    return True


def run_case(case: Case) -> tuple[str, Outcome]:
    """Worker: (id, outcome).  An unreadable input is a rejection, as ``tlskit verify`` exits 2 on it."""
    import warnings

    from tlskit.errors import InputError
    from tlskit.pki.verify import Purpose, verify_files

    warnings.simplefilter("ignore")  # limbo's deliberately odd certificates make cryptography warn
    alone = cryptography_accepts(case) if expressible_server_case(case) else None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        kwargs, _ = materialize(case, Path(tmp))
        kwargs["purpose"] = Purpose(kwargs["purpose"])
        try:
            result = verify_files(kwargs.pop("cert_path"), **kwargs)
        except InputError as exc:
            return case["id"], Outcome(False, f"input error: {exc}", time.perf_counter() - start, alone)
    why = "" if result.ok else f"{result.problems[0].code}: {result.problems[0].message}"
    return case["id"], Outcome(result.ok, why, time.perf_counter() - start, alone)


@pytest.fixture(scope="module")
def limbo() -> list[Case]:
    found = next((path for path in LIMBO_CANDIDATES if path.is_file()), None)
    if found is None:
        missing(
            f"the x509-limbo data is not found (looked for {', '.join(map(str, LIMBO_CANDIDATES))})",
            "put limbo.json into shared/conformance/ beside the checkout, or set TLSKIT_LIMBO to its path",
        )
    return list(json.loads(found.read_text())["testcases"])


@pytest.fixture(scope="module")
def outcomes(limbo: list[Case]) -> dict[str, Outcome]:
    """Every runnable case, verified in two worker processes, each with its own timeout."""
    runnable = [case for case in limbo if unsupported(case) is None]
    results: dict[str, Outcome] = {}
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pending = [(case["id"], pool.apply_async(run_case, (case,))) for case in runnable]
        deadline = time.monotonic() + PER_CASE_TIMEOUT
        for case_id, job in pending:
            try:
                _, results[case_id] = job.get(timeout=max(1.0, deadline - time.monotonic()))
            except multiprocessing.TimeoutError:
                pool.terminate()
                pytest.fail(f"limbo case {case_id} did not finish within {PER_CASE_TIMEOUT:.0f} s")
            deadline = time.monotonic() + PER_CASE_TIMEOUT  # the next case gets a fresh bound
    return results


def test_every_case_agrees_or_is_an_exception(limbo: list[Case], outcomes: dict[str, Outcome]) -> None:
    exceptions: dict[str, str] = json.loads(EXCEPTIONS.read_text())["exceptions"]
    assert all(reason.strip() for reason in exceptions.values()), "every exception needs a reason"
    skipped = {case["id"]: unsupported(case) for case in limbo if unsupported(case)}
    unexplained, now_agreeing = [], []
    for case in limbo:
        if case["id"] in skipped:
            continue
        accepted, why = outcomes[case["id"]].accepted, outcomes[case["id"]].why
        agrees = accepted == (case["expected_result"] == "SUCCESS")
        if not agrees and case["id"] not in exceptions:
            unexplained.append(f"{case['id']}: expected {case['expected_result']}, got {why or 'SUCCESS'}")
        elif agrees and case["id"] in exceptions:
            now_agreeing.append(case["id"])
    print(f"\nlimbo: {len(outcomes)} run, {len(skipped)} skipped (features the CLI cannot express):")
    for case_id, reason in sorted(skipped.items()):
        print(f"  skipped {case_id}: {reason}")
    if now_agreeing:
        print(f"  listed as exceptions but agreeing now (prune the list): {', '.join(now_agreeing)}")
    assert not unexplained, "disagreements without an exception:\n" + "\n".join(unexplained)
    unknown = set(exceptions) - {case["id"] for case in limbo}
    assert not unknown, f"exceptions for cases not in limbo.json: {sorted(unknown)}"


def test_server_score_meets_the_thresholds(limbo: list[Case], outcomes: dict[str, Outcome]) -> None:
    population = [case for case in limbo if expressible_server_case(case)]

    def score(decisions: list[bool]) -> tuple[int, int, int]:
        """(agree, wrongly accepted, wrongly rejected) over the population."""
        expected = [case["expected_result"] == "SUCCESS" for case in population]
        pairs = list(zip(decisions, expected, strict=True))
        return (sum(d == e for d, e in pairs), sum(d and not e for d, e in pairs), sum(e and not d for d, e in pairs))

    agree, wrongly_accepted, wrongly_rejected = score([outcomes[case["id"]].accepted for case in population])
    alone = score([bool(outcomes[case["id"]].cryptography_alone) for case in population])
    print(
        f"\nlimbo SERVER cases the CLI can express: {len(population)}; agree {agree}, wrongly accepted "
        f"{wrongly_accepted}, wrongly rejected {wrongly_rejected} (cryptography alone: {' / '.join(map(str, alone))})"
    )
    assert len(population) == SERVER_CASES
    assert agree >= MIN_AGREE
    assert wrongly_accepted <= MAX_WRONGLY_ACCEPTED


def test_pathological_cases_finish(limbo: list[Case], outcomes: dict[str, Outcome]) -> None:
    """Cycles, exponential chains and name-constraint bombs end (within the per-case timeout) and are decided."""
    hard = [c for c in limbo if c["id"].startswith("pathological::") or "denial-of-service" in c["features"]]
    ran = [case for case in hard if case["id"] in outcomes]
    assert len(ran) >= MIN_PATHOLOGICAL
    for case in ran:
        outcome = outcomes[case["id"]]
        assert outcome.seconds < PER_CASE_TIMEOUT
        assert outcome.accepted == (case["expected_result"] == "SUCCESS"), case["id"]


@pytest.mark.parametrize(
    "case_id",
    [
        "webpki::san::exact-dns-san",
        "webpki::san::exact-localhost-ip-san",
        "webpki::san::mismatch-domain-san",
        "rfc5280::chain-untrusted-root",
        "crl::revoked-certificate-with-crl",
        "crl::certificate-not-on-crl",
        "rfc5280::nc::nc-permits-email-exact",
        "pathological::nc-dos-1",
    ],
)
def test_cli_sample_matches_the_library(
    case_id: str, limbo: list[Case], outcomes: dict[str, Outcome], tmp_path: Path
) -> None:
    case = next(c for c in limbo if c["id"] == case_id)
    _, argv = materialize(case, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tlskit", "verify", *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == (0 if outcomes[case_id].accepted else 1), done.stdout + done.stderr
    assert done.returncode == (0 if case["expected_result"] == "SUCCESS" else 1)


def test_inspect_and_diagnose_survive_every_limbo_certificate(limbo: list[Case]) -> None:
    """The deliberately malformed certificates of the suite never crash a summary or a diagnosis."""
    import warnings

    from cryptography import x509

    from tlskit.cli.inspect_render import render_text
    from tlskit.pki.diagnose import diagnose_chain
    from tlskit.pki.inspect import summarize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in limbo:
            roots = [x509.load_pem_x509_certificate(p.encode()) for p in case["trusted_certs"]]
            chain = [x509.load_pem_x509_certificate(p.encode()) for p in [case["peer_certificate"]]]
            chain += [x509.load_pem_x509_certificate(p.encode()) for p in case["untrusted_intermediates"]]
            for cert in [*chain, *roots]:
                assert render_text(summarize(cert)).strip()
            for crl in case["crls"]:
                assert summarize(x509.load_pem_x509_crl(crl.encode()))["kind"] == "crl"
            peer = case["expected_peer_name"]
            host = peer["value"] if peer and peer["kind"] in ("DNS", "IP") else None
            problems = diagnose_chain(chain, roots=roots, host=host)
            assert all(p.message and p.fix for p in problems)
