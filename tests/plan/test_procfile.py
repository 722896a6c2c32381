"""Procfile lines: process types, the release/postdeploy hooks, and malformed lines."""

import pytest

from dockyard.contract.manifest import HookSpec
from dockyard.contract.plan import ProcessType
from dockyard.plan.errors import ManifestError
from dockyard.plan.procfile import parse_procfile

PROCFILE = """\
# processes
web: gunicorn app:wsgi --bind 0.0.0.0:$PORT

worker:   python worker.py
release: ./manage.py migrate
  postdeploy: echo done
clock: python clock.py
"""


def test_processes_and_hooks() -> None:
    parsed = parse_procfile(PROCFILE)
    assert parsed.processes == [
        ProcessType(name="web", command="gunicorn app:wsgi --bind 0.0.0.0:$PORT",
                    source="Procfile:2"),
        ProcessType(name="worker", command="python worker.py", source="Procfile:4"),
        ProcessType(name="clock", command="python clock.py", source="Procfile:7"),
    ]
    assert parsed.hooks == {
        "release": HookSpec(command="./manage.py migrate", source="Procfile:5"),
        "postdeploy": HookSpec(command="echo done", source="Procfile:6"),
    }


def test_empty_procfile() -> None:
    parsed = parse_procfile("\n# nothing\n")
    assert (parsed.processes, parsed.hooks) == ([], {})


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("web: a\nworker python w.py\n", 2, "expected `name: command`, got 'worker python w.py'"),
        ("web: a\n: python w.py\n", 2, "empty process name before `:`"),
        ("\n\nweb:\n", 3, "`web:` has no command"),
        ("web: a\nweb: b\n", 2, "`web:` is already defined on line 1"),
        ("release: a\n\nrelease: b\n", 3, "`release:` is already defined on line 1"),
        ("my web: a\n", 1, "process name 'my web' may hold only letters, digits, '_' and '-'"),
    ],
)
def test_malformed_lines(text: str, line: int, problem: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_procfile(text)
    assert (info.value.file, info.value.line, info.value.problem) == ("Procfile", line, problem)


# Modelled on Heroku's python-getting-started (a Django app), with the comment styles Procfile
# tools accept: `#`, and `//` as procfile-util (Dokku) reads it; foreman and honcho skip any
# line that is not `name: command`.
GETTING_STARTED = """\
# Heroku's Python getting-started app
// Dokku (procfile-util) comment style
web: gunicorn --config gunicorn.conf.py gettingstarted.wsgi

  // migrations run before the new release serves
release: ./manage.py migrate --no-input
"""


def test_real_world_procfile_with_both_comment_styles() -> None:
    parsed = parse_procfile(GETTING_STARTED)
    assert parsed.processes == [
        ProcessType(name="web", command="gunicorn --config gunicorn.conf.py gettingstarted.wsgi",
                    source="Procfile:3"),
    ]
    assert parsed.hooks == {
        "release": HookSpec(command="./manage.py migrate --no-input", source="Procfile:6"),
    }


def test_a_slash_inside_a_command_is_not_a_comment() -> None:
    parsed = parse_procfile("web: curl -fsS https://example.com//x // not a comment here\n")
    assert parsed.processes[0].command == "curl -fsS https://example.com//x // not a comment here"


@pytest.mark.parametrize("char", ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_only_newlines_end_a_line(char: str) -> None:
    """str.splitlines also breaks at these; a Procfile line ends at \\n or \\r\\n alone."""
    parsed = parse_procfile(f"web: echo a{char}b\r\nworker: w\n")
    assert [(p.name, p.command, p.source) for p in parsed.processes] == [
        ("web", f"echo a{char}b", "Procfile:1"), ("worker", "w", "Procfile:2")]


def test_crlf_line_numbers() -> None:
    with pytest.raises(ManifestError) as info:
        parse_procfile("web: a\r\n// fine\r\nworker\r\n")
    assert (info.value.line, info.value.problem) == (3, "expected `name: command`, got 'worker'")
