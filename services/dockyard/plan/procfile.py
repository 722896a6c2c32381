"""The Procfile: `name: command` lines; `release` and `postdeploy` are hooks, the rest processes."""

from __future__ import annotations

import re

import msgspec

from dockyard.contract.manifest import HookSpec
from dockyard.contract.plan import ProcessType
from dockyard.plan.errors import ManifestError
from dockyard.plan.lines import split_lines

FILE = "Procfile"
# Procfile names that are hook commands (Heroku/Dokku `release`, Scalingo `postdeploy`),
# not processes.
HOOK_NAMES = ("release", "postdeploy")
PROCESS_NAME = re.compile(r"[A-Za-z0-9_-]+")
# Whole-line comments: `#`, and `//` as procfile-util (Dokku) reads them; foreman and honcho skip
# every line that is not `name: command`, so both are comments there too.
COMMENT_STARTS = ("#", "//")


class Procfile(msgspec.Struct, frozen=True, kw_only=True):
    """What a Procfile defines: process types in file order, and at most one command per hook."""

    processes: list[ProcessType] = []
    hooks: dict[str, HookSpec] = {}


def parse_procfile(text: str) -> Procfile:
    """Parse a Procfile; a malformed line is a ManifestError with its line number."""
    processes: list[ProcessType] = []
    hooks: dict[str, HookSpec] = {}
    seen: dict[str, int] = {}
    for number, raw in enumerate(split_lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith(COMMENT_STARTS):
            continue
        name, colon, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not colon:
            raise ManifestError(FILE, number, f"expected `name: command`, got {line!r}")
        if not name:
            raise ManifestError(FILE, number, "empty process name before `:`")
        if not PROCESS_NAME.fullmatch(name):
            raise ManifestError(
                FILE, number, f"process name {name!r} may hold only letters, digits, '_' and '-'"
            )
        if not command:
            raise ManifestError(FILE, number, f"`{name}:` has no command")
        if name in seen:
            raise ManifestError(FILE, number, f"`{name}:` is already defined on line {seen[name]}")
        seen[name] = number
        source = f"{FILE}:{number}"
        if name in HOOK_NAMES:
            hooks[name] = HookSpec(command=command, source=source)
        else:
            processes.append(ProcessType(name=name, command=command, source=source))
    return Procfile(processes=processes, hooks=hooks)
