"""The process runtime's dependency cache: a kept install is copied into a release, never linked."""

from __future__ import annotations

import os
import time
from pathlib import Path

from dockyard.runtime.depcache import DEPS, prepare, prune, restore, store


def test_store_restore_and_prune(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    cache = prepare(tmp_path / "app", None)
    assert (cache / DEPS).is_dir() and oct(cache.stat().st_mode & 0o777) == "0o700"
    release = tmp_path / "r1"
    (release / ".venv" / "bin").mkdir(parents=True)
    (release / ".venv" / "bin" / "tool").write_text("v1")
    assert restore(cache, "python-a", ".venv", release, None) is False
    store(cache, "python-a", ".venv", release, None)
    other = tmp_path / "r2"
    other.mkdir()
    assert restore(cache, "python-a", ".venv", other, None) is True
    copied = other / ".venv" / "bin" / "tool"
    assert copied.read_text() == "v1"
    kept = cache / DEPS / "python-a" / ".venv" / "bin" / "tool"
    assert os.stat(copied).st_ino != os.stat(kept).st_ino  # a copy, not a hard link
    for key in ("python-b", "python-c"):
        time.sleep(0.01)
        store(cache, key, ".venv", release, None)
    assert sorted(p.name for p in (cache / DEPS).iterdir()) == ["python-b", "python-c"]
    (cache / DEPS / ".python-d.half").mkdir()
    assert prune(cache, 1) == ["python-b"]
    assert sorted(p.name for p in (cache / DEPS).iterdir()) == ["python-c"]
