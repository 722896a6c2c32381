"""Python apps: which dependency file, which interpreter, the build steps, the conventions."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from dockyard.contract.plan import Buildpack, BuildStep
from dockyard.plan.errors import ManifestError

# In the order one wins over another when several are present (a lock file beats a list).
DEPENDENCY_FILES = ("uv.lock", "Pipfile.lock", "requirements.txt", "pyproject.toml")
VERSION_FILES = (".python-version", "runtime.txt")
VENV = ".venv"
# What Heroku's Python buildpack sets for a 512 MiB dyno (the app's config wins).
ENV = {"PYTHONUNBUFFERED": "true", "WEB_CONCURRENCY": "2", "FORWARDED_ALLOW_IPS": "*"}
# Files that look like a WSGI/ASGI entry point: named in the error, never guessed into a command.
ENTRY_POINTS = ("wsgi.py", "asgi.py", "app.py", "main.py", "manage.py", "server.py")

_VERSION = re.compile(r"^3(\.\d+){0,2}$")
_RUNTIME_TXT = re.compile(r"^python-(3(\.\d+){0,2})$")
# A requirement line starts with a project name (PEP 508), a URL or a path; options with `-`.
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*|[a-z+]+://\S+|\.{1,2}/\S*|/\S+)")
_INCLUDE = re.compile(r"^(-r|--requirement|-c|--constraint)[\s=]+(\S+)")
_LOCAL = re.compile(r"^(-e|--editable)?\s*(\.{1,2}(/\S*)?|/\S+)$")

# Renders Pipfile.lock-free installs: no step reads a file the plan has not read itself.
PIP = "pip"
UV = "uv"


class _Lock(msgspec.Struct, kw_only=True):
    """The part of Pipfile.lock read: the pinned `default` packages."""

    default: dict[str, dict[str, object]] = {}


@dataclass(frozen=True)
class Tools:
    """What a runtime renders steps with: the interpreter, and uv when it has one."""

    python: str
    uv: str | None = None


def requested_version(files: Mapping[str, str]) -> tuple[str, str] | None:
    """(version, file) from .python-version, else runtime.txt; a malformed one is an error."""
    if ".python-version" in files:
        lines = [ln.strip() for ln in files[".python-version"].splitlines()]
        for number, line in enumerate(lines, start=1):
            if line and not line.startswith("#"):
                if not _VERSION.match(line):
                    raise ManifestError(".python-version", number,
                                        f"{line!r} is not a Python version (write e.g. 3.11)")
                return line, ".python-version"
        raise ManifestError(".python-version", None, "names no version (write e.g. 3.11)")
    if "runtime.txt" in files:
        text = files["runtime.txt"].strip()
        found = _RUNTIME_TXT.match(text)
        if found is None:
            raise ManifestError("runtime.txt", 1,
                                f"{text!r} is not a Python runtime (write e.g. python-3.11.2)")
        return found.group(1), "runtime.txt"
    return None


def version_matches(asked: str, have: str) -> bool:
    """Whether an interpreter `have` (3.11.2) is what `asked` (3, 3.11, 3.11.2) asks for."""
    return have.split(".")[: len(asked.split("."))] == asked.split(".")


def choose_interpreter(asked: tuple[str, str] | None,
                       available: Sequence[tuple[str, str]]) -> str:
    """The interpreter (path) for an app among (path, version) pairs, newest matching first.

    Raises LookupError naming what was asked and what there is."""
    if not available:
        raise LookupError("no Python 3 interpreter is installed where Dockyard looks for one")
    if asked is None:
        return _newest(available)[0]
    matching = [(path, have) for path, have in available if version_matches(asked[0], have)]
    if matching:
        return _newest(matching)[0]
    found = ", ".join(f"{have} ({path})" for path, have in available)
    raise LookupError(f"{asked[1]}: asks for Python {asked[0]}, which is not installed here "
                      f"(found: {found}); install it, or change {asked[1]}")


def _newest(pairs: Sequence[tuple[str, str]]) -> tuple[str, str]:
    return max(pairs, key=lambda p: tuple(int(x) for x in p[1].split(".")))


def check_requirements(text: str, file: str = "requirements.txt") -> list[str]:
    """The files a requirements file includes (-r/-c); an unreadable line is an error."""
    included: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if (found := _INCLUDE.match(line)) is not None:
            included.append(found.group(2))
        elif line.startswith("-"):
            continue  # --index-url, --hash, -e <url>...: pip's own business
        elif _REQUIREMENT.match(line) is None:
            raise ManifestError(file, number, f"{line!r} is not a requirement (write e.g. "
                                "flask==3.0.3, one per line)")
    return included


def _installs_local(text: str) -> bool:
    """Whether a requirements file installs the source tree itself (`-e .`, `.`)."""
    return any(_LOCAL.match(line.strip()) for line in text.splitlines())


def pipfile_packages(text: str) -> list[str]:
    """The pinned requirements of Pipfile.lock's `default` section."""
    try:
        lock = msgspec.json.decode(text, type=_Lock)
    except RecursionError:
        raise ManifestError("Pipfile.lock", None, "nests arrays or objects too deeply") from None
    except msgspec.DecodeError as exc:
        raise ManifestError("Pipfile.lock", None, f"is not a Pipfile lock: {exc}") from None
    packages = []
    for name, pin in sorted(lock.default.items()):
        version = pin.get("version")
        if not isinstance(version, str) or not version.startswith("=="):
            raise ManifestError("Pipfile.lock", None,
                                f"default.{name} has no pinned version (run pipenv lock)")
        extras = pin.get("extras")
        extra = f"[{','.join(str(e) for e in extras)}]" if isinstance(extras, list) else ""
        markers = pin.get("markers")
        packages.append(f"{name}{extra}{version}" + (f"; {markers}" if markers else ""))
    return packages


def pyproject_dependencies(text: str) -> list[str]:
    """`[project] dependencies` of pyproject.toml."""
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ManifestError("pyproject.toml", None, "nests arrays or tables too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError("pyproject.toml", None, f"is not TOML: {exc}") from None
    except ValueError as exc:  # a number of over 4300 digits (Python's own limit)
        raise ManifestError("pyproject.toml", None,
                            f"cannot be read: {str(exc).split(';')[0]}") from None
    project = data.get("project", {})
    if not isinstance(project, dict):
        raise ManifestError("pyproject.toml", None, "project must be a table ([project])")
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ManifestError("pyproject.toml", None,
                            "project.dependencies must be a list of requirement strings")
    return deps


def buildpack(files: Mapping[str, str], names: set[str], notes: list[str]) -> Buildpack:
    """The build of a Python app, from its dependency file (the first of DEPENDENCY_FILES)."""
    present = [name for name in DEPENDENCY_FILES if name in names]
    chosen = present[0]
    if len(present) > 1:
        notes.append(f"build: {chosen} wins over {', '.join(present[1:])}")
    asked = requested_version(files)
    venv = BuildStep(label=f"Create the virtualenv {VENV}", kind="python-venv")
    lock_files = [chosen]
    needs_source = False
    if chosen == "uv.lock":
        lock_files = ["pyproject.toml", "uv.lock"] if "pyproject.toml" in names else ["uv.lock"]
        install = BuildStep(label="Install uv.lock", kind="uv-sync", file="uv.lock")
    elif chosen == "requirements.txt":
        text = files.get("requirements.txt", "")
        lock_files += [f for f in check_requirements(text) if f not in lock_files]
        needs_source = _installs_local(text)
        install = BuildStep(label="Install requirements.txt", kind="python-requirements",
                            file="requirements.txt")
    elif chosen == "Pipfile.lock":
        install = BuildStep(label="Install Pipfile.lock", kind="python-packages",
                            file="Pipfile.lock",
                            args=pipfile_packages(files.get("Pipfile.lock", "{}")))
    else:
        install = BuildStep(label="Install pyproject.toml dependencies", kind="python-packages",
                            file="pyproject.toml",
                            args=pyproject_dependencies(files.get("pyproject.toml", "")))
    return Buildpack(
        language="python", detected=[chosen], version=asked[0] if asked else None,
        version_file=asked[1] if asked else None, lock_files=lock_files, deps_dir=VENV,
        needs_source=needs_source, steps=[venv, install], env=dict(ENV), path=[f"{VENV}/bin"])


def render(step: BuildStep, tools: Tools) -> list[list[str]]:
    """The commands (argv) of one step, with uv when the runtime has it, else pip."""
    python = f"{VENV}/bin/python"
    if step.kind == "python-venv":
        if tools.uv is not None:
            # --relocatable: the venv's scripts find their interpreter relative to themselves,
            # so a copy of the release (a one-off's) runs its own venv.
            return [[tools.uv, "venv", "--quiet", "--relocatable", "--python", tools.python,
                     VENV]]
        return [[tools.python, "-m", "venv", VENV]]
    if step.kind == "python-requirements":
        if tools.uv is not None:
            return [[tools.uv, "pip", "install", "--python", python, "-r", str(step.file)]]
        return [[python, "-m", "pip", "install", "--no-input", "-r", str(step.file)]]
    if step.kind == "python-packages":
        if not step.args:
            return []
        if tools.uv is not None:
            return [[tools.uv, "pip", "install", "--python", python, *step.args]]
        return [[python, "-m", "pip", "install", "--no-input", *step.args]]
    if step.kind == "uv-sync":
        uv = tools.uv
        prelude: list[list[str]] = []
        if uv is None:  # uv itself from the index, beside the app's venv (not in it)
            prelude = [[tools.python, "-m", "venv", ".uv"],
                       [".uv/bin/python", "-m", "pip", "install", "--no-input", "-q", UV]]
            uv = ".uv/bin/uv"
        return [*prelude, [uv, "sync", "--locked", "--no-dev", "--no-install-project",
                           "--python", python]]
    raise ValueError(f"not a Python build step: {step.kind}")


def missing_web(names: set[str], files: Mapping[str, str]) -> str:
    """Why a Python app without a web process is refused, and what to write instead."""
    found = [n for n in ENTRY_POINTS if n in names]
    found += sorted(n for n in names if "/" in n and n.rsplit("/", 1)[1] in ("wsgi.py",
                                                                            "asgi.py"))
    deps = " ".join(files.get(n, "") for n in ("requirements.txt", "pyproject.toml")).lower()
    server = "uvicorn" if "uvicorn" in deps and "gunicorn" not in deps else "gunicorn"
    if found:
        entry = found[0]
        module = entry.removesuffix(".py").replace("/", ".")
        example = (f"web: {server} {module}:application" if entry.endswith(("wsgi.py", "asgi.py"))
                   else f"web: {server} {module}:app")
        seen = f"found {', '.join(found)}"
    else:
        example = f"web: {server} myapp:app"
        seen = "found no wsgi.py, asgi.py, app.py or main.py"
    return (f"no web process: a Python app needs a Procfile saying how to serve it ({seen}); "
            f"Dockyard does not guess: add e.g. `{example}` to a Procfile (with {server} in "
            "your dependencies)")
