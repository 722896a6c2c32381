"""Settings, read from the environment once into one object and passed in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from dockyard.bus.embedded import read_url


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None


def _float(env: dict[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """Everything a service or the CLI needs to know about where it runs."""

    data_dir: Path = Path(".dockyard")
    nats_url: str = ""
    runtime: str = "auto"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    caddy_admin: str = ""
    api_port: int = 0
    database_url: str = ""
    domain: str = "localhost"
    kill_grace: float = 10.0
    drain: float | None = None
    ack_wait: float = 30.0
    webhook_url: str = ""
    webhook_secret: str = ""
    instance: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Read DOCKYARD_* variables; keyword overrides (from CLI flags) win."""
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("DOCKYARD_DATA_DIR") or ".dockyard").absolute()
        runtime = env.get("DOCKYARD_RUNTIME") or "auto"
        settings = cls(
            data_dir=data_dir,
            nats_url=env.get("DOCKYARD_NATS_URL", ""),
            runtime=runtime,
            http_host=env.get("DOCKYARD_HTTP_HOST") or "127.0.0.1",
            http_port=_int(env, "DOCKYARD_HTTP_PORT", 8080),
            caddy_admin=env.get("DOCKYARD_CADDY_ADMIN", ""),
            api_port=_int(env, "DOCKYARD_API_PORT", 0),
            database_url=env.get("DOCKYARD_DATABASE_URL", ""),
            domain=env.get("DOCKYARD_DOMAIN") or "localhost",
            kill_grace=_float(env, "DOCKYARD_KILL_GRACE", 10.0) or 10.0,
            drain=_float(env, "DOCKYARD_DRAIN", None),
            ack_wait=_float(env, "DOCKYARD_ACK_WAIT", 30.0) or 30.0,
            webhook_url=env.get("DOCKYARD_WEBHOOK_URL", ""),
            webhook_secret=env.get("DOCKYARD_WEBHOOK_SECRET", ""),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "data_dir" in clean:
            clean["data_dir"] = Path(str(clean["data_dir"])).absolute()
        settings = replace(settings, **clean)  # type: ignore[arg-type]
        if settings.runtime not in ("auto", "docker", "process"):
            raise SettingsError(f"runtime must be auto, docker or process, got {settings.runtime!r}")
        return settings

    def bus_url(self) -> str:
        """The NATS URL: DOCKYARD_NATS_URL, else the one `dockyard up` recorded in the data dir."""
        if self.nats_url:
            return self.nats_url
        url = read_url(self.data_dir)
        if url is None:
            raise SettingsError(
                f"no bus found: DOCKYARD_NATS_URL is unset and {self.data_dir}/nats.url does not "
                "exist (start one with `dockyard up`, or run from the directory where it runs)"
            )
        return url

    def app_url(self, app: str) -> str:
        """Where an app answers: as `dockyard up` recorded it in the data dir, else from settings."""
        recorded = self.data_dir / "apps.url"
        if recorded.exists():
            return recorded.read_text().strip().replace("{app}", app)
        return f"http://{app}.{self.domain}:{self.http_port}/"

    @property
    def sqlite_url(self) -> str:
        """The default store: SQLite under the data dir."""
        return f"sqlite:///{self.data_dir / 'dockyard.db'}"

    @property
    def store_url(self) -> str:
        """DOCKYARD_DATABASE_URL, or SQLite under the data dir."""
        return self.database_url or self.sqlite_url
