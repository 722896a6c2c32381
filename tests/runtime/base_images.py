"""The language base images of generated Dockerfiles, built locally once (no registry here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "infra" / "base-images" / "build.sh"
PYTHON_BASE = "dockyard-base/python:trixie"
NODE_BASE = "dockyard-base/node:trixie"
_built: set[str] = set()


def ensure_base(language: str) -> str:
    """Build dockyard-base/<language>:trixie unless present (kept across runs by its tag)."""
    image = {"python": PYTHON_BASE, "node": NODE_BASE}[language]
    if image in _built:
        return image
    if shutil.which("mmdebstrap") is None and subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True,
            check=False).returncode != 0:
        why = f"mmdebstrap is needed to build {image} (apt-get install mmdebstrap)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {why}", pytrace=False)
        pytest.skip(f"{why}; CI is unset, so this is not a failure")
    proc = subprocess.run(["sh", str(BUILD_SCRIPT), language, image], capture_output=True,
                          text=True, timeout=1200, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT} {language} failed ({proc.returncode}):\n"
                    f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}", pytrace=False)
    _built.add(image)
    return image


def remove_app_images(app: str) -> None:
    """Remove every image a test app's builds made (its base images stay)."""
    # A parent cannot go while a child image (a predeploy's commit) exists: a few passes.
    for _ in range(4):
        found = subprocess.run(["docker", "images", "-q", "--filter",
                                f"label=dockyard.app={app}"],
                               capture_output=True, text=True, check=False).stdout.split()
        if not found:
            return
        subprocess.run(["docker", "rmi", "-f", *sorted(set(found))], capture_output=True,
                       check=False)
