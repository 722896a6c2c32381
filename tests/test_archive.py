"""Source archives: every member checked before anything is written, limits on everything."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from dockyard.archive import (
    MAX_META,
    ArchiveTooLarge,
    Limits,
    SourceError,
    UnsafeMember,
    pack,
    scan,
    unpack,
)

MiB = 1024 * 1024


class Maker:
    """A tar archive built member by member, written gzip-compressed to a file."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def file(self, name: str, data: bytes = b"", mode: int = 0o644) -> Maker:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        self.tar.addfile(info, io.BytesIO(data))
        return self

    def dir(self, name: str, mode: int = 0o755) -> Maker:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        self.tar.addfile(info)
        return self

    def link(self, name: str, target: str, type_: bytes = tarfile.SYMTYPE) -> Maker:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = type_, target
        self.tar.addfile(info)
        return self

    def special(self, name: str, type_: bytes) -> Maker:
        info = tarfile.TarInfo(name)
        info.type = type_
        self.tar.addfile(info)
        return self

    def write(self, path: Path) -> Path:
        self.tar.close()
        path.write_bytes(gzip.compress(self.buf.getvalue(), compresslevel=1))
        return path


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """A directory holding the target, so anything written beside it can be seen."""
    outer = tmp_path / "outer"
    (outer / "into").mkdir(parents=True)
    return outer


def written(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_packed_tree_unpacks_as_it_was(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "Procfile").write_text("web: ./bin/run\n")
    (src / "bin" / "run").write_text("#!/bin/sh\necho hi\n")
    (src / "bin" / "run").chmod(0o755)
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref")
    archive = tmp_path / "src.tar.gz"
    archive.write_bytes(pack(src))
    out = unpack(archive, tmp_path / "out", "shop/x.tar.gz")
    assert written(out) == ["Procfile", "bin", "bin/run"]
    assert (out / "bin" / "run").read_text() == "#!/bin/sh\necho hi\n"
    assert os.access(out / "bin" / "run", os.X_OK)


def test_dot_entries_of_a_tar_made_with_tar_c_dot_are_fine(tmp_path: Path, place: Path) -> None:
    archive = Maker().dir(".").dir("./app").file("./app/main.py", b"print(1)\n").file(
        "./Procfile", b"web: x\n").write(tmp_path / "a.tgz")
    unpack(archive, place / "into", "a")
    assert written(place / "into") == ["Procfile", "app", "app/main.py"]


def cve_2025_4517(dest_len: int) -> Maker:
    """The shape of CVE-2025-4517's proof of concept (CPython's test_realpath_limit_attack):
    directories and symlinks whose expansion overflows PATH_MAX, a link climbing out, then a
    file written through it."""
    arc = Maker()
    steps = "abcdefghijklmnop"
    component = "d" * ((os.pathconf("/", "PC_PATH_MAX") - dest_len - 1) // (len(steps) + 1))
    path = ""
    for step in steps:
        arc.dir(os.path.join(path, component), mode=0o777)
        arc.link(os.path.join(path, step), component)
        path = os.path.join(path, component)
    linkpath = os.path.join(*steps, "l" * 254)
    arc.link(linkpath, os.path.join(*[".."] * len(steps)))
    arc.link("escape", os.path.join(linkpath, ".."))
    arc.link("flaglink", os.path.join("escape", "flag"), tarfile.LNKTYPE)
    arc.file("flaglink", b"overwrite")
    arc.file("escape/newfile", b"new")
    return arc


def test_cve_2025_4517_deep_path_and_symlink_chain_writes_nothing(tmp_path: Path,
                                                                  place: Path) -> None:
    target = place / "into"
    (place / "flag").write_text("original")
    archive = cve_2025_4517(len(str(target))).write(tmp_path / "cve.tgz")
    with pytest.raises(UnsafeMember) as info:
        unpack(archive, target, "evil/x.tar.gz")
    assert info.value.member == "a"
    assert "is a symbolic link (to 'dddd" in str(info.value)
    assert written(place) == ["flag", "into"]
    assert (place / "flag").read_text() == "original"


def test_a_symlink_inside_the_tree_is_refused(tmp_path: Path, place: Path) -> None:
    archive = Maker().file("Procfile", b"web: x\n").link("static", "www").dir("www").write(
        tmp_path / "a.tgz")
    with pytest.raises(UnsafeMember, match=r"member 'static' is a symbolic link \(to 'www'\): "
                                           "only regular files and directories are accepted"):
        unpack(archive, place / "into", "shop/x.tar.gz")
    assert written(place / "into") == []


@pytest.mark.parametrize(("type_", "kind"), [
    (tarfile.LNKTYPE, "a hard link"),
    (tarfile.CHRTYPE, "a character device"),
    (tarfile.BLKTYPE, "a block device"),
    (tarfile.FIFOTYPE, "a FIFO"),
    (tarfile.CONTTYPE, "a contiguous file"),
])
def test_links_devices_and_fifos_are_refused(tmp_path: Path, place: Path, type_: bytes,
                                             kind: str) -> None:
    maker = Maker().file("ok", b"x")
    if type_ == tarfile.LNKTYPE:
        maker.link("odd", "ok", type_)
    else:
        maker.special("odd", type_)
    with pytest.raises(UnsafeMember, match=f"member 'odd' is {kind}"):
        unpack(maker.write(tmp_path / "a.tgz"), place / "into", "a")
    assert written(place / "into") == []


@pytest.mark.parametrize(("name", "problem"), [
    ("../outside", "has a '..' component in its path"),
    ("app/../../outside", "has a '..' component in its path"),
    ("/etc/outside", "has an absolute path"),
])
def test_paths_leaving_the_target_are_refused(tmp_path: Path, place: Path, name: str,
                                              problem: str) -> None:
    archive = Maker().file("ok", b"x").file(name, b"pwned").write(tmp_path / "a.tgz")
    with pytest.raises(UnsafeMember) as info:
        unpack(archive, place / "into", "a")
    assert (info.value.member, info.value.problem) == (name, problem)
    assert written(place) == ["into"]


def test_a_symlink_already_on_disk_is_never_followed(tmp_path: Path, place: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (place / "into" / "sub").symlink_to(outside)
    archive = Maker().file("sub/file", b"pwned").write(tmp_path / "a.tgz")
    with pytest.raises(UnsafeMember, match="member 'sub/file' would go through 'sub', which is "
                                           "not a directory inside the target"):
        unpack(archive, place / "into", "a")
    assert written(outside) == []


def test_a_file_named_like_a_symlink_already_on_disk_is_not_written_through_it(
        tmp_path: Path, place: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_text("original")
    (place / "into" / "config").symlink_to(outside)
    archive = Maker().file("config", b"pwned").write(tmp_path / "a.tgz")
    with pytest.raises(UnsafeMember, match="member 'config' cannot be created inside the target"):
        unpack(archive, place / "into", "a")
    assert outside.read_text() == "original"


def test_path_length_and_depth_are_limited(tmp_path: Path, place: Path) -> None:
    deep = "/".join(["d"] * 33) + "/f"
    archive = Maker().file(deep, b"x").write(tmp_path / "deep.tgz")
    with pytest.raises(ArchiveTooLarge) as info:
        unpack(archive, place / "into", "a")
    assert info.value.limit == "DOCKYARD_ARCHIVE_MAX_DEPTH" and info.value.member == deep
    assert "is 34 levels deep (limit: DOCKYARD_ARCHIVE_MAX_DEPTH = 32)" in str(info.value)
    long = "x" * 200 + "/" + "y" * 900
    archive = Maker().file(long, b"x").write(tmp_path / "long.tgz")
    with pytest.raises(ArchiveTooLarge, match="has a path of 1101 bytes "
                                              r"\(limit: DOCKYARD_ARCHIVE_MAX_PATH = 1024\)"):
        unpack(archive, place / "into", "a")
    assert written(place / "into") == []


def test_an_oversized_extended_header_is_refused_before_it_is_read(tmp_path: Path,
                                                                   place: Path) -> None:
    archive = Maker().file("p" * (MAX_META + 10), b"x").write(tmp_path / "a.tgz")
    with pytest.raises(SourceError, match="extended header of .* bytes"):
        unpack(archive, place / "into", "a")


def bomb(path: Path, size: int) -> Path:
    """A gzip of one tar member of `size` zero bytes, built from repeated gzip members."""
    header = tarfile.TarInfo("bomb.bin")
    header.size = size
    block = 64 * MiB
    zeros = gzip.compress(bytes(block), compresslevel=9)
    with path.open("wb") as out:
        out.write(gzip.compress(header.tobuf(format=tarfile.USTAR_FORMAT)))
        for _ in range(size // block):
            out.write(zeros)
        out.write(gzip.compress(bytes(size % block) + bytes(1024)))
    return path


def test_a_one_megabyte_gzip_bomb_is_refused_without_writing(tmp_path: Path,
                                                             place: Path) -> None:
    archive = bomb(tmp_path / "bomb.tgz", 1100 * MiB)
    assert archive.stat().st_size < 1.5 * MiB
    with pytest.raises(ArchiveTooLarge) as info:
        unpack(archive, place / "into", "evil/bomb.tar.gz")
    assert (info.value.member, info.value.limit) == ("bomb.bin", "DOCKYARD_ARCHIVE_MAX_BYTES")
    assert f"(limit: DOCKYARD_ARCHIVE_MAX_BYTES = {512 * MiB})" in str(info.value)
    assert written(place) == ["into"]


def test_many_files_past_the_byte_limit_are_refused_at_the_member_that_crosses_it(
        tmp_path: Path, place: Path) -> None:
    maker = Maker()
    for i in range(5):
        maker.file(f"f{i}", bytes(300))
    with pytest.raises(ArchiveTooLarge, match="member 'f3' takes the files to 1200 bytes"):
        unpack(maker.write(tmp_path / "a.tgz"), place / "into", "a", Limits(max_bytes=1000))
    assert written(place / "into") == []


def test_a_stream_longer_than_the_limit_is_cut_off_whatever_its_headers_say(
        tmp_path: Path, place: Path) -> None:
    # Headers count too: empty files with bulky (each allowed) pax records outgrow the limit.
    maker = Maker()
    for i in range(40):
        info = tarfile.TarInfo(f"f{i}")
        info.pax_headers = {"comment": "c" * (MAX_META - 1024)}
        maker.tar.addfile(info)
    limits = Limits(max_bytes=8192, max_entries=100)
    with pytest.raises(ArchiveTooLarge, match=f"takes the archive past {limits.max_stream} "
                                              "bytes uncompressed, headers included"):
        unpack(maker.write(tmp_path / "a.tgz"), place / "into", "a", limits)
    assert written(place / "into") == []


def test_fifty_thousand_empty_files_are_refused_quickly_by_the_entry_limit(
        tmp_path: Path, place: Path) -> None:
    # Headers written straight to the gzip stream: tarfile's addfile would take longer.
    with gzip.open(tmp_path / "many.tgz", "wb", compresslevel=1) as out:
        for i in range(50_000):
            out.write(tarfile.TarInfo(f"f{i}").tobuf(format=tarfile.USTAR_FORMAT))
        out.write(bytes(1024))
    started = time.monotonic()
    with pytest.raises(ArchiveTooLarge) as info:
        unpack(tmp_path / "many.tgz", place / "into", "evil/many.tar.gz")
    elapsed = time.monotonic() - started
    assert (info.value.member, info.value.limit) == ("f20000", "DOCKYARD_ARCHIVE_MAX_ENTRIES")
    assert "is one entry too many (limit: DOCKYARD_ARCHIVE_MAX_ENTRIES = 20000)" in str(info.value)
    assert written(place / "into") == []
    assert elapsed < 15, f"refusing took {elapsed:.1f}s"


def test_limits_are_settable(tmp_path: Path, place: Path) -> None:
    archive = Maker().file("a").file("b").file("c").write(tmp_path / "a.tgz")
    assert len(scan(archive, "a", Limits(max_entries=3))) == 3
    with pytest.raises(ArchiveTooLarge, match="member 'c' is one entry too many"):
        scan(archive, "a", Limits(max_entries=2))


def test_a_member_may_not_replace_or_go_under_another(tmp_path: Path, place: Path) -> None:
    twice = Maker().file("Procfile", b"web: a").file("Procfile", b"web: evil").write(
        tmp_path / "twice.tgz")
    with pytest.raises(UnsafeMember, match="member 'Procfile' replaces or goes under a file"):
        unpack(twice, place / "into", "a")
    under = Maker().file("app", b"x").file("app/x", b"y").write(tmp_path / "under.tgz")
    with pytest.raises(UnsafeMember, match="member 'app/x' replaces or goes under a file"):
        unpack(under, place / "into", "a")
    over = Maker().dir("app").file("app", b"x").write(tmp_path / "over.tgz")
    with pytest.raises(UnsafeMember, match="member 'app' replaces a directory"):
        unpack(over, place / "into", "a")
    assert written(place / "into") == []


def test_modes_lose_setuid_and_write_bits_for_others(tmp_path: Path, place: Path) -> None:
    archive = Maker().dir("d", mode=0o1777).file("d/run", b"x", mode=0o6777).write(
        tmp_path / "a.tgz")
    unpack(archive, place / "into", "a")
    assert stat.S_IMODE((place / "into" / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((place / "into" / "d" / "run").stat().st_mode) == 0o755


def test_a_plain_uncompressed_tar_and_garbage(tmp_path: Path, place: Path) -> None:
    maker = Maker().file("Procfile", b"web: x\n")
    maker.tar.close()
    (tmp_path / "plain.tar").write_bytes(maker.buf.getvalue())
    unpack(tmp_path / "plain.tar", place / "into", "a")
    assert written(place / "into") == ["Procfile"]
    (tmp_path / "junk").write_bytes(zlib.compress(b"not a tar" * 100))
    with pytest.raises(SourceError, match="source archive 'junk' cannot be read"):
        unpack(tmp_path / "junk", tmp_path / "other", "junk")


def test_the_archive_is_streamed_not_read_into_memory(tmp_path: Path, place: Path) -> None:
    maker = Maker().file("blob", os.urandom(24 * MiB))
    archive = maker.write(tmp_path / "big.tgz")
    tracemalloc.start()
    try:
        unpack(archive, place / "into", "a")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (place / "into" / "blob").stat().st_size == 24 * MiB
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB while unpacking a 24 MiB archive"
