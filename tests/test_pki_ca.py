"""CA directories: layout and permissions, reload, records, revocation and CRLs."""

from __future__ import annotations

import datetime as dt
import json
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from conftest import PKI
from tlskit.errors import ExistingFileError, InputError, KeyMismatchError, PassphraseError
from tlskit.pki.ca import CertificateAuthority, parse_reason, parse_serial, serial_hex
from tlskit.pki.certs import Profile
from tlskit.pki.files import load_certificates
from tlskit.pki.keys import generate_key, save_private_key


def test_directory_layout(tmp_path: Path) -> None:
    root = CertificateAuthority.create_root(tmp_path / "root", name="Layout Root")
    sub = root.create_intermediate(tmp_path / "sub", name="Layout Sub")
    for d, expected_chain in ((tmp_path / "root", 1), (tmp_path / "sub", 2)):
        assert stat.S_IMODE((d / "ca-key.pem").stat().st_mode) == 0o600
        assert len(load_certificates(d / "chain.pem")) == expected_chain
        assert load_certificates(d / "ca.pem")[0] == load_certificates(d / "chain.pem")[0]
    assert (tmp_path / "root" / "chain.pem").read_bytes() == (tmp_path / "root" / "ca.pem").read_bytes()
    index = json.loads((tmp_path / "root" / "index.json").read_text())
    assert [r["profile"] for r in index["certificates"]] == ["ca"]
    assert index["certificates"][0]["serial"] == serial_hex(sub.cert.serial_number)
    assert (tmp_path / "root" / "certs" / f"{serial_hex(sub.cert.serial_number)}.pem").exists()


def test_load_round_trip_and_issue(tmp_path: Path) -> None:
    root = CertificateAuthority.create_root(tmp_path / "root")
    sub = root.create_intermediate(tmp_path / "sub", name="Sub")
    loaded = CertificateAuthority.load(tmp_path / "sub")
    assert loaded.cert == sub.cert and loaded.chain == sub.chain
    assert loaded.intermediates == (sub.cert,)
    assert loaded.root == root.cert
    issued = loaded.issue(["svc.example"], profile=Profile.SERVER_AND_CLIENT)
    assert issued.chain == (issued.cert, sub.cert)
    reloaded = CertificateAuthority.load(tmp_path / "sub")
    (record,) = reloaded.records()
    assert record.serial == issued.cert.serial_number
    assert record.names == ("DNS:svc.example",)
    assert record.profile == "server-and-client"
    assert record.status() == "valid"
    assert record.status(dt.datetime.now(dt.UTC) + dt.timedelta(days=400)) == "expired"


def test_existing_ca_is_not_overwritten(tmp_path: Path) -> None:
    first = CertificateAuthority.create_root(tmp_path / "ca")
    before = (tmp_path / "ca" / "ca-key.pem").read_bytes()
    with pytest.raises(ExistingFileError, match="already holds a CA"):
        CertificateAuthority.create_root(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca-key.pem").read_bytes() == before
    second = CertificateAuthority.create_root(tmp_path / "ca", force=True)
    assert second.cert != first.cert


def test_encrypted_ca_key(tmp_path: Path) -> None:
    CertificateAuthority.create_root(tmp_path / "ca", passphrase=b"ca-pass")
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "ca" / "ca-key.pem").read_bytes()
    with pytest.raises(PassphraseError, match="encrypted"):
        CertificateAuthority.load(tmp_path / "ca")
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        CertificateAuthority.load(tmp_path / "ca", passphrase=b"nope")
    assert CertificateAuthority.load(tmp_path / "ca", passphrase=b"ca-pass").issue(["a.example"])


def test_intermediate_under_an_encrypted_ca_gets_an_encrypted_key(tmp_path: Path) -> None:
    """A CA key protected by a passphrase must not get a child CA whose key is not, unless asked explicitly."""
    root = CertificateAuthority.create_root(tmp_path / "root", passphrase=b"root-pass")
    loaded = CertificateAuthority.load(tmp_path / "root", passphrase=b"root-pass")
    assert root.key_encrypted and loaded.key_encrypted
    for parent in (root, loaded):
        with pytest.raises(PassphraseError, match="encrypted") as info:
            parent.create_intermediate(tmp_path / "plain", name="Plain")
        assert "passphrase=" in info.value.fix and "unencrypted_key=True" in info.value.fix
        assert not (tmp_path / "plain").exists()  # refused before anything was written or recorded
    assert (
        loaded.records() == [] and CertificateAuthority.load(tmp_path / "root", passphrase=b"root-pass").records() == []
    )

    sub = loaded.create_intermediate(tmp_path / "sub", name="Sub", passphrase=b"sub-pass")
    assert sub.key_encrypted
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "sub" / "ca-key.pem").read_bytes()
    with pytest.raises(PassphraseError):
        CertificateAuthority.load(tmp_path / "sub")
    assert CertificateAuthority.load(tmp_path / "sub", passphrase=b"sub-pass").key_encrypted

    plain = loaded.create_intermediate(tmp_path / "plain", name="Plain", unencrypted_key=True)  # on purpose
    assert not plain.key_encrypted
    assert not CertificateAuthority.load(tmp_path / "plain").key_encrypted
    assert loaded.create_intermediate(None, name="In memory").directory is None  # writes no key: nothing to protect


def test_load_refuses_bad_directories(tmp_path: Path, pki_dir_key_mismatch: Path) -> None:
    with pytest.raises(InputError, match="no such CA directory"):
        CertificateAuthority.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a CA directory"):
        CertificateAuthority.load(tmp_path / "empty")
    with pytest.raises(KeyMismatchError, match="does not belong"):
        CertificateAuthority.load(pki_dir_key_mismatch)


@pytest.fixture
def pki_dir_key_mismatch(tmp_path: Path) -> Path:
    d = tmp_path / "mismatch"
    CertificateAuthority.create_root(d)
    save_private_key(generate_key(), d / "ca-key.pem", force=True)
    return d


def test_intermediate_path_length_rules(tmp_path: Path) -> None:
    root = CertificateAuthority.create_root(None, name="PL Root", path_length=1)
    with pytest.raises(InputError, match="exceeds"):
        root.create_intermediate(None, name="PL Sub", path_length=3)
    sub = root.create_intermediate(None, name="PL Sub")
    assert sub.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    with pytest.raises(InputError, match="path length 0"):
        sub.create_intermediate(None, name="PL Sub Sub")
    with pytest.raises(InputError, match="already used"):
        root.create_intermediate(None, name="PL Root")


def test_revoke_and_crl(tmp_path: Path) -> None:
    ca = CertificateAuthority.create_root(tmp_path / "ca")
    a = ca.issue(["a.example"]).cert
    b = ca.issue(["b.example"]).cert
    c = ca.issue(["c.example"]).cert
    empty = ca.crl()
    assert len(empty) == 0
    when = dt.datetime(2031, 5, 1, tzinfo=dt.UTC)
    ca.revoke(a, reason="key-compromise", now=when)
    ca.revoke(b.serial_number)  # by serial, reason unspecified
    crl = ca.crl(days=3)
    assert crl.is_signature_valid(ca.key.public_key())
    assert crl.issuer == ca.cert.subject
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert crl.next_update_utc is not None and crl.next_update_utc - crl.last_update_utc > dt.timedelta(days=3)
    entry_a = crl.get_revoked_certificate_by_serial_number(a.serial_number)
    entry_b = crl.get_revoked_certificate_by_serial_number(b.serial_number)
    assert entry_a is not None and entry_b is not None
    assert entry_a.revocation_date_utc == when
    assert entry_a.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    with pytest.raises(x509.ExtensionNotFound):  # "unspecified" is expressed by omitting the reason
        entry_b.extensions.get_extension_for_class(x509.CRLReason)
    assert crl.get_revoked_certificate_by_serial_number(c.serial_number) is None
    # persisted: a reloaded CA knows the revocations and continues the CRL numbering
    again = CertificateAuthority.load(tmp_path / "ca").crl()
    assert again.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    assert len(again) == 2
    statuses = {r.serial: r.status() for r in CertificateAuthority.load(tmp_path / "ca").records()}
    assert statuses == {a.serial_number: "revoked", b.serial_number: "revoked", c.serial_number: "valid"}


def test_revoke_errors(pki_other_cert: x509.Certificate) -> None:
    ca = CertificateAuthority.create_root(None, name="Rev Root")
    cert = ca.issue(["x.example"]).cert
    ca.revoke(cert)
    with pytest.raises(InputError, match="already revoked"):
        ca.revoke(cert.serial_number)
    with pytest.raises(InputError, match="was not issued by"):
        ca.revoke(12345)
    with pytest.raises(InputError, match="revoke it with the CA that issued it"):
        ca.revoke(pki_other_cert)
    with pytest.raises(InputError, match="unknown revocation reason"):
        ca.revoke(cert, reason="bored")


@pytest.fixture
def pki_other_cert(pki: PKI) -> x509.Certificate:
    return load_certificates(pki.other_server_pem)[0]


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("keyCompromise", x509.ReasonFlags.key_compromise),
        ("key-compromise", x509.ReasonFlags.key_compromise),
        ("KEY_COMPROMISE", x509.ReasonFlags.key_compromise),
        ("superseded", x509.ReasonFlags.superseded),
        ("cessation-of-operation", x509.ReasonFlags.cessation_of_operation),
    ],
)
def test_parse_reason(text: str, flag: x509.ReasonFlags) -> None:
    assert parse_reason(text) is flag


def test_serial_formats() -> None:
    assert serial_hex(0x0ABC) == "0ABC"
    assert parse_serial("0a:bc") == parse_serial("0x0ABC") == 0xABC
    with pytest.raises(InputError, match="invalid serial"):
        parse_serial("xyz")


def test_concurrent_issuers_keep_every_record(tmp_path: Path) -> None:
    CertificateAuthority.create_root(tmp_path / "ca")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            ca = CertificateAuthority.load(tmp_path / "ca")  # each with its own, soon stale, view
            for i in range(5):
                ca.issue([f"h{threading.get_ident()}-{i}.example"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(CertificateAuthority.load(tmp_path / "ca").records()) == 20
    assert len(list((tmp_path / "ca" / "certs").glob("*.pem"))) == 20
