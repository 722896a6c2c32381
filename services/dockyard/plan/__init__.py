"""The deploy plan: reading Procfile, app.json and dockyard.toml,
and merging them with presets and operator hooks."""

from __future__ import annotations

from dockyard.plan.detect import read_build_files
from dockyard.plan.durations import parse_duration, parse_memory
from dockyard.plan.errors import (
    HookNotFound,
    InvalidHook,
    ManifestError,
    PlanError,
)
from dockyard.plan.merge import build_plan, read_manifest_files
from dockyard.plan.operator import added, removed, validate_hook
from dockyard.plan.presets import PRESETS

__all__ = [
    "PRESETS",
    "HookNotFound",
    "InvalidHook",
    "ManifestError",
    "PlanError",
    "added",
    "build_plan",
    "parse_duration",
    "parse_memory",
    "read_build_files",
    "read_manifest_files",
    "removed",
    "validate_hook",
]
