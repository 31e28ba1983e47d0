"""PKI commands: ``key``, ``csr``, ``cert``, ``ca`` and ``pkcs12``.

Each command checks its outputs can be written before doing any work, calls the library, writes atomically
(certificate and key together or not at all; keys mode 0600) and prints one line saying what it wrote.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from .._fileio import check_writable, write_atomic
from .._text import printable
from ..errors import PassphraseError
from ..pki.ca import CertificateAuthority, Issued, parse_reason, parse_serial
from ..pki.certs import Profile, build_csr, self_signed
from ..pki.files import certs_to_pem, load_certificate, load_certificates, load_csr
from ..pki.inspect import serial_hex
from ..pki.keys import (
    KeyEncoding,
    KeyType,
    PrivateKey,
    describe_public_key,
    generate_key,
    load_private_key,
    save_private_key,
)
from .common import force_option, handle_errors, passphrase_option, read_passphrase
from .trust_cmds import trust_group

__all__ = ["commands"]

T = TypeVar("T")

_KEY_TYPES = click.Choice([k.value for k in KeyType], case_sensitive=False)
_type_option = click.option(
    "--type", "key_type", type=_KEY_TYPES, default=KeyType.EC_P256.value, show_default=True, help="Key algorithm."
)
_days_option = click.option("--days", type=click.IntRange(min=1), default=None, help="Validity in days.")


def _profile_options(func: click.decorators.FC) -> click.decorators.FC:
    """``--client`` / ``--server-and-client`` (default: a server certificate)."""
    func = click.option(
        "--server-and-client", "profile", flag_value=Profile.SERVER_AND_CLIENT.value, help="Usable by both sides."
    )(func)
    func = click.option("--client", "profile", flag_value=Profile.CLIENT.value, help="A client certificate.")(func)
    return click.option(
        "--server", "profile", flag_value=Profile.SERVER.value, default=True, help="A server certificate (default)."
    )(func)


def _url_options(func: click.decorators.FC) -> click.decorators.FC:
    """``--crl-url``/``--ocsp-url``/``--issuer-url``: where the new CA publishes, written into what it issues."""
    func = click.option(
        "--issuer-url", metavar="URL", default=None,
        help="Where this CA's certificate is published (default: next to the CRL, .crt).",
    )(func)  # fmt: skip
    func = click.option(
        "--ocsp-url", metavar="URL", default=None, help="This CA's OCSP responder (http), e.g. http://pki:8080/ocsp."
    )(func)
    return click.option(
        "--crl-url",
        metavar="URL",
        default=None,
        help="Where this CA's CRL is published (http), e.g. http://pki:8080/int.crl.",
    )(func)


def _urls_said(ca: CertificateAuthority) -> str:
    urls = [f"{what} {url}" for what, url in (("CRL", ca.urls.crl), ("OCSP", ca.urls.ocsp)) if url]
    return f"; its certificates will name {' and '.join(urls)}" if urls else ""


def _say(message: str) -> None:
    """One concise line on stdout.  It quotes names from CSRs and certificates: shown as text (not rich markup),
    control characters escaped."""
    from rich.console import Console
    from rich.text import Text

    Console(highlight=False, soft_wrap=True).print(Text(printable(message)))


def _open_encrypted(load: Callable[[bytes | None], T], passphrase_file: str | None) -> tuple[T, bytes | None]:
    """``load(passphrase)`` with the passphrase given (file or environment), prompting on a terminal when the
    key turns out to be encrypted and none was given.  Returns what was loaded and the passphrase used."""
    passphrase = read_passphrase(passphrase_file)
    try:
        return load(passphrase), passphrase
    except PassphraseError:
        if passphrase is not None or not sys.stdin.isatty():
            raise
    passphrase = read_passphrase(None, required=True)
    return load(passphrase), passphrase


def _load_key(path: str, passphrase_file: str | None) -> PrivateKey:
    """Load a key; an encrypted key without a given passphrase prompts when on a terminal."""
    return _open_encrypted(lambda passphrase: load_private_key(path, passphrase=passphrase), passphrase_file)[0]


def _load_ca(directory: str, passphrase_file: str | None) -> CertificateAuthority:
    return _open_ca(directory, passphrase_file)[0]


def _open_ca(directory: str, passphrase_file: str | None) -> tuple[CertificateAuthority, bytes | None]:
    """The CA in ``directory`` and the passphrase that opened its key (None: none given, key not encrypted)."""
    return _open_encrypted(
        lambda passphrase: CertificateAuthority.load(directory, passphrase=passphrase), passphrase_file
    )


def _pem_or_der(path: str, pem: bytes, der: bytes) -> bytes:
    return der if path.lower().endswith(".der") else pem


# -- key -----------------------------------------------------------------------------------------------------


@click.group("key")
def key_group() -> None:
    """Private keys."""


@key_group.command("new")
@click.argument("out", type=click.Path())
@_type_option
@passphrase_option
@force_option
@handle_errors
def key_new(*, out: str, key_type: str, passphrase_file: str | None, force: bool) -> None:
    """Generate a private key into OUT (PKCS#8 PEM, or DER if OUT ends in .der; mode 0600)."""
    check_writable(out, force=force)
    passphrase = read_passphrase(passphrase_file)
    key = generate_key(key_type)
    save_private_key(key, out, passphrase=passphrase, force=force, encoding=KeyEncoding.for_path(out))
    algorithm, _bits = describe_public_key(key.public_key())
    _say(f"wrote {out} ({algorithm}, {'encrypted' if passphrase else 'unencrypted'}, mode 0600)")


# -- csr / cert ----------------------------------------------------------------------------------------------


@click.group("csr")
def csr_group() -> None:
    """Certificate signing requests."""


@csr_group.command("new")
@click.argument("out", type=click.Path())
@click.option("--key", "key_path", required=True, type=click.Path(), help="The private key.")
@click.option("--cn", default=None, help="Subject common name.")
@click.option("--san", "sans", multiple=True, help="subjectAltName: DNS name, IP, email or URI (repeatable).")
@click.option("--subject", default=None, help="Subject DN: '/C=DE/O=Acme/CN=host' or 'CN=host,O=Acme,C=DE'.")
@passphrase_option
@force_option
@handle_errors
def csr_new(
    *,
    out: str,
    key_path: str,
    cn: str | None,
    sans: tuple[str, ...],
    subject: str | None,
    passphrase_file: str | None,
    force: bool,
) -> None:
    """Create a CSR for KEY into OUT."""
    from cryptography.hazmat.primitives.serialization import Encoding

    check_writable(out, force=force)
    csr = build_csr(_load_key(key_path, passphrase_file), cn=cn, sans=sans, subject=subject)
    write_atomic(out, _pem_or_der(out, csr.public_bytes(Encoding.PEM), csr.public_bytes(Encoding.DER)), force=force)
    _say(f"wrote {out} (CSR for {csr.subject.rfc4514_string() or 'an empty subject'})")


@click.group("cert")
def cert_group() -> None:
    """Certificates outside a CA."""


@cert_group.command("selfsign")
@click.argument("out", type=click.Path())
@click.option("--key", "key_path", required=True, type=click.Path(), help="The private key.")
@click.option("--csr", "csr_path", default=None, type=click.Path(), help="Take names from a CSR.")
@click.option("--cn", default=None, help="Subject common name.")
@click.option("--san", "sans", multiple=True, help="subjectAltName: DNS name, IP, email or URI (repeatable).")
@_days_option
@_profile_options
@passphrase_option
@force_option
@handle_errors
def cert_selfsign(
    *,
    out: str,
    key_path: str,
    csr_path: str | None,
    cn: str | None,
    sans: tuple[str, ...],
    days: int | None,
    profile: str,
    passphrase_file: str | None,
    force: bool,
) -> None:
    """Create a self-signed certificate for KEY (names from --cn/--san, or from --csr)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    if csr_path is not None and (cn is not None or sans):
        raise click.UsageError("give either --csr or --cn/--san, not both")
    check_writable(out, force=force)
    key = _load_key(key_path, passphrase_file)
    csr = load_csr(csr_path) if csr_path is not None else None
    cert = self_signed(key, cn=cn, sans=sans, csr=csr, days=days or 365, profile=Profile(profile))
    write_atomic(out, _pem_or_der(out, cert.public_bytes(Encoding.PEM), cert.public_bytes(Encoding.DER)), force=force)
    _say(f"wrote {out} (self-signed {cert.subject.rfc4514_string()}, {days or 365} days)")


# -- ca ------------------------------------------------------------------------------------------------------


@click.group("ca")
def ca_group() -> None:
    """Certificate authorities kept in a directory (ca.pem, ca-key.pem, chain.pem, index.json)."""


@ca_group.command("init")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--name", default="tlskit Root CA", show_default=True, help="The CA's common name (or a DN).")
@_type_option
@click.option("--days", type=click.IntRange(min=1), default=3650, show_default=True, help="Validity in days.")
@click.option("--path-length", type=click.IntRange(min=0), default=None, help="Max intermediate CAs below.")
@_url_options
@passphrase_option
@force_option
@handle_errors
def ca_init(
    *,
    directory: str,
    name: str,
    key_type: str,
    days: int,
    path_length: int | None,
    crl_url: str | None,
    ocsp_url: str | None,
    issuer_url: str | None,
    passphrase_file: str | None,
    force: bool,
) -> None:
    """Create a root CA in DIR (the key is encrypted if a passphrase is given).

    With --crl-url/--ocsp-url every certificate it issues names them; 'tlskit ca serve DIR' answers there.
    """
    ca = CertificateAuthority.create_root(
        directory,
        name=name,
        key_type=key_type,
        days=days,
        path_length=path_length,
        passphrase=read_passphrase(passphrase_file),
        force=force,
        crl_url=crl_url,
        ocsp_url=ocsp_url,
        issuer_url=issuer_url,
    )
    _say(
        f"created root CA {ca.cert.subject.rfc4514_string()!r} in {directory}/ (ca.pem, ca-key.pem, chain.pem)"
        + _urls_said(ca)
    )


@ca_group.command("intermediate")
@click.argument("parent", metavar="PARENT_DIR", type=click.Path())
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--name", default=None, help="The CA's common name (default: derived from DIR).")
@_type_option
@click.option("--days", type=click.IntRange(min=1), default=None, help="Validity in days (default 3650).")
@click.option("--path-length", type=click.IntRange(min=0), default=None, help="Max intermediate CAs below.")
@_url_options
@passphrase_option
@force_option
@handle_errors
def ca_intermediate(
    *,
    parent: str,
    directory: str,
    name: str | None,
    key_type: str,
    days: int | None,
    path_length: int | None,
    crl_url: str | None,
    ocsp_url: str | None,
    issuer_url: str | None,
    passphrase_file: str | None,
    force: bool,
) -> None:
    """Create an intermediate CA in DIR, signed by the CA in PARENT_DIR.

    The passphrase (--passphrase-file, TLSKIT_PASSPHRASE, or the prompt on a terminal) opens the parent's key
    and encrypts the new one: a CA below an encrypted one is never left unencrypted.  Its certificate carries
    the parent's URLs; --crl-url/--ocsp-url are its own, for what it will issue.
    """
    from ..pki.urls import RevocationURLs

    RevocationURLs(crl=crl_url, ocsp=ocsp_url, issuer=issuer_url)  # bad URLs: say so before asking for a passphrase
    parent_ca, passphrase = _open_ca(parent, passphrase_file)
    child = parent_ca.create_intermediate(
        directory,
        name=name or f"tlskit Intermediate CA {Path(directory).resolve().name}",
        key_type=key_type,
        days=days,
        path_length=path_length,
        passphrase=passphrase,
        force=force,
        crl_url=crl_url,
        ocsp_url=ocsp_url,
        issuer_url=issuer_url,
    )
    _say(
        f"created intermediate CA {child.cert.subject.rfc4514_string()!r} in {directory}/ "
        f"(signed by {parent}; key {'encrypted' if child.key_encrypted else 'unencrypted'})" + _urls_said(child)
    )


@ca_group.command("issue")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option(
    "--out", "prefix", metavar="PREFIX", required=True, help="Writes PREFIX.pem (leaf + intermediates), PREFIX-key.pem."
)
@_profile_options
@_days_option
@_type_option
@passphrase_option
@force_option
@handle_errors
def ca_issue(
    *,
    directory: str,
    names: tuple[str, ...],
    prefix: str,
    profile: str,
    days: int | None,
    key_type: str,
    passphrase_file: str | None,
    force: bool,
) -> None:
    """Issue a key and certificate for NAME... (SANs; the first is also the CN). --passphrase-file: the CA key's."""
    cert_path, key_path = Issued.paths(prefix)
    check_writable(cert_path, force=force)
    check_writable(key_path, force=force)
    ca = _load_ca(directory, passphrase_file)
    issued = ca.issue(names, profile=Profile(profile), days=days, key_type=key_type)
    issued.write(prefix, force=force)
    _say(
        f"wrote {cert_path} ({profile} certificate, serial {serial_hex(issued.cert.serial_number)}, "
        f"+{len(issued.chain) - 1} intermediate(s)) and {key_path} (mode 0600)"
    )


@ca_group.command("sign")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.argument("csr_path", metavar="CSR", type=click.Path())
@click.option("--out", metavar="CERT", required=True, type=click.Path(), help="Certificate + intermediates (PEM).")
@_profile_options
@_days_option
@click.option("--allow-ca", is_flag=True, help="Honour a CSR that asks for CA:true.")
@passphrase_option
@force_option
@handle_errors
def ca_sign(
    *,
    directory: str,
    csr_path: str,
    out: str,
    profile: str,
    days: int | None,
    allow_ca: bool,
    passphrase_file: str | None,
    force: bool,
) -> None:
    """Sign CSR (its signature is checked first) and write the certificate followed by the intermediates."""
    check_writable(out, force=force)
    csr = load_csr(csr_path)
    ca = _load_ca(directory, passphrase_file)
    cert = ca.sign_csr(csr, profile=Profile(profile), days=days, allow_ca=allow_ca, source=csr_path)
    write_atomic(out, certs_to_pem([cert, *ca.intermediates]), force=force)
    _say(f"wrote {out} ({cert.subject.rfc4514_string() or 'empty subject'}, serial {serial_hex(cert.serial_number)})")


@ca_group.command("revoke")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.argument("cert_path", metavar="CERT", required=False, type=click.Path())
@click.option("--serial", metavar="HEX", default=None, help="Serial in hex (as 'tlskit ca list' shows it).")
@click.option("--reason", default="unspecified", show_default=True, help="e.g. keyCompromise, superseded.")
@passphrase_option
@handle_errors
def ca_revoke(
    *, directory: str, cert_path: str | None, serial: str | None, reason: str, passphrase_file: str | None
) -> None:
    """Revoke CERT (or --serial HEX); it is listed on the next CRL ('tlskit ca crl')."""
    if (cert_path is None) == (serial is None):
        raise click.UsageError("give either CERT or --serial HEX")
    flag = parse_reason(reason)
    target = load_certificate(cert_path) if cert_path is not None else parse_serial(serial or "")
    ca = _load_ca(directory, passphrase_file)
    record = ca.revoke(target, reason=flag)
    _say(f"revoked serial {record.serial_hex} ({record.subject or 'empty subject'}, reason {flag.value})")


@ca_group.command("crl")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--out", metavar="CRL", required=True, type=click.Path(), help="The CRL (PEM, or DER if .der).")
@click.option("--days", type=click.IntRange(min=1), default=7, show_default=True, help="Until nextUpdate.")
@passphrase_option
@force_option
@handle_errors
def ca_crl(*, directory: str, out: str, days: int, passphrase_file: str | None, force: bool) -> None:
    """Write a signed CRL of everything revoked in DIR."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    check_writable(out, force=force)
    ca = _load_ca(directory, passphrase_file)
    crl = ca.crl(days=days)
    write_atomic(out, _pem_or_der(out, crl.public_bytes(Encoding.PEM), crl.public_bytes(Encoding.DER)), force=force)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    _say(f"wrote {out} (CRL #{number}, {len(crl)} revoked, valid {days} days)")


@ca_group.command("list")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@passphrase_option
@handle_errors
def ca_list(*, directory: str, as_json: bool, passphrase_file: str | None) -> None:
    """List what the CA in DIR issued, with status."""
    ca = _load_ca(directory, passphrase_file)
    records = ca.records()
    if as_json:
        click.echo(json.dumps([{**r.to_json(), "status": r.status()} for r in records], indent=2))
        return
    click.echo(printable(f"{ca.cert.subject.rfc4514_string()}: {len(records)} issued"))
    for what, url in (("CRL", ca.urls.crl), ("OCSP", ca.urls.ocsp), ("caIssuers", ca.urls.issuer)):
        if url:
            click.echo(f"  {what}: {url}")
    rows = [("SERIAL", "EXPIRES", "STATUS", "PROFILE", "SUBJECT", "NAMES")]
    rows += [
        # Subjects and names come from CSRs: shown with control characters escaped.
        (r.serial_hex, f"{r.not_after:%Y-%m-%d}", r.status(), r.profile, printable(r.subject) or "-",
         printable(", ".join(r.names)) or "-")
        for r in records
    ]  # fmt: skip
    # Plain aligned columns (not a boxed table): serials must stay whole and copyable at any terminal width.
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[5])


@ca_group.command("urls")
@click.argument("directory", metavar="DIR", type=click.Path())
@_url_options
@passphrase_option
@handle_errors
def ca_urls(
    *, directory: str, crl_url: str | None, ocsp_url: str | None, issuer_url: str | None, passphrase_file: str | None
) -> None:
    """Show the URLs the CA in DIR writes into what it issues, or set them (--crl-url/--ocsp-url/--issuer-url).

    Setting replaces all of them; certificates issued before keep the URLs they carry.
    """
    ca = _load_ca(directory, passphrase_file)
    if crl_url or ocsp_url or issuer_url:
        ca.set_urls(crl_url=crl_url, ocsp_url=ocsp_url, issuer_url=issuer_url)
        _say(f"{directory}: new certificates will carry these URLs")
    for what, url in (("CRL", ca.urls.crl), ("OCSP", ca.urls.ocsp), ("caIssuers", ca.urls.issuer)):
        click.echo(f"{what + ':':<11}{url or '-'}")


@ca_group.command("ocsp-signer")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True, help="Validity in days.")
@passphrase_option
@handle_errors
def ca_ocsp_signer(*, directory: str, days: int, passphrase_file: str | None) -> None:
    """Make a delegated OCSP responder for the CA in DIR (ocsp.pem, ocsp-key.pem), replacing an older one.

    'tlskit ca serve' then signs OCSP answers with it instead of the CA key.  It carries id-kp-OCSPSigning and
    ocsp-nocheck, so it is short-lived: renew it before it expires.
    """
    ca, passphrase = _open_ca(directory, passphrase_file)
    signer = ca.create_ocsp_signer(days=days, passphrase=passphrase)
    _say(
        f"wrote {directory}/ocsp.pem ({signer.cert.subject.rfc4514_string()}, {days} days) and {directory}/ocsp-key.pem"
        f" ({'encrypted' if passphrase else 'unencrypted'}, mode 0600)"
    )


@ca_group.command("serve")
@click.argument("directories", metavar="DIR...", nargs=-1, required=True, type=click.Path())
@click.option(
    "--listen", metavar="[HOST:]PORT", required=True, help="Where to answer (HOST defaults to 127.0.0.1; 0.0.0.0: all)."
)
@click.option(
    "--crl-hours", type=click.FloatRange(min=0.01), default=24.0, show_default=True,
    help="CRL validity (nextUpdate); a new CRL is signed halfway, and right after a revocation.",
)  # fmt: skip
@click.option(
    "--ocsp-hours", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
    help="OCSP answer validity (nextUpdate); answers are cached for half of it, or until a revocation.",
)  # fmt: skip
@passphrase_option
@handle_errors
def ca_serve(
    *, directories: tuple[str, ...], listen: str, crl_hours: float, ocsp_hours: float, passphrase_file: str | None
) -> None:
    """Publish the CRLs, certificates and OCSP answers of the CAs in DIR... over HTTP, at their URLs' paths.

    Each CA is answered for at the paths of the URLs it was made with (--crl-url/--ocsp-url); CAs may share an
    OCSP URL.  A delegated responder (tlskit ca ocsp-signer) signs OCSP answers when there is one.  Revocations
    made meanwhile ('tlskit ca revoke') are answered at once.  SIGTERM/SIGINT stop it.
    """
    import datetime as dt
    import logging
    import signal
    import threading

    from ..net.responder import RevocationResponder, start_responder
    from .net_cmds import log_to_stderr, parse_address

    host, port = parse_address(listen, default_host="127.0.0.1")
    opened = [_open_ca(directory, passphrase_file) for directory in directories]
    cas = [ca for ca, _ in opened]
    signers = [ca.ocsp_signer(passphrase=passphrase) for ca, passphrase in opened]
    responder = RevocationResponder(
        cas, signers=signers, crl_validity=dt.timedelta(hours=crl_hours), ocsp_validity=dt.timedelta(hours=ocsp_hours)
    )
    log_to_stderr("ca serve", "tlskit.responder")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with start_responder(responder, host, port) as server:
        where = f"[{host}]" if ":" in host else host
        logging.getLogger("tlskit.responder").info(
            "listening on http://%s:%d (%s)", where, server.port, ", ".join(responder.paths)
        )
        for ca, signer in zip(cas, signers, strict=True):
            who = "its delegated responder" if signer else "its own key"
            logging.getLogger("tlskit.responder").info("%s: OCSP answers signed by %s", ca.directory, who)
        while not stop.wait(0.5):
            pass
    logging.getLogger("tlskit.responder").info("stopped")


# -- pkcs12 --------------------------------------------------------------------------------------------------


@click.group("pkcs12")
def pkcs12_group() -> None:
    """PKCS#12 bundles (.p12/.pfx), AES-256 encrypted."""


@pkcs12_group.command("export")
@click.argument("out", type=click.Path())
@click.option("--cert", "cert_path", required=True, type=click.Path(), help="Certificate (or chain).")
@click.option("--key", "key_path", required=True, type=click.Path(), help="Its private key.")
@click.option("--chain", "chain_path", default=None, type=click.Path(), help="More certificates.")
@passphrase_option
@click.option("--key-passphrase-file", default=None, type=click.Path(), help="If KEY is encrypted.")
@force_option
@handle_errors
def pkcs12_export(
    *,
    out: str,
    cert_path: str,
    key_path: str,
    chain_path: str | None,
    passphrase_file: str | None,
    key_passphrase_file: str | None,
    force: bool,
) -> None:
    """Bundle KEY, CERT and the chain into OUT, protected by the passphrase."""
    from ..pki.pkcs12 import bundle_chain, export_pkcs12

    check_writable(out, force=force)
    certs = load_certificates(cert_path)
    chain = bundle_chain(certs[0], certs[1:] + (load_certificates(chain_path) if chain_path else []))
    key = _load_key(key_path, key_passphrase_file)
    passphrase = read_passphrase(passphrase_file, confirm=True, required=True)
    data = export_pkcs12(
        certs[0], key, passphrase=passphrase or b"", chain=chain, cert_source=cert_path, key_source=key_path
    )
    write_atomic(out, data, private=True, force=force)
    _say(f"wrote {out} (PKCS#12: key, certificate and {len(chain)} more, AES-256, mode 0600)")


@pkcs12_group.command("import")
@click.argument("p12", type=click.Path())
@click.option(
    "--out", "prefix", metavar="PREFIX", required=True, help="Writes PREFIX.pem (certificate + chain), PREFIX-key.pem."
)
@passphrase_option
@force_option
@handle_errors
def pkcs12_import(*, p12: str, prefix: str, passphrase_file: str | None, force: bool) -> None:
    """Extract the key, certificate and chain of P12."""
    from ..pki.pkcs12 import load_pkcs12

    cert_path, key_path = Issued.paths(prefix)
    check_writable(cert_path, force=force)
    check_writable(key_path, force=force)
    passphrase = read_passphrase(passphrase_file, required=True)
    bundle = load_pkcs12(p12, passphrase=passphrase)
    bundle.write(prefix, force=force)
    _say(f"wrote {cert_path} (certificate + {len(bundle.chain)} more) and {key_path} (mode 0600)")


ca_group.add_command(trust_group)

commands: list[click.Command] = [key_group, csr_group, cert_group, ca_group, pkcs12_group]
