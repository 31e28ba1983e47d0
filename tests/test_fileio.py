"""``tlskit._fileio``: private files 0600 without touching the umask, atomic no-clobber, directory fsync.

The races are simulated by monkeypatching: a file appears between the check and the placement, a write fails
half-way.  Every failure must leave the directory exactly as it was (no target placed, no temporary file).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tlskit import _fileio
from tlskit._fileio import write_atomic, write_many
from tlskit.errors import ExistingFileError, InputError


@pytest.fixture
def umask() -> Iterator[Any]:
    """Set the process umask for one test (restored afterwards): ``umask(0o077)``."""
    saved = os.umask(0o022)

    def set_umask(value: int) -> None:
        os.umask(value)

    try:
        yield set_umask
    finally:
        os.umask(saved)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _forbid_umask(monkeypatch: pytest.MonkeyPatch) -> None:
    def umask(_mask: int) -> int:
        raise AssertionError("os.umask changes the umask of the whole process (every thread): never call it")

    monkeypatch.setattr(os, "umask", umask)


@pytest.mark.parametrize("private", [False, True])
def test_the_umask_is_never_touched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private: bool) -> None:
    _forbid_umask(monkeypatch)
    write_atomic(tmp_path / "f", b"data", private=private)
    write_atomic(tmp_path / "f", b"again", private=private, force=True)
    assert (tmp_path / "f").read_bytes() == b"again"


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o277, 0o777])
def test_private_files_are_0600_whatever_the_umask(tmp_path: Path, umask: Any, mask: int) -> None:
    umask(mask)
    write_many([(tmp_path / "key.pem", b"secret", True), (tmp_path / "cert.pem", b"public", False)])
    assert _mode(tmp_path / "key.pem") == 0o600
    write_atomic(tmp_path / "key.pem", b"secret 2", private=True, force=True)
    assert _mode(tmp_path / "key.pem") == 0o600


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o000, 0o666)])
def test_public_files_follow_the_umask(tmp_path: Path, umask: Any, mask: int, expected: int) -> None:
    umask(mask)
    write_atomic(tmp_path / "cert.pem", b"public")
    assert _mode(tmp_path / "cert.pem") == expected


def test_private_temporary_file_is_never_readable_by_others(tmp_path: Path, umask: Any, monkeypatch: Any) -> None:
    """The key bytes are written into a file that is 0600 from its creation (not chmod-ed afterwards)."""
    umask(0o000)
    modes: list[int] = []
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    write_atomic(tmp_path / "key.pem", b"secret", private=True)
    assert modes and all(m == 0o600 for m in modes), [oct(m) for m in modes]


def _appear_after_check(monkeypatch: pytest.MonkeyPatch, target: Path, content: bytes = b"theirs") -> None:
    """Someone else creates ``target`` right after tlskit checked it does not exist."""
    real = _fileio.check_writable

    def check_then_race(path: Any, *, force: bool = False) -> Path:
        checked = real(path, force=force)
        if Path(path) == target:
            target.write_bytes(content)
        return checked

    monkeypatch.setattr(_fileio, "check_writable", check_then_race)


def test_a_file_created_after_the_check_is_not_clobbered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "key.pem"
    _appear_after_check(monkeypatch, target)
    with pytest.raises(ExistingFileError, match=r"key\.pem: already exists") as info:
        write_atomic(target, b"ours", private=True)
    assert "force=True" in (info.value.fix or "")
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]  # no temporary file left


def test_a_race_on_one_file_places_none_of_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All-or-nothing: the first file was placed already when the second turns out to exist; it is taken back."""
    first, second = tmp_path / "cert.pem", tmp_path / "key.pem"
    _appear_after_check(monkeypatch, second)
    with pytest.raises(ExistingFileError, match=r"key\.pem"):
        write_many([(first, b"cert", False), (second, b"key", True)])
    assert not first.exists()
    assert second.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]


def test_force_replaces_even_a_file_that_appeared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "key.pem"
    _appear_after_check(monkeypatch, target)
    write_atomic(target, b"ours", private=True, force=True)
    assert target.read_bytes() == b"ours"
    assert _mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]


def test_a_dangling_symlink_is_not_followed_or_replaced(tmp_path: Path) -> None:
    link = tmp_path / "key.pem"
    link.symlink_to(tmp_path / "elsewhere.pem")
    with pytest.raises(ExistingFileError):
        write_atomic(link, b"secret", private=True)
    assert link.is_symlink() and not (tmp_path / "elsewhere.pem").exists()


def test_the_directory_is_fsynced_after_placing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "sub" / "key.pem"
    target.parent.mkdir()
    synced: list[tuple[str, bool]] = []  # (kind, did the target exist at that moment)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        synced.append((kind, target.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_many([(target, b"key", True), (tmp_path / "sub" / "cert.pem", b"cert", False)])
    assert synced.count(("file", False)) == 2  # both files' data, before they are visible
    assert ("dir", True) in synced  # the directory entries, after the placement
    assert synced[-1] == ("dir", True)


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(InputError, match=r"key\.pem: cannot write \(No space left on device\)"):
        write_many([(tmp_path / "cert.pem", b"cert", False), (tmp_path / "key.pem", b"key", True)])
    assert list(tmp_path.iterdir()) == []


def _no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))  # what Linux's vfat answers

    monkeypatch.setattr(os, "link", no_link)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_without_hard_links_renameat2_keeps_no_clobber(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without hard links (FAT, some FUSE and SMB mounts): RENAME_NOREPLACE instead."""
    _no_hard_links(monkeypatch)
    target = tmp_path / "key.pem"
    write_atomic(target, b"ours", private=True)
    assert target.read_bytes() == b"ours" and _mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]
    other = tmp_path / "other.pem"
    _appear_after_check(monkeypatch, other)
    with pytest.raises(ExistingFileError):
        write_atomic(other, b"ours", private=True)
    assert other.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem", "other.pem"]


def test_without_hard_links_or_renameat2_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_hard_links(monkeypatch)
    monkeypatch.setattr(_fileio, "_rename_noreplace", lambda _src, _dst: False)
    with pytest.raises(InputError, match=r"key\.pem: this file system has no hard links") as info:
        write_atomic(tmp_path / "key.pem", b"ours", private=True)
    assert "force=True" in (info.value.fix or "")
    assert list(tmp_path.iterdir()) == []
    write_atomic(tmp_path / "key.pem", b"ours", private=True, force=True)  # the way out the fix names
    assert (tmp_path / "key.pem").read_bytes() == b"ours"
