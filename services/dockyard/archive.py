"""Source archives: packed by the client, unpacked by the builder into a build directory.

Every member is checked here, by Dockyard's own rules, before anything is written: regular
files and directories only, a relative path without `..`, limits on entries, bytes, path length
and depth. Writing opens each path component relative to its parent's descriptor without
following symlinks, so the tree stays inside the target whatever is already on disk. None of it
depends on tarfile's extraction filters (CVE-2025-4517 got through them until 3.11.13).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import stat
import tarfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

MiB = 1024 * 1024
CHUNK = MiB
# Extended headers (pax records, GNU long names) hold a path and a few fields, never more.
MAX_META = 64 * 1024
# Modification times (seconds, either side of 1970) a file can be given: a 64-bit time_t's.
MAX_TIME = 2.0**63
_ACCEPTED = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE)
_KINDS = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}


@dataclass(frozen=True)
class Limits:
    """How much an archive may hold (settings: DOCKYARD_ARCHIVE_*)."""

    max_bytes: int = 512 * MiB
    max_entries: int = 20_000
    max_path: int = 1024
    max_depth: int = 32

    @property
    def max_stream(self) -> int:
        """The uncompressed stream: the files plus each entry's headers and padding."""
        return self.max_bytes + self.max_entries * 3 * 512 + 2 * MAX_META + tarfile.RECORDSIZE


class SourceError(Exception):
    """The uploaded source cannot be used."""


class UnsafeMember(SourceError):
    """A member that is not a plain file or directory at a plain relative path."""

    def __init__(self, archive: str, member: str, problem: str) -> None:
        super().__init__(f"source archive {archive!r}: member {member!r} {problem}")
        self.archive = archive
        self.member = member
        self.problem = problem


class ArchiveTooLarge(SourceError):
    """An archive past one of its limits."""

    def __init__(self, archive: str, member: str, limit: str, value: int, what: str) -> None:
        super().__init__(f"source archive {archive!r}: member {member!r} {what} (limit: "
                         f"{limit} = {value})")
        self.archive = archive
        self.member = member
        self.limit = limit
        self.value = value


class _StreamTooLong(Exception):
    """The uncompressed stream went past the byte limit (raised inside tarfile's reads)."""


class _Capped(io.RawIOBase):
    """The decompressed archive, refusing to yield more than `limit` bytes."""

    def __init__(self, raw: io.BufferedIOBase, limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.raw.read(min(len(view), self.limit + 1 - self.count))
        self.count += len(data)
        if self.count > self.limit:
            raise _StreamTooLong
        view[:len(data)] = data
        return len(data)


class _Header(tarfile.TarInfo):
    """A TarInfo that refuses oversized extended headers before tarfile reads them whole."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        meta = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
        if self.type in meta and self.size > MAX_META:
            raise tarfile.HeaderError(
                f"extended header of {self.size} bytes (at most {MAX_META})")
        proc: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return proc


@dataclass(frozen=True)
class Entry:
    """One checked member: where it goes, what it is, how big."""

    name: str
    parts: tuple[str, ...]
    is_dir: bool
    size: int
    mode: int
    mtime: float


def _decompressed(path: Path) -> io.BufferedIOBase:
    """The archive's bytes, decompressed as they are read (gzip, bzip2, xz or plain tar)."""
    with path.open("rb") as f:
        magic = f.read(6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic[:3] == b"BZh":
        return bz2.open(path, "rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(path, "rb")
    return path.open("rb")


def _members(path: Path, name: str,
             limits: Limits) -> Generator[tuple[tarfile.TarFile, tarfile.TarInfo], None, None]:
    """The members of the archive, streamed (never the whole archive in memory)."""
    with _decompressed(path) as raw:
        capped = _Capped(raw, limits.max_stream)
        member = "(archive header)"
        try:
            with tarfile.open(fileobj=capped, mode="r|", tarinfo=_Header) as tar:
                for info in tar:
                    member = info.name
                    yield tar, info
        except _StreamTooLong:
            raise ArchiveTooLarge(name, member, "DOCKYARD_ARCHIVE_MAX_BYTES", limits.max_bytes,
                                  f"takes the archive past {limits.max_stream} bytes "
                                  "uncompressed, headers included") from None
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as exc:
            raise SourceError(f"source archive {name!r} cannot be read after member "
                              f"{member!r}: {exc}") from None


def relative_parts(archive: str, member: str, limits: Limits) -> tuple[str, ...]:
    """The member's path as plain components inside the target, or UnsafeMember."""
    if "\x00" in member:
        raise UnsafeMember(archive, member, "has a NUL byte in its path")
    if member.startswith("/"):
        raise UnsafeMember(archive, member, "has an absolute path")
    size = len(os.fsencode(member))
    if size > limits.max_path:
        raise ArchiveTooLarge(archive, member, "DOCKYARD_ARCHIVE_MAX_PATH", limits.max_path,
                              f"has a path of {size} bytes")
    parts = tuple(p for p in PurePosixPath(member).parts if p != ".")
    if not parts:
        raise UnsafeMember(archive, member, "has an empty path")
    if ".." in parts:
        raise UnsafeMember(archive, member, "has a '..' component in its path")
    if len(parts) > limits.max_depth:
        raise ArchiveTooLarge(archive, member, "DOCKYARD_ARCHIVE_MAX_DEPTH", limits.max_depth,
                              f"is {len(parts)} levels deep")
    return parts


def check_member(archive: str, info: tarfile.TarInfo, limits: Limits) -> Entry:
    """A member as an Entry if it is a regular file or directory at a safe path."""
    if info.type not in _ACCEPTED:
        kind = _KINDS.get(info.type, f"of unknown type {info.type!r}")
        target = f" (to {info.linkname!r})" if info.linkname else ""
        raise UnsafeMember(archive, info.name, f"is {kind}{target}: only regular files and "
                                               "directories are accepted")
    mtime = float(info.mtime)
    if not -MAX_TIME < mtime < MAX_TIME:  # NaN too: os.utime refuses what time_t cannot hold
        raise UnsafeMember(archive, info.name, f"has a modification time out of range "
                                               f"({info.mtime!r})")
    is_dir = info.type == tarfile.DIRTYPE
    if is_dir and not any(p not in ("", ".") for p in info.name.split("/")):
        return Entry(name=info.name, parts=(), is_dir=True, size=0, mode=info.mode,
                     mtime=mtime)  # the target itself: nothing to write
    parts = relative_parts(archive, info.name, limits)
    return Entry(name=info.name, parts=parts, is_dir=is_dir, size=0 if is_dir else info.size,
                 mode=info.mode, mtime=mtime)


def scan(path: Path, name: str, limits: Limits) -> list[Entry]:
    """Check every member against the rules and limits; nothing is written."""
    entries: list[Entry] = []
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    total = 0
    with contextlib.closing(_members(path, name, limits)) as members:
        for _, info in members:
            if len(entries) >= limits.max_entries:
                raise ArchiveTooLarge(name, info.name, "DOCKYARD_ARCHIVE_MAX_ENTRIES",
                                      limits.max_entries, "is one entry too many")
            entry = check_member(name, info, limits)
            total += entry.size
            if total > limits.max_bytes:
                raise ArchiveTooLarge(name, info.name, "DOCKYARD_ARCHIVE_MAX_BYTES",
                                      limits.max_bytes, f"takes the files to {total} bytes")
            _check_place(name, entry, files, dirs)
            entries.append(entry)
    return entries


def _check_place(archive: str, entry: Entry, files: set[tuple[str, ...]],
                 dirs: set[tuple[str, ...]]) -> None:
    """Refuse a member that would replace or go under one written before it."""
    parents = {entry.parts[:i] for i in range(1, len(entry.parts))}
    if entry.parts in files or parents & files:
        raise UnsafeMember(archive, entry.name, "replaces or goes under a file the archive "
                                                "already holds")
    if not entry.is_dir and entry.parts in dirs:
        raise UnsafeMember(archive, entry.name, "replaces a directory the archive already holds")
    dirs.update(parents)
    (dirs if entry.is_dir else files).add(entry.parts)


def _open_dir(root: int, parts: tuple[str, ...], archive: str, member: str) -> int:
    """A descriptor of the directory at parts under root, created as needed, no symlinks."""
    fd = os.dup(root)
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise UnsafeMember(archive, member, f"would go through {part!r}, which is not a "
                                                    f"directory inside the target ({exc.strerror})"
                                   ) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write(root: int, tar: tarfile.TarFile, info: tarfile.TarInfo, entry: Entry,
           archive: str) -> None:
    """Write one checked member under root."""
    if entry.is_dir and not entry.parts:
        return  # "./": the target directory itself keeps its own mode
    if entry.is_dir:
        fd = _open_dir(root, entry.parts, archive, entry.name)
        try:
            os.fchmod(fd, stat.S_IMODE(entry.mode) & 0o755 | 0o700)
        finally:
            os.close(fd)
        return
    parent = _open_dir(root, entry.parts[:-1], archive, entry.name)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(entry.parts[-1], flags, 0o600, dir_fd=parent)
        except OSError as exc:
            raise UnsafeMember(archive, entry.name, f"cannot be created inside the target "
                                                    f"({exc.strerror})") from None
    finally:
        os.close(parent)
    source = tar.extractfile(info)
    assert source is not None  # a regular file always has data
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)
        # The `data` filter's rule: no setuid/setgid/sticky, nobody but the owner writes.
        os.fchmod(out.fileno(), stat.S_IMODE(entry.mode) & 0o755 | 0o600)
        os.utime(out.fileno(), (entry.mtime, entry.mtime))


def unpack(archive: Path, into: Path, name: str, limits: Limits | None = None) -> Path:
    """Unpack an archive file into a directory: every member checked first, then written."""
    limits = limits or Limits()
    entries = scan(archive, name, limits)
    into.mkdir(parents=True, exist_ok=True)
    root = os.open(into, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.closing(_members(archive, name, limits)) as members:
            for (tar, info), entry in zip(members, entries, strict=False):
                if check_member(name, info, limits) != entry:
                    raise SourceError(f"source archive {name!r} changed while it was unpacked")
                _write(root, tar, info, entry, name)
    except OSError as exc:
        raise SourceError(f"source archive {name!r} cannot be unpacked: {exc}") from exc
    finally:
        os.close(root)
    return into


def pack(path: Path) -> bytes:
    """A gzip tarball of a source tree (without .git), as `dockyard deploy` uploads it."""
    if not path.is_dir():
        raise SourceError(f"{path} is not a directory")
    buf = io.BytesIO()
    skip = {".git", ".dockyard", "__pycache__", ".venv"}
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for item in sorted(path.iterdir()):
            if item.name in skip:
                continue
            tar.add(item, arcname=item.name,
                    filter=lambda info: None if any(p in skip for p in Path(info.name).parts)
                    else info)
    return buf.getvalue()
