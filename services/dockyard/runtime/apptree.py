"""Each app's tree on the process runtime: release dirs, work copies, a home; who may read them.

Layout (DOCKYARD_APPS_DIR, default `<data_dir>.apps`; the data dir itself is root's alone):

    <apps_dir>/                 root 0711: others may pass through, not list
    <apps_dir>/<app>/           root:<app's group> 0750: the app's user and root, nobody else
        builds/<build_id>/      release dirs: root's, read-only, readable by the app's group
        work/<container>-<hex>  a one-off's throwaway copy: the app user's, writable
        home/                   $HOME: the app user's, 0700

Release dirs belong to root (not to the app's user) so the app cannot make them writable again.
When Dockyard does not run as root there is no app user: everything is Dockyard's user's.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from dockyard.runtime.base import ContainmentError
from dockyard.runtime.users import AppUser, ensure_user

APPS_DIR_MODE = 0o711
APP_DIR_MODE = 0o750
PRIVATE = 0o700
USERS_LOCK = ".users.lock"


def safe_name(value: str) -> str:
    """A path component taken from outside; refuses anything that could leave its directory."""
    if not value or value in (".", "..") or "/" in value or "\0" in value:
        raise ValueError(f"not a usable name: {value!r}")
    return value


@dataclass(frozen=True)
class AppTree:
    """Where one app's files live, and the user (if any) its commands run as."""

    root: Path
    user: AppUser | None

    @property
    def builds(self) -> Path:
        """Release directories."""
        return self.root / "builds"

    @property
    def work(self) -> Path:
        """One-offs' throwaway copies."""
        return self.root / "work"

    @property
    def home(self) -> Path:
        """The app user's $HOME."""
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        """The app's $TMPDIR: its own, not the host's shared /tmp (gone with the app)."""
        return self.root / "tmp"


def unreachable_ancestor(path: Path) -> Path | None:
    """The first directory above path that other users cannot pass through, if any."""
    for parent in reversed(path.parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent
    return None


def prepare_apps_dir(apps_dir: Path, isolated: bool) -> None:
    """Create the apps dir (0711); with app users, check that they can reach it."""
    apps_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(apps_dir, APPS_DIR_MODE)
    if isolated and (blocked := unreachable_ancestor(apps_dir)) is not None:
        raise ContainmentError(
            f"the apps dir {apps_dir} cannot be reached by the apps' users: {blocked} is not "
            f"searchable by others (mode {stat.S_IMODE(os.stat(blocked).st_mode):04o}); set "
            "DOCKYARD_APPS_DIR to a directory outside it (e.g. /srv/dockyard-apps)")


def prepare_tree(apps_dir: Path, app: str, isolated: bool) -> AppTree:
    """The app's tree, made (and its user created) on first use; modes set every time."""
    root = apps_dir / safe_name(app)
    root.mkdir(exist_ok=True)
    user = ensure_user(app, root / "home", apps_dir / USERS_LOCK) if isolated else None
    tree = AppTree(root=root, user=user)
    for path in (tree.builds, tree.work, tree.home, tree.tmp):
        path.mkdir(exist_ok=True)
    if user is None:
        for path in (root, tree.builds, tree.work, tree.home, tree.tmp):
            os.chmod(path, PRIVATE)
        return tree
    for path in (root, tree.builds, tree.work):
        os.chown(path, 0, user.gid)
        os.chmod(path, APP_DIR_MODE)
    for path in (tree.home, tree.tmp):
        os.chown(path, user.uid, user.gid)
        os.chmod(path, PRIVATE)
    return tree


# ---------------------------------------------------------------- whole trees


def _entries(path: Path) -> list[str]:
    """Every entry below path, then path itself."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(path):
        out.extend(os.path.join(dirpath, name) for name in filenames + dirnames)
    return [*out, str(path)]


def _writable(path: str) -> None:
    mode = os.lstat(path).st_mode
    if not stat.S_ISLNK(mode):  # chmod would follow a symlink
        os.chmod(path, stat.S_IMODE(mode) | stat.S_IWUSR)


def sealed_mode(mode: int, to_group: bool) -> int:
    """A release entry's mode: nobody writes, no setuid/setgid; with an app group, only the
    owner (root) and that group read, else read and search bits are kept."""
    searchable = stat.S_ISDIR(mode) or bool(mode & 0o111)
    owner = 0o5 if searchable else 0o4
    if to_group:
        return (owner << 6) | (owner << 3)
    return (owner << 6) | (stat.S_IMODE(mode) & 0o055)


def seal_tree(path: Path, user: AppUser | None) -> None:
    """Make a release dir immutable: root's (group: the app's), read-only, no setuid bits."""
    for entry in _entries(path):
        mode = os.lstat(entry).st_mode
        if user is not None:
            os.lchown(entry, 0, user.gid)
        if not stat.S_ISLNK(mode):
            os.chmod(entry, sealed_mode(mode, user is not None))


def own_tree(path: Path, user: AppUser | None) -> None:
    """Hand a tree to the app's user, writable (a work copy, a build in progress)."""
    # Top-down: a directory must be writable before its entries can change.
    for entry in reversed(_entries(path)):
        if user is not None:
            os.lchown(entry, user.uid, user.gid)
        _writable(entry)


def remove_tree(path: Path) -> None:
    """Remove a tree whatever its modes (release dirs are read-only); missing is fine."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_symlink():
        for entry in reversed(_entries(path)):
            if os.path.isdir(entry) and not os.path.islink(entry):
                _writable(entry)
    shutil.rmtree(path) if not path.is_symlink() else path.unlink()


def copy_tree(source: Path, dest: Path) -> None:
    """Copy a tree (without .git), symlinks kept as symlinks, writable by its owner."""
    shutil.copytree(source, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    for entry in reversed(_entries(dest)):
        _writable(entry)
