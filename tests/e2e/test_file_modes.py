"""The data dir is 0700, and its credentials, database and logs are 0600."""

from __future__ import annotations

import stat
from pathlib import Path

from dockyard.client import Followers
from dockyard.contract.events import DeploySucceeded
from tests.e2e.apps import make_app
from tests.e2e.conftest import Running

# Logs and the like, wherever they are under the data dir.
PRIVATE_NAMES = ("*.log", "*.nk", "*.key", "*.token", "*.db", "stdout", "stderr")


def not_private(root: Path) -> list[str]:
    """Credentials, databases and logs under root that another user could read."""
    found = []
    for pattern in PRIVATE_NAMES:
        for path in root.rglob(pattern):
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode) and mode & (stat.S_IRWXG | stat.S_IRWXO):
                found.append(f"{stat.filemode(mode)} {path.relative_to(root)}")
    return found


async def test_the_data_dir_and_everything_in_it_are_private(running: Running,
                                                             tmp_path: Path) -> None:
    app = running.app_name("modes")
    end = await running.client.deploy(app, make_app(tmp_path / "v1", running.runtime, "v1",
                                                    release="echo migrating"),
                                      Followers(), wait=240)
    assert isinstance(end, DeploySucceeded), end
    data = running.settings.data_dir
    # Everything else under it (URLs, route files, records) is reachable only through it.
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    # The database, the bus's and the proxy's logs, the seeds, the token: 0600 each.
    for name in ("dockyard.db", "nats-server.log", "caddy.log", "api.token", "bus/api.nk"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    left = not_private(data)
    assert left == [], "\n".join(left)
