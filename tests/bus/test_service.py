"""What a service's declaration says about the bus: subjects, streams, durable consumers; a
service alone serves its metrics where it is told to."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from dockyard.bus.embedded import EmbeddedNats, free_port
from dockyard.bus.metrics import MetricsError
from dockyard.bus.service import SERVICES, On, UnknownServiceError, declaration, start_service
from dockyard.contract import subjects
from dockyard.contract.events import (
    AfterSwitchSucceeded,
    CancelRequested,
    DeployRequested,
    HookSucceeded,
)
from dockyard.settings import Settings


def test_an_event_subscription_reads_its_type_across_every_app() -> None:
    on = On(HookSucceeded, "on_hook_succeeded")
    assert on.subject == "dockyard.evt.*.hook.succeeded"
    assert on.stream == subjects.STREAM_EVENTS
    assert on.durable("router") == "router-hook-succeeded"
    after = On(AfterSwitchSucceeded, "x")
    assert after.subject == "dockyard.evt.*.after_switch.succeeded"
    assert after.durable("scheduler") == "scheduler-after_switch-succeeded"


def test_a_command_subscription_reads_its_subject_on_the_commands_stream() -> None:
    on = On(DeployRequested, "on_deploy")
    assert on.subject == subjects.CMD_DEPLOY == "dockyard.cmd.deploy"
    assert on.stream == subjects.STREAM_COMMANDS
    assert on.durable("builder") == "builder-deploy"
    assert On(CancelRequested, "on_cancel").durable("builder") == "builder-cancel"


def test_an_every_event_subscription() -> None:
    on = On(None, "on_event", new_only=True)
    assert on.subject == subjects.EVT_ALL == "dockyard.evt.>"
    assert on.stream == subjects.STREAM_EVENTS
    assert on.durable("notifier") == "notifier-all"
    assert On(None, "on_event").new_only is False


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_one_consumer_per_subscription(name: str) -> None:
    service = declaration(name)
    assert service.name == name
    durables = [on.durable(name) for on in service.subscribes]
    assert len(set(durables)) == len(durables)
    assert len({on.subject for on in service.subscribes}) == len(service.subscribes)
    # Consumers of different services never share a durable name.
    assert all(d.startswith(f"{name}-") for d in durables)


def test_an_unknown_service_is_named_with_the_known_ones() -> None:
    with pytest.raises(UnknownServiceError, match="unknown service 'hook_runner': choose one of "
                                                  "builder, hook-runner"):
        declaration("hook_runner")


async def test_a_service_alone_serves_its_metrics_on_dockyard_metrics_addr(
        nats_server: EmbeddedNats, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = Settings(data_dir=tmp_path, nats_url=nats_server.url,
                        nats_keys=nats_server.keys_dir, metrics_addr=address)
    running = await start_service("notifier", settings)
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"http://{address}/metrics")
        assert response.status_code == 200
        assert 'dockyard_inflight_oldest_seconds{service="notifier"}' in response.text
        # A second instance told the same address: one clear error at start.
        with pytest.raises(MetricsError, match=f"cannot serve metrics on {address} "
                                               r"\(DOCKYARD_METRICS_ADDR\): "):
            await start_service("notifier", settings)
    finally:
        await running.stop()
    async with httpx.AsyncClient(timeout=5) as http:
        with pytest.raises(httpx.ConnectError):  # stopped with the service
            await http.get(f"http://{address}/metrics")
