"""Helpers of the process runtime's tests: processes by mark, waiting, root-only tests."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.runtime.apptree import remove_tree
from dockyard.runtime.select import Runtimes
from dockyard.runtime.shim import proc_stat
from dockyard.settings import Settings

IS_ROOT = os.geteuid() == 0


def require_root(what: str) -> None:
    """Skip a test of the apps' own users when not root (CI unset); fail with CI set."""
    if IS_ROOT:
        return
    reason = f"{what}: only root can run commands as the apps' own users"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the tests do not run as root: {reason}", pytrace=False)
    pytest.skip(f"{reason} (not root, and CI is unset)")


def gone(pid: int) -> bool:
    """No such process, or only a zombie left of it."""
    stat = proc_stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def marked_processes(mark: str) -> list[int]:
    """Live processes whose environment carries this mark (DOCKYARD_TEST_MARK=mark)."""
    needle = f"DOCKYARD_TEST_MARK={mark}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or gone(int(name)):
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(name))
    return found


async def until(check: Callable[[], object], within: float = 5.0) -> bool:
    """Poll a no-argument callable until it is true (False past the deadline)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def reachable_tmp(prefix: str) -> Path:
    """A fresh directory under /tmp that other users may pass through (0711): pytest's own
    tmp dirs are 0700, which the apps' users could not get through."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


def remove(path: Path) -> None:
    """Remove a tree the tests made, whatever its modes and owners."""
    remove_tree(path)


async def remove_process_app(settings: Settings, app: str) -> None:
    """Stop an app's instances and remove what it left (its tree and user on the process
    runtime, its images and network on docker), then the apps dir."""
    runtimes = Runtimes(settings)
    try:
        runtime = await runtimes.get()
        for ref in await runtime.list_instances(app):
            await runtime.stop_instance(ref, 2.0)
        await runtime.remove_app(app)
    finally:
        await runtimes.close()
        remove(settings.apps_root)
