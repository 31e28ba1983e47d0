"""Trust a CA on this machine, as ``mkcert -install`` does: the system store, the user's NSS databases, Java.

- **system**: Debian's ``/usr/local/share/ca-certificates`` + ``update-ca-certificates``, or RHEL's
  ``/etc/pki/ca-trust/source/anchors`` + ``update-ca-trust extract`` (curl, OpenSSL, Python with the system
  roots, Go, ...).  Writing there needs root.
- **nss**: every NSS database of the user, through ``certutil`` (Debian ``libnss3-tools``): ``~/.pki/nssdb``
  (Chromium, Chrome), the snap Chromium's, and every Firefox profile (plain, snap and flatpak).
- **java**: the ``cacerts`` keystore of ``$JAVA_HOME`` (or of the ``keytool`` on ``PATH``) through ``keytool``.

What tlskit adds carries one mark derived from the CA certificate's SHA-256 fingerprint, :func:`trust_name`
(``tlskit-<16 hex digits>``): the file name in the system store, the NSS nickname, the Java alias.  Installing is
idempotent, and uninstalling removes only entries with that mark, never a CA someone else installed.  Every
location is a field of :class:`TrustStores`, so tests (and chroots) work on copies rather than on the machine.
A store that is not there is reported as such (:attr:`Outcome.ABSENT`), not as a failure.
"""

from __future__ import annotations

import enum
import glob
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from .._fileio import write_atomic
from ..errors import InputError
from ..pki.files import load_certificates
from ..pki.problems import label

__all__ = [
    "Outcome",
    "Store",
    "StoreResult",
    "TrustStores",
    "install",
    "load_ca_certificate",
    "status",
    "trust_name",
    "uninstall",
]

_TIMEOUT = 120.0  # seconds for one store command (update-ca-certificates rehashes the whole directory)


class Store(enum.StrEnum):
    """A kind of trust store."""

    SYSTEM = "system"
    NSS = "nss"
    JAVA = "java"


class Outcome(enum.StrEnum):
    """What happened to one store (or what :func:`status` found there)."""

    ADDED = "added"
    REMOVED = "removed"
    PRESENT = "present"  # installed by tlskit (install: already there, nothing changed)
    NOT_PRESENT = "not present"  # not installed by tlskit (uninstall: nothing to remove)
    ABSENT = "absent"  # the store is not on this machine
    FAILED = "failed"  # the store is there, but the change could not be made


@dataclass(frozen=True)
class StoreResult:
    """One store's outcome: which ``store``, where (``location``), what happened and a detail for people."""

    store: Store
    location: str
    outcome: Outcome
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAILED


@dataclass(frozen=True)
class TrustStores:
    """Where the stores are.  The defaults are this machine's; every location can be pointed elsewhere.

    ``home`` holds the user's NSS databases.  ``system_root`` is the directory the system store's paths start
    from (``/``); under another root, ``update-ca-certificates`` is told that root's paths.  ``java_keystore``
    is the ``cacerts`` file (None: ``$JAVA_HOME``'s, else that of the ``keytool`` on ``PATH``).
    """

    home: Path = field(default_factory=Path.home)
    system_root: Path = Path("/")
    java_keystore: Path | None = None
    java_storepass: str = "changeit"


def load_ca_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """The one CA certificate in ``path`` (or in ``path/ca.pem`` for a CA directory); refuses anything else."""
    p = Path(path)
    if p.is_dir() and (p / "ca.pem").is_file():
        p = p / "ca.pem"
    certs = load_certificates(p)
    try:
        constraints = certs[0].extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise InputError(
            f"{p}: '{label(certs[0])}' is not a CA certificate (basicConstraints CA:false), so it cannot be "
            "trusted as one",
            fix="trust the CA that issued it (its ca.pem)",
        )
    if len(certs) != 1:
        raise InputError(
            f"{p}: holds {len(certs)} certificates; which CA to trust must be unambiguous",
            fix="give the file with that CA certificate alone (a CA directory's ca.pem)",
        )
    return certs[0]


def trust_name(cert: x509.Certificate) -> str:
    """The mark of what tlskit adds for ``cert``: ``tlskit-`` and 16 hex digits of its SHA-256 fingerprint."""
    return "tlskit-" + cert.fingerprint(hashes.SHA256()).hex()[:16]


def install(
    cert: x509.Certificate, *, stores: Iterable[Store] = tuple(Store), where: TrustStores | None = None
) -> list[StoreResult]:
    """Trust ``cert`` (a CA) in each of ``stores``; one result per store location."""
    return _each(cert, stores, where or TrustStores(), "install")


def uninstall(
    cert: x509.Certificate, *, stores: Iterable[Store] = tuple(Store), where: TrustStores | None = None
) -> list[StoreResult]:
    """Remove what :func:`install` added for ``cert`` from each of ``stores`` (and nothing else)."""
    return _each(cert, stores, where or TrustStores(), "uninstall")


def status(
    cert: x509.Certificate, *, stores: Iterable[Store] = tuple(Store), where: TrustStores | None = None
) -> list[StoreResult]:
    """Whether tlskit installed ``cert`` in each of ``stores`` (:attr:`Outcome.PRESENT` / ``NOT_PRESENT``)."""
    return _each(cert, stores, where or TrustStores(), "status")


def _each(cert: x509.Certificate, stores: Iterable[Store], where: TrustStores, action: str) -> list[StoreResult]:
    handlers = {Store.SYSTEM: _system, Store.NSS: _nss, Store.JAVA: _java}
    results: list[StoreResult] = []
    for store in dict.fromkeys(Store(s) for s in stores):
        results.extend(handlers[store](cert, where, action))
    return results


@dataclass(frozen=True)
class _Run:
    ok: bool
    output: str


def _run(argv: Sequence[str], *, data: bytes | None = None) -> _Run:
    """Run a store's own tool; its last line of output tells why it failed."""
    try:
        done = subprocess.run(list(argv), input=data, capture_output=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _Run(False, f"{argv[0]}: {exc}")
    text = (done.stdout + done.stderr).decode(errors="replace").strip()
    return _Run(done.returncode == 0, text)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


# --- the system store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flavour:
    name: str
    anchors: str  # the directory for local anchors, relative to the root
    command: str


_DEBIAN = _Flavour("Debian", "usr/local/share/ca-certificates", "update-ca-certificates")
_RHEL = _Flavour("RHEL", "etc/pki/ca-trust/source/anchors", "update-ca-trust")


def _flavour(root: Path) -> _Flavour | None:
    for flavour in (_RHEL, _DEBIAN):
        if (root / flavour.anchors).is_dir() or (root == Path("/") and flavour is _DEBIAN and _on_path(flavour)):
            return flavour
    return None


def _on_path(flavour: _Flavour) -> bool:
    return shutil.which(flavour.command) is not None


def _update_argv(flavour: _Flavour, root: Path, *, removal: bool) -> list[str]:
    if flavour is _RHEL:
        return [flavour.command, "extract"]
    argv = [flavour.command]
    if removal:
        argv.append("--fresh")  # rebuild the links: a removed anchor's would otherwise stay behind, dangling
    if root != Path("/"):
        argv += [
            "--certsconf", str(root / "etc/ca-certificates.conf"),
            "--certsdir", str(root / "usr/share/ca-certificates"),
            "--localcertsdir", str(root / flavour.anchors),
            "--etccertsdir", str(root / "etc/ssl/certs"),
            "--hooksdir", str(root / "etc/ca-certificates/update.d"),
        ]  # fmt: skip
    return argv


def _system(cert: x509.Certificate, where: TrustStores, action: str) -> list[StoreResult]:
    root = where.system_root
    flavour = _flavour(root)
    if flavour is None:
        return [StoreResult(Store.SYSTEM, str(root), Outcome.ABSENT, "no Debian or RHEL system trust store")]
    anchor = root / flavour.anchors / f"{trust_name(cert)}.crt"
    present = anchor.is_file()

    def result(outcome: Outcome, detail: str = "") -> list[StoreResult]:
        return [StoreResult(Store.SYSTEM, str(anchor), outcome, detail)]

    if action == "status" or (action == "install" and present) or (action == "uninstall" and not present):
        return result(Outcome.PRESENT if present else Outcome.NOT_PRESENT)
    if flavour is _RHEL and root != Path("/"):
        return result(Outcome.FAILED, "update-ca-trust works on / only")
    if not _on_path(flavour):
        return result(Outcome.FAILED, f"{flavour.command} not found (package ca-certificates)")
    try:
        if action == "install":
            anchor.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(anchor, _pem(cert), force=True)
        else:
            anchor.unlink()
    except OSError as exc:
        hint = ": run as root" if isinstance(exc, PermissionError) else ""
        return result(Outcome.FAILED, f"{exc.strerror or exc}{hint}")
    run = _run(_update_argv(flavour, root, removal=action == "uninstall"))
    if not run.ok:
        if action == "install":  # leave the store as it was
            anchor.unlink(missing_ok=True)
        return result(Outcome.FAILED, f"{flavour.command} failed: {_last_line(run.output)}")
    return result(Outcome.ADDED if action == "install" else Outcome.REMOVED, f"{flavour.command} ({flavour.name})")


# --- NSS databases ---------------------------------------------------------------------------------------

# Where Chromium/Chrome and Firefox keep theirs, relative to HOME (as mkcert looks for them; plus flatpak).
_NSS_DIRS = (".pki/nssdb", "snap/chromium/current/.pki/nssdb")
_FIREFOX_PROFILES = (
    ".mozilla/firefox/*",
    "snap/firefox/common/.mozilla/firefox/*",
    ".var/app/org.mozilla.firefox/.mozilla/firefox/*",
)


def nss_databases(home: Path) -> list[str]:
    """The NSS databases in ``home`` as ``certutil -d`` wants them (``sql:DIR``, or ``dbm:DIR`` for old ones)."""
    candidates = [home / d for d in _NSS_DIRS]
    for pattern in _FIREFOX_PROFILES:
        candidates += sorted(Path(p) for p in glob.glob(str(home / pattern)))
    found = []
    for directory in candidates:
        if (directory / "cert9.db").is_file():
            found.append(f"sql:{directory}")
        elif (directory / "cert8.db").is_file():
            found.append(f"dbm:{directory}")
    return found


def _nss(cert: x509.Certificate, where: TrustStores, action: str) -> list[StoreResult]:
    databases = nss_databases(where.home)
    if not databases:
        return [
            StoreResult(
                Store.NSS, str(where.home), Outcome.ABSENT,
                "no NSS database (Chromium and Firefox create theirs when they first start)",
            )
        ]  # fmt: skip
    certutil = shutil.which("certutil")
    if certutil is None:
        return [
            StoreResult(Store.NSS, db, Outcome.FAILED, "certutil not found (Debian: libnss3-tools, RHEL: nss-tools)")
            for db in databases
        ]
    nickname = trust_name(cert)
    return [_nss_one(certutil, db, nickname, cert, action) for db in databases]


def _nss_one(certutil: str, db: str, nickname: str, cert: x509.Certificate, action: str) -> StoreResult:
    def present() -> bool:
        return _run([certutil, "-L", "-d", db, "-n", nickname]).ok

    def result(outcome: Outcome, detail: str = "") -> StoreResult:
        return StoreResult(Store.NSS, db, outcome, detail)

    there = present()
    if action == "status" or (action == "install" and there) or (action == "uninstall" and not there):
        return result(Outcome.PRESENT if there else Outcome.NOT_PRESENT, f"nickname {nickname}")
    if action == "install":
        # "C,,": a CA trusted to issue TLS server certificates.
        run = _run([certutil, "-A", "-d", db, "-t", "C,,", "-n", nickname], data=_pem(cert))
        if not run.ok:
            return result(Outcome.FAILED, f"certutil failed: {_last_line(run.output)}")
        if not present():  # NSS keeps one nickname per certificate: it was there under another name already
            return result(Outcome.FAILED, "the certificate is already in this database under another nickname")
        return result(Outcome.ADDED, f"nickname {nickname}")
    while present():  # every copy under our nickname
        run = _run([certutil, "-D", "-d", db, "-n", nickname])
        if not run.ok:
            return result(Outcome.FAILED, f"certutil failed: {_last_line(run.output)}")
    return result(Outcome.REMOVED, f"nickname {nickname}")


# --- Java ------------------------------------------------------------------------------------------------


# keytool is a JVM started per command: these halve its start-up time and change nothing it does.
_JVM_QUICK_START = ("-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC")


def _java_keystore(where: TrustStores) -> Path | None:
    if where.java_keystore is not None:
        return where.java_keystore
    homes = []
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    keytool = shutil.which("keytool")
    if keytool is not None:
        homes.append(Path(os.path.realpath(keytool)).parent.parent)
    for home in homes:
        for relative in ("lib/security/cacerts", "jre/lib/security/cacerts"):
            if (home / relative).is_file():
                return home / relative
    return None


def _java(cert: x509.Certificate, where: TrustStores, action: str) -> list[StoreResult]:
    keystore = _java_keystore(where)
    keytool = shutil.which("keytool")
    if keystore is None or not keystore.is_file() or keytool is None:
        what = "no keytool on PATH" if keytool is None else f"no keystore at {keystore or '$JAVA_HOME'}"
        return [StoreResult(Store.JAVA, str(keystore or "java"), Outcome.ABSENT, what)]
    alias = trust_name(cert)
    common = [*_JVM_QUICK_START, "-keystore", str(keystore), "-storepass", where.java_storepass, "-alias", alias]

    def result(outcome: Outcome, detail: str = "") -> list[StoreResult]:
        return [StoreResult(Store.JAVA, str(keystore), outcome, detail)]

    listed = _run([keytool, "-list", *common])
    there = listed.ok
    # keytool fails both for a missing alias and for a keystore it cannot read (a wrong -storepass): only the
    # first means "not there"; taking the second for it would report a trusted CA as gone.
    if not there and "does not exist" not in listed.output:
        return result(Outcome.FAILED, f"keytool failed: {_last_line(listed.output)}")
    if action == "status" or (action == "install" and there) or (action == "uninstall" and not there):
        return result(Outcome.PRESENT if there else Outcome.NOT_PRESENT, f"alias {alias}")
    if action == "install":
        run = _run([keytool, "-importcert", "-noprompt", "-trustcacerts", *common], data=_pem(cert))
    else:
        run = _run([keytool, "-delete", *common])
    if not run.ok:
        return result(Outcome.FAILED, f"keytool failed: {_last_line(run.output)}")
    return result(Outcome.ADDED if action == "install" else Outcome.REMOVED, f"alias {alias}")
