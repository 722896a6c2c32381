"""Shapes of the manifests an app carries (dockyard.toml, app.json) and of operator-set hooks."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# Durations and sizes stay raw here (string or number): dockyard.plan parses them, so an error
# can name the manifest line rather than a msgspec path.
Duration = str | int | float
Size = str | int

MANIFEST_FILES = ("Procfile", "app.json", "dockyard.toml")
AppJsonPostdeploy = Literal["first", "every"]
RollbackHooks = Literal["release", "all", "none"]


# ---------------------------------------------------------------- dockyard.toml


class TomlHook(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One `[[<phase>]]` table of dockyard.toml."""

    command: str
    label: str | None = None
    timeout: Duration | None = None
    memory: Size | None = None


class TomlHealth(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[health]` table: HTTP path to GET (else a TCP connect) and how long to wait."""

    path: str | None = None
    timeout: Duration | None = None


class TomlBuild(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[build]` table."""

    dockerfile: str | None = None
    command: str | None = None
    timeout: Duration | None = None


class TomlProcess(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One `[processes.<name>]` table: its scale, and a command overriding the Procfile's."""

    scale: Annotated[int, msgspec.Meta(ge=0)] | None = None
    command: str | None = None


class TomlRollout(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[rollout]` table: a canary's steps (percent of requests), how long each is held,
    and the thresholds a step is judged on against the old release."""

    steps: list[int] | None = None
    hold: Duration | None = None
    max_error_increase: float | None = None
    max_latency_ratio: float | None = None
    min_requests: int | None = None
    inconclusive: Literal["promote", "abort"] | None = None
    watch: Duration | None = None


class DockyardToml(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole of dockyard.toml."""

    preset: str | None = None
    drain: Duration | None = None
    # When app.json's `scripts.postdeploy` runs: "first" (Heroku, Dokku) or "every" (Scalingo).
    appjson_postdeploy: AppJsonPostdeploy | None = None
    # Which hook phases a rollback runs: "release" (predeploy and release, Heroku), "all", "none".
    rollback_hooks: RollbackHooks | None = None
    predeploy: list[TomlHook] | None = None
    release: list[TomlHook] | None = None
    postdeploy: list[TomlHook] | None = None
    after_switch: list[TomlHook] | None = None
    on_failure: list[TomlHook] | None = None
    health: TomlHealth | None = None
    build: TomlBuild | None = None
    rollout: TomlRollout | None = None
    processes: dict[str, TomlProcess] = {}


# ---------------------------------------------------------------- app.json

# app.json carries much else (name, env, addons, buildpacks...): unknown fields are ignored.


class AppJsonDokku(msgspec.Struct, frozen=True, kw_only=True):
    """`scripts.dokku` of app.json (Dokku deployment tasks)."""

    predeploy: str | None = None
    postdeploy: str | None = None


class AppJsonScripts(msgspec.Struct, frozen=True, kw_only=True):
    """`scripts` of app.json."""

    postdeploy: str | None = None
    dokku: AppJsonDokku | None = None


class AppJson(msgspec.Struct, frozen=True, kw_only=True):
    """The parts of app.json Dockyard reads."""

    scripts: AppJsonScripts | None = None


# ---------------------------------------------------------------- hooks


class HookSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A hook command as one source states it, before the phase's defaults fill the gaps."""

    command: str
    source: str
    label: str | None = None
    timeout: float | None = None
    memory: int | None = None
    # Runs on an app's first deploy only (app.json `scripts.postdeploy`, as on Heroku and Dokku).
    first_deploy_only: bool = False


class OperatorHook(msgspec.Struct, frozen=True, kw_only=True):
    """A hook command an operator set for an app (CLI or API), run after the repository's."""

    phase: str
    label: str
    command: str
    timeout: float | None = None
    memory: int | None = None


class OperatorHooks(msgspec.Struct, frozen=True, kw_only=True):
    """Every operator hook of one app, in the order they were added (the `hooks` KV value)."""

    hooks: list[OperatorHook] = []
