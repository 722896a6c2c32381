"""Property: any Procfile text parses to a Procfile or is a one-line ManifestError."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dockyard.plan.errors import ManifestError
from dockyard.plan.lines import split_lines
from dockyard.plan.procfile import HOOK_NAMES, PROCESS_NAME, Procfile, parse_procfile
from tests.properties.support import PROPERTY, assert_clear

VALID_NAME = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
NAMES = st.one_of(VALID_NAME, st.sampled_from([*HOOK_NAMES, "web", "worker", ""]),
                  st.text(max_size=6))
# A command on one line: any text without the two characters that end a Procfile line.
COMMANDS = st.text(st.characters(exclude_characters="\n\r"), max_size=30)
BREAKS = st.sampled_from(["\n", "\r\n", "\r", "\x0b", "\x0c", "\x85", "\u2028", ""])


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    """Procfile-shaped text: name/command lines, comments, blanks, odd separators and breaks."""
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["entry", "entry", "entry", "comment", "blank", "junk"]))
        if kind == "entry":
            sep = draw(st.sampled_from([":", ": ", " : ", "::", "", "\t:\t"]))
            lines.append(f"{draw(NAMES)}{sep}{draw(COMMANDS)}")
        elif kind == "comment":
            lines.append(draw(st.sampled_from(["#", "//", "  #"])) + draw(COMMANDS))
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", "  ", "\t"])))
        else:
            lines.append(draw(st.text(max_size=10)))
    return "".join(line + draw(BREAKS) for line in lines)


def check(text: str) -> Procfile | None:
    """The parse of a text, its invariants checked; None for a (clear) ManifestError."""
    try:
        procfile = parse_procfile(text)
    except ManifestError as exc:
        assert_clear(exc)
        assert exc.file == "Procfile"
        assert exc.line is None or 1 <= exc.line <= len(split_lines(text))
        return None
    names = [p.name for p in procfile.processes]
    assert len(names) == len(set(names))
    assert not set(names) & set(procfile.hooks)
    assert set(procfile.hooks) <= set(HOOK_NAMES)
    for process in procfile.processes:
        assert PROCESS_NAME.fullmatch(process.name)
        assert process.command and process.command == process.command.strip()
        assert process.source.startswith("Procfile:")
    for hook in procfile.hooks.values():
        assert hook.command and hook.command == hook.command.strip()
    return procfile


@PROPERTY
@given(st.text())
def test_any_text_is_a_procfile_or_a_clear_error(text: str) -> None:
    check(text)


@PROPERTY
@given(near_valid())
def test_near_valid_text_is_a_procfile_or_a_clear_error(text: str) -> None:
    check(text)


@PROPERTY
@given(st.dictionaries(VALID_NAME, COMMANDS.map(str.strip).filter(bool), max_size=6),
       st.sampled_from(["\n", "\r\n"]))
def test_a_written_procfile_reads_back(entries: dict[str, str], newline: str) -> None:
    text = "".join(f"{name}: {command}{newline}" for name, command in entries.items())
    procfile = check(text)
    assert procfile is not None
    read = {p.name: p.command for p in procfile.processes}
    read.update({name: hook.command for name, hook in procfile.hooks.items()})
    assert read == entries


@PROPERTY
@given(st.text(st.sampled_from("ab \r\n\x0b\x0c\x85\u2028")))
def test_lines_break_at_newline_only(text: str) -> None:
    lines = split_lines(text)
    assert all("\n" not in line for line in lines)
    assert len(lines) == text.count("\n") + (0 if not text or text.endswith("\n") else 1)
    # Only the `\r` of a `\r\n` (or one ending the text) is dropped: nothing else is lost.
    assert "\n".join(lines).replace("\r", "") == text.removesuffix("\n").replace("\r", "")
