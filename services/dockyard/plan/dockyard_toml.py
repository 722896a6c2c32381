"""dockyard.toml: hook tables per phase, [health], [build], [rollout], [processes.*], preset,
drain, appjson_postdeploy and rollback_hooks."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from dockyard.contract.manifest import (
    AppJsonPostdeploy,
    DockyardToml,
    HookSpec,
    RollbackHooks,
    TomlHook,
    TomlProcess,
)
from dockyard.contract.phase import HOOK_PHASES
from dockyard.contract.plan import BuildConfig, Health, Rollout, RolloutError, check_steps
from dockyard.plan.durations import parse_duration, parse_memory
from dockyard.plan.errors import ManifestError
from dockyard.plan.lines import split_lines
from dockyard.plan.presets import PRESETS
from dockyard.plan.procfile import PROCESS_NAME

FILE = "dockyard.toml"
KeyPath = tuple[str | int, ...]
T = TypeVar("T")

_TOP_KEYS = msgspec.structs.fields(DockyardToml)
_KNOWN_TOP = tuple(f.name for f in _TOP_KEYS)
_LINE_IN_MESSAGE = re.compile(r"\s*\(at line (\d+), column (\d+)\)")
_AT_PATH = re.compile(r"\s+- at `\$([^`]*)`")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_ARRAY_HEADER = re.compile(r"\s*\[\[\s*(.+?)\s*\]\]\s*(?:#.*)?")
_TABLE_HEADER = re.compile(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?")
_KEY = re.compile(r"\s*((?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)"
                  r"(?:\s*\.\s*(?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=")
_NAME_PART = re.compile(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)")
_FIELDS_OF: dict[str, tuple[str, ...]] = {
    "hook": tuple(f.name for f in msgspec.structs.fields(TomlHook)),
    "process": tuple(f.name for f in msgspec.structs.fields(TomlProcess)),
}


class ProcessOverride(msgspec.Struct, frozen=True, kw_only=True):
    """A `[processes.<name>]` table: scale and/or a command replacing the Procfile's."""

    name: str
    scale: int | None = None
    command: str | None = None
    line: int | None = None
    source: str = ""


class DockyardManifest(msgspec.Struct, frozen=True, kw_only=True):
    """What dockyard.toml defines, validated; a phase present (even empty) defines that phase."""

    hooks: dict[str, list[HookSpec]] = {}
    processes: list[ProcessOverride] = []
    health: Health | None = None
    build: BuildConfig | None = None
    rollout: Rollout | None = None
    preset: str | None = None
    drain: float | None = None
    appjson_postdeploy: AppJsonPostdeploy | None = None
    rollback_hooks: RollbackHooks | None = None


def _names(dotted: str) -> list[str]:
    """The parts of a dotted TOML key or table name, quotes removed."""
    return [next(g for g in m.groups() if g is not None) for m in _NAME_PART.finditer(dotted)]


def line_index(text: str) -> dict[KeyPath, int]:
    """Map each table header and key path of a TOML text to its first line (1-based)."""
    index: dict[KeyPath, int] = {}
    counts: dict[tuple[str, ...], int] = {}
    table: KeyPath = ()
    in_string: str | None = None
    for number, line in enumerate(split_lines(text), start=1):
        # Lines inside a multi-line string are values, not headers or keys.
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        array = _ARRAY_HEADER.fullmatch(line)
        header = None if array else _TABLE_HEADER.fullmatch(line)
        if array:
            name = tuple(_names(array.group(1)))
            counts[name] = counts.get(name, 0) + 1
            table = (*name, counts[name] - 1)
            index.setdefault(name, number)
            index.setdefault(table, number)
        elif header:
            table = tuple(_names(header.group(1)))
            index.setdefault(table, number)
        elif key := _KEY.match(line):
            index.setdefault((*table, *_names(key.group(1))), number)
        for quote in ('"""', "'''"):
            if line.count(quote) % 2 == 1:
                in_string = quote
    return index


def locate(text: str, path: Sequence[str | int],
           index: dict[KeyPath, int] | None = None) -> int | None:
    """Line of a value path like ("release", 0, "timeout"), else of its nearest enclosing table
    (in `index`, the text's line_index, when the caller has it already)."""
    if index is None:
        index = line_index(text)
    here = tuple(path)
    while here:
        if here in index:
            return index[here]
        here = here[:-1]
    return None


def _dotted(path: KeyPath) -> str:
    """A path as written in messages: release[0].timeout, processes.web.scale."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _parse_path(text: str) -> KeyPath:
    """A msgspec error path (after `$`) as a tuple."""
    return tuple(int(i) if i else k for k, i in _PATH_PART.findall(text))


class _Reader:
    """Validation of one dockyard.toml text: every error carries the line of the offending key."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._index: dict[KeyPath, int] | None = None

    def locate(self, path: Sequence[str | int]) -> int | None:
        """The line of a path; the text is indexed once (a file of thousands of tables is read
        in linear time, not once per table)."""
        if self._index is None:
            self._index = line_index(self.text)
        return locate(self.text, path, self._index)

    def fail(self, path: KeyPath, problem: str, line_at: KeyPath | None = None) -> ManifestError:
        """The error for a problem at a path (its line found at `line_at`, else at the path)."""
        where = _dotted(path)
        line = self.locate(path if line_at is None else line_at)
        return ManifestError(FILE, line, f"{where}: {problem}" if where else problem)

    def convert(self, raw: Any, type_: type[T], prefix: KeyPath, kind: str) -> T:
        """msgspec.convert, with its error rephrased at the manifest's line."""
        try:
            return msgspec.convert(raw, type_)
        except msgspec.ValidationError as exc:
            message = str(exc)
            match = _AT_PATH.search(message)
            path = (*prefix, *_parse_path(match.group(1) if match else ""))
            problem = _AT_PATH.sub("", message)
            unknown = re.fullmatch(r"Object contains unknown field `(.+)`", problem)
            missing = re.fullmatch(r"Object missing required field `(.+)`", problem)
            if unknown:
                field = unknown.group(1)
                known = ", ".join(_FIELDS_OF.get(_kind_of(path, kind), ()))
                raise self.fail(
                    path, f"unknown key `{field}` (known keys: {known})", (*path, field)
                ) from None
            if missing:
                raise self.fail(path, f"missing required key `{missing.group(1)}`") from None
            if re.fullmatch(r"Expected `array \| null`, got `object`", problem) and len(path) == 1:
                problem += f" (write [[{path[0]}]], one table per command)"
            raise self.fail(path, problem[:1].lower() + problem[1:]) from None

    def value(self, path: KeyPath, parse: Callable[[Any], T], raw: Any) -> T:
        """A parsed value, or the error naming its line."""
        try:
            return parse(raw)
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None

    def text_field(self, path: KeyPath, raw: str | None, *, required: bool) -> str | None:
        """A non-blank string, stripped."""
        if raw is None:
            return None
        if not raw.strip():
            raise self.fail(path, "must not be empty" if required
                            else "must not be empty (omit it)")
        return raw.strip()


def _kind_of(path: KeyPath, default: str) -> str:
    """Which table shape a path points into, for listing its known keys."""
    if path and path[0] in HOOK_PHASES:
        return "hook"
    if path and path[0] == "processes":
        return "process"
    return default


def parse_dockyard_toml(text: str) -> DockyardManifest:
    """Parse and validate dockyard.toml; every problem is a ManifestError with its line."""
    try:
        raw = msgspec.toml.decode(text)
    except msgspec.DecodeError as exc:
        message = str(exc)
        match = _LINE_IN_MESSAGE.search(message)
        line = int(match.group(1)) if match else None
        problem = _LINE_IN_MESSAGE.sub(f" (column {match.group(2)})" if match else "", message)
        if line is None and "end of document" in message:
            line = max(len(split_lines(text)), 1)
        raise ManifestError(FILE, line, problem) from None
    except RecursionError:
        raise ManifestError(FILE, None, "nests arrays or tables too deeply") from None
    except ValueError as exc:  # tomllib's own, past its grammar: a number of over 4300 digits
        raise ManifestError(FILE, None, f"cannot be read: {str(exc).split(';')[0]}") from None
    reader = _Reader(text)
    _check_top_level(reader, raw)
    processes_raw = raw.pop("processes", {})
    doc = reader.convert(raw, DockyardToml, (), "top")
    if not isinstance(processes_raw, dict):
        raise reader.fail(("processes",), "must be a table of [processes.<name>] tables")
    processes = [
        _process(reader, name, reader.convert(value, TomlProcess, ("processes", name), "process"))
        for name, value in processes_raw.items()
    ]
    hooks: dict[str, list[HookSpec]] = {}
    for phase in HOOK_PHASES:
        tables: list[TomlHook] | None = getattr(doc, phase)
        if tables is not None:
            hooks[phase] = [_hook(reader, phase, i, t) for i, t in enumerate(tables)]
    preset = doc.preset
    if preset is not None and preset not in PRESETS:
        known = ", ".join(sorted(PRESETS))
        raise reader.fail(("preset",), f"unknown preset `{preset}` (known presets: {known})")
    drain = None
    if doc.drain is not None:
        drain = reader.value(("drain",), lambda v: parse_duration(v, allow_zero=True), doc.drain)
    return DockyardManifest(
        hooks=hooks,
        processes=processes,
        health=_health(reader, doc),
        build=_build(reader, doc),
        rollout=_rollout(reader, doc),
        preset=preset,
        drain=drain,
        appjson_postdeploy=doc.appjson_postdeploy,
        rollback_hooks=doc.rollback_hooks,
    )


def _check_top_level(reader: _Reader, raw: dict[str, Any]) -> None:
    """Unknown top-level keys; an unknown array of tables is most likely a misspelt phase."""
    for key, value in raw.items():
        if key in _KNOWN_TOP:
            continue
        close = difflib.get_close_matches(key, _KNOWN_TOP, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            known = ", ".join(HOOK_PHASES)
            raise reader.fail((), f"unknown phase `{key}` (known phases: {known}){hint}", (key,))
        known = ", ".join(_KNOWN_TOP)
        kind = "table" if isinstance(value, dict) else "key"
        raise reader.fail((), f"unknown {kind} `{key}` (known: {known}){hint}", (key,))


def _hook(reader: _Reader, phase: str, i: int, table: TomlHook) -> HookSpec:
    """One hook table, validated, with its source."""
    at: KeyPath = (phase, i)
    command = reader.text_field((*at, "command"), table.command, required=True)
    assert command is not None  # required field: msgspec already refused a missing one
    line = reader.locate(at)
    return HookSpec(
        command=command,
        label=reader.text_field((*at, "label"), table.label, required=False),
        timeout=None if table.timeout is None
        else reader.value((*at, "timeout"), parse_duration, table.timeout),
        memory=None if table.memory is None
        else reader.value((*at, "memory"), parse_memory, table.memory),
        source=f"{FILE}:[[{phase}]]#{i + 1}" + (f" (line {line})" if line else ""),
    )


def _process(reader: _Reader, name: str, table: TomlProcess) -> ProcessOverride:
    """One [processes.<name>] table, validated."""
    at: KeyPath = ("processes", name)
    if not PROCESS_NAME.fullmatch(name):
        raise reader.fail(at, "a process name may hold only letters, digits, '_' and '-'")
    line = reader.locate(at)
    return ProcessOverride(
        name=name,
        scale=table.scale,
        command=reader.text_field((*at, "command"), table.command, required=True),
        line=line,
        source=f"{FILE}:[processes.{name}]" + (f" (line {line})" if line else ""),
    )


def _health(reader: _Reader, doc: DockyardToml) -> Health | None:
    """The [health] table as a Health."""
    if doc.health is None:
        return None
    path = doc.health.path
    if path is not None and not path.startswith("/"):
        raise reader.fail(("health", "path"), f'"{path}" must start with "/"')
    timeout = Health().timeout
    if doc.health.timeout is not None:
        timeout = reader.value(("health", "timeout"), parse_duration, doc.health.timeout)
    return Health(path=path, timeout=timeout)


def _build(reader: _Reader, doc: DockyardToml) -> BuildConfig | None:
    """The [build] table as a BuildConfig."""
    if doc.build is None:
        return None
    default = BuildConfig()
    dockerfile = reader.text_field(("build", "dockerfile"), doc.build.dockerfile, required=True)
    timeout = default.timeout
    if doc.build.timeout is not None:
        timeout = reader.value(("build", "timeout"), parse_duration, doc.build.timeout)
    return BuildConfig(
        dockerfile=dockerfile or default.dockerfile,
        command=reader.text_field(("build", "command"), doc.build.command, required=True),
        timeout=timeout,
    )



def _rollout(reader: _Reader, doc: DockyardToml) -> Rollout | None:
    """The [rollout] table as a Rollout: steps ascending multiples of 5 below 100, thresholds
    in range."""
    table = doc.rollout
    if table is None:
        return None
    default = Rollout()
    steps = default.steps if table.steps is None else table.steps
    try:
        check_steps(steps)
    except RolloutError as exc:
        raise reader.fail(("rollout", "steps"), str(exc)) from None
    hold = default.hold if table.hold is None else reader.value(
        ("rollout", "hold"), parse_duration, table.hold)
    errors = default.max_error_increase if table.max_error_increase is None \
        else table.max_error_increase
    if not 0 <= errors <= 1:
        raise reader.fail(("rollout", "max_error_increase"), f"{errors} is not a fraction of "
                          "requests between 0 and 1 (0.02: two points more errors than the old)")
    ratio = default.max_latency_ratio if table.max_latency_ratio is None \
        else table.max_latency_ratio
    if not 1 <= ratio <= 100:
        raise reader.fail(("rollout", "max_latency_ratio"), f"{ratio} is not a ratio between 1 "
                          "and 100 (1.5: the new p95 may be half again the old one)")
    minimum = default.min_requests if table.min_requests is None else table.min_requests
    if not 1 <= minimum <= 1_000_000:
        raise reader.fail(("rollout", "min_requests"), f"{minimum} is not a count between 1 and "
                          "1000000")
    watch = default.watch if table.watch is None else reader.value(
        ("rollout", "watch"), lambda v: parse_duration(v, allow_zero=True), table.watch)
    if not steps and not watch:
        raise reader.fail(("rollout", "steps"), "no step and no watch window: give the steps "
                          '(e.g. [5, 25]), a watch window (e.g. watch = "5m"), or both')
    return Rollout(steps=list(steps), hold=hold, max_error_increase=float(errors),
                   max_latency_ratio=float(ratio), min_requests=minimum,
                   inconclusive=table.inconclusive or default.inconclusive, watch=watch)
