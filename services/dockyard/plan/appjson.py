"""app.json: the deployment scripts of Heroku/Scalingo (`scripts.postdeploy`) and Dokku
(`scripts.dokku.*`)."""

from __future__ import annotations

import re

import msgspec

from dockyard.contract.manifest import AppJson, HookSpec
from dockyard.plan.errors import ManifestError
from dockyard.plan.jsonc import UnclosedComment, standardize
from dockyard.plan.lines import split_lines

FILE = "app.json"
_BYTE = re.compile(r"\s*\(byte (\d+)\)")
_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`")
ACCEPTED = "// and /* */ comments and trailing commas are accepted, as Dokku reads app.json"
NESTED = "nests arrays or objects too deeply"


class AppJsonHooks(msgspec.Struct, frozen=True, kw_only=True):
    """Per phase: the app.json command that counts, and every key that set that phase
    (winner first)."""

    hooks: dict[str, HookSpec] = {}
    keys: dict[str, list[str]] = {}


def line_of_offset(data: bytes, offset: int) -> int:
    """1-based line number of a byte offset."""
    return data[:offset].count(b"\n") + 1


def parse_app_json(text: str) -> AppJsonHooks:
    """Parse app.json (JSONC); bad JSON names the line, a wrong type names the key."""
    data = text.encode()
    try:
        raw = msgspec.json.decode(standardize(data))
    except UnclosedComment as exc:
        raise ManifestError(FILE, line_of_offset(data, exc.offset), str(exc)) from None
    except RecursionError:
        raise ManifestError(FILE, None, NESTED) from None
    except msgspec.DecodeError as exc:
        message = str(exc)
        match = _BYTE.search(message)
        line = line_of_offset(data, int(match.group(1))) if match else None
        problem = _BYTE.sub("", message)
        if match is None and "truncated" in message:
            line, problem = max(len(split_lines(text)), 1), "JSON ends too early (unclosed { or [?)"
        raise ManifestError(FILE, line, f"{problem} ({ACCEPTED})") from None
    try:
        manifest = msgspec.convert(raw, AppJson)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _AT_PATH.search(message)
        problem = _AT_PATH.sub("", message)
        key = match.group(1) if match else ""
        raise ManifestError(FILE, None, f"{key}: {problem}" if key else problem) from None
    # Dokku's own key is the more specific one, so it wins over the Heroku/Scalingo one.
    # (phase, key, command, first deploy only): `scripts.postdeploy` runs "once, after the app is
    # created and not on subsequent deploys" on Heroku and Dokku, while `scripts.dokku.postdeploy`
    # signals every deploy's completion (https://dokku.com/docs/advanced-usage/deployment-tasks/).
    ordered: list[tuple[str, str, str | None, bool]] = []
    scripts = manifest.scripts
    if scripts is not None:
        if scripts.dokku is not None:
            ordered.append(("predeploy", "scripts.dokku.predeploy", scripts.dokku.predeploy, False))
            ordered.append(
                ("postdeploy", "scripts.dokku.postdeploy", scripts.dokku.postdeploy, False))
        ordered.append(("postdeploy", "scripts.postdeploy", scripts.postdeploy, True))
    hooks: dict[str, HookSpec] = {}
    keys: dict[str, list[str]] = {}
    for phase, key, command, first_only in ordered:
        # An empty script is how app.json templates say "none": treat it as absent.
        if command is None or not command.strip():
            continue
        keys.setdefault(phase, []).append(key)
        hooks.setdefault(phase, HookSpec(command=command.strip(), source=f"{FILE}:{key}",
                                         first_deploy_only=first_only))
    return AppJsonHooks(hooks=hooks, keys=keys)
