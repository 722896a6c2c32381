"""`PROCESS=COUNT` arguments: parsed, or one line and exit 2."""

from __future__ import annotations

import pytest
import typer

from dockyard.cli.scaling import parse_counts


def test_counts_are_parsed_in_order() -> None:
    assert parse_counts(["web=2", "worker=0"]) == {"web": 2, "worker": 0}


@pytest.mark.parametrize(("items", "problem"), [
    (["web"], "expected PROCESS=COUNT"),
    (["=2"], "expected PROCESS=COUNT"),
    (["web=two"], "expected PROCESS=COUNT"),
    (["web=1.5"], "expected PROCESS=COUNT"),
    (["web=-1"], "between 0 and 20"),
    (["web=21"], "between 0 and 20"),
    (["web=99999999999999999999"], "between 0 and 20"),
    (["web=1", "web=2"], "given twice"),
    ([], "no process type"),
])
def test_bad_counts_are_one_line_and_exit_2(items: list[str], problem: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as caught:
        parse_counts(items)
    assert caught.value.exit_code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0], lines
