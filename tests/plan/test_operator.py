"""Operator hooks in the `hooks` KV bucket of a real nats-server, with optimistic concurrency."""

import asyncio
import uuid

import msgspec
import pytest

from dockyard.bus.topology import Stores
from dockyard.plan.errors import HookNotFound, InvalidAppName, InvalidHook
from dockyard.plan.operator import (
    add_hook,
    added,
    list_hooks,
    remove_hook,
    removed,
    validate_hook,
)
from dockyard.schemas.manifest import OperatorHook, OperatorHooks


def _app() -> str:
    """A fresh app name per test: the session's server is shared."""
    return f"app-{uuid.uuid4().hex[:10]}"


def hook(label: str, phase: str = "postdeploy", command: str = "echo hi") -> OperatorHook:
    """A plain operator hook."""
    return OperatorHook(phase=phase, label=label, command=command)


async def test_add_list_remove(stores: Stores) -> None:
    app = _app()
    assert await list_hooks(stores.hooks, app) == OperatorHooks()
    await add_hook(stores.hooks, app, hook("Warm"))
    await add_hook(stores.hooks, app, hook("Backup", phase="release"))
    after = await add_hook(stores.hooks, app, hook("Notify"))
    assert [h.label for h in after.hooks] == ["Warm", "Backup", "Notify"]
    assert await list_hooks(stores.hooks, app) == after
    left = await remove_hook(stores.hooks, app, "postdeploy", "Warm")
    assert [h.label for h in left.hooks] == ["Backup", "Notify"]
    assert await list_hooks(stores.hooks, app) == left
    stored = await stores.hooks.get(app)
    assert msgspec.json.decode(stored.value or b"", type=OperatorHooks) == left


async def test_remove_absent_names_label_and_phase(stores: Stores) -> None:
    app = _app()
    await add_hook(stores.hooks, app, hook("Warm"))
    with pytest.raises(HookNotFound) as info:
        await remove_hook(stores.hooks, app, "release", "Warm")
    assert str(info.value) == (f"app '{app}' has no release hook labelled 'Warm'"
                               " (release hooks: none)")
    with pytest.raises(HookNotFound, match="postdeploy hooks: 'Warm'"):
        await remove_hook(stores.hooks, app, "postdeploy", "Cold")


async def test_validation_before_touching_the_store(stores: Stores) -> None:
    with pytest.raises(InvalidAppName):
        await add_hook(stores.hooks, "Bad_Name", hook("x"))
    with pytest.raises(InvalidHook, match="unknown phase `predeploi`"):
        await add_hook(stores.hooks, _app(), hook("x", phase="predeploi"))
    with pytest.raises(InvalidHook, match="unknown phase"):
        await remove_hook(stores.hooks, _app(), "later", "x")
    with pytest.raises(InvalidAppName):
        await list_hooks(stores.hooks, "")


async def test_duplicate_label_in_a_phase_is_refused(stores: Stores) -> None:
    app = _app()
    await add_hook(stores.hooks, app, hook("Warm"))
    await add_hook(stores.hooks, app, hook("Warm", phase="release"))
    with pytest.raises(InvalidHook, match="already exists"):
        await add_hook(stores.hooks, app, hook("Warm"))


async def test_concurrent_adds_all_land(stores: Stores) -> None:
    app = _app()
    labels = [f"hook-{i}" for i in range(12)]
    await asyncio.gather(*(add_hook(stores.hooks, app, hook(label)) for label in labels))
    stored = await list_hooks(stores.hooks, app)
    assert sorted(h.label for h in stored.hooks) == sorted(labels)


async def test_add_after_the_key_was_deleted(stores: Stores) -> None:
    app = _app()
    await add_hook(stores.hooks, app, hook("Warm"))
    await stores.hooks.delete(app)
    assert await list_hooks(stores.hooks, app) == OperatorHooks()
    after = await add_hook(stores.hooks, app, hook("Cold"))
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
