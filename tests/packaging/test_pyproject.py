"""A non-editable install (the services' image) must carry every package and data file."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "services" / "dockyard"


def test_packages_are_found_not_listed() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["packages"] == {"find": {"where": ["services"]}}


def test_every_folder_with_python_is_a_package() -> None:
    # `packages.find` skips a folder without __init__.py: its modules would be missing from
    # a wheel while an editable install still imports them.
    missing = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*") if p.is_dir()
               and p.name != "__pycache__" and any(p.glob("*.py"))
               and p.relative_to(PACKAGE).parts[:2] != ("demo", "sample")  # an app, shipped as data
               and not (p / "__init__.py").exists()]
    assert missing == []
