"""Reading an instance's output by lines, with cursors: the pure parts."""

from __future__ import annotations

from pathlib import Path

from dockyard.runtime.output import complete_lines, docker_line, file_cursor, read_from


def test_whole_lines_carry_the_offset_after_them_and_the_rest_waits() -> None:
    lines, rest = complete_lines(b"", b"one\ntwo\r\nthr", 12)
    assert [(line.text, line.cursor) for line in lines] == [("one", "4"), ("two", "9")]
    assert rest == b"thr"
    more, rest = complete_lines(rest, b"ee\n", 15)
    assert [(line.text, line.cursor) for line in more] == [("three", "15")] and rest == b""


def test_a_line_too_long_is_cut_into_pieces() -> None:
    lines, rest = complete_lines(b"", b"x" * 25, 25, max_line=10)
    assert [(len(line.text), line.cursor) for line in lines] == [(10, "10"), (10, "20")]
    assert rest == b"x" * 5


def test_a_file_is_read_from_an_offset_and_a_truncated_one_says_so(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    assert read_from(path, 0) == b""  # not there yet
    path.write_bytes(b"hello\n")
    assert read_from(path, 2) == b"llo\n"
    assert read_from(path, 6) == b""
    assert read_from(path, 7) is None
    assert (file_cursor(None), file_cursor("12"), file_cursor("junk")) == (0, 12, 0)


def test_a_docker_line_s_time_is_read_to_the_nanosecond() -> None:
    found = docker_line("2026-01-02T03:04:05.5Z GET / 200")
    assert found is not None
    assert found == (1767323045_500_000_000, "GET / 200")
    assert docker_line("no timestamp here") is None
