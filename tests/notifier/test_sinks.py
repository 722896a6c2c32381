"""Which sinks get which event, what they receive, and the sinks bucket."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from dockyard.client import ClientError, DockyardClient
from dockyard.contract import codec, subjects
from dockyard.contract.events import DeployQueued, new_id
from dockyard.contract.sinks import (
    DEFAULT_EVENTS,
    InvalidSink,
    Sink,
    SinkNotFound,
    Sinks,
    validate,
    with_sink,
    without_sink,
)
from dockyard.notifier.app import NotifierDoors
from dockyard.notifier.handlers import Notifier, handle
from dockyard.notifier.signing import verify
from dockyard.notifier.sinks import global_sink, is_notification, matches, request, select
from tests.conftest import Bus
from tests.events import make

HOOK = Sink(name="hook", url="http://127.0.0.1:9/x")


def test_default_events_are_the_ones_people_watch() -> None:
    assert DEFAULT_EVENTS == ("dockyard.deploy.queued", "dockyard.deploy.succeeded",
                              "dockyard.deploy.failed", "dockyard.hook.failed",
                              "dockyard.traffic.switched")
    assert matches(HOOK, "dockyard.deploy.failed")
    assert not matches(HOOK, "dockyard.build.started")
    assert not matches(HOOK, "dockyard.command.finished")


def test_glob_patterns_with_or_without_prefix() -> None:
    sink = Sink(name="s", url="http://h/", events=["deploy.*", "dockyard.*.failed"])
    assert matches(sink, "dockyard.deploy.aborted")
    assert matches(sink, "dockyard.build.failed")
    assert not matches(sink, "dockyard.build.started")
    everything = Sink(name="all", url="http://h/", events=["*"])
    assert matches(everything, "dockyard.retire.succeeded")


def test_notification_events_go_to_no_sink() -> None:
    everything = Sink(name="all", url="http://h/", events=["*"])
    for t in ("dockyard.notification.attempted", "dockyard.notification.delivered",
              "dockyard.notification.failed"):
        assert is_notification(t)
        assert select([everything, HOOK], t) == []
    assert not is_notification("dockyard.deploy.failed")


def test_select_keeps_only_matching_sinks() -> None:
    failures = Sink(name="f", url="http://h/", events=["*.failed"])
    assert select([HOOK, failures], "dockyard.deploy.queued") == [HOOK]
    assert select([HOOK, failures], "dockyard.build.failed") == [failures]
    assert select([HOOK, failures], "dockyard.hook.failed") == [HOOK, failures]


@pytest.mark.parametrize("sink, problem", [
    (Sink(name="", url="http://h/"), "name"),
    (Sink(name="a.b", url="http://h/"), "name"),
    (Sink(name="a", url="ftp://h/"), "url"),
    (Sink(name="a", url="/relative"), "url"),
    (Sink(name="a", url="http://h/", events=[]), "events"),
    (Sink(name="a", url="http://h/", max_attempts=0), "max_attempts"),
    (Sink(name="a", url="http://h/", backoff=0), "backoff"),
    (Sink(name="a", url="http://h/", timeout=25), "timeout"),
    (Sink(name="a", url="http://h/", kind="email"), "kind"),  # type: ignore[arg-type]
])
def test_invalid_sinks_are_refused(sink: Sink, problem: str) -> None:
    with pytest.raises(InvalidSink, match=problem):
        validate(sink)


def test_global_sink_from_settings() -> None:
    assert global_sink("") is None
    sink = global_sink("https://ops.example/hook", "s3cret")
    assert sink == Sink(name="global", url="https://ops.example/hook", secret="whsec_czNjcmV0")
    with pytest.raises(InvalidSink, match="not valid base64"):
        global_sink("https://ops.example/hook", "whsec_dGVzdA")
    assert global_sink("https://ops.example/hook", "") == Sink(name="global",
                                                               url="https://ops.example/hook")


def test_repr_never_shows_the_secret_or_url_path() -> None:
    sink = Sink(name="chat", kind="slack", url="https://hooks.slack.com/services/T0/B0/TOKEN",
                secret="whsec_c2VjcmV0")
    text = repr(sink)
    assert "TOKEN" not in text and "whsec" not in text and "hooks.slack.com" in text


def test_webhook_request_is_the_signed_event_json() -> None:
    event = make(DeployQueued, source="t", app="shop", deployment_id="d1")
    sink = Sink(name="s", url="http://h/", secret="raw-secret")
    body, headers = request(sink, event, timestamp=1_700_000_000)
    assert codec.decode_event(body) == event
    assert headers["webhook-id"] == "d1:deploy.queued"
    verify("raw-secret", headers, body, now=1_700_000_000)


def test_slack_request_is_a_text_message() -> None:
    event = make(DeployQueued, source="t", app="shop", deployment_id="d1")
    body, headers = request(Sink(name="c", kind="slack", url="http://h/"), event)
    assert msgspec.json.decode(body) == {"text": ":hourglass_flowing_sand: shop deploy d1 queued"}
    assert headers == {}


def test_with_and_without_are_pure() -> None:
    one = with_sink(Sinks(), HOOK)
    chat = Sink(name="chat", kind="slack", url="http://127.0.0.1:9/c")
    two = with_sink(one, chat)
    assert two.sinks == [HOOK, chat] and one.sinks == [HOOK]
    assert without_sink(two, "shop", "hook") == Sinks(sinks=[chat])
    with pytest.raises(SinkNotFound, match="no sink named 'nope'"):
        without_sink(two, "shop", "nope")
    with pytest.raises(InvalidSink, match="url"):
        with_sink(one, Sink(name="bad", url="ftp://h/"))


async def test_add_list_remove(bus: Bus, client: DockyardClient) -> None:
    app = f"app-{new_id()[:8]}"
    assert await client.sinks(app) == []
    await client.add_sink(app, HOOK)
    chat = Sink(name="chat", kind="slack", url="http://127.0.0.1:9/c", events=["*.failed"])
    await client.add_sink(app, chat)
    assert await client.sinks(app) == [HOOK, chat]
    # Same name replaces.
    moved = Sink(name="hook", url="http://127.0.0.1:9/y")
    await client.add_sink(app, moved)
    assert await client.sinks(app) == [chat, moved]
    await client.remove_sink(app, "chat")
    assert await client.sinks(app) == [moved]
    with pytest.raises(SinkNotFound):
        await client.remove_sink(app, "chat")
    stored = await (await bus.kv(subjects.KV_SINKS)).get(app)
    assert stored.value is not None
    assert msgspec.json.decode(stored.value, type=Sinks) == Sinks(sinks=[moved])


async def test_global_name_is_reserved(client: DockyardClient) -> None:
    with pytest.raises(InvalidSink, match="reserved"):
        await client.add_sink("shop", Sink(name="global", url="http://h/"))


async def test_app_names_that_cannot_be_keys_have_no_sinks(bus: Bus,
                                                          client: DockyardClient) -> None:
    with pytest.raises(ClientError, match="invalid app name 'bad app\\*'"):
        await client.add_sink("bad app*", HOOK)
    with pytest.raises(ClientError, match="invalid app name"):
        await client.sinks("bad app*")
    # An event about such an app (it cannot have been deployed) has no sink of its own.
    doors = await bus.doors(NotifierDoors, "notifier")
    sent: list[object] = []

    async def publish(event: object) -> None:
        sent.append(event)

    n = Notifier(sinks=doors.sinks, deliveries=doors.deliveries, sender=None,  # type: ignore[arg-type]
                 publish=publish)
    assert await handle(n, make(DeployQueued, app="bad app*")) is None
    assert sent == []


async def test_concurrent_adds_all_survive(client: DockyardClient) -> None:
    app = f"app-{new_id()[:8]}"
    sinks = [Sink(name=f"s{i}", url=f"http://127.0.0.1:9/{i}") for i in range(8)]
    await asyncio.gather(*(client.add_sink(app, s) for s in sinks))
    assert sorted(s.name for s in await client.sinks(app)) == sorted(s.name for s in sinks)


async def test_add_after_the_key_was_deleted(bus: Bus, client: DockyardClient) -> None:
    app = f"app-{new_id()[:8]}"
    await client.add_sink(app, HOOK)
    await (await bus.kv(subjects.KV_SINKS)).delete(app)
    assert await client.sinks(app) == []
    await client.add_sink(app, HOOK)
    assert await client.sinks(app) == [HOOK]
