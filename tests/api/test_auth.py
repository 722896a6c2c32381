"""The api's token: made once, 0600, kept across restarts; a configured one wins."""

from __future__ import annotations

import stat
from pathlib import Path

from dockyard.api.auth import load_or_create_token


def test_a_token_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "api.token"
    first = load_or_create_token(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == first


def test_a_configured_token_wins_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "api.token"
    assert load_or_create_token(path, "given") == "given"
    assert not path.exists()
