"""Procfile lines: process types, the release/postdeploy hooks, and malformed lines."""

import pytest

from dockyard.plan.errors import ManifestError
from dockyard.plan.procfile import parse_procfile
from dockyard.schemas.manifest import HookSpec
from dockyard.schemas.plan import ProcessType

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
        ProcessType(name="web", command="gunicorn app:wsgi --bind 0.0.0.0:$PORT", source="Procfile:2"),
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
