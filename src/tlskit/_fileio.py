"""Safe file writes: atomic, never clobbering without ``force``, private files created 0600.

A crash or a bad input can never leave a half-written key: data goes to a temporary file in the same
directory, is fsynced, then renamed over the target (rename is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import os
import stat
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
    """Write several files all-or-nothing as far as POSIX allows.

    Every target is checked first, every temporary file written and fsynced, and only then renamed into
    place, so a failure in any write leaves none of the targets changed.
    """
    plan = [(check_writable(p, force=force), data, private) for p, data, private in items]
    temps: list[tuple[str, Path]] = []
    current: Path | None = None
    try:
        for target, data, private in plan:
            current = target
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
            temps.append((tmp, target))
            try:
                # mkstemp creates 0600; widen public files to the usual umask-governed mode.
                if not private:
                    umask = os.umask(0)
                    os.umask(umask)
                    os.fchmod(fd, 0o666 & ~umask)
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
        for tmp, target in temps:
            os.replace(tmp, target)
        temps.clear()
    except OSError as exc:
        raise InputError(f"{current}: cannot write ({exc.strerror})", fix="check the directory and free space") from exc
    finally:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return [t for t, _, _ in plan]


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
