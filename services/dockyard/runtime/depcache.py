"""Each app's dependency cache on the process runtime: installed dirs kept by lock-file key.

    <apps_dir>/<app>/cache/             the app user's, 0700
        deps/<key>/<deps_dir>           a finished install (.venv, node_modules), copied from
        uv/, npm/                       the installers' own download caches

A release gets a copy, never a link: release dirs are sealed root's, the cache stays the
app's, and a change to one must never reach the other.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from dockyard.runtime.apptree import PRIVATE, copy_tree, own_tree, remove_tree, safe_name
from dockyard.runtime.users import AppUser

DEPS = "deps"
KEEP = 2  # installs kept per app: the live one and the one before (a rollback's)


def prepare(app_root: Path, user: AppUser | None) -> Path:
    """The app's cache dir, made on first use: its user's alone."""
    cache = app_root / "cache"
    for path in (cache, cache / DEPS, cache / "uv", cache / "npm"):
        path.mkdir(exist_ok=True)
        if user is not None:
            os.lchown(path, user.uid, user.gid)
        os.chmod(path, PRIVATE)
    return cache


def restore(cache: Path, key: str, deps_dir: str, dest: Path, user: AppUser | None) -> bool:
    """Copy a cached install into a release dir; False when there is none for this key."""
    kept = cache / DEPS / safe_name(key) / deps_dir
    if not kept.is_dir() or kept.is_symlink():
        return False
    target = dest / deps_dir
    remove_tree(target)
    copy_tree(kept, target)
    own_tree(target, user)
    os.utime(cache / DEPS / key)  # most recently used: the last to be pruned
    return True


def store(cache: Path, key: str, deps_dir: str, dest: Path, user: AppUser | None) -> None:
    """Keep a release's fresh install under its key (atomically), and prune older ones."""
    made = dest / deps_dir
    if not made.is_dir():
        return
    final = cache / DEPS / safe_name(key)
    tmp = cache / DEPS / f".{key}.{secrets.token_hex(4)}"
    copy_tree(made, tmp / deps_dir)
    own_tree(tmp, user)
    remove_tree(final)
    os.replace(tmp, final)
    prune(cache, KEEP)


def prune(cache: Path, keep: int) -> list[str]:
    """Remove all but the `keep` most recently used installs (and half-made ones)."""
    folder = cache / DEPS
    entries = [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    for half in [p for p in entries if p.name.startswith(".")]:
        remove_tree(half)
    done = sorted((p for p in entries if not p.name.startswith(".")),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    removed = []
    for old in done[keep:]:
        remove_tree(old)
        removed.append(old.name)
    return removed
