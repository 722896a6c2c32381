"""Which sinks get which event, what they receive, and the notify bucket."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from dockyard.bus.topology import Stores
from dockyard.notifier.errors import InvalidSink, SinkNotFound
from dockyard.notifier.signing import verify
from dockyard.notifier.sinks import (
    DEFAULT_EVENTS,
    Sink,
    Sinks,
    add_sink,
    global_sink,
    is_notification,
    list_sinks,
    matches,
    remove_sink,
    request,
    select,
    validate,
)
from dockyard.schemas import codec
from dockyard.schemas.events import DeployQueued, new_id

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
    assert sink == Sink(name="global", url="https://ops.example/hook", secret="s3cret")
    assert global_sink("https://ops.example/hook", "") == Sink(name="global",
                                                               url="https://ops.example/hook")


def test_repr_never_shows_the_secret_or_url_path() -> None:
    sink = Sink(name="chat", kind="slack", url="https://hooks.slack.com/services/T0/B0/TOKEN",
                secret="whsec_c2VjcmV0")
    text = repr(sink)
    assert "TOKEN" not in text and "whsec" not in text and "hooks.slack.com" in text


def test_webhook_request_is_the_signed_event_json() -> None:
    event = DeployQueued(id="d1:deploy.queued", source="t", subject="shop", deployment_id="d1")
    sink = Sink(name="s", url="http://h/", secret="raw-secret")
    body, headers = request(sink, event, timestamp=1_700_000_000)
    assert codec.decode_event(body) == event
    assert headers["webhook-id"] == "d1:deploy.queued"
    verify("raw-secret", headers, body, now=1_700_000_000)


def test_slack_request_is_a_text_message() -> None:
    event = DeployQueued(id="d1:deploy.queued", source="t", subject="shop", deployment_id="d1")
    body, headers = request(Sink(name="c", kind="slack", url="http://h/"), event)
    assert msgspec.json.decode(body) == {"text": ":hourglass_flowing_sand: shop deploy d1 queued"}
    assert headers == {}


async def test_add_list_remove(stores: Stores) -> None:
    app = f"app-{new_id()[:8]}"
    assert await list_sinks(stores.notify, app) == []
    await add_sink(stores.notify, app, HOOK)
    chat = Sink(name="chat", kind="slack", url="http://127.0.0.1:9/c", events=["*.failed"])
    await add_sink(stores.notify, app, chat)
    assert await list_sinks(stores.notify, app) == [HOOK, chat]
    # Same name replaces.
    moved = Sink(name="hook", url="http://127.0.0.1:9/y")
    await add_sink(stores.notify, app, moved)
    assert await list_sinks(stores.notify, app) == [chat, moved]
    await remove_sink(stores.notify, app, "chat")
    assert await list_sinks(stores.notify, app) == [moved]
    with pytest.raises(SinkNotFound):
        await remove_sink(stores.notify, app, "chat")
    stored = await stores.notify.get(app)
    assert stored.value is not None
    assert msgspec.json.decode(stored.value, type=Sinks) == Sinks(sinks=[moved])


async def test_global_name_is_reserved(stores: Stores) -> None:
    with pytest.raises(InvalidSink, match="reserved"):
        await add_sink(stores.notify, "shop", Sink(name="global", url="http://h/"))


async def test_app_names_that_cannot_be_keys_have_no_sinks(stores: Stores) -> None:
    assert await list_sinks(stores.notify, "bad app*") == []
    with pytest.raises(InvalidSink, match="cannot be a bucket key"):
        await add_sink(stores.notify, "bad app*", HOOK)


async def test_concurrent_adds_all_survive(stores: Stores) -> None:
    app = f"app-{new_id()[:8]}"
    sinks = [Sink(name=f"s{i}", url=f"http://127.0.0.1:9/{i}") for i in range(8)]
    await asyncio.gather(*(add_sink(stores.notify, app, s) for s in sinks))
    assert sorted(s.name for s in await list_sinks(stores.notify, app)) == \
        sorted(s.name for s in sinks)


async def test_add_after_the_key_was_deleted(stores: Stores) -> None:
    app = f"app-{new_id()[:8]}"
    await add_sink(stores.notify, app, HOOK)
    await stores.notify.delete(app)
    assert await list_sinks(stores.notify, app) == []
    await add_sink(stores.notify, app, HOOK)
    assert await list_sinks(stores.notify, app) == [HOOK]
