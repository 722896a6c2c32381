"""Attacks on the bus of a real stack (`dockyard up`'s own start_stack), each one refused.

Reproduces the reported forgeries: a client without credentials publishing a renamed copy of
`hook.started` as `hook.succeeded` (and one pointing at the attacker's instance) while a
postdeploy still runs; reading config values and webhook secrets; changing streams (republish,
subject transforms), buckets and the services' consumers as a service, `cli` or `reader`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dockyard.bus.service import SERVICES
from dockyard.bus.topology import STREAM_FEED, streams
from dockyard.client import Followers
from dockyard.contract import codec, subjects
from dockyard.contract.events import (
    AnyEvent,
    DeployFailed,
    DeploySucceeded,
    HookStarted,
    new_id,
)
from dockyard.contract.sinks import Sink
from tests.bus.attacker import Attacker, connect_without_credentials
from tests.e2e.apps import get, make_app
from tests.e2e.conftest import Running, start_running, stop_running
from tests.runtime.process_support import reachable_tmp, remove

pytestmark = pytest.mark.timeout(600)

IDENTITIES = (*SERVICES, "cli", "reader", "admin")
NOT_ADMIN = tuple(i for i in IDENTITIES if i != "admin")
SECRET_VALUE = "s3cret-config-value-9f1c2e"
WEBHOOK_SECRET = "whsec_YXR0YWNrLXRlc3Qtc2VjcmV0LXZhbHVl"


@pytest.fixture(scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """One real stack (process runtime: the bus does not depend on the runtime)."""
    r = await start_running(tmp_path_factory.mktemp("attacks"), "process")
    yield r
    await stop_running(r)


async def attackers(running: Running, names: tuple[str, ...] = IDENTITIES) -> list[Attacker]:
    """One connection per identity, with the seeds the stack generated."""
    return [await Attacker.connect(running.settings.bus_url(), running.settings.keys_dir, name)
            for name in names]


async def close_all(found: list[Attacker]) -> None:
    for attacker in found:
        await attacker.close()


async def stored(running: Running, stream: str, subject: str) -> int:
    """How many messages a stream holds on a subject (asked as admin: counts, not contents)."""
    info = await (await running.js_as("admin")).stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


def renamed(event: AnyEvent, **changes: Any) -> bytes:
    """The reported forgery: a copy of an event with `type` hook.succeeded and a fresh id."""
    body = json.loads(codec.encode(event))
    body.update(type="dockyard.hook.succeeded", id=new_id(), **changes)
    return json.dumps(body).encode()


async def test_no_credentials_no_connection(running: Running) -> None:
    """The bus takes no client without a seed it knows (a made-up seed is refused too)."""
    error = await connect_without_credentials(running.settings.bus_url())
    assert error is not None and "authorization violation" in str(error).lower(), error
    stranger = Path(running.settings.data_dir / "stranger")
    from dockyard.bus.auth import ensure_seeds  # a well-formed seed the server never saw

    ensure_seeds(stranger, ["cli"])
    with pytest.raises(Exception, match="(?i)authorization violation"):
        await Attacker.connect(running.settings.bus_url(), stranger, "cli")


async def test_forged_hook_succeeded_during_postdeploy_is_refused(
        running: Running, tmp_path: Path) -> None:
    """While v2's postdeploy runs, every identity but hook-runner (and anyone without
    credentials) tries the renamed hook.started, and one pointing at its own instance: all
    refused, nothing stored, v1 keeps serving, and v2 ends failed as its postdeploy says."""
    app = running.app_name("forged")
    v1 = await running.client.deploy(app, make_app(tmp_path / "v1", "process", "v1"),
                                     Followers(), wait=240)
    assert isinstance(v1, DeploySucceeded), v1
    started: asyncio.Future[HookStarted] = asyncio.get_running_loop().create_future()

    async def on_event(event: AnyEvent) -> None:
        if isinstance(event, HookStarted) and not started.done():
            started.set_result(event)

    shared = reachable_tmp("dockyard-gate-")  # the app's own user must see the gate
    gate = shared / "gate"
    src = make_app(tmp_path / "v2", "process", "v2",
                   postdeploy=f"while [ ! -e {gate} ]; do sleep 0.1; done; exit 1")
    deploy = asyncio.ensure_future(running.client.deploy(app, src, Followers(on_event=on_event),
                                                         wait=240))
    found = await attackers(running, tuple(i for i in IDENTITIES if i != "hook-runner"))
    try:
        copy = await asyncio.wait_for(started, 120)
        subject = subjects.event(app, "hook", "succeeded")
        honest = renamed(copy)
        spec = msgspec.to_builtins(copy.data)
        release = copy.data.instances[0].release
        spec["instances"] = [{"id": "evil", "process": "web", "release": release,
                              "host": "127.0.0.1", "port": 9}]
        chosen = renamed(copy, data=spec)
        before = await stored(running, subjects.STREAM_EVENTS, subject)  # v1's own
        assert await connect_without_credentials(running.settings.bus_url()) is not None
        for attacker in found:
            for body in (honest, chosen):
                try:
                    ack = await attacker.request(subject, body, {"Nats-Msg-Id": new_id()})
                except Exception as exc:
                    raise AssertionError((attacker.identity, attacker.errors)) from exc
                assert ack is None, (attacker.identity, ack)
        assert await stored(running, subjects.STREAM_EVENTS, subject) == before
        assert get(running.port, app).text == "app v1\n"
    finally:
        await close_all(found)
        gate.touch()  # the postdeploy ends (failing), whatever happened above
        try:
            end = await deploy
        finally:
            remove(shared)
    assert isinstance(end, DeployFailed) and end.data.status == "hook-error", end
    assert get(running.port, app).text == "app v1\n"


async def test_only_hook_runner_may_publish_hook_succeeded(running: Running) -> None:
    """The allow-list lets the one service that runs postdeploy publish it (a garbage body,
    which the router dead-letters); it refuses the same publish to everyone else."""
    subject = subjects.event(running.app_name("gate"), "hook", "succeeded")
    found = await attackers(running)
    try:
        for attacker in found:
            ack = await attacker.request(subject, b"not an event", {"Nats-Msg-Id": new_id()})
            if attacker.identity == "hook-runner":
                assert ack is not None and b'"stream":"DOCKYARD_EVENTS"' in ack, ack
            else:
                assert ack is None, (attacker.identity, ack)
    finally:
        await close_all(found)


async def test_config_values_and_webhook_secrets_are_read_only_through_their_doors(
        running: Running) -> None:
    """Config values: hook-runner, scheduler, cli and api (their doors say so; the api answers
    names and versions only); sinks and their secrets: notifier, cli and api. Everyone else is
    refused, by direct get and by message get."""
    app = running.app_name("secrets")
    await running.client.config_change(app, {"API_TOKEN": SECRET_VALUE}, [])
    await running.client.add_sink(app, Sink(name="ops", url="https://example.invalid/hook",
                                            secret=WEBHOOK_SECRET))
    cases = ((subjects.KV_CONFIG, SECRET_VALUE, {"hook-runner", "scheduler", "cli", "api"}),
             (subjects.KV_SINKS, WEBHOOK_SECRET, {"notifier", "cli", "api"}))
    found = await attackers(running)
    try:
        for bucket, secret, readers in cases:
            direct = f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{app}"
            for attacker in found:
                value = await attacker.request(direct)
                if attacker.identity in readers:
                    assert value is not None and secret in value.decode(), attacker.identity
                else:
                    assert value is None, (attacker.identity, bucket)
                got = await attacker.api(f"$JS.API.STREAM.MSG.GET.KV_{bucket}",
                                         {"last_by_subj": f"$KV.{bucket}.{app}"})
                assert got is None, (attacker.identity, bucket, got)
                # Nor through a consumer of one's own on the bucket's stream.
                if attacker.identity not in readers:
                    made = await attacker.api(f"$JS.API.CONSUMER.CREATE.KV_{bucket}",
                                              {"stream_name": f"KV_{bucket}", "config": {}})
                    assert made is None, (attacker.identity, made)
    finally:
        await close_all(found)


async def test_nobody_reads_another_identitys_replies(running: Running) -> None:
    """KV reads travel as replies: no identity may subscribe to every inbox, or another's."""
    found = await attackers(running)
    try:
        for attacker in found:
            assert not await attacker.may_subscribe("_INBOX.>"), attacker.identity
            for other in IDENTITIES:
                if other != attacker.identity:
                    assert not await attacker.may_subscribe(f"_INBOX.{other}.>"), \
                        (attacker.identity, other)
            assert await attacker.may_subscribe(f"_INBOX.{attacker.identity}.x"), \
                attacker.identity
    finally:
        await close_all(found)


def _stream_config(name: str, **changes: Any) -> dict[str, Any]:
    (cfg,) = [c for c in streams() if c.name == name]
    return {**cfg.as_dict(), **changes}


GATE = "dockyard.evt.{{wildcard(1)}}.hook.succeeded"
# Changes the server accepts as valid (main's `cli` made every one of them), each turning
# messages its maker may publish into hook.succeeded events stored in DOCKYARD_EVENTS.
FORGING_CHANGES = {
    subjects.STREAM_COMMANDS: {"republish": {"src": subjects.CMD_DEPLOY,
                                             "dest": "dockyard.evt.shop.hook.succeeded"}},
    subjects.STREAM_DLQ: {"republish": {"src": "dockyard.dlq.*", "dest": GATE}},
    subjects.STREAM_LOGS: {"republish": {"src": "dockyard.log.*", "dest": GATE}},
    subjects.STREAM_EVENTS: {"subject_transform": {"src": "dockyard.evt.*.build.started",
                                                   "dest": GATE}},
    STREAM_FEED: {"republish": {"src": "dockyard.evt.*.build.started", "dest": GATE}},
}


async def test_no_service_cli_or_reader_may_change_the_topology(running: Running) -> None:
    """Republish and subject transforms on every stream, a new bucket, deleting or purging a
    stream, and taking over the router's durable consumer: refused to every identity but
    admin (which provisions), and the router's consumer still reads hook.succeeded alone."""
    found = await attackers(running, NOT_ADMIN)
    hijack = {"stream_name": subjects.STREAM_EVENTS,
              "config": {"name": "router-hook-succeeded", "ack_policy": "explicit",
                         "filter_subject": subjects.events_of("hook", "started")}}
    try:
        for attacker in found:
            who = attacker.identity
            for stream, change in FORGING_CHANGES.items():
                for verb in ("UPDATE", "CREATE"):
                    answer = await attacker.api(f"$JS.API.STREAM.{verb}.{stream}",
                                                _stream_config(stream, **change))
                    assert answer is None, (who, verb, stream, answer)
                for verb in ("DELETE", "PURGE"):
                    assert await attacker.api(f"$JS.API.STREAM.{verb}.{stream}") is None, \
                        (who, verb, stream)
            bucket = {"name": "KV_attack", "subjects": ["$KV.attack.>"], "allow_direct": True}
            assert await attacker.api("$JS.API.STREAM.CREATE.KV_attack", bucket) is None, who
            assert await attacker.api(f"$JS.API.STREAM.UPDATE.KV_{subjects.KV_CONFIG}",
                                      {"name": f"KV_{subjects.KV_CONFIG}"}) is None, who
            assert await attacker.api(f"$JS.API.CONSUMER.CREATE.{subjects.STREAM_EVENTS}",
                                      hijack) is None, who
            named = (f"$JS.API.CONSUMER.CREATE.{subjects.STREAM_EVENTS}.router-hook-succeeded."
                     f"{subjects.events_of('hook', 'started')}")
            assert await attacker.api(named, hijack) is None, who
            assert await attacker.api(
                f"$JS.API.CONSUMER.DELETE.{subjects.STREAM_EVENTS}.router-hook-succeeded") is None
    finally:
        await close_all(found)
    js = await running.js_as("admin")
    info = await js.consumer_info(subjects.STREAM_EVENTS, "router-hook-succeeded")
    assert info.config.filter_subject == subjects.events_of("hook", "succeeded")
    for cfg in streams():
        assert cfg.name is not None
        now = (await js.stream_info(cfg.name)).config
        assert now.republish is None and now.subject_transform is None, cfg.name


async def test_reader_follows_events_and_logs_and_nothing_else(running: Running,
                                                               tmp_path: Path) -> None:
    """The reader identity: an ordered consumer on the events (their mirror) and the logs;
    no publish of any kind, no KV, no object store."""
    app = running.app_name("watched")
    end = await running.client.deploy(app, make_app(tmp_path / "v1", "process", "v1"),
                                      Followers(), wait=240)
    assert isinstance(end, DeploySucceeded), end
    (reader,) = await attackers(running, ("reader",))
    try:
        js = reader.nc.jetstream()
        sub = await js.subscribe(subjects.app_events(app), ordered_consumer=True,
                                 stream=STREAM_FEED)
        first = await sub.next_msg(timeout=10)
        assert json.loads(first.data)["type"] == "dockyard.deploy.queued"
        await sub.unsubscribe()
        logs = await js.subscribe(subjects.log(end.deployment_id), ordered_consumer=True,
                                  stream=subjects.STREAM_LOGS)
        assert (await logs.next_msg(timeout=10)).data
        await logs.unsubscribe()
        for subject in (subjects.CMD_DEPLOY, subjects.event(app, "deploy", "succeeded"),
                        subjects.log("x"), f"$KV.{subjects.KV_CONFIG}.{app}",
                        f"$O.{subjects.OBJ_SOURCES}.M.x"):
            assert await reader.request(subject, b"{}") is None, subject
        for stream in (subjects.STREAM_EVENTS, subjects.STREAM_COMMANDS, subjects.STREAM_DLQ,
                       f"KV_{subjects.KV_ROUTES}", f"OBJ_{subjects.OBJ_SOURCES}"):
            made = await reader.api(f"$JS.API.CONSUMER.CREATE.{stream}",
                                    {"stream_name": stream, "config": {}})
            assert made is None, stream
        assert not await reader.may_subscribe(subjects.EVT_ALL)
    finally:
        await reader.close()


async def test_data_dir_seeds_and_server_config_are_private(running: Running) -> None:
    """Data dir and keys dir 0700; every seed, the JetStream key and the server config 0600."""
    data, keys = running.settings.data_dir, running.settings.keys_dir
    assert data.stat().st_mode & 0o777 == 0o700
    assert keys.stat().st_mode & 0o777 == 0o700
    seeds = sorted(keys.glob("*.nk"))
    assert {p.stem for p in seeds} == set(IDENTITIES)
    for path in (*seeds, keys / "jetstream.key", data / "nats-server.conf"):
        assert path.stat().st_mode & 0o777 == 0o600, path
