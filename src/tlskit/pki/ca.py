"""Certificate authorities: a root, intermediates with path lengths, leaf issuance, CSR signing, revocation, CRLs.

A CA may live only in memory (``directory=None``, handy in tests) or in a directory::

    ca.pem        its certificate
    ca-key.pem    its private key (mode 0600, optionally encrypted; a CA below an encrypted one is encrypted too)
    chain.pem     its certificate followed by its issuers up to and including the root (a root: just ca.pem)
    index.json    what it issued (serial, subject, names, profile, validity) and revocations, plus the CRL number
    certs/        a copy of every certificate it issued, named by serial
    urls.json     where it publishes its CRL, OCSP answers and certificate (if it was given URLs)
    ocsp.pem      a delegated OCSP responder certificate and its key (``ocsp-key.pem``), if one was made

Every change to a CA directory happens under an exclusive lock and is written atomically, so two concurrent
``tlskit ca issue`` runs never lose each other's record; readers that keep a CA open (``tlskit ca serve``) re-read
the index under a shared lock (:meth:`CertificateAuthority.refresh`), so they never see half of a change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .._fileio import check_writable, read_bytes, write_many
from ..errors import ExistingFileError, InputError, PassphraseError
from .certs import (
    BACKDATE,
    CertSpec,
    Profile,
    build_certificate,
    check_csr_signature,
    check_key_matches,
    check_public_key,
    csr_names,
    leaf_subject,
    signing_hash,
    utc_now,
)
from .files import certs_to_pem, load_certificate, load_certificates
from .inspect import serial_hex
from .keys import KeyType, PrivateKey, generate_key, key_is_encrypted, key_to_pem, parse_private_key
from .names import format_san, parse_sans, parse_subject
from .problems import label
from .urls import RevocationURLs

__all__ = [
    "CA_DAYS",
    "LEAF_DAYS",
    "OCSP_SIGNER_DAYS",
    "CertificateAuthority",
    "Issued",
    "IssuedRecord",
    "OcspSigner",
    "parse_reason",
    "parse_serial",
]

#: Default validity of leaf certificates (CA/Browser Forum and Apple limits are 398 days; stay under 366).
LEAF_DAYS = 365
#: Default validity of CA certificates: ten years.
CA_DAYS = 3650
#: Default validity of a delegated OCSP responder certificate: it carries id-pkix-ocsp-nocheck (nobody can ask
#: whether it was revoked), so it is short-lived instead (RFC 6960 4.2.2.2.1).
OCSP_SIGNER_DAYS = 30

_CA_PEM, _KEY_PEM, _CHAIN_PEM, _INDEX = "ca.pem", "ca-key.pem", "chain.pem", "index.json"
_URLS, _OCSP_PEM, _OCSP_KEY = "urls.json", "ocsp.pem", "ocsp-key.pem"
_PROFILE_CA, _PROFILE_OCSP = "ca", "ocsp-signing"


def parse_serial(text: str) -> int:
    """A serial from hex, with or without colons or a ``0x`` prefix."""
    cleaned = text.strip().replace(":", "").removeprefix("0x").removeprefix("0X")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise InputError(
            f"invalid serial {text!r}", fix="give the serial in hex, as 'tlskit ca list' shows it"
        ) from None
    if value <= 0:
        raise InputError(f"invalid serial {text!r}", fix="serials are positive")
    return value


def parse_reason(text: str | x509.ReasonFlags) -> x509.ReasonFlags:
    """A revocation reason from ``key-compromise``, ``keyCompromise`` or ``key_compromise`` (any case)."""
    if isinstance(text, x509.ReasonFlags):
        return text
    wanted = text.replace("-", "").replace("_", "").lower()
    for flag in x509.ReasonFlags:
        if flag.value.lower() == wanted and flag is not x509.ReasonFlags.remove_from_crl:
            return flag
    choices = ", ".join(f.value for f in x509.ReasonFlags if f is not x509.ReasonFlags.remove_from_crl)
    raise InputError(f"unknown revocation reason {text!r}", fix=f"use one of: {choices}")


@dataclass(frozen=True, kw_only=True)
class IssuedRecord:
    """One certificate a CA issued, as kept in ``index.json``."""

    serial: int
    subject: str
    names: tuple[str, ...]
    profile: str  # a Profile value, or "ca" for an intermediate
    not_before: dt.datetime
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None

    @property
    def serial_hex(self) -> str:
        """The serial as upper-case hex, the way OpenSSL prints it."""
        return serial_hex(self.serial)

    def status(self, now: dt.datetime | None = None) -> str:
        """``revoked``, ``expired``, ``not yet valid`` or ``valid`` at ``now``."""
        at = utc_now(now)
        if self.revoked_at is not None:
            return "revoked"
        if at > self.not_after:
            return "expired"
        return "not yet valid" if at < self.not_before else "valid"

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, *, profile: str) -> IssuedRecord:
        """The record of a freshly issued ``cert``."""
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = tuple(format_san(n) for n in sans)
        except x509.ExtensionNotFound:
            names = ()
        return cls(
            serial=cert.serial_number,
            subject=cert.subject.rfc4514_string(),
            names=names,
            profile=profile,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (datetimes as ISO 8601, serial as hex)."""
        return {
            "serial": self.serial_hex,
            "subject": self.subject,
            "names": list(self.names),
            "profile": self.profile,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "reason": self.reason.value if self.reason else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IssuedRecord:
        """Inverse of :meth:`to_json`."""
        return cls(
            serial=int(data["serial"], 16),
            subject=data["subject"],
            names=tuple(data.get("names", ())),
            profile=data.get("profile", ""),
            not_before=dt.datetime.fromisoformat(data["not_before"]),
            not_after=dt.datetime.fromisoformat(data["not_after"]),
            revoked_at=dt.datetime.fromisoformat(data["revoked_at"]) if data.get("revoked_at") else None,
            reason=x509.ReasonFlags(data["reason"]) if data.get("reason") else None,
        )


@dataclass(frozen=True)
class Issued:
    """A freshly issued leaf: its certificate, its new private key, and ``chain`` (leaf + intermediates, no root)."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]

    @staticmethod
    def paths(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Where :meth:`write` puts things: ``PREFIX.pem`` and ``PREFIX-key.pem``."""
        p = os.fspath(prefix)
        return Path(f"{p}.pem"), Path(f"{p}-key.pem")

    def write(
        self, prefix: str | os.PathLike[str], *, force: bool = False, passphrase: bytes | None = None
    ) -> tuple[Path, Path]:
        """Write the chain and the key (0600) all-or-nothing; refuses to overwrite without ``force``."""
        cert_path, key_path = self.paths(prefix)
        write_many(
            [
                (cert_path, certs_to_pem(list(self.chain)), False),
                (key_path, key_to_pem(self.key, passphrase=passphrase), True),
            ],
            force=force,
        )
        return cert_path, key_path


@dataclass(frozen=True)
class OcspSigner:
    """A delegated OCSP responder: its certificate (issued by the CA, id-kp-OCSPSigning) and private key."""

    cert: x509.Certificate
    key: PrivateKey


def _urls(crl_url: str | None, ocsp_url: str | None, issuer_url: str | None) -> RevocationURLs:
    return RevocationURLs(crl=crl_url, ocsp=ocsp_url, issuer=issuer_url)


def _is_ca(cert: x509.Certificate) -> tuple[bool, int | None]:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False, None
    return bc.ca, bc.path_length


def _name(name: str | x509.Name) -> x509.Name:
    if isinstance(name, x509.Name):
        return name
    if name.startswith("/") or "=" in name.split(",")[0]:
        return parse_subject(name)
    return leaf_subject([], name)


class CertificateAuthority:
    """A CA: ``cert``, ``key``, ``chain`` (this CA first, up to and including the root) and its ``directory``.

    ``key_encrypted`` says whether ``ca-key.pem`` is stored encrypted; an intermediate created below such a CA
    must be given a ``passphrase`` too (or ``unencrypted_key=True``, on purpose).
    """

    def __init__(
        self,
        *,
        cert: x509.Certificate,
        key: PrivateKey,
        chain: Sequence[x509.Certificate],
        directory: Path | None = None,
        records: Sequence[IssuedRecord] = (),
        crl_number: int = 0,
        key_encrypted: bool = False,
        urls: RevocationURLs | None = None,
    ) -> None:
        self.cert = cert
        self.urls = urls or RevocationURLs()
        """Where this CA publishes (carried by every certificate it issues or signs)."""
        self.key = key
        self.key_encrypted = key_encrypted
        self.chain: tuple[x509.Certificate, ...] = tuple(chain)
        self.directory = directory
        self._records = list(records)
        self._crl_number = crl_number

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.cert.subject.rfc4514_string()!r}, directory={self.directory})"

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """This CA's chain without the root: what a leaf's chain file carries after the leaf."""
        return self.chain[:-1] if self.chain[-1].subject == self.chain[-1].issuer else self.chain

    @property
    def root(self) -> x509.Certificate:
        """The last certificate of the chain (the trust anchor)."""
        return self.chain[-1]

    # -- creation and loading ---------------------------------------------------------------------------

    @classmethod
    def create_root(
        cls,
        directory: str | os.PathLike[str] | None,
        *,
        name: str | x509.Name = "tlskit Root CA",
        key_type: KeyType | str = KeyType.EC_P256,
        days: int = CA_DAYS,
        path_length: int | None = None,
        passphrase: bytes | None = None,
        now: dt.datetime | None = None,
        force: bool = False,
        crl_url: str | None = None,
        ocsp_url: str | None = None,
        issuer_url: str | None = None,
    ) -> CertificateAuthority:
        """A new self-signed root CA, saved in ``directory`` unless it is None.

        ``name`` is a common name, or a whole DN (``/O=Acme/CN=Acme Root`` or ``CN=Acme Root,O=Acme``).  The key
        is written encrypted when ``passphrase`` is given.  ``crl_url``, ``ocsp_url`` and ``issuer_url`` (http
        only; ``issuer_url`` defaults to one next to the CRL) go into every certificate the CA issues or signs.
        """
        urls = _urls(crl_url, ocsp_url, issuer_url)
        target = cls._prepare_directory(directory, force=force)
        key = generate_key(key_type)
        spec = CertSpec(subject=_name(name), profile=None, ca=True, path_length=path_length, days=days)
        cert = build_certificate(spec, public_key=key.public_key(), issuer_key=key, now=now)
        ca = cls(
            cert=cert,
            key=key,
            chain=[cert],
            directory=target,
            key_encrypted=bool(target and passphrase),
            urls=urls.with_default_issuer(cert),
        )
        ca._save_new(passphrase=passphrase, force=force)
        return ca

    def create_intermediate(
        self,
        directory: str | os.PathLike[str] | None,
        *,
        name: str | x509.Name,
        key_type: KeyType | str = KeyType.EC_P256,
        path_length: int | None = None,
        days: int | None = None,
        passphrase: bytes | None = None,
        unencrypted_key: bool = False,
        now: dt.datetime | None = None,
        force: bool = False,
        crl_url: str | None = None,
        ocsp_url: str | None = None,
        issuer_url: str | None = None,
    ) -> CertificateAuthority:
        """A new CA signed by this one.  Its path length defaults to one less than this CA's (if limited).

        Its certificate carries this CA's URLs; ``crl_url``/``ocsp_url``/``issuer_url`` are the new CA's own,
        for the certificates it will issue.

        Its key is written encrypted with ``passphrase``.  When this CA's own key is encrypted
        (:attr:`key_encrypted`), a new key without a passphrase is refused with :class:`PassphraseError`: a CA
        below a protected one would otherwise be the easier key to steal, and able to issue for the same
        clients.  ``unencrypted_key=True`` writes it unencrypted all the same, on purpose.
        """
        if directory is not None and self.key_encrypted and not passphrase and not unencrypted_key:
            raise PassphraseError(
                f"{self._label}: this CA's key is encrypted, but the new CA key would be written unencrypted",
                fix="give passphrase= for the new key (or unencrypted_key=True to write it unencrypted on purpose)",
            )
        _, own_limit = _is_ca(self.cert)
        if own_limit == 0:
            raise InputError(
                f"{self._label}: path length 0 allows no intermediate CAs below it",
                fix="sign the intermediate with a CA higher up, or recreate this CA with a larger path_length=",
            )
        if own_limit is not None:
            if path_length is not None and path_length > own_limit - 1:
                raise InputError(
                    f"path length {path_length} exceeds what {self._label} allows ({own_limit - 1})",
                    fix=f"give path_length={own_limit - 1} or less",
                )
            path_length = own_limit - 1 if path_length is None else path_length
        urls = _urls(crl_url, ocsp_url, issuer_url)
        subject = _name(name)
        if any(c.subject == subject for c in self.chain):
            raise InputError(
                f"the name {subject.rfc4514_string()!r} is already used in this CA's chain",
                fix="give the intermediate its own name=",
            )
        target = self._prepare_directory(directory, force=force)
        key = generate_key(key_type)
        spec = CertSpec(
            subject=subject,
            profile=None,
            ca=True,
            path_length=path_length,
            days=days or CA_DAYS,
            urls=self._issuing_urls,
        )
        cert = build_certificate(spec, public_key=key.public_key(), issuer_key=self.key, issuer=self.cert, now=now)
        child = CertificateAuthority(
            cert=cert,
            key=key,
            chain=[cert, *self.chain],
            directory=target,
            key_encrypted=bool(target and passphrase),
            urls=urls.with_default_issuer(cert),
        )
        child._save_new(passphrase=passphrase, force=force)
        self._record(cert, profile=_PROFILE_CA)
        return child

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, passphrase: bytes | None = None) -> CertificateAuthority:
        """Open a CA directory (``ca.pem`` and ``ca-key.pem`` at least; ``chain.pem``/``index.json`` if there)."""
        d = Path(directory)
        if not d.is_dir():
            raise InputError(f"{d}: no such CA directory", fix="create one with 'tlskit ca init DIR'")
        if not (d / _CA_PEM).exists():
            raise InputError(f"{d}: not a CA directory (no {_CA_PEM})", fix="create one with 'tlskit ca init DIR'")
        cert = load_certificate(d / _CA_PEM)
        if not _is_ca(cert)[0]:
            raise InputError(f"{d / _CA_PEM}: not a CA certificate (basicConstraints CA:false)", fix="use a CA")
        key_data = read_bytes(d / _KEY_PEM, what="key file")
        key = parse_private_key(key_data, passphrase=passphrase, source=str(d / _KEY_PEM))
        check_key_matches(cert, key, cert_source=str(d / _CA_PEM), key_source=str(d / _KEY_PEM))
        chain = load_certificates(d / _CHAIN_PEM) if (d / _CHAIN_PEM).exists() else [cert]
        if chain[0] != cert:
            raise InputError(f"{d / _CHAIN_PEM}: does not start with {_CA_PEM}", fix="rewrite chain.pem")
        records, crl_number = cls._read_index(d)
        return cls(
            cert=cert,
            key=key,
            chain=chain,
            directory=d,
            records=records,
            crl_number=crl_number,
            key_encrypted=key_is_encrypted(key_data),
            urls=cls._read_urls(d),
        )

    # -- issuing ----------------------------------------------------------------------------------------

    def issue(
        self,
        names: Sequence[str | x509.GeneralName],
        *,
        profile: Profile = Profile.SERVER,
        days: int | None = None,
        key_type: KeyType | str = KeyType.EC_P256,
        cn: str | None = None,
        now: dt.datetime | None = None,
    ) -> Issued:
        """A new key and a leaf certificate for ``names`` (SANs; the first is also the CN unless ``cn`` is given)."""
        sans = parse_sans(names)
        if not sans and cn is None:
            raise InputError("no names to issue a certificate for", fix="give at least one DNS name, IP or email")
        key = generate_key(key_type)
        spec = CertSpec(
            subject=leaf_subject(sans, cn), sans=tuple(sans), profile=profile, days=days or LEAF_DAYS,
            urls=self._issuing_urls,
        )  # fmt: skip
        cert = build_certificate(spec, public_key=key.public_key(), issuer_key=self.key, issuer=self.cert, now=now)
        self._record(cert, profile=str(profile))
        return Issued(cert=cert, key=key, chain=(cert, *self.intermediates))

    def sign_csr(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        profile: Profile = Profile.SERVER,
        days: int | None = None,
        allow_ca: bool = False,
        now: dt.datetime | None = None,
        source: str = "CSR",
    ) -> x509.Certificate:
        """Sign a CSR after checking its signature.  Its subject and SANs are kept; everything else is ours.

        A CSR asking for CA:true is refused unless ``allow_ca``; then it becomes an intermediate CA.
        ``source`` (the CSR's file name) names it in errors.
        """
        check_csr_signature(csr, source=source)
        try:
            requested = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            requested = None
        wants_ca = requested is not None and requested.ca
        if wants_ca and not allow_ca:
            raise InputError(
                f"{source}: the CSR asks for a CA certificate (CA:true)", fix="pass allow_ca=True if intended"
            )
        sans = tuple(csr_names(csr))
        if wants_ca:
            spec = CertSpec(
                subject=csr.subject, profile=None, ca=True, path_length=requested.path_length if requested else None,
                days=days or CA_DAYS, urls=self._issuing_urls,
            )  # fmt: skip
        else:
            if not sans and profile is not Profile.CLIENT:
                raise InputError(
                    "the CSR has no subjectAltName, and TLS clients ignore the CN",
                    fix="recreate the CSR with a subjectAltName (sans=)",
                )
            spec = CertSpec(
                subject=csr.subject, sans=sans, profile=profile, days=days or LEAF_DAYS, urls=self._issuing_urls
            )
        public = check_public_key(csr.public_key(), "CSR")
        cert = build_certificate(spec, public_key=public, issuer_key=self.key, issuer=self.cert, now=now)
        self._record(cert, profile=_PROFILE_CA if wants_ca else str(profile))
        return cert

    # -- revocation -------------------------------------------------------------------------------------

    def revoke(
        self,
        cert_or_serial: x509.Certificate | int,
        *,
        reason: x509.ReasonFlags | str = x509.ReasonFlags.unspecified,
        now: dt.datetime | None = None,
    ) -> IssuedRecord:
        """Mark a certificate this CA issued as revoked; it appears on every CRL made afterwards."""
        flag = parse_reason(reason)
        if isinstance(cert_or_serial, x509.Certificate):
            cert = cert_or_serial
            if cert.issuer != self.cert.subject:
                raise InputError(
                    f"the certificate was issued by {cert.issuer.rfc4514_string()}, not by {self._label}",
                    fix="revoke it with the CA that issued it",
                )
            serial = cert.serial_number
        else:
            serial = cert_or_serial
        with self._locked():
            for i, rec in enumerate(self._records):
                if rec.serial == serial:
                    if rec.revoked_at is not None:
                        raise InputError(
                            f"serial {serial_hex(serial)} is already revoked"
                            f" (since {rec.revoked_at:%Y-%m-%d %H:%M} UTC)",
                            fix="nothing to do",
                        )
                    updated = replace(rec, revoked_at=utc_now(now).replace(microsecond=0), reason=flag)
                    self._records[i] = updated
                    self._write_index()
                    return updated
        raise InputError(f"serial {serial_hex(serial)} was not issued by {self._label}", fix="see 'tlskit ca list DIR'")

    def crl(
        self, *, days: int = 7, now: dt.datetime | None = None, validity: dt.timedelta | None = None
    ) -> x509.CertificateRevocationList:
        """A signed CRL of every revoked certificate, with the next CRL number (persisted in the directory).

        nextUpdate is ``days`` from now, or ``validity`` when given (a publishing server renews it often).
        """
        at = utc_now(now).replace(microsecond=0)
        span = validity if validity is not None else dt.timedelta(days=days)
        if span <= dt.timedelta(0):
            raise InputError(f"a CRL validity of {span}", fix="give days=1 or more")
        with self._locked():
            self._crl_number += 1
            builder = (
                x509.CertificateRevocationListBuilder()
                .issuer_name(self.cert.subject)
                .last_update(at - BACKDATE)
                .next_update(at + span)
                .add_extension(x509.CRLNumber(self._crl_number), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
                )
            )
            for rec in self._records:
                if rec.revoked_at is None:
                    continue
                entry = x509.RevokedCertificateBuilder().serial_number(rec.serial).revocation_date(rec.revoked_at)
                # RFC 5280 5.3.1: omit the reason code rather than say "unspecified".
                if rec.reason not in (None, x509.ReasonFlags.unspecified):
                    entry = entry.add_extension(x509.CRLReason(rec.reason), critical=False)
                builder = builder.add_revoked_certificate(entry.build())
            crl = builder.sign(self.key, signing_hash(self.key))
            self._write_index()
        return crl

    def records(self) -> list[IssuedRecord]:
        """Everything this CA issued, oldest first."""
        return list(self._records)

    def refresh(self) -> bool:
        """Re-read the index (under the directory's shared lock, so never half of a change made elsewhere, e.g. by
        a concurrent ``tlskit ca revoke``).  Returns True if the records changed."""
        before = (self._records, self._crl_number)
        with self._locked(shared=True):
            pass
        return (self._records, self._crl_number) != before

    def index_version(self) -> tuple[int, int, int] | None:
        """A cheap fingerprint of ``index.json`` (inode, mtime, size) that changes whenever a writer replaces it."""
        if self.directory is None:
            return None
        try:
            st = os.stat(self.directory / _INDEX)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def set_urls(
        self, *, crl_url: str | None = None, ocsp_url: str | None = None, issuer_url: str | None = None
    ) -> RevocationURLs:
        """Give an existing CA its publication URLs (replacing the old ones): certificates it issues from now on
        carry them; those it issued before keep what they carry.  Returns the URLs as stored."""
        urls = _urls(crl_url, ocsp_url, issuer_url).with_default_issuer(self.cert)
        if self.directory is not None:
            with self._locked():
                write_many([(self.directory / _URLS, self._urls_bytes(urls), False)], force=True)
        self.urls = urls
        return urls

    # -- OCSP ---------------------------------------------------------------------------------------------

    def create_ocsp_signer(
        self,
        *,
        days: int = OCSP_SIGNER_DAYS,
        key_type: KeyType | str = KeyType.EC_P256,
        passphrase: bytes | None = None,
        now: dt.datetime | None = None,
    ) -> OcspSigner:
        """A delegated OCSP responder certificate issued by this CA (``ocsp.pem``/``ocsp-key.pem`` in its
        directory, replacing an older one), so OCSP answers can be signed without the CA key at hand.

        It carries id-kp-OCSPSigning and id-pkix-ocsp-nocheck and lives ``days`` (default 30): renew it before.
        Its key is encrypted with ``passphrase``; a CA whose own key is encrypted requires one.
        """
        if self.directory is not None and self.key_encrypted and not passphrase:
            raise PassphraseError(
                f"{self._label}: this CA's key is encrypted, but the OCSP signing key would be written unencrypted",
                fix="give passphrase= for the new key",
            )
        key = generate_key(key_type)
        cn = x509.NameOID.COMMON_NAME
        rest = [a for a in self.cert.subject if a.oid != cn]
        name = x509.Name([*rest, x509.NameAttribute(cn, f"{label(self.cert)[:48]} OCSP Responder")])
        spec = CertSpec(subject=name, profile=None, days=days, ocsp_signer=True)
        cert = build_certificate(spec, public_key=key.public_key(), issuer_key=self.key, issuer=self.cert, now=now)
        if self.directory is not None:
            write_many(
                [
                    (self.directory / _OCSP_KEY, key_to_pem(key, passphrase=passphrase), True),
                    (self.directory / _OCSP_PEM, cert.public_bytes(serialization.Encoding.PEM), False),
                ],
                force=True,
            )
        self._record(cert, profile=_PROFILE_OCSP)
        return OcspSigner(cert=cert, key=key)

    def ocsp_signer(self, *, passphrase: bytes | None = None) -> OcspSigner | None:
        """The delegated OCSP responder kept in the directory (see :meth:`create_ocsp_signer`), or None."""
        if self.directory is None or not (self.directory / _OCSP_PEM).exists():
            return None
        cert = load_certificate(self.directory / _OCSP_PEM)
        source = str(self.directory / _OCSP_KEY)
        key = parse_private_key(
            read_bytes(self.directory / _OCSP_KEY, what="key file"), passphrase=passphrase, source=source
        )
        check_key_matches(cert, key, cert_source=str(self.directory / _OCSP_PEM), key_source=source)
        return OcspSigner(cert=cert, key=key)

    # -- persistence ------------------------------------------------------------------------------------

    @property
    def _issuing_urls(self) -> RevocationURLs | None:
        return self.urls or None

    @property
    def _label(self) -> str:
        return str(self.directory) if self.directory else self.cert.subject.rfc4514_string()

    @staticmethod
    def _prepare_directory(directory: str | os.PathLike[str] | None, *, force: bool) -> Path | None:
        """Check (before any key is generated) that the CA files can be written, creating the directory."""
        if directory is None:
            return None
        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise InputError(f"{d}: exists and is not a directory", fix="choose another CA directory")
        if (d / _CA_PEM).exists() and not force:
            raise ExistingFileError(f"{d}: already holds a CA", fix="choose another directory, or pass force=True")
        if d.is_dir() and not force and any(d.iterdir()):
            # The CA would mix its private key and index with unrelated files, and --force would later clobber them.
            raise ExistingFileError(f"{d}: directory is not empty", fix="choose a new or empty directory")
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            (d / "certs").mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{d}: cannot create directory ({exc.strerror})", fix="choose a writable place") from exc
        for f in (_CA_PEM, _KEY_PEM, _CHAIN_PEM, _INDEX):
            check_writable(d / f, force=True)
        return d

    def _save_new(self, *, passphrase: bytes | None, force: bool) -> None:
        if self.directory is None:
            return
        d = self.directory
        write_many(
            [
                (d / _KEY_PEM, key_to_pem(self.key, passphrase=passphrase), True),
                (d / _CA_PEM, self.cert.public_bytes(serialization.Encoding.PEM), False),
                (d / _CHAIN_PEM, certs_to_pem(list(self.chain)), False),
                (d / _INDEX, self._index_bytes(), False),
                *([(d / _URLS, self._urls_bytes(self.urls), False)] if self.urls else []),
            ],
            force=force,
        )

    @staticmethod
    def _urls_bytes(urls: RevocationURLs) -> bytes:
        return json.dumps(urls.to_json(), indent=2).encode() + b"\n"

    @staticmethod
    def _read_urls(d: Path) -> RevocationURLs:
        path = d / _URLS
        if not path.exists():
            return RevocationURLs()
        try:
            return RevocationURLs.from_json(json.loads(read_bytes(path, what="CA URLs")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: unreadable CA URLs ({exc})", fix="restore it, or recreate the CA") from exc

    @staticmethod
    def _read_index(d: Path) -> tuple[list[IssuedRecord], int]:
        path = d / _INDEX
        if not path.exists():
            return [], 0
        try:
            data = json.loads(read_bytes(path, what="CA index"))
            return [IssuedRecord.from_json(r) for r in data["certificates"]], int(data.get("crl_number", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: corrupt CA index ({exc})", fix="restore it from a backup") from exc

    def _index_bytes(self) -> bytes:
        data = {"format": 1, "crl_number": self._crl_number, "certificates": [r.to_json() for r in self._records]}
        return json.dumps(data, indent=2).encode() + b"\n"

    def _write_index(self, extra: Sequence[tuple[Path, bytes, bool]] = ()) -> None:
        if self.directory is not None:
            write_many([*extra, (self.directory / _INDEX, self._index_bytes(), False)], force=True)

    @contextlib.contextmanager
    def _locked(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the directory's lock and re-read the index, so concurrent writers never drop records.

        ``shared=True`` is for readers: many may hold it at once, never together with a writer.
        """
        if self.directory is None:
            yield
            return
        try:
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise InputError(f"{self.directory}: cannot lock ({exc.strerror})", fix="check permissions") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            self._records, self._crl_number = self._read_index(self.directory)
            yield
        finally:
            os.close(fd)

    def _record(self, cert: x509.Certificate, *, profile: str) -> None:
        with self._locked():
            self._records.append(IssuedRecord.from_certificate(cert, profile=profile))
            extra: list[tuple[Path, bytes, bool]] = []
            if self.directory is not None:
                (self.directory / "certs").mkdir(mode=0o700, exist_ok=True)
                pem = cert.public_bytes(serialization.Encoding.PEM)
                extra.append((self.directory / "certs" / f"{serial_hex(cert.serial_number)}.pem", pem, False))
            self._write_index(extra)
