"""Settings, read from the environment once into one object and passed in."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

# NATS JetStream keeps at most 5 copies of a stream.
MAX_BUS_REPLICAS = 5

# The routes bucket keeps 16 versions of an app's live record (bus/topology.py): a release
# leaving the kept ones must still be in that history for its artifacts to be removed.
MAX_KEEP_RELEASES = 15


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


def _float(env: dict[str, str], name: str, default: float | None, *,
           positive: bool = False) -> float | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    # A negative, endless or NaN wait is never meant (and a beat of ack_wait/3 <= 0 is a hot loop).
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise SettingsError(f"{name} must be a {kind} number of seconds, got {raw!r}")
    return value


def _on_off(env: dict[str, str], name: str, default: bool) -> bool:
    """A switch: on/off (or true/false, 1/0, yes/no); SettingsError naming it otherwise."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise SettingsError(f"{name} must be on or off, got {env[name]!r}")


def _seconds(env: dict[str, str], name: str, default: float, *, positive: bool = False) -> float:
    value = _float(env, name, default, positive=positive)
    return default if value is None else value


_CAPABILITY = re.compile(r"(CAP_)?[A-Z][A-Z_]*")


def _capabilities(raw: str) -> tuple[str, ...]:
    """DOCKYARD_CAP_ADD: comma-separated Linux capability names (`NET_BIND_SERVICE,CHOWN`)."""
    names = tuple(part.strip().upper() for part in raw.split(",") if part.strip())
    for name in names:
        if not _CAPABILITY.fullmatch(name) or name in ("ALL", "CAP_ALL"):
            raise SettingsError(f"DOCKYARD_CAP_ADD: {name!r} is not a capability name "
                                "(use names such as NET_BIND_SERVICE, CHOWN; ALL is refused)")
    return names


def host_port(name: str, raw: str) -> tuple[str, int]:
    """(host, port) of `host:port` (`[::1]:9464` for IPv6); SettingsError naming the setting."""
    host, sep, port = raw.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535 or any(
            c.isspace() or c in "/[]" for c in host):
        raise SettingsError(f"{name} must be host:port (e.g. 127.0.0.1:9464), got {raw!r}")
    return host, int(port)


def _http_url(env: dict[str, str], *names: str) -> str:
    """The first of the named settings that is set, checked to be an http(s) URL."""
    for name in names:
        raw = env.get(name, "")
        if raw:
            scheme, _, rest = raw.partition("://")
            if scheme not in ("http", "https") or not rest.split("/", 1)[0]:
                raise SettingsError(f"{name} must be an http:// or https:// URL, got {raw!r}")
            return raw
    return ""


def bus_servers(url: str) -> list[str]:
    """The server URLs of DOCKYARD_NATS_URL: one, or several comma-separated (a cluster's nodes:
    a client connects to any and fails over to the others)."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    for server in servers:
        scheme, sep, rest = server.partition("://")
        if not sep or scheme not in ("nats", "tls") or not rest or "@" in rest:
            raise SettingsError(
                "DOCKYARD_NATS_URL must be nats://HOST:PORT, or several separated by commas, "
                f"with no credentials in them (identities are seed files), got {server!r}")
    if not servers:
        raise SettingsError(f"DOCKYARD_NATS_URL names no server: {url!r}")
    return servers


@dataclass(frozen=True)
class Settings:
    """Everything a service or the CLI needs to know about where it runs."""

    data_dir: Path = Path(".dockyard")
    nats_url: str = ""
    # Where the bus identities' seed files (<identity>.nk) are: default <data_dir>/bus.
    nats_keys: Path | None = None
    # Copies of every stream, bucket and object store when the bus is provisioned (3 in a
    # 3-node cluster, so each survives the loss of a node).
    bus_replicas: int = 1
    runtime: str = "auto"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    caddy_admin: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 0
    api_token: str = ""
    database_url: str = ""
    domain: str = "localhost"
    kill_grace: float = 10.0
    drain: float | None = None
    ack_wait: float = 30.0
    # Added to every phase's deadline (the watchdog's, builder/watchdog.py).
    phase_margin: float = 60.0
    webhook_url: str = ""
    webhook_secret: str = ""
    # Limits on what one request may bring (README: "Limits").
    queue_limit: int = 20
    # How many of an app's last live releases keep their artifacts (for rollback); at most
    # MAX_KEEP_RELEASES, the history the routes bucket keeps (bus/topology.py) less one.
    keep_releases: int = 5
    archive_max_bytes: int = 512 * 1024 * 1024
    archive_max_entries: int = 20_000
    archive_max_path: int = 1024
    archive_max_depth: int = 32
    log_max_bytes: int = 16 * 1024 * 1024
    apps_dir: Path | None = None  # the process runtime's app tree; None: <data_dir>.apps
    cap_add: tuple[str, ...] = ()  # capabilities a container gets back after dropping all
    pids_limit: int = 256  # processes (and threads) per container; per app user on `process`
    # Where /metrics is served (host:port; "" = not served by `dockyard service`).
    metrics_addr: str = ""
    # OTLP/HTTP base endpoint for traces ("" = tracing off).
    otlp_endpoint: str = ""
    # Detected builds: where the process runtime looks for python3.N, and the docker bases.
    python_dirs: tuple[str, ...] = ("/usr/local/bin", "/usr/bin")
    python_image: str = "python:{version}-slim"
    node_image: str = "node:{version}-slim"
    static_image: str = "python:3-slim"
    # The swarm runtime: the node addresses the router may send requests to (Swarm publishes a
    # web task's port on the node it placed the task on).
    swarm_hosts: tuple[str, ...] = ("127.0.0.1",)
    # The router's Caddy logs every request to the router, which measures each release's
    # answers (README: Metrics); off saves the proxy that work (bench/README.md: Data plane).
    access_log: bool = True
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
            nats_keys=Path(env["DOCKYARD_NATS_KEYS"]).absolute()
            if env.get("DOCKYARD_NATS_KEYS") else None,
            bus_replicas=_int(env, "DOCKYARD_BUS_REPLICAS", 1),
            runtime=runtime,
            http_host=env.get("DOCKYARD_HTTP_HOST") or "127.0.0.1",
            http_port=_int(env, "DOCKYARD_HTTP_PORT", 8080),
            caddy_admin=env.get("DOCKYARD_CADDY_ADMIN", ""),
            api_host=env.get("DOCKYARD_API_HOST") or "127.0.0.1",
            api_port=_int(env, "DOCKYARD_API_PORT", 0),
            api_token=env.get("DOCKYARD_API_TOKEN", ""),
            database_url=env.get("DOCKYARD_DATABASE_URL", ""),
            domain=env.get("DOCKYARD_DOMAIN") or "localhost",
            kill_grace=_seconds(env, "DOCKYARD_KILL_GRACE", 10.0),
            drain=_float(env, "DOCKYARD_DRAIN", None),
            ack_wait=_seconds(env, "DOCKYARD_ACK_WAIT", 30.0, positive=True),
            phase_margin=_seconds(env, "DOCKYARD_PHASE_MARGIN", 60.0, positive=True),
            webhook_url=env.get("DOCKYARD_WEBHOOK_URL", ""),
            webhook_secret=env.get("DOCKYARD_WEBHOOK_SECRET", ""),
            queue_limit=_int(env, "DOCKYARD_QUEUE_LIMIT", 20),
            keep_releases=_int(env, "DOCKYARD_KEEP_RELEASES", 5),
            archive_max_bytes=_int(env, "DOCKYARD_ARCHIVE_MAX_BYTES", 512 * 1024 * 1024),
            archive_max_entries=_int(env, "DOCKYARD_ARCHIVE_MAX_ENTRIES", 20_000),
            archive_max_path=_int(env, "DOCKYARD_ARCHIVE_MAX_PATH", 1024),
            archive_max_depth=_int(env, "DOCKYARD_ARCHIVE_MAX_DEPTH", 32),
            log_max_bytes=_int(env, "DOCKYARD_LOG_MAX_BYTES", 16 * 1024 * 1024),
            apps_dir=Path(env["DOCKYARD_APPS_DIR"]).absolute()
            if env.get("DOCKYARD_APPS_DIR") else None,
            cap_add=_capabilities(env.get("DOCKYARD_CAP_ADD", "")),
            pids_limit=_int(env, "DOCKYARD_PIDS_LIMIT", 256),
            metrics_addr=env.get("DOCKYARD_METRICS_ADDR", ""),
            otlp_endpoint=_http_url(env, "DOCKYARD_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
            python_dirs=tuple(d for d in (env.get("DOCKYARD_PYTHON_DIRS") or
                                          "/usr/local/bin:/usr/bin").split(":") if d),
            python_image=env.get("DOCKYARD_PYTHON_IMAGE") or "python:{version}-slim",
            node_image=env.get("DOCKYARD_NODE_IMAGE") or "node:{version}-slim",
            static_image=env.get("DOCKYARD_STATIC_IMAGE") or "python:3-slim",
            swarm_hosts=tuple(h.strip() for h in (env.get("DOCKYARD_SWARM_HOSTS")
                                                  or "127.0.0.1").split(",") if h.strip()),
            access_log=_on_off(env, "DOCKYARD_ACCESS_LOG", True),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        for key in ("data_dir", "nats_keys", "apps_dir"):
            if key in clean:
                clean[key] = Path(str(clean[key])).absolute()
        settings = replace(settings, **clean)  # type: ignore[arg-type]
        if settings.runtime not in ("auto", "docker", "process", "swarm"):
            raise SettingsError(
                f"runtime must be auto, docker, process or swarm, got {settings.runtime!r}")
        for limit in ("queue_limit", "archive_max_bytes", "archive_max_entries",
                      "archive_max_path", "archive_max_depth", "log_max_bytes"):
            if getattr(settings, limit) < 1:
                raise SettingsError(f"DOCKYARD_{limit.upper()} must be at least 1")
        if not 1 <= settings.keep_releases <= MAX_KEEP_RELEASES:
            raise SettingsError(f"DOCKYARD_KEEP_RELEASES must be 1 to {MAX_KEEP_RELEASES}, got "
                                f"{settings.keep_releases}")
        if not 1 <= settings.bus_replicas <= MAX_BUS_REPLICAS:
            raise SettingsError(f"DOCKYARD_BUS_REPLICAS must be 1 to {MAX_BUS_REPLICAS}, got "
                                f"{settings.bus_replicas}")
        if settings.nats_url:
            bus_servers(settings.nats_url)
        if settings.pids_limit < 1:
            raise SettingsError(
                f"DOCKYARD_PIDS_LIMIT must be at least 1, got {settings.pids_limit}")
        if settings.metrics_addr:
            host_port("DOCKYARD_METRICS_ADDR", settings.metrics_addr)
        return settings

    def bus_url(self) -> str:
        """The NATS URL: DOCKYARD_NATS_URL, else the one `dockyard up` recorded in the data dir."""
        if self.nats_url:
            return self.nats_url
        # Imported here: bus.embedded pulls in nats-py, which commands not on the bus never need.
        from dockyard.bus.embedded import read_url

        url = read_url(self.data_dir)
        if url is None:
            raise SettingsError(
                f"no bus found: DOCKYARD_NATS_URL is unset and {self.data_dir}/nats.url does not "
                "exist (start one with `dockyard up`, or run from the directory where it runs)"
            )
        return url

    def bus_servers(self) -> list[str]:
        """Every server URL of the bus (bus_url() split at its commas)."""
        return bus_servers(self.bus_url())

    @property
    def metrics_listen(self) -> tuple[str, int] | None:
        """(host, port) of DOCKYARD_METRICS_ADDR, None when unset."""
        if not self.metrics_addr:
            return None
        return host_port("DOCKYARD_METRICS_ADDR", self.metrics_addr)

    @property
    def keys_dir(self) -> Path:
        """Where the bus identities' seeds are: DOCKYARD_NATS_KEYS, else <data dir>/bus."""
        return self.nats_keys or self.data_dir / "bus"

    def app_url(self, app: str) -> str:
        """Where an app answers: as `dockyard up` recorded it in the data dir,
        else from settings."""
        recorded = self.data_dir / "apps.url"
        if recorded.exists():
            return recorded.read_text().strip().replace("{app}", app)
        return f"http://{app}.{self.domain}:{self.http_port}/"

    @property
    def api_token_file(self) -> Path:
        """Where the api keeps its generated token (0600)."""
        return self.data_dir / "api.token"

    @property
    def apps_root(self) -> Path:
        """Where the process runtime keeps each app's tree: DOCKYARD_APPS_DIR, else a sibling
        of the data dir (the data dir is root's alone; app users must reach their trees)."""
        return self.apps_dir or self.data_dir.with_name(self.data_dir.name + ".apps")

    @property
    def sqlite_url(self) -> str:
        """The default store: SQLite under the data dir."""
        return f"sqlite:///{self.data_dir / 'dockyard.db'}"

    @property
    def store_url(self) -> str:
        """DOCKYARD_DATABASE_URL, or SQLite under the data dir."""
        return self.database_url or self.sqlite_url
