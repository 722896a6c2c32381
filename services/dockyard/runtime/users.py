"""Each app's own unprivileged user on the process runtime (when Dockyard runs as root)."""

from __future__ import annotations

import contextlib
import fcntl
import grp
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dockyard.runtime.base import ContainmentError

PREFIX = "dy-"
NO_LOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")


@dataclass(frozen=True)
class AppUser:
    """The user an app's commands and instances run as."""

    name: str
    uid: int
    gid: int


def user_name(app: str) -> str:
    """`dy-` and 12 hex digits of the app name's SHA-256 (fits every user name limit)."""
    return PREFIX + hashlib.sha256(app.encode()).hexdigest()[:12]


def _no_login_shell() -> str:
    return next((path for path in NO_LOGIN if os.access(path, os.X_OK)), "/bin/false")


def _lookup(name: str) -> AppUser | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return AppUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def uid_of(app: str) -> int | None:
    """The uid of the app's user, None when it has none (yet)."""
    user = _lookup(user_name(app))
    return None if user is None else user.uid


def _check(app: str, user: AppUser) -> AppUser:
    """An app's user must be unprivileged and belong to its own group alone."""
    if user.uid == 0 or user.gid == 0:
        raise ContainmentError(f"the user {user.name} of app {app} is privileged "
                               f"(uid {user.uid}, gid {user.gid}): refusing to run as it")
    others = sorted(set(os.getgrouplist(user.name, user.gid)) - {user.gid})
    if others:
        names = ", ".join(_group_name(gid) for gid in others)
        raise ContainmentError(f"the user {user.name} of app {app} is also in the groups "
                               f"{names}: an app's user belongs to its own group alone "
                               "(remove it from them: gpasswd -d USER GROUP)")
    return user


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def ensure_user(app: str, home: Path, lock: Path) -> AppUser:
    """The app's user, created once (system account, own group, no login shell, no home made)."""
    name = user_name(app)
    with open(lock, "a") as held:
        # useradd takes its own lock on /etc/passwd and fails rather than waits: services
        # creating users at the same time take turns here instead.
        fcntl.flock(held, fcntl.LOCK_EX)
        user = _lookup(name)
        if user is None:
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            done = subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home", "--home-dir",
                 str(home), "--shell", _no_login_shell(), "--comment", f"dockyard app {app}",
                 name], capture_output=True, text=True, timeout=60, check=False)
            user = _lookup(name)
            if user is None:
                raise ContainmentError(
                    f"could not create the user {name} of app {app} (useradd exit code "
                    f"{done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return _check(app, user)


def processes_of(uid: int) -> list[int]:
    """Live (not zombie) processes running as uid, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        if stat[stat.rindex(")") + 2:][:1] not in ("Z", "X"):
            found.append(int(entry))
    return found


def end_processes(uid: int, within: float = 10.0) -> list[int]:
    """SIGKILL whatever still runs as the app's user (a command or instance the runtime no
    longer tracks: one being stopped, or one a killed service had just started); wait until
    they are gone. The processes that outlived `within`."""
    deadline = time.monotonic() + within
    while pids := processes_of(uid):
        if time.monotonic() > deadline:
            return pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    return []


def remove_user(app: str) -> bool:
    """Delete the app's user and its group, ending any process still running as it first;
    False if there is no such user."""
    name = user_name(app)
    user = _lookup(name)
    if user is None:
        return False
    if left := end_processes(user.uid):
        raise ContainmentError(f"could not remove the user {name} of app {app}: processes "
                               f"{left} still run as it after SIGKILL")
    userdel = shutil.which("userdel") or "/usr/sbin/userdel"
    done = subprocess.run([userdel, name], capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0 and _lookup(name) is not None:
        raise ContainmentError(f"could not remove the user {name} of app {app}: "
                               f"{done.stderr.strip()}")
    return True
