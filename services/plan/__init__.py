"""The deploy plan: reading Procfile, app.json and dockyard.toml, and merging them with presets and operator hooks."""

from __future__ import annotations

from dockyard.plan.durations import parse_duration, parse_memory
from dockyard.plan.errors import (
    HookNotFound,
    HooksBusy,
    InvalidAppName,
    InvalidHook,
    ManifestError,
    PlanError,
)
from dockyard.plan.merge import build_plan, read_manifest_files
from dockyard.plan.names import validate_app_name
from dockyard.plan.operator import add_hook, list_hooks, remove_hook
from dockyard.plan.presets import PRESETS

__all__ = [
    "PRESETS",
    "HookNotFound",
    "HooksBusy",
    "InvalidAppName",
    "InvalidHook",
    "ManifestError",
    "PlanError",
    "add_hook",
    "build_plan",
    "list_hooks",
    "parse_duration",
    "parse_memory",
    "read_manifest_files",
    "remove_hook",
    "validate_app_name",
]
