"""Operator hooks of an app (set through the CLI or API): the checks and changes,
as plain values."""

from __future__ import annotations

import math

import msgspec

from dockyard.contract.manifest import OperatorHook, OperatorHooks
from dockyard.contract.phase import HOOK_PHASES
from dockyard.plan.errors import HookNotFound, InvalidHook


def validate_phase(phase: str, label: str = "") -> str:
    """The phase itself if it is a hook phase."""
    if phase not in HOOK_PHASES:
        known = ", ".join(p.value for p in HOOK_PHASES)
        raise InvalidHook(phase, label, f"unknown phase `{phase}` (known: {known})")
    return phase


def validate_hook(hook: OperatorHook) -> OperatorHook:
    """The hook, stripped, if it can run: known phase, a label, a command, positive limits."""
    validate_phase(hook.phase, hook.label)
    label, command = hook.label.strip(), hook.command.strip()
    if not label:
        raise InvalidHook(hook.phase, hook.label, "the label must not be empty")
    if not command:
        raise InvalidHook(hook.phase, label, "the command must not be empty")
    if hook.timeout is not None and not (math.isfinite(hook.timeout) and hook.timeout > 0):
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
