"""Hypothesis keeps caches (source constants, unicode tables) under a home directory even with
no example database, from collection on: here a temporary one, removed when the session ends."""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

# Set on import: the hypothesis plugin writes its constants cache while collection ends.
HOME = tempfile.mkdtemp(prefix="dockyard-hypothesis-")
set_hypothesis_home_dir(HOME)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the temporary home (no `.hypothesis/` is left in the checkout)."""
    del session, exitstatus
    set_hypothesis_home_dir(None)
    shutil.rmtree(HOME, ignore_errors=True)
