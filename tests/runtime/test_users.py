"""Each app's own user: created once, unprivileged, alone in its group (real useradd, as root)."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.runtime.base import ContainmentError
from dockyard.runtime.users import ensure_user, remove_user, uid_of, user_name
from tests.runtime.process_support import require_root


def test_user_names_are_short_stable_and_distinct() -> None:
    assert user_name("shop") == user_name("shop")
    assert user_name("shop") != user_name("shop-2")
    assert len(user_name("a" * 63)) == 15 and user_name("a").startswith("dy-")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[str]:
    require_root("creating the apps' users")
    name = f"users-{uuid.uuid4().hex[:8]}"
    yield name
    remove_user(name)
    assert uid_of(name) is None


def test_a_user_is_made_once_without_login_or_groups(app: str, tmp_path: Path) -> None:
    assert uid_of(app) is None
    first = ensure_user(app, tmp_path / "home", tmp_path / "lock")
    again = ensure_user(app, tmp_path / "home", tmp_path / "lock")
    assert first == again and uid_of(app) == first.uid
    entry = pwd.getpwnam(user_name(app))
    assert entry.pw_uid not in (0, os.geteuid()) and entry.pw_gid != 0
    assert entry.pw_shell.endswith(("nologin", "false")) and entry.pw_dir == str(tmp_path / "home")
    assert os.getgrouplist(entry.pw_name, entry.pw_gid) == [entry.pw_gid]
    assert not (tmp_path / "home").exists()  # its home is made by the app's tree, not useradd


def test_a_user_someone_put_in_another_group_is_refused_naming_the_group(
        app: str, tmp_path: Path) -> None:
    user = ensure_user(app, tmp_path / "home", tmp_path / "lock")
    group = f"dyt{uuid.uuid4().hex[:8]}"
    subprocess.run(["groupadd", group], check=True, timeout=30)
    try:
        subprocess.run(["gpasswd", "-a", user.name, group], check=True, timeout=30,
                       capture_output=True)
        with pytest.raises(ContainmentError, match=group):
            ensure_user(app, tmp_path / "home", tmp_path / "lock")
    finally:
        subprocess.run(["groupdel", group], check=True, timeout=30)
    assert group not in {g.gr_name for g in grp.getgrall()}


def test_removing_a_user_ends_what_still_runs_as_it(app: str, tmp_path: Path) -> None:
    """A process the runtime no longer tracks (an instance being stopped, one a killed service
    had just started) used to make userdel refuse: `user ... is currently used by process`."""
    user = ensure_user(app, tmp_path / "home", tmp_path / "lock")
    orphan = subprocess.Popen(["sleep", "300"], user=user.uid, group=user.gid,
                              start_new_session=True)
    try:
        assert remove_user(app)
        assert orphan.wait(10) == -9  # SIGKILLed, before the user went
        assert uid_of(app) is None
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait(10)
