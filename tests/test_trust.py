"""``tlskit ca trust``: the system store, NSS databases and Java's keystore, never the machine's own.

Every store is a copy: HOME is a temporary directory (NSS), the system store lives under a temporary root that
``update-ca-certificates`` is pointed at, and the Java keystore is one keytool made.  The proof that matters is
a real browser: headless Chromium refuses a page served with a tlskit certificate until ``tlskit ca trust
install --store nss`` has run, then shows it, and refuses it again after ``uninstall``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PKI, ROOT, TLSKIT
from peers import Peer, running, tool
from tlskit.pki.files import load_certificates
from tlskit.tools.trust import _JVM_QUICK_START, Outcome, Store, TrustStores, install, status, trust_name, uninstall

EXAMPLES = ROOT / "examples"


def _outcomes(results: list) -> list[Outcome]:  # type: ignore[type-arg]
    return [r.outcome for r in results]


def _tlskit(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "NO_COLOR": "1"}
    return subprocess.run([TLSKIT, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def _new_nssdb(directory: Path) -> None:
    directory.mkdir(parents=True)
    certutil = tool("certutil")
    subprocess.run([certutil, "-N", "--empty-password", "-d", f"sql:{directory}"], check=True, capture_output=True)


def test_a_certificate_that_is_not_a_ca_is_refused(pki: PKI, tmp_path: Path) -> None:
    done = _tlskit("ca", "trust", "install", str(pki.server_pem), home=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"tlskit: error: {pki.server_pem}: 'localhost' is not a CA certificate (basicConstraints CA:false), so it "
        "cannot be trusted as one: trust the CA that issued it (its ca.pem)"
    ]


@pytest.mark.parametrize(
    ("what", "said"),
    [
        ("missing", "no such certificate file"),
        ("key", "found a private key"),
        ("directory", "is a directory"),
        ("empty", "not a readable certificate"),
        ("two-cas", "holds 2 certificates"),
    ],
)
def test_bad_ca_files_are_one_line_errors(pki: PKI, tmp_path: Path, what: str, said: str) -> None:
    files = {
        "missing": tmp_path / "missing.pem",
        "key": pki.root_dir / "ca-key.pem",
        "directory": tmp_path,
        "empty": Path("/dev/null"),
        "two-cas": tmp_path / "two.pem",
    }
    files["two-cas"].write_bytes(pki.root_pem.read_bytes() + pki.other_root_pem.read_bytes())
    for action in ("install", "status", "uninstall"):
        done = _tlskit("ca", "trust", action, str(files[what]), "--store", "nss", home=tmp_path)
        assert done.returncode == 2 and done.stdout == "", (action, done)
        assert len(done.stderr.splitlines()) == 1 and said in done.stderr and "Traceback" not in done.stderr, (
            done.stderr
        )
    assert not (tmp_path / ".pki").exists()  # nothing was created on the way


def test_a_store_that_fails_makes_the_command_exit_1(pki: PKI, tmp_path: Path) -> None:
    nssdb = tmp_path / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for name in ("cert9.db", "key4.db"):  # not SQLite: certutil cannot open this database
        (nssdb / name).write_text("junk")
    tool("certutil")
    done = _tlskit("ca", "trust", "install", str(pki.root_pem), "--store", "nss", home=tmp_path)
    assert done.returncode == 1, done
    assert "could not change (certutil failed:" in done.stderr, done


def test_absent_stores_are_reported_not_failed(pki: PKI, tmp_path: Path) -> None:
    where = TrustStores(home=tmp_path, system_root=tmp_path / "root", java_keystore=tmp_path / "no-cacerts")
    results = install(pki.root.cert, where=where)
    assert [(r.store, r.outcome) for r in results] == [
        (Store.SYSTEM, Outcome.ABSENT), (Store.NSS, Outcome.ABSENT), (Store.JAVA, Outcome.ABSENT),
    ]  # fmt: skip
    done = _tlskit("ca", "trust", "install", str(pki.root_dir), "--store", "nss", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "nss" in done.stdout and "skipped, not on this machine" in done.stdout


def test_nss_every_database_idempotent_and_only_ours_removed(pki: PKI, tmp_path: Path) -> None:
    certutil = tool("certutil")
    chromium_db = tmp_path / ".pki" / "nssdb"
    firefox_db = tmp_path / ".mozilla" / "firefox" / "abcd.default-release"
    _new_nssdb(chromium_db)
    _new_nssdb(firefox_db)
    # someone else's CA, added by hand: uninstall must leave it
    subprocess.run([certutil, "-A", "-d", f"sql:{chromium_db}", "-t", "C,,", "-n", "Someone Else",
                    "-i", str(pki.other_root_pem)], check=True)  # fmt: skip
    where = TrustStores(home=tmp_path, system_root=tmp_path / "no-root", java_keystore=tmp_path / "none")
    stores = [Store.NSS]
    assert _outcomes(status(pki.root.cert, stores=stores, where=where)) == [Outcome.NOT_PRESENT] * 2
    assert _outcomes(install(pki.root.cert, stores=stores, where=where)) == [Outcome.ADDED] * 2
    assert _outcomes(install(pki.root.cert, stores=stores, where=where)) == [Outcome.PRESENT] * 2
    listed = subprocess.run([certutil, "-L", "-d", f"sql:{firefox_db}"], capture_output=True, text=True, check=True)
    assert trust_name(pki.root.cert) in listed.stdout
    assert _outcomes(uninstall(pki.root.cert, stores=stores, where=where)) == [Outcome.REMOVED] * 2
    assert _outcomes(uninstall(pki.root.cert, stores=stores, where=where)) == [Outcome.NOT_PRESENT] * 2
    listed = subprocess.run([certutil, "-L", "-d", f"sql:{chromium_db}"], capture_output=True, text=True, check=True)
    assert "Someone Else" in listed.stdout and "tlskit-" not in listed.stdout


def _debian_root(root: Path, distributed: Path) -> None:
    """A Debian trust store under ``root``, with one CA as distributed (listed in ca-certificates.conf)."""
    for d in ("usr/local/share/ca-certificates", "usr/share/ca-certificates", "etc/ssl/certs",
              "etc/ca-certificates/update.d"):  # fmt: skip
        (root / d).mkdir(parents=True)
    shutil.copyfile(distributed, root / "usr/share/ca-certificates/distributed.crt")
    (root / "etc/ca-certificates.conf").write_text("distributed.crt\n")


def test_debian_system_store_in_a_temporary_root(pki: PKI, tmp_path: Path) -> None:
    tool("update-ca-certificates")
    tool("openssl")  # update-ca-certificates runs `openssl rehash`
    root = tmp_path / "root"
    _debian_root(root, pki.other_root_pem)
    where = TrustStores(home=tmp_path, system_root=root)
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    [added] = install(pki.root.cert, stores=[Store.SYSTEM], where=where)
    assert added.outcome is Outcome.ADDED, added.detail
    anchor = root / "usr/local/share/ca-certificates" / f"{trust_name(pki.root.cert)}.crt"
    assert added.location == str(anchor) and anchor.is_file()
    # the bundle every OpenSSL client on the machine reads
    assert load_certificates(bundle) == [pki.other_ca.cert, pki.root.cert]
    assert (root / "etc/ssl/certs" / f"{trust_name(pki.root.cert)}.pem").is_symlink()
    assert _outcomes(install(pki.root.cert, stores=[Store.SYSTEM], where=where)) == [Outcome.PRESENT]
    assert _outcomes(uninstall(pki.root.cert, stores=[Store.SYSTEM], where=where)) == [Outcome.REMOVED]
    assert not anchor.exists()
    assert load_certificates(bundle) == [pki.other_ca.cert]  # only ours went
    links = [p for p in (root / "etc/ssl/certs").iterdir() if p.is_symlink()]
    assert links and all(p.exists() for p in links)  # no link left dangling
    assert _outcomes(status(pki.root.cert, stores=[Store.SYSTEM], where=where)) == [Outcome.NOT_PRESENT]


def test_rhel_layout_outside_the_real_root_is_not_touched(pki: PKI, tmp_path: Path) -> None:
    anchors = tmp_path / "etc/pki/ca-trust/source/anchors"
    anchors.mkdir(parents=True)
    [result] = install(pki.root.cert, stores=[Store.SYSTEM], where=TrustStores(home=tmp_path, system_root=tmp_path))
    assert result.outcome is Outcome.FAILED and "update-ca-trust" in result.detail
    assert list(anchors.iterdir()) == []


@pytest.fixture
def keystore(pki: PKI, tmp_path: Path) -> Path:
    """A PKCS#12 keystore made with keytool, holding one unrelated CA (as cacerts holds many)."""
    keytool = tool("keytool")
    path = tmp_path / "cacerts"
    argv = [
        keytool,
        *_JVM_QUICK_START,
        "-importcert",
        "-noprompt",
        "-alias",
        "someone-else",
        "-keystore",
        str(path),
        "-storepass",
        "changeit",
        "-storetype",
        "PKCS12",
        "-file",
        str(pki.other_root_pem),
    ]
    subprocess.run(argv, check=True, capture_output=True)  # fmt: skip
    return path


def test_java_keystore_copy(pki: PKI, tmp_path: Path, keystore: Path) -> None:
    where = TrustStores(home=tmp_path, java_keystore=keystore)
    java = [Store.JAVA]
    assert _outcomes(install(pki.root.cert, stores=java, where=where)) == [Outcome.ADDED]
    assert _outcomes(install(pki.root.cert, stores=java, where=where)) == [Outcome.PRESENT]
    assert _outcomes(uninstall(pki.root.cert, stores=java, where=where)) == [Outcome.REMOVED]
    listed = subprocess.run([tool("keytool"), "-list", "-keystore", str(keystore), "-storepass", "changeit"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert "someone-else" in listed.stdout and "tlskit-" not in listed.stdout
    # A keystore keytool cannot open is a failure for every action, never "not present" (a CA still trusted).
    assert _outcomes(install(pki.root.cert, stores=java, where=where)) == [Outcome.ADDED]
    wrong = TrustStores(home=tmp_path, java_keystore=keystore, java_storepass="wrong")
    for action in (install, status, uninstall):
        [failed] = action(pki.root.cert, stores=java, where=wrong)
        assert failed.outcome is Outcome.FAILED and "password was incorrect" in failed.detail, (action, failed)
    assert _outcomes(status(pki.root.cert, stores=java, where=where)) == [Outcome.PRESENT]


# --- a real browser ------------------------------------------------------------------------------------------


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture
def https_page(tmp_path: Path) -> Iterator[tuple[Peer, Path]]:
    """examples/https_server.py with certificates from examples/make_pki.py; yields the server and the pki dir."""
    subprocess.run([sys.executable, EXAMPLES / "make_pki.py", tmp_path / "pki"], check=True, capture_output=True)

    def port(peer: Peer) -> int:
        return int(peer.wait_for(r"^listening on https://127\.0\.0\.1:(\d+)/", timeout=30).group(1))

    argv = [sys.executable, EXAMPLES / "https_server.py", "--port", "0"]
    with running(argv, port_from=port, cwd=tmp_path) as server:
        yield server, tmp_path / "pki"


def test_chromium_trusts_the_ca_after_trust_install(https_page: tuple[Peer, Path], tmp_path: Path) -> None:
    chromium = tool("chromium")
    server, pki_dir = https_page
    home = tmp_path / "home"
    _new_nssdb(home / ".pki" / "nssdb")  # the NSS database Chromium on Linux reads, as a desktop profile has
    runs = iter(range(3))

    def load_page() -> tuple[str, str]:
        profile = tmp_path / f"profile{next(runs)}"
        done = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
             f"https://localhost:{server.port}/"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(home)}, check=False,
        )  # fmt: skip
        return done.stdout, done.stderr

    dom, log = load_page()
    assert "ERR_CERT_AUTHORITY_INVALID" in log
    assert "Unauthorized" not in dom and "GET /" not in server.output

    done = _tlskit("ca", "trust", "install", str(pki_dir / "ca" / "ca.pem"), "--store", "nss", home=home)
    assert done.returncode == 0, done.stderr
    assert f"sql:{home}/.pki/nssdb: added" in done.stdout
    dom, log = load_page()
    # the page itself: the example asks for a client certificate, and a browser without one gets tlskit's reason
    assert "<h1>401 Unauthorized</h1><p>no client certificate offered</p>" in dom, log
    server.wait_for(r"GET /: 401 \(no client certificate offered\)")

    done = _tlskit("ca", "trust", "uninstall", str(pki_dir / "ca"), "--store", "nss", home=home)
    assert done.returncode == 0 and "removed" in done.stdout, done.stderr
    dom, log = load_page()
    assert "ERR_CERT_AUTHORITY_INVALID" in log and "Unauthorized" not in dom


def test_cli_status_of_the_nss_store(pki: PKI, tmp_path: Path) -> None:
    _new_nssdb(tmp_path / ".pki" / "nssdb")
    done = _tlskit("ca", "trust", "install", str(pki.root_pem), "--store", "nss", home=tmp_path)
    assert done.returncode == 0, done.stderr
    done = _tlskit("ca", "trust", "status", str(pki.root_pem), "--store", "nss", home=tmp_path)
    assert done.stdout.splitlines() == [
        f"{pki.root_pem}: {trust_name(pki.root.cert)}",
        f"nss     sql:{tmp_path}/.pki/nssdb: trusted, installed by tlskit (nickname {trust_name(pki.root.cert)})",
    ]
