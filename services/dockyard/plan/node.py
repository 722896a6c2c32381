"""Node.js apps: package.json and its lock file, engines.node, the build steps, the default web."""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

from dockyard.contract.plan import Buildpack, BuildStep, ProcessType
from dockyard.plan.errors import ManifestError

NPM_LOCKS = ("package-lock.json", "npm-shrinkwrap.json")
OTHER_LOCKS = {"yarn.lock": "yarn", "pnpm-lock.yaml": "pnpm", "bun.lockb": "bun"}
NODE_MODULES = "node_modules"
# What Heroku's Node.js buildpack sets for a 512 MiB dyno (the app's config wins).
ENV = {"NODE_ENV": "production", "WEB_CONCURRENCY": "1", "NPM_CONFIG_UPDATE_NOTIFIER": "false"}

_PART = r"(?:0|[1-9]\d*|[xX*])"
_COMPARATOR = re.compile(rf"^(<=|>=|<|>|=|\^|~)?\s*v?({_PART})(?:\.({_PART}))?(?:\.({_PART}))?"
                         r"(?:-[0-9A-Za-z.-]+)?$")
_HYPHEN = re.compile(r"^(\S+)\s+-\s+(\S+)$")

Version = tuple[int, int, int]


class _Package(msgspec.Struct, kw_only=True):
    """The parts of package.json read."""

    scripts: dict[str, str] = {}
    engines: dict[str, str] = {}


def parse_package_json(text: str) -> _Package:
    """package.json, strictly (npm reads no comments); errors name the line."""
    try:
        raw = msgspec.json.decode(text)
    except RecursionError:
        raise ManifestError("package.json", None, "nests arrays or objects too deeply") from None
    except msgspec.DecodeError as exc:
        message = str(exc)
        found = re.search(r"\s*\(byte (\d+)\)$", message)
        line = None
        if found is not None:
            line = text.encode()[: int(found.group(1))].count(b"\n") + 1
            message = message[: found.start()]
        if not message.startswith("JSON is malformed"):
            message = f"JSON is malformed: {message}"
        raise ManifestError("package.json", line, message) from None
    if not isinstance(raw, dict):
        raise ManifestError("package.json", None, "must be a JSON object")
    try:
        return msgspec.convert(raw, _Package)
    except msgspec.ValidationError as exc:
        raise ManifestError("package.json", None, str(exc)) from None


def parse_version(text: str) -> Version:
    """`v20.11.1` → (20, 11, 1)."""
    numbers = [int(x) for x in re.findall(r"\d+", text.split("-", 1)[0])[:3]]
    while len(numbers) < 3:
        numbers.append(0)
    return numbers[0], numbers[1], numbers[2]


def satisfies(version: Version, spec: str) -> bool:
    """Whether a version satisfies an npm range (`>=18`, `^20.1`, `18.x || 20.x`, `1 - 2`).

    Raises ValueError for a range it cannot read."""
    spec = spec.strip()
    if spec in ("", "*", "x", "latest"):
        return True
    return any(_all(version, alt.strip()) for alt in spec.split("||"))


def _all(version: Version, conjunction: str) -> bool:
    if (hyphen := _HYPHEN.match(conjunction)) is not None:
        low, _ = _bound(hyphen.group(1))
        high, exact = _bound(hyphen.group(2))
        return version >= low and (version <= high if exact else version < _next(hyphen.group(2)))
    parts = re.sub(r"(<=|>=|<|>|=|\^|~)\s+", r"\1", conjunction).split()
    return all(_one(version, part) for part in parts) if parts else True


def _pieces(text: str) -> tuple[str, list[int | None]]:
    found = _COMPARATOR.match(text)
    if found is None:
        raise ValueError(f"not a version range: {text!r}")
    numbers = [None if p is None or p in "xX*" else int(p) for p in found.groups()[1:]]
    return found.group(1) or "", numbers


def _bound(text: str) -> tuple[Version, bool]:
    """The lowest version a partial version names, and whether it was complete."""
    _, nums = _pieces(text)
    known = [n for n in nums if n is not None]
    complete = len(known) == 3
    padded = [*known, 0, 0, 0][:3]
    return (padded[0], padded[1], padded[2]), complete


def _next(text: str) -> Version:
    """The first version past a partial one (`1.2` → 1.3.0, `1` → 2.0.0)."""
    _, nums = _pieces(text)
    known = [n for n in nums if n is not None]
    if len(known) == 0:
        return (10**9, 0, 0)
    if len(known) == 1:
        return (known[0] + 1, 0, 0)
    return (known[0], known[1] + 1, 0)


def _one(version: Version, text: str) -> bool:
    op, nums = _pieces(text)
    low, complete = _bound(text)
    known = [n for n in nums if n is not None]
    if op in ("", "="):
        return version == low if complete else low <= version < _next(text)
    if op == ">=":
        return version >= low
    if op == ">":
        return version > low if complete else version >= _next(text)
    if op == "<":
        return version < low
    if op == "<=":
        return version <= low if complete else version < _next(text)
    if op == "~":
        upper = (low[0] + 1, 0, 0) if len(known) == 1 else (low[0], low[1] + 1, 0)
        return low <= version < upper
    # ^: the leftmost non-zero part may not change
    if low[0] > 0 or len(known) == 1:
        upper = (low[0] + 1, 0, 0)
    elif low[1] > 0 or len(known) == 2:
        upper = (0, low[1] + 1, 0)
    else:
        upper = (0, 0, low[2] + 1)
    return low <= version < upper


def check_engine(spec: str, have: str) -> str | None:
    """Why a node version does not do for `engines.node` (None when it does)."""
    try:
        ok = satisfies(parse_version(have), spec)
    except ValueError as exc:
        return f"package.json: engines.node: {exc}"
    if ok:
        return None
    return (f"package.json: engines.node asks for {spec!r}, and the Node.js here is {have}; "
            "install a matching Node.js or change engines.node")


def buildpack(files: Mapping[str, str], names: set[str], notes: list[str]) -> Buildpack:
    """The build of a Node.js app: `npm ci` from its lock file, then its `build` script."""
    package = parse_package_json(files.get("package.json", "{}"))
    for other, tool in OTHER_LOCKS.items():
        if other in names and not any(n in names for n in NPM_LOCKS):
            raise ManifestError(other, None, f"{tool} is not supported: Dockyard installs with "
                                "npm (run npm install and commit package-lock.json)")
    engine = package.engines.get("node")
    if engine is not None:
        try:
            satisfies((0, 0, 0), engine)
        except ValueError as exc:
            raise ManifestError("package.json", None, f"engines.node: {exc}") from None
    lock = next((n for n in NPM_LOCKS if n in names), None)
    if lock is None:
        notes.append("build: no package-lock.json: `npm install` resolves the dependencies "
                     "afresh (commit package-lock.json for repeatable, cached installs)")
        install = BuildStep(label="npm install", kind="npm-install", file="package.json")
        lock_files = ["package.json"]
    else:
        install = BuildStep(label="npm ci", kind="npm-ci", file=lock)
        lock_files = ["package.json", lock]
    steps = [install]
    if package.scripts.get("build"):
        steps.append(BuildStep(label="npm run build", kind="npm-build", file="package.json",
                               installs=False))
    return Buildpack(
        language="node", detected=["package.json", *([lock] if lock else [])], version=engine,
        version_file="package.json" if engine else None, lock_files=lock_files,
        deps_dir=NODE_MODULES, steps=steps, env=dict(ENV), path=[f"{NODE_MODULES}/.bin"])


def render(step: BuildStep, npm: str = "npm") -> list[list[str]]:
    """The commands (argv) of one step."""
    quiet = ["--no-audit", "--no-fund"]
    if step.kind == "npm-ci":
        return [[npm, "ci", *quiet]]
    if step.kind == "npm-install":
        return [[npm, "install", *quiet]]
    if step.kind == "npm-build":
        return [[npm, "run", "build"]]
    raise ValueError(f"not a Node.js build step: {step.kind}")


def default_web(files: Mapping[str, str], names: set[str]) -> ProcessType | None:
    """Heroku's default: `npm start` when package.json has a start script, else server.js."""
    package = parse_package_json(files.get("package.json", "{}"))
    if package.scripts.get("start"):
        return ProcessType(name="web", command="npm start", source="package.json:scripts.start")
    if "server.js" in names:
        return ProcessType(name="web", command="node server.js", source="server.js")
    return None


