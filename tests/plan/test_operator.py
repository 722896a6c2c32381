"""Operator hooks in the `hooks` KV bucket of a real nats-server, with optimistic concurrency.

The hooks door (state/hooks.py) keeps them; the client checks the app name and the hook and
changes them through the door; the pure changes are plan/operator.py's.
"""

import asyncio
import uuid

import msgspec
import pytest

from dockyard.client import ClientError, DockyardClient
from dockyard.contract import subjects
from dockyard.contract.manifest import OperatorHook, OperatorHooks
from dockyard.plan.errors import HookNotFound, InvalidHook
from dockyard.plan.operator import added, removed, validate_hook
from tests.conftest import Bus


def _app() -> str:
    """A fresh app name per test: the session's server is shared."""
    return f"app-{uuid.uuid4().hex[:10]}"


def hook(label: str, phase: str = "postdeploy", command: str = "echo hi") -> OperatorHook:
    """A plain operator hook."""
    return OperatorHook(phase=phase, label=label, command=command)


async def test_add_list_remove(bus: Bus, client: DockyardClient) -> None:
    app = _app()
    assert await client.doors.hooks.load(app) == OperatorHooks()
    await client.add_hook(app, hook("Warm"))
    await client.add_hook(app, hook("Backup", phase="release"))
    after = await client.add_hook(app, hook("Notify"))
    assert [h.label for h in after.hooks] == ["Warm", "Backup", "Notify"]
    assert await client.doors.hooks.load(app) == after
    left = await client.remove_hook(app, "postdeploy", "Warm")
    assert [h.label for h in left.hooks] == ["Backup", "Notify"]
    assert await client.doors.hooks.load(app) == left
    stored = await (await bus.kv(subjects.KV_HOOKS)).get(app)
    assert msgspec.json.decode(stored.value or b"", type=OperatorHooks) == left


async def test_remove_absent_names_label_and_phase(client: DockyardClient) -> None:
    app = _app()
    await client.add_hook(app, hook("Warm"))
    with pytest.raises(HookNotFound) as info:
        await client.remove_hook(app, "release", "Warm")
    assert str(info.value) == (f"app '{app}' has no release hook labelled 'Warm'"
                               " (release hooks: none)")
    with pytest.raises(HookNotFound, match="postdeploy hooks: 'Warm'"):
        await client.remove_hook(app, "postdeploy", "Cold")


async def test_validation_before_touching_the_store(client: DockyardClient) -> None:
    with pytest.raises(ClientError, match="invalid app name 'Bad_Name'"):
        await client.add_hook("Bad_Name", hook("x"))
    app = _app()
    with pytest.raises(InvalidHook, match="unknown phase `predeploi`"):
        await client.add_hook(app, hook("x", phase="predeploi"))
    with pytest.raises(InvalidHook, match="unknown phase"):
        await client.remove_hook(app, "later", "x")
    with pytest.raises(ClientError, match="invalid app name ''"):
        await client.plan("")
    assert await client.doors.hooks.load(app) == OperatorHooks()


async def test_duplicate_label_in_a_phase_is_refused(client: DockyardClient) -> None:
    app = _app()
    await client.add_hook(app, hook("Warm"))
    await client.add_hook(app, hook("Warm", phase="release"))
    with pytest.raises(InvalidHook, match="already exists"):
        await client.add_hook(app, hook("Warm"))


async def test_concurrent_adds_all_land(client: DockyardClient) -> None:
    app = _app()
    labels = [f"hook-{i}" for i in range(12)]
    await asyncio.gather(*(client.add_hook(app, hook(label)) for label in labels))
    stored = await client.doors.hooks.load(app)
    assert sorted(h.label for h in stored.hooks) == sorted(labels)


async def test_add_after_the_key_was_deleted(bus: Bus, client: DockyardClient) -> None:
    app = _app()
    await client.add_hook(app, hook("Warm"))
    await (await bus.kv(subjects.KV_HOOKS)).delete(app)
    assert await client.doors.hooks.load(app) == OperatorHooks()
    after = await client.add_hook(app, hook("Cold"))
    assert [h.label for h in after.hooks] == ["Cold"]


def test_validate_hook_strips_and_refuses_empty_or_negative() -> None:
    assert validate_hook(hook(" Warm ", command=" echo ")) == hook("Warm", command="echo")
    with pytest.raises(InvalidHook, match="label must not be empty"):
        validate_hook(hook(" "))
    with pytest.raises(InvalidHook, match="command must not be empty"):
        validate_hook(hook("x", command=""))
    with pytest.raises(InvalidHook, match="timeout -1.0 must be positive"):
        validate_hook(OperatorHook(phase="release", label="x", command="y", timeout=-1.0))
    with pytest.raises(InvalidHook, match="memory 0 must be positive"):
        validate_hook(OperatorHook(phase="release", label="x", command="y", memory=0))


def test_added_and_removed_are_pure() -> None:
    one = added(OperatorHooks(), hook("a"))
    two = added(one, hook("b"))
    assert [h.label for h in two.hooks] == ["a", "b"]
    assert removed(two, "shop", "postdeploy", "a") == OperatorHooks(hooks=[hook("b")])
    assert [h.label for h in one.hooks] == ["a"]
