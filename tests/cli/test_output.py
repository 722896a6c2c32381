"""What the CLI prints into a pipe (whole plain lines) and onto a terminal (rich, nothing cut)."""

from __future__ import annotations

import io
import json

import msgspec
import pytest

from dockyard.cli.output import Output, is_terminal, json_line, plain_table, tsv_cell

ID = "f3ccf8d37f6f4ffc815af2a0b1c2d3e4"
WHEN = "2026-11-22T13:13:24.600287Z"
LONG = "a reason " * 40


def test_cells_are_whole_with_tabs_and_newlines_escaped() -> None:
    assert tsv_cell(None) == "" and tsv_cell(7) == "7"
    assert tsv_cell("a\tb\nc\\d\r") == "a\\tb\\nc\\\\d\\r"
    assert tsv_cell(LONG) == LONG


def test_a_plain_table_is_a_header_and_tab_separated_rows() -> None:
    assert plain_table(["deployment", "created"], [[ID, WHEN], ["x", None]]) == [
        "deployment\tcreated", f"{ID}\t{WHEN}", "x\t"]


def test_into_a_pipe_nothing_is_cut_wrapped_or_styled() -> None:
    buf = io.StringIO()
    o = Output(buf, tty=False)
    o.line(f"succeeded: shop v1 is live at http://shop.localhost:8080/  (deployment {ID})",
           style="green")
    o.line("[bold]not markup[/bold]")
    o.table(["deployment", "reason", "created"], [[ID, LONG, WHEN]])
    o.marked_up("[bold]Deploying v1[/bold]")
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith(f"(deployment {ID})") and len(lines[0]) > 80
    assert lines[1] == "[bold]not markup[/bold]"
    assert lines[2:4] == ["deployment\treason\tcreated", f"{ID}\t{LONG}\t{WHEN}"]
    assert lines[4] == "Deploying v1"
    assert "\x1b" not in buf.getvalue() and "…" not in buf.getvalue()


def test_on_a_terminal_tables_fold_long_cells_instead_of_cutting_them() -> None:
    buf = io.StringIO()
    Output(buf, tty=True).table(["deployment", "reason", "created"], [[ID, LONG, WHEN]])
    shown = buf.getvalue()
    assert "…" not in shown
    body = [line.split("│") for line in shown.splitlines() if line.startswith("│")]
    column = ["".join(row[i].strip() for row in body) for i in (1, 2, 3)]
    assert column[0] == ID and column[2] == WHEN
    assert column[1].replace(" ", "") == LONG.replace(" ", ""), "folded, every word kept"


def test_json_is_one_line_for_plain_values_and_structs() -> None:
    class Line(msgspec.Struct):
        text: str

    assert json.loads(json_line({"app": "shop", "values": {"A": "1\n2"}})) == {
        "app": "shop", "values": {"A": "1\n2"}}
    assert json_line(Line(text="hi")) == '{"text":"hi"}'
    buf = io.StringIO()
    Output(buf, tty=True).json([1, 2])
    assert buf.getvalue() == "[1,2]\n", "JSON is never styled, even on a terminal"


def test_a_closed_pipe_ends_quietly_with_141(capfd: pytest.CaptureFixture[str]) -> None:
    import typer

    class Closed(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(typer.Exit) as caught:
        Output(Closed(), tty=False).line("x")
    assert caught.value.exit_code == 141
    Output(Closed(), stderr=True, tty=False).line("nobody reads this")  # errors: nothing to do


def test_only_a_tty_is_a_terminal() -> None:
    assert not is_terminal(io.StringIO())
