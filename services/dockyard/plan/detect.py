"""Which kind of app a source tree is, from the names at its top and a few small files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from dockyard.contract.plan import Buildpack, ProcessType
from dockyard.plan import node, python, static
from dockyard.plan.errors import ManifestError

# The files detection reads (besides the manifests), each at most MAX_BUILD_FILE_BYTES.
BUILD_FILES = (".python-version", "runtime.txt", "requirements.txt", "pyproject.toml",
               "Pipfile.lock", "package.json")
MAX_BUILD_FILE_BYTES = 256 * 1024
# No file is named "/": under this key, the tree's top-level names, one a line.
LISTING = "/"
MAX_LISTED = 2000
# One level down only for these (a Django project's `<project>/wsgi.py`).
NESTED = ("wsgi.py", "asgi.py")


def listing(source: Path) -> list[str]:
    """Top-level names of a source tree (and `<dir>/wsgi.py`-like entries), bounded, sorted;
    names that are not printable text are left out."""
    names: list[str] = []
    with os.scandir(source) as entries:
        for entry in entries:
            if len(names) >= MAX_LISTED:
                break
            # Undecodable bytes or a line break: no name detection looks for, and the listing
            # is UTF-8 text of one name a line (kept as JSON with the build's manifests).
            if not entry.name.isprintable():
                continue
            names.append(entry.name)
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                names += [f"{entry.name}/{n}" for n in NESTED
                          if (Path(entry.path) / n).is_file()]
    return sorted(names[:MAX_LISTED])


def read_build_files(source: Path) -> dict[str, str]:
    """The small files detection reads, and the listing under LISTING."""
    files: dict[str, str] = {LISTING: "\n".join(listing(source))}
    for name in BUILD_FILES:
        path = source / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if len(data) > MAX_BUILD_FILE_BYTES:
            raise ManifestError(name, None,
                                f"is {len(data)} bytes (at most {MAX_BUILD_FILE_BYTES})")
        try:
            files[name] = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ManifestError(name, data[: exc.start].count(b"\n") + 1,
                                "is not UTF-8 text") from None
    return files


def names_of(files: Mapping[str, str]) -> set[str]:
    """The tree's names: the listing if kept, else the files themselves (older builds)."""
    if LISTING in files:
        return {n for n in files[LISTING].splitlines() if n}
    return set(files)


def detect(files: Mapping[str, str], dockerfile: str, notes: list[str]) -> Buildpack:
    """The buildpack of a source: Python, Node.js, a static site, or none."""
    names = names_of(files)
    has_dockerfile = dockerfile in names
    if any(n in names for n in python.DEPENDENCY_FILES):
        found = python.buildpack(files, names, notes)
        if "package.json" in names:
            notes.append("build: package.json is not built for a Python app (one language "
                         "per app; run npm from [build] command)")
    elif "package.json" in names:
        found = node.buildpack(files, names, notes)
    elif static.INDEX in names:
        found = static.buildpack()
    else:
        found = Buildpack()
    return msgspec.structs.replace(found, dockerfile=has_dockerfile)


def default_web(build: Buildpack, files: Mapping[str, str]) -> ProcessType:
    """The web process of an app that declares none, or a ManifestError saying what to add."""
    names = names_of(files)
    if build.language == "python":
        raise ManifestError("Procfile", None, python.missing_web(names, files))
    if build.language == "node":
        web = node.default_web(files, names)
        if web is None:
            raise ManifestError("Procfile", None, "no web process: package.json has no "
                                "scripts.start and there is no server.js; add a `start` "
                                "script or a Procfile line such as `web: node index.js`")
        return web
    if build.language == "static":
        return static.WEB
    raise ValueError(f"no default web process for {build.language!r}")


def summary(build: Buildpack) -> list[str]:
    """The build plan as notes: what was detected and what will run."""
    if build.language == "none":
        return []
    told = ", ".join(build.detected)
    lines = [f"build: {build.language} ({told})"]
    if build.version is not None:
        lines.append(f"build: {build.language} {build.version} asked for by {build.version_file}")
    for number, step in enumerate(build.steps, start=1):
        lines.append(f"build: step {number}: {step.label}")
    if build.lock_files:
        lines.append(f"build: dependencies cached while {', '.join(build.lock_files)} "
                     "stay unchanged")
    if build.dockerfile:
        lines.append("build: a Dockerfile is present: the docker runtime builds it instead")
    return lines
