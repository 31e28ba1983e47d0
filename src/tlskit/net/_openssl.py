"""Plumbing between cryptography objects and OpenSSL, for :mod:`tlskit.net.context`.

Certificates, keys and CRLs held as objects are loaded into an :class:`ssl.SSLContext` here, with two guarded
workarounds for what the ``ssl`` module cannot do by itself:

* Python < 3.15 has no ``SSLContext.set_groups``; :func:`set_groups` calls OpenSSL's
  ``SSL_CTX_set1_groups_list`` through ctypes on CPython, and reports False (defaults kept) elsewhere.
* ``load_cert_chain`` and CRL loading accept file names only; :func:`pem_file` exposes bytes under a name
  that is anonymous memory on Linux (memfd), or a 0600 temporary file removed right after use.
"""

from __future__ import annotations

import _ssl
import contextlib
import ctypes
import functools
import os
import secrets
import ssl
import sys
import tempfile
from collections.abc import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import InputError
from ..pki.files import certs_to_pem
from ..pki.keys import PrivateKey, key_to_pem

__all__ = ["disable_session_cache", "load_identity", "load_trust", "memfd_available", "pem_file", "set_groups"]

# From OpenSSL's ssl.h; SSL_CTX_set1_groups_list and SSL_CTX_set_session_cache_mode are macros over SSL_CTX_ctrl.
_SSL_CTRL_SET_GROUPS_LIST = 92
_SSL_CTRL_SET_SESS_CACHE_MODE = 44
_SSL_SESS_CACHE_OFF = 0


def set_groups(ctx: ssl.SSLContext, groups: str) -> bool:
    """Restrict the key-exchange groups; False (OpenSSL's defaults kept) where the interpreter cannot.

    ``set_groups`` arrives in Python 3.15; ``set_ecdh_curve`` allows a single curve only.  On CPython the
    ``SSL_CTX *`` is the first field after the object header, so we call OpenSSL's ``SSL_CTX_set1_groups_list``
    through ctypes, after checking we hold the right pointer.  OpenSSL's defaults (X25519, P-256, X448, P-521,
    P-384 on 3.0) are strong too, so the fallback is safe, merely less tidy.
    """
    setter = getattr(ctx, "set_groups", None)
    if setter is not None:
        setter(groups)
        return True
    return _ctx_ctrl(ctx, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode("ascii")) == 1


def disable_session_cache(ctx: ssl.SSLContext) -> bool:
    """Keep no server-side session cache (``SSL_SESS_CACHE_OFF``); False where the interpreter cannot.

    Resumption works through session tickets (stateless: the session travels, encrypted, with the client), which
    every TLS 1.3 client and every TLS 1.2 client of the last decade uses.  The internal cache only serves TLS
    1.2 session-ID resumption, and costs every full handshake an insertion under a lock plus periodic sweeps of
    the whole cache (``SSL_CTX_flush_sessions``); Node keeps no internal cache either.
    """
    return _ctx_ctrl(ctx, _SSL_CTRL_SET_SESS_CACHE_MODE, _SSL_SESS_CACHE_OFF, None) >= 0


def _ctx_ctrl(ctx: ssl.SSLContext, command: int, larg: int, parg: bytes | None) -> int:
    """``SSL_CTX_ctrl`` on the context's own ``SSL_CTX *``; -1 where that pointer cannot be reached safely."""
    lib = _libssl()
    if lib is None:
        return -1
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    # The options read back through the pointer must equal ctx.options, or the layout is not what we think.
    if not ptr or lib.SSL_CTX_get_options(ptr) != ctx.options:
        return -1
    result: int = lib.SSL_CTX_ctrl(ptr, command, larg, parg)
    if result != 1:
        lib.ERR_clear_error()  # leave no stale error for the next ssl call to misreport
    return result


@functools.cache
def _libssl() -> ctypes.CDLL | None:
    if sys.implementation.name != "cpython" or ssl.OPENSSL_VERSION_INFO < (1, 1, 1):
        return None
    try:
        # dlsym on _ssl's handle also searches the libssl it links, so this is the very library in use.
        lib = ctypes.CDLL(getattr(_ssl, "__file__", None))
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
        lib.ERR_clear_error.restype = None
    except (OSError, AttributeError):
        return None
    return lib


def memfd_available() -> bool:
    """True where :func:`pem_file` can keep data off the disk (Linux memfd reachable through /proc)."""
    return hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


@contextlib.contextmanager
def pem_file(data: bytes) -> Iterator[str]:
    """Expose PEM data under a file name, since OpenSSL loads chains and CRLs only from files.

    On Linux the "file" is anonymous memory (memfd): nothing touches the disk.  Elsewhere a 0600 temporary
    file is used and removed right after loading (callers encrypt keys written there).
    """
    if memfd_available():
        fd = os.memfd_create("tlskit-pem", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="tlskit-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield path
    finally:
        os.unlink(path)


def load_identity(ctx: ssl.SSLContext, chain: list[x509.Certificate], key: PrivateKey) -> None:
    """``load_cert_chain`` from objects: the chain (leaf first) and its key, through :func:`pem_file`."""
    # A key that might land on disk (no memfd) is encrypted with a one-time passphrase first.
    one_time = None if memfd_available() else secrets.token_bytes(32)
    with pem_file(certs_to_pem(chain) + key_to_pem(key, passphrase=one_time)) as path:
        try:
            ctx.load_cert_chain(path, password=one_time)
        except ssl.SSLError as exc:
            raise InputError(f"OpenSSL refused the certificate or key ({exc.reason})", fix="check both files") from exc


def load_trust(
    ctx: ssl.SSLContext,
    anchors: list[x509.Certificate],
    *,
    system: bool,
    crls: list[x509.CertificateRevocationList],
    crl_flags: int,
) -> None:
    """Load trust anchors (the system store and/or ``anchors``) and CRLs, setting ``crl_flags`` if any."""
    if system:
        ctx.load_default_certs(
            ssl.Purpose.SERVER_AUTH if ctx.protocol == ssl.PROTOCOL_TLS_CLIENT else ssl.Purpose.CLIENT_AUTH
        )
    if anchors:
        ctx.load_verify_locations(cadata=certs_to_pem(anchors).decode("ascii"))
    if crls:
        # cadata takes certificates only; a (memory) file given as cafile may also hold CRLs.
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls)
        with pem_file(pem) as path:
            ctx.load_verify_locations(cafile=path)
        ctx.verify_flags |= crl_flags
