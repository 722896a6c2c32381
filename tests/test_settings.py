"""Settings read once from the environment: defaults, every variable, refusals naming the var."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dockyard.settings import Settings, SettingsError


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.data_dir == tmp_path / ".dockyard" and s.data_dir.is_absolute()
    assert (s.nats_url, s.runtime, s.http_host, s.http_port, s.api_port) == (
        "", "auto", "127.0.0.1", 8080, 0)
    assert (s.caddy_admin, s.database_url, s.domain) == ("", "", "localhost")
    assert (s.kill_grace, s.drain, s.ack_wait, s.phase_margin) == (10.0, None, 30.0, 60.0)
    assert (s.webhook_url, s.webhook_secret) == ("", "")
    assert s.store_url == f"sqlite:///{tmp_path / '.dockyard' / 'dockyard.db'}"


def test_every_variable(tmp_path: Path) -> None:
    s = Settings.from_env({
        "DOCKYARD_DATA_DIR": str(tmp_path / "d"), "DOCKYARD_NATS_URL": "nats://h:4222",
        "DOCKYARD_RUNTIME": "process", "DOCKYARD_HTTP_HOST": "0.0.0.0",
        "DOCKYARD_HTTP_PORT": "9080", "DOCKYARD_CADDY_ADMIN": "http://127.0.0.1:2019",
        "DOCKYARD_API_PORT": "9100", "DOCKYARD_DATABASE_URL": "postgresql://u@h/db",
        "DOCKYARD_DOMAIN": "apps.example.com", "DOCKYARD_KILL_GRACE": "0",
        "DOCKYARD_DRAIN": "2.5", "DOCKYARD_ACK_WAIT": "12", "DOCKYARD_WEBHOOK_URL": "https://w",
        "DOCKYARD_WEBHOOK_SECRET": "whsec_x", "DOCKYARD_PHASE_MARGIN": "90"})
    assert s.data_dir == tmp_path / "d"
    assert (s.nats_url, s.runtime, s.http_host, s.http_port) == ("nats://h:4222", "process",
                                                                 "0.0.0.0", 9080)
    assert (s.caddy_admin, s.api_port, s.database_url, s.domain) == (
        "http://127.0.0.1:2019", 9100, "postgresql://u@h/db", "apps.example.com")
    # A grace of 0 means SIGKILL at once: it is not replaced by the default.
    assert (s.kill_grace, s.drain, s.ack_wait) == (0.0, 2.5, 12.0)
    assert s.phase_margin == 90.0
    assert (s.webhook_url, s.webhook_secret) == ("https://w", "whsec_x")
    assert s.store_url == "postgresql://u@h/db"
    assert s.bus_url() == "nats://h:4222"


def test_empty_values_are_the_defaults() -> None:
    s = Settings.from_env({"DOCKYARD_HTTP_PORT": "", "DOCKYARD_DRAIN": "",
                           "DOCKYARD_RUNTIME": "", "DOCKYARD_DOMAIN": ""})
    assert (s.http_port, s.drain, s.runtime, s.domain) == (8080, None, "auto", "localhost")


def test_overrides_from_flags_win_and_none_is_no_override(tmp_path: Path) -> None:
    s = Settings.from_env({"DOCKYARD_RUNTIME": "docker", "DOCKYARD_HTTP_PORT": "1"},
                          runtime="process", http_port=None, data_dir="rel")
    assert (s.runtime, s.http_port) == ("process", 1)
    assert s.data_dir == Path("rel").absolute()


@pytest.mark.parametrize(("env", "message"), [
    ({"DOCKYARD_HTTP_PORT": "eighty"}, "DOCKYARD_HTTP_PORT must be a whole number, got 'eighty'"),
    ({"DOCKYARD_API_PORT": "1.5"}, "DOCKYARD_API_PORT must be a whole number, got '1.5'"),
    ({"DOCKYARD_KILL_GRACE": "soon"}, "DOCKYARD_KILL_GRACE must be a number of seconds"),
    ({"DOCKYARD_RUNTIME": "podman"},
     "runtime must be auto, docker, process or swarm, got 'podman'"),
    # Negative, endless or not-a-number waits: a hot loop or a wait forever, never meant.
    ({"DOCKYARD_ACK_WAIT": "-3"}, "DOCKYARD_ACK_WAIT must be a positive number of seconds"),
    ({"DOCKYARD_ACK_WAIT": "0"}, "DOCKYARD_ACK_WAIT must be a positive number of seconds"),
    ({"DOCKYARD_ACK_WAIT": "nan"}, "DOCKYARD_ACK_WAIT must be a positive number of seconds"),
    ({"DOCKYARD_KILL_GRACE": "-1"}, "DOCKYARD_KILL_GRACE must be a non-negative number"),
    ({"DOCKYARD_KILL_GRACE": "inf"}, "DOCKYARD_KILL_GRACE must be a non-negative number"),
    ({"DOCKYARD_DRAIN": "-0.5"}, "DOCKYARD_DRAIN must be a non-negative number"),
    ({"DOCKYARD_KEEP_RELEASES": "0"}, "DOCKYARD_KEEP_RELEASES must be 1 to 15, got 0"),
    ({"DOCKYARD_KEEP_RELEASES": "16"}, "DOCKYARD_KEEP_RELEASES must be 1 to 15, got 16"),
    ({"DOCKYARD_KEEP_RELEASES": "five"}, "DOCKYARD_KEEP_RELEASES must be a whole number"),
    ({"DOCKYARD_METRICS_ADDR": "9464"}, "DOCKYARD_METRICS_ADDR must be host:port (e.g. "
                                        "127.0.0.1:9464), got '9464'"),
    ({"DOCKYARD_METRICS_ADDR": "localhost:http"}, "DOCKYARD_METRICS_ADDR must be host:port"),
    ({"DOCKYARD_METRICS_ADDR": "127.0.0.1:70000"}, "DOCKYARD_METRICS_ADDR must be host:port"),
    ({"DOCKYARD_METRICS_ADDR": ":9464"}, "DOCKYARD_METRICS_ADDR must be host:port"),
    ({"DOCKYARD_OTLP_ENDPOINT": "collector:4318"},
     "DOCKYARD_OTLP_ENDPOINT must be an http:// or https:// URL, got 'collector:4318'"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://collector:4317"},
     "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL"),
    ({"DOCKYARD_OTLP_ENDPOINT": "http:///v1"}, "DOCKYARD_OTLP_ENDPOINT must be an http://"),
    ({"DOCKYARD_BUS_REPLICAS": "0"}, "DOCKYARD_BUS_REPLICAS must be 1 to 5, got 0"),
    ({"DOCKYARD_BUS_REPLICAS": "6"}, "DOCKYARD_BUS_REPLICAS must be 1 to 5, got 6"),
    ({"DOCKYARD_NATS_URL": "n1:4222"}, "DOCKYARD_NATS_URL must be nats://HOST:PORT"),
    ({"DOCKYARD_NATS_URL": "nats://u:secret@n1:4222"}, "with no credentials in them"),
    ({"DOCKYARD_NATS_URL": " , "}, "DOCKYARD_NATS_URL names no server"),
    ({"DOCKYARD_ACCESS_LOG": "maybe"}, "DOCKYARD_ACCESS_LOG must be on or off, got 'maybe'"),
])
def test_a_value_that_cannot_be_used_is_refused_naming_it(env: dict[str, str],
                                                          message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


def test_the_access_log_is_on_unless_turned_off() -> None:
    assert Settings.from_env({}).access_log is True
    assert Settings.from_env({"DOCKYARD_ACCESS_LOG": "off"}).access_log is False
    assert Settings.from_env({"DOCKYARD_ACCESS_LOG": " On "}).access_log is True


def test_five_releases_keep_their_artifacts_unless_set() -> None:
    assert Settings.from_env({}).keep_releases == 5
    assert Settings.from_env({"DOCKYARD_KEEP_RELEASES": "15"}).keep_releases == 15


def test_metrics_and_tracing_are_off_unless_asked_for() -> None:
    s = Settings.from_env({})
    assert (s.metrics_addr, s.metrics_listen, s.otlp_endpoint) == ("", None, "")
    s = Settings.from_env({"DOCKYARD_METRICS_ADDR": "[::1]:9464",
                           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"})
    assert (s.metrics_listen, s.otlp_endpoint) == (("::1", 9464), "http://otel:4318")
    # Dockyard's own variable wins over the standard one.
    s = Settings.from_env({"DOCKYARD_OTLP_ENDPOINT": "https://mine:4318/",
                           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"})
    assert s.otlp_endpoint == "https://mine:4318/"


def test_a_cluster_is_several_urls_and_three_replicas() -> None:
    s = Settings.from_env({})
    assert s.bus_replicas == 1
    s = Settings.from_env({"DOCKYARD_NATS_URL": "nats://n1:4222, nats://n2:4222,nats://n3:4222",
                           "DOCKYARD_BUS_REPLICAS": "3"})
    assert s.bus_servers() == ["nats://n1:4222", "nats://n2:4222", "nats://n3:4222"]
    assert s.bus_replicas == 3
    assert Settings.from_env({"DOCKYARD_NATS_URL": "tls://h:4222"}).bus_servers() == [
        "tls://h:4222"]


def test_no_bus_found_says_how_to_get_one(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    with pytest.raises(SettingsError, match="no bus found: DOCKYARD_NATS_URL is unset"):
        s.bus_url()
    (tmp_path / "nats.url").write_text("nats://127.0.0.1:4999\n")
    assert s.bus_url() == "nats://127.0.0.1:4999"


def test_an_apps_url(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, domain="example.test", http_port=81)
    assert s.app_url("shop") == "http://shop.example.test:81/"
    (tmp_path / "apps.url").write_text("http://{app}.localhost:9999/\n")
    assert s.app_url("shop") == "http://shop.localhost:9999/"


def test_settings_are_read_once_into_a_frozen_value() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.http_port = 1  # type: ignore[misc]
