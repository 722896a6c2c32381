"""Properties of the archive checker: any archive (links, devices, `..`, absolute and deep paths,
huge declared sizes, odd times, damaged bytes, any compression) is unpacked inside the target as
plain files and directories, or refused with one SourceError naming why on one line."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import assume, example, given
from hypothesis import strategies as st

from dockyard.archive import Entry, Limits, SourceError, scan, unpack
from tests.properties.support import PROPERTY, assert_clear

LIMITS = Limits(max_bytes=4096, max_entries=8, max_path=64, max_depth=4)
TYPES = [tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
         tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE,
         tarfile.GNUTYPE_SPARSE, b"Z"]
PART = st.one_of(st.sampled_from(["a", "b", "src", ".", "..", "", "x" * 40, "é", "a b"]),
                 st.text(st.characters(exclude_characters="/\x00"), min_size=1, max_size=6))
NAMES = st.one_of(
    st.lists(PART, min_size=1, max_size=7).map("/".join),
    st.builds(lambda name, lead, trail: lead + name + trail,
              st.lists(PART, min_size=1, max_size=3).map("/".join),
              st.sampled_from(["", "/", "./", "../", "//"]), st.sampled_from(["", "/"])),
)
SAFE_NAMES = st.lists(st.sampled_from(["a", "b", "src", "é"]), min_size=1, max_size=3).map(
    "/".join)
TIMES = st.one_of(st.integers(0, 2**33 - 1), st.integers(-(2**70), 2**70), st.floats(),
                  st.sampled_from([2.0**63, -(2.0**63), 1e300]))


@st.composite
def member(draw: st.DrawFn) -> tuple[tarfile.TarInfo, bytes | None]:
    """One member: any type, name, mode and time; a file's data, or only a declared size."""
    if draw(st.booleans()):  # a plain member, so that some archives get to be written
        info = tarfile.TarInfo(draw(SAFE_NAMES))
        info.type = draw(st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE]))
    else:
        info = tarfile.TarInfo(draw(NAMES))
        info.type = draw(st.sampled_from(TYPES))
    info.mode = draw(st.integers(0, 0o7777))
    info.mtime = draw(TIMES)
    if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE) or draw(st.booleans()):
        info.linkname = draw(st.one_of(NAMES, st.sampled_from(["/etc/passwd", "../../x"])))
    data = None
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
        if draw(st.integers(0, 4)) == 0:  # a size declared and no data behind it
            info.size = draw(st.sampled_from([LIMITS.max_bytes + 1, 10**9, 8**11, 10**12]))
        else:
            data = draw(st.binary(max_size=2000))
            info.size = len(data)
    return info, data


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    """A tar archive of some members in some format and compression, maybe damaged."""
    buf = io.BytesIO()
    form = draw(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
    try:
        with tarfile.open(fileobj=buf, mode="w", format=form) as tar:
            for info, data in draw(st.lists(member(), max_size=10)):
                tar.addfile(info, None if data is None else io.BytesIO(data))
    except (ValueError, OverflowError, UnicodeEncodeError):
        assume(False)  # tarfile cannot write it in this format: not an archive anyone uploads
    raw = bytearray(buf.getvalue())
    for _ in range(draw(st.integers(0, 3)) if draw(st.booleans()) else 0):
        if raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    if raw and draw(st.integers(0, 5)) == 0:
        raw = raw[:draw(st.integers(0, len(raw)))]
    compressions: list[Callable[[bytes], bytes]] = [bytes, gzip.compress, bz2.compress,
                                                    lzma.compress]
    packed = draw(st.sampled_from(compressions))(bytes(raw))
    if draw(st.integers(0, 6)) == 0:  # compressed garbage, or a stream cut short
        cut = draw(st.integers(0, len(packed)))
        packed = packed[:cut] + draw(st.binary(max_size=20))
    return packed


def one_file(mtime: float, name: str = "a") -> bytes:
    """A pax archive of one file with that modification time (pax writes any number)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.pax_headers = 1, 0, {"mtime": repr(mtime)}
        tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def check_entries(entries: list[Entry]) -> None:
    """What scan promises of the entries it returns."""
    assert len(entries) <= LIMITS.max_entries
    assert sum(e.size for e in entries) <= LIMITS.max_bytes
    for entry in entries:
        assert entry.size >= 0
        assert ".." not in entry.parts and "" not in entry.parts
        assert len(entry.parts) <= LIMITS.max_depth
        assert entry.parts or entry.is_dir


def check_tree(root: Path) -> None:
    """Nothing but plain directories and files under root, none writable by others."""
    for path in root.rglob("*"):
        mode = path.lstat().st_mode
        assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), path
        assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH | stat.S_IWGRP), path


@PROPERTY
@given(st.one_of(archives(), st.binary(max_size=600)))
def test_any_archive_is_checked_entries_or_a_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp, "src.tar")
        archive.write_bytes(data)
        try:
            entries = scan(archive, "src.tar", LIMITS)
        except SourceError as exc:
            assert_clear(exc)
            return
        check_entries(entries)


@PROPERTY
@given(archives())
# Found here: a modification time past time_t (or NaN) passed the checks, then os.utime raised
# OverflowError (ValueError) halfway through writing the tree.
@example(one_file(1e300))
@example(one_file(float("nan")))
@example(one_file(float("-inf")))
def test_any_archive_unpacks_inside_the_target_or_is_a_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp, "src.tar")
        archive.write_bytes(data)
        target = Path(tmp, "into", "build")
        try:
            unpack(archive, target, "src.tar", LIMITS)
        except SourceError as exc:
            assert_clear(exc)
        else:
            entries = scan(archive, "src.tar", LIMITS)
            for entry in entries:
                path = target.joinpath(*entry.parts)
                assert path.is_dir() if entry.is_dir else path.stat().st_size == entry.size
        # Whatever happened, nothing was written beside the target, and only plain entries in it.
        assert set(os.listdir(tmp)) <= {"into", "src.tar"}
        assert not target.exists() or os.listdir(target.parent) == ["build"]
        if target.exists():
            check_tree(target)
