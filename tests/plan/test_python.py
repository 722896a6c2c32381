"""Python build steps and interpreter choice, as values."""

from __future__ import annotations

import pytest

from dockyard.contract.plan import BuildStep
from dockyard.plan.python import Tools, choose_interpreter, render, version_matches

VENV = BuildStep(label="v", kind="python-venv")
REQS = BuildStep(label="r", kind="python-requirements", file="requirements.txt")
PKGS = BuildStep(label="p", kind="python-packages", args=["flask==3.0.3"])
SYNC = BuildStep(label="s", kind="uv-sync", file="uv.lock")
UV = Tools(python="/usr/bin/python3.11", uv="/opt/uv")
PIP = Tools(python="/usr/bin/python3.11")


def test_steps_render_with_uv_when_there_is_one_else_pip() -> None:
    assert render(VENV, UV) == [["/opt/uv", "venv", "--quiet", "--relocatable", "--python",
                                 "/usr/bin/python3.11", ".venv"]]
    assert render(VENV, PIP) == [["/usr/bin/python3.11", "-m", "venv", ".venv"]]
    assert render(REQS, UV) == [["/opt/uv", "pip", "install", "--python", ".venv/bin/python",
                                 "-r", "requirements.txt"]]
    assert render(REQS, PIP) == [[".venv/bin/python", "-m", "pip", "install", "--no-input",
                                  "-r", "requirements.txt"]]
    assert render(PKGS, PIP)[0][-1] == "flask==3.0.3"
    assert render(BuildStep(label="p", kind="python-packages"), UV) == []
    assert render(SYNC, UV) == [["/opt/uv", "sync", "--locked", "--no-dev",
                                 "--no-install-project", "--python", ".venv/bin/python"]]
    # Without uv, uv.lock still installs: uv itself comes from the index, beside the venv.
    assert [argv[0] for argv in render(SYNC, PIP)] == ["/usr/bin/python3.11", ".uv/bin/python",
                                                        ".uv/bin/uv"]
    with pytest.raises(ValueError, match="not a Python build step"):
        render(BuildStep(label="x", kind="npm-ci"), UV)


def test_interpreter_choice() -> None:
    available = [("/usr/bin/python3.11", "3.11.2"), ("/usr/local/bin/python3.12", "3.12.4")]
    assert choose_interpreter(None, available) == "/usr/local/bin/python3.12"
    assert choose_interpreter(("3.11", ".python-version"), available) == "/usr/bin/python3.11"
    assert choose_interpreter(("3", ".python-version"), available) == "/usr/local/bin/python3.12"
    assert choose_interpreter(("3.11.2", "runtime.txt"), available) == "/usr/bin/python3.11"
    with pytest.raises(LookupError) as caught:
        choose_interpreter(("3.13", ".python-version"), available)
    assert str(caught.value) == (
        ".python-version: asks for Python 3.13, which is not installed here (found: 3.11.2 "
        "(/usr/bin/python3.11), 3.12.4 (/usr/local/bin/python3.12)); install it, or change "
        ".python-version")
    with pytest.raises(LookupError, match="no Python 3 interpreter"):
        choose_interpreter(None, [])
    assert version_matches("3.1", "3.11.2") is False
