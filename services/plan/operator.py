"""Operator hooks of an app (set through the CLI or API), kept in the `hooks` KV bucket by app name."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from dockyard.plan.errors import HookNotFound, HooksBusy, InvalidHook
from dockyard.plan.names import validate_app_name
from dockyard.schemas.manifest import OperatorHook, OperatorHooks
from dockyard.schemas.plan import HOOK_PHASES

ATTEMPTS = 20
_decoder = msgspec.json.Decoder(OperatorHooks)


def validate_phase(phase: str, label: str = "") -> str:
    """The phase itself if it is a hook phase."""
    if phase not in HOOK_PHASES:
        raise InvalidHook(phase, label, f"unknown phase `{phase}` (known: {', '.join(HOOK_PHASES)})")
    return phase


def validate_hook(hook: OperatorHook) -> OperatorHook:
    """The hook, stripped, if it can run: known phase, a label, a command, positive limits."""
    validate_phase(hook.phase, hook.label)
    label, command = hook.label.strip(), hook.command.strip()
    if not label:
        raise InvalidHook(hook.phase, hook.label, "the label must not be empty")
    if not command:
        raise InvalidHook(hook.phase, label, "the command must not be empty")
    if hook.timeout is not None and not hook.timeout > 0:
        raise InvalidHook(hook.phase, label, f"timeout {hook.timeout} must be positive seconds")
    if hook.memory is not None and hook.memory <= 0:
        raise InvalidHook(hook.phase, label, f"memory {hook.memory} must be positive bytes")
    return msgspec.structs.replace(hook, label=label, command=command)


def added(hooks: OperatorHooks, hook: OperatorHook) -> OperatorHooks:
    """The hooks with one more at the end of its phase; a label is unique within a phase."""
    if any(h.phase == hook.phase and h.label == hook.label for h in hooks.hooks):
        raise InvalidHook(hook.phase, hook.label, "a hook with this label already exists")
    return OperatorHooks(hooks=[*hooks.hooks, hook])


def removed(hooks: OperatorHooks, app: str, phase: str, label: str) -> OperatorHooks:
    """The hooks without the one labelled so in that phase."""
    kept = [h for h in hooks.hooks if not (h.phase == phase and h.label == label)]
    if len(kept) == len(hooks.hooks):
        known = [h.label for h in hooks.hooks if h.phase == phase]
        raise HookNotFound(app, phase, label, known)
    return OperatorHooks(hooks=kept)


async def _read(kv: KeyValue, app: str) -> tuple[OperatorHooks, int]:
    """The stored hooks and the revision to update from (0: never written)."""
    try:
        entry = await kv.get(app)
    except KeyNotFoundError as exc:
        # A deleted key still has a revision: an update must name it, not 0.
        revision = exc.entry.revision if exc.entry is not None else 0
        return OperatorHooks(), revision or 0
    value = entry.value or b""
    return (_decoder.decode(value) if value else OperatorHooks()), entry.revision or 0


async def _change(
    kv: KeyValue, app: str, change: Callable[[OperatorHooks], OperatorHooks]
) -> OperatorHooks:
    """Read, change and write back with optimistic concurrency, retrying on a conflict."""
    for _ in range(ATTEMPTS):
        current, revision = await _read(kv, app)
        new = change(current)
        try:
            await kv.update(app, msgspec.json.encode(new), last=revision)
        except KeyWrongLastSequenceError:
            continue
        return new
    raise HooksBusy(app, ATTEMPTS)


async def add_hook(kv: KeyValue, app: str, hook: OperatorHook) -> OperatorHooks:
    """Append an operator hook to an app's; returns them all."""
    validate_app_name(app)
    hook = validate_hook(hook)
    return await _change(kv, app, lambda hooks: added(hooks, hook))


async def remove_hook(kv: KeyValue, app: str, phase: str, label: str) -> OperatorHooks:
    """Remove the operator hook with that label from that phase; returns those left."""
    validate_app_name(app)
    validate_phase(phase, label)
    return await _change(kv, app, lambda hooks: removed(hooks, app, phase, label))


async def list_hooks(kv: KeyValue, app: str) -> OperatorHooks:
    """Every operator hook of an app, in the order they were added."""
    validate_app_name(app)
    hooks, _ = await _read(kv, app)
    return hooks
