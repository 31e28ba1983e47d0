"""Safe file writes: atomic, never clobbering without ``force``, private files created 0600.

A crash or a bad input can never leave a half-written key: data goes to a temporary file in the same
directory, created with ``O_CREAT | O_EXCL`` (mode 0600 for private files; public ones 0666 less the umask,
which is only ever applied by the kernel, never changed), fsynced, and only then placed.  Without ``force`` the
placement is an atomic no-clobber (a hard link, or ``renameat2(RENAME_NOREPLACE)`` where hard links are
missing), so a file that appears after the check is never overwritten; with ``force`` it is an atomic rename.
The directory is fsynced afterwards, so the new names survive a crash too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from .errors import ExistingFileError, InputError

__all__ = ["check_writable", "open_private_append", "read_bytes", "write_atomic", "write_many"]


def read_bytes(path: str | os.PathLike[str], *, what: str = "file") -> bytes:
    """Read a file, translating OS errors into one actionable :class:`InputError`."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{p}: no such {what}", fix="check the path") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{p}: is a directory, expected a {what}", fix="name a file") from exc
    except PermissionError as exc:
        raise InputError(f"{p}: permission denied", fix="check the file's permissions") from exc
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror})", fix="check the path") from exc


def check_writable(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Fail early (before any work) if ``path`` exists without ``force`` or its directory is unwritable."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory", fix="name a file to write")
    if p.exists() and not force:
        raise ExistingFileError(f"{p}: already exists", fix="choose another name, or pass force=True to overwrite")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{parent}: directory does not exist", fix="create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{parent}: directory is not writable", fix="choose a writable directory")
    # os.access says yes to root even where writes fail (read-only or special file systems): really try.
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise InputError(
            f"{parent}: directory is not writable ({exc.strerror})", fix="choose a writable directory"
        ) from exc
    return p


def write_atomic(path: str | os.PathLike[str], data: bytes, *, private: bool = False, force: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically.  ``private`` files are created with mode 0600."""
    return write_many([(path, data, private)], force=force)[0]


def write_many(items: Iterable[tuple[str | os.PathLike[str], bytes, bool]], *, force: bool = False) -> list[Path]:
    """Write several ``(path, data, private)`` files all-or-nothing as far as POSIX allows.

    Every target is checked first, every temporary file written and fsynced, and only then placed, so a failure
    in any write leaves none of the targets changed.  Without ``force``, if a target appears between the check
    and the placement, :class:`ExistingFileError` is raised and the files already placed by this call are taken
    back.  (With ``force``, files already replaced cannot be restored: a failure while placing is a POSIX limit.)
    """
    plan = [(check_writable(p, force=force), data, private) for p, data, private in items]
    temps: list[tuple[Path, Path, os.stat_result]] = []  # (temporary file, target, its identity)
    placed: list[tuple[Path, os.stat_result]] = []  # new files this call created (not replaced): to take back
    current: Path | None = None
    try:
        for target, data, private in plan:
            current = target
            temps.append(_write_temporary(target, data, private=private))
        while temps:
            tmp, current, identity = temps[0]
            linked = _place(tmp, current, force=force)
            if not force:
                placed.append((current, identity))
            if linked:
                os.unlink(tmp)  # the target is a second name of it now
            temps.pop(0)
        for directory in dict.fromkeys(target.parent for target, _, _ in plan):
            current = directory
            _fsync_directory(directory)
        placed.clear()
    except FileExistsError as exc:
        raise ExistingFileError(
            f"{current}: already exists", fix="choose another name, or pass force=True to overwrite"
        ) from exc
    except OSError as exc:
        raise InputError(f"{current}: cannot write ({exc.strerror})", fix="check the directory and free space") from exc
    finally:
        for target, identity in placed:
            _remove_if_same(target, identity)
        for tmp, _, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return [t for t, _, _ in plan]


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_PRIVATE_MODE, _PUBLIC_MODE = 0o600, 0o666
#: link() errors meaning "this file system has no hard links" (FAT, some FUSE and SMB mounts).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _write_temporary(target: Path, data: bytes, *, private: bool) -> tuple[Path, Path, os.stat_result]:
    """A new file next to ``target`` holding ``data``, fsynced: ``(its path, target, its identity)``."""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            # The kernel applies the umask to 0o666 for public files; a private file is never more than 0600.
            fd = os.open(tmp, _CREATE_FLAGS, _PRIVATE_MODE if private else _PUBLIC_MODE)
        except FileExistsError:
            continue
        break
    else:
        raise InputError(f"{target.parent}: no free temporary file name", fix="remove stale .*.tmp files there")
    try:
        if private:
            os.fchmod(fd, _PRIVATE_MODE)  # exactly 0600 even under a umask such as 0o277 (which would give 0400)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        identity = os.fstat(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp, target, identity


def _place(tmp: Path, target: Path, *, force: bool) -> bool:
    """Put ``tmp`` at ``target``: replacing it with ``force``, else failing with EEXIST if it exists (atomic).

    True when ``tmp`` was hard-linked (it is still there, for the caller to remove), False when it was renamed.
    """
    if force:
        os.replace(tmp, target)
        return False
    try:
        os.link(tmp, target)  # EEXIST if the target exists, even as a dangling symlink: never clobbers
        return True
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if not _rename_noreplace(tmp, target):
            raise InputError(
                f"{target}: this file system has no hard links, so the file cannot be created without a risk of "
                "overwriting one that appears meanwhile",
                fix="write to another directory, or pass force=True to replace atomically",
            ) from exc
        return False


def _rename_noreplace(src: Path, dst: Path) -> bool:
    """``renameat2(src, dst, RENAME_NOREPLACE)``: True when done, False where the system or file system lacks it."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # a C library older than glibc 2.28
        return False
    at_fdcwd, rename_noreplace = -100, 1
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS):  # the kernel or the file system does not support the flag
        return False
    raise OSError(err, os.strerror(err), os.fspath(dst))


def _fsync_directory(directory: Path) -> None:
    """Make the directory's new entries durable (a renamed file is only safe once its directory is synced)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except PermissionError:
        return  # a write-only directory (mode -wx) cannot be opened: durability is left to the system
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot sync a directory
            raise
    finally:
        os.close(fd)


def _remove_if_same(path: Path, identity: os.stat_result) -> None:
    """Take back a file this call placed, unless something else has replaced it since."""
    with contextlib.suppress(OSError):
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) == (identity.st_dev, identity.st_ino):
            os.unlink(path)


def open_private_append(path: str | os.PathLike[str], *, what: str = "file") -> BinaryIO:
    """Open ``path`` for appending, creating it with mode 0600; refuse an existing file others may read.

    For files that hold secrets as they accumulate (a TLS key log): created private from the first byte, never
    through the umask, and never a file that someone else could already be reading.
    """
    p = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(p, flags, 0o600)
    except OSError as exc:
        raise InputError(f"{p}: cannot open the {what} ({exc.strerror})", fix="name a writable file") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
        os.close(fd)
        raise InputError(
            f"{p}: the {what} exists and is not a private regular file (mode {stat.S_IMODE(info.st_mode):o})",
            fix="remove it, or chmod 600 it if it is yours",
        )
    return os.fdopen(fd, "ab")
