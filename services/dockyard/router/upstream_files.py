"""The files Caddy reads an app's upstream addresses from; one atomic rename switches them all.

Every path is built by `app_dir`: from a checked app name, and resolved inside the routes
directory, so no event or record can make the router write anywhere else.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from dockyard.contract.names import InvalidAppName, check_app
from dockyard.router.errors import UnsafePath

CURRENT = "current"


def app_dir(routes_dir: Path, app: str) -> Path:
    """The directory of an app's files: a checked name, resolved inside routes_dir."""
    try:
        check_app(app)
    except InvalidAppName as exc:
        raise UnsafePath(routes_dir, app, exc.problem) from None
    root = routes_dir.resolve()
    folder = (root / app).resolve()
    if folder.parent != root:
        # A checked name has no separator, but a symlink planted in the directory could lead out.
        raise UnsafePath(routes_dir, app, f"resolves to {folder}, outside {root}")
    return folder


def current_addresses(routes_dir: Path, app: str) -> list[str] | None:
    """The addresses an app's host routes to now, or None when it has no files."""
    folder = app_dir(routes_dir, app) / CURRENT
    if not folder.exists():
        return None
    files = sorted(folder.iterdir(), key=lambda p: int(p.name))
    return [p.read_text() for p in files]


def current_generation(routes_dir: Path, app: str) -> str | None:
    """The generation directory `current` points at."""
    link = app_dir(routes_dir, app) / CURRENT
    return os.readlink(link) if link.is_symlink() else None


def switch(routes_dir: Path, app: str, addresses: list[str]) -> str | None:
    """Point the app at new addresses in one rename; returns the generation it replaced."""
    folder = app_dir(routes_dir, app)
    folder.mkdir(parents=True, exist_ok=True)
    previous = current_generation(routes_dir, app)
    generation = f"gen-{uuid.uuid4().hex[:12]}"
    (folder / generation).mkdir()
    for index, address in enumerate(addresses):
        (folder / generation / str(index)).write_text(address)
    point(routes_dir, app, generation)
    return previous


def point(routes_dir: Path, app: str, generation: str) -> None:
    """Atomically make `current` point at a generation (rename of a fresh symlink over it)."""
    folder = app_dir(routes_dir, app)
    tmp = folder / f".current-{uuid.uuid4().hex[:8]}"
    os.symlink(generation, tmp)
    os.replace(tmp, folder / CURRENT)


def prune(routes_dir: Path, app: str, keep: set[str]) -> None:
    """Remove generations other than the current one and `keep`."""
    folder = app_dir(routes_dir, app)
    current = current_generation(routes_dir, app)
    for path in folder.glob("gen-*"):
        if path.name != current and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


def restore(routes_dir: Path, app: str, previous: str | None) -> None:
    """Undo a switch: back to the previous generation, or no files at all if there was none."""
    if previous is not None:
        point(routes_dir, app, previous)
    else:
        (app_dir(routes_dir, app) / CURRENT).unlink(missing_ok=True)


def remove_app(routes_dir: Path, app: str) -> None:
    """Remove an app's upstream files (the app is destroyed and no longer routed)."""
    shutil.rmtree(app_dir(routes_dir, app), ignore_errors=True)
