"""The merge of Procfile, app.json, dockyard.toml, preset and operator hooks into one Plan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from dockyard.contract.manifest import MANIFEST_FILES, HookSpec, OperatorHook
from dockyard.contract.phase import HOOK_PHASES, Phase
from dockyard.contract.plan import (
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUTS,
    BuildConfig,
    Command,
    Health,
    Plan,
    ProcessType,
)
from dockyard.plan.appjson import AppJsonHooks, parse_app_json
from dockyard.plan.detect import default_web, detect, summary
from dockyard.plan.dockyard_toml import DockyardManifest, parse_dockyard_toml
from dockyard.plan.errors import InvalidHook, ManifestError
from dockyard.plan.presets import preset_hooks
from dockyard.plan.procfile import Procfile, parse_procfile

# Manifests are a few lines; anything bigger is a mistake, not a manifest.
MAX_MANIFEST_BYTES = 256 * 1024
LABEL_LENGTH = 40


class _Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One repository source's definition of one phase."""

    name: str
    detail: str
    hooks: list[HookSpec]


def read_manifest_files(source: Path) -> dict[str, str]:
    """The texts of the manifests at the top of a source tree (missing ones absent)."""
    files: dict[str, str] = {}
    for name in MANIFEST_FILES:
        path = source / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(name, None, f"is {len(data)} bytes (at most {MAX_MANIFEST_BYTES})")
        try:
            files[name] = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ManifestError(name, line, "is not UTF-8 text") from None
    return files


def derive_label(command: str) -> str:
    """A short label for a command without one: its first 40 characters, spaces collapsed."""
    return " ".join(command.split())[:LABEL_LENGTH].rstrip()


def join_names(items: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def build_plan(
    files: Mapping[str, str],
    operator: Sequence[OperatorHook] = (),
    *,
    timeouts: Mapping[Phase, float] = DEFAULT_TIMEOUTS,
    memory: int = DEFAULT_MEMORY,
) -> Plan:
    """Merge the manifests' texts and the operator's hooks into one ordered Plan."""
    procfile = parse_procfile(files["Procfile"]) if "Procfile" in files else None
    appjson = parse_app_json(files["app.json"]) if "app.json" in files else None
    toml = parse_dockyard_toml(files["dockyard.toml"]) if "dockyard.toml" in files else None
    preset = toml.preset if toml is not None else None
    from_preset = preset_hooks(preset) if preset is not None else {}
    notes: list[str] = []

    phases: dict[str, list[Command]] = {}
    for phase in HOOK_PHASES:
        candidates = _candidates(phase, toml, procfile, appjson, preset, from_preset)
        specs: list[HookSpec] = []
        if candidates:
            winner = candidates[0]
            specs = winner.hooks
            if len(candidates) > 1:
                losers = join_names([c.detail for c in candidates[1:]])
                notes.append(f"{phase}: {winner.name} wins over {losers}")
            if winner.name == "app.json" and appjson is not None and len(appjson.keys[phase]) > 1:
                first, *rest = appjson.keys[phase]
                notes.append(f"{phase}: app.json {first} wins over {join_names(rest)}")
        specs = _first_deploy_only(specs, toml, notes) + [
            _operator_spec(h) for h in operator if _checked(h).phase == phase]
        phases[phase] = [_command(s, timeouts[phase], memory) for s in specs]

    build = toml.build if toml is not None and toml.build is not None else BuildConfig()
    buildpack = detect(files, build.dockerfile, notes)
    notes.extend(summary(buildpack))
    processes = _processes(procfile, toml, notes)
    if not processes and not buildpack.dockerfile and buildpack.language != "none":
        web = default_web(buildpack, files)
        notes.append(f"processes.web: `{web.command}` (the default of a {buildpack.language} "
                     "app without a Procfile)")
        processes = [web]
    if not any(p.name == "web" for p in processes):
        notes.append("no web process: the app gets no HTTP route (worker-only)")
    return Plan(
        processes=processes,
        predeploy=phases["predeploy"],
        release=phases["release"],
        postdeploy=phases["postdeploy"],
        after_switch=phases["after_switch"],
        on_failure=phases["on_failure"],
        health=toml.health if toml is not None and toml.health is not None else Health(),
        build=build,
        drain=toml.drain if toml is not None and toml.drain is not None else Plan().drain,
        notes=notes,
        rollback_hooks=toml.rollback_hooks if toml is not None and toml.rollback_hooks is not None
        else Plan().rollback_hooks,
        buildpack=buildpack,
        rollout=toml.rollout if toml is not None else None,
    )


def _candidates(
    phase: str,
    toml: DockyardManifest | None,
    procfile: Procfile | None,
    appjson: AppJsonHooks | None,
    preset: str | None,
    from_preset: dict[str, list[HookSpec]],
) -> list[_Candidate]:
    """The repository sources defining a phase, highest-ranked first."""
    found: list[_Candidate] = []
    if toml is not None and phase in toml.hooks:
        found.append(_Candidate(name="dockyard.toml", detail=f"dockyard.toml ([[{phase}]])",
                                hooks=toml.hooks[phase]))
    if procfile is not None and phase in procfile.hooks:
        found.append(_Candidate(name="Procfile", detail=f"Procfile ({phase}:)",
                                hooks=[procfile.hooks[phase]]))
    if appjson is not None and phase in appjson.hooks:
        keys = ", ".join(appjson.keys[phase])
        found.append(_Candidate(name="app.json", detail=f"app.json ({keys})",
                                hooks=[appjson.hooks[phase]]))
    if phase in from_preset:
        found.append(_Candidate(name=f"preset {preset}", detail=f"preset {preset}",
                                hooks=from_preset[phase]))
    return found


def _first_deploy_only(specs: list[HookSpec], toml: DockyardManifest | None,
                       notes: list[str]) -> list[HookSpec]:
    """The winning specs; app.json's postdeploy stays first-deploy-only unless toml says "every"."""
    every = toml is not None and toml.appjson_postdeploy == "every"
    result = []
    for spec in specs:
        if spec.first_deploy_only:
            if every:
                spec = msgspec.structs.replace(spec, first_deploy_only=False)
                notes.append(f"postdeploy: {spec.source} runs on every deploy"
                             ' (appjson_postdeploy = "every")')
            else:
                notes.append(f"postdeploy: {spec.source} runs on the app's first deploy only, as"
                             ' on Heroku and Dokku (appjson_postdeploy = "every" in dockyard.toml'
                             " runs it on every deploy)")
        result.append(spec)
    return result


def _checked(hook: OperatorHook) -> OperatorHook:
    """An operator hook whose phase exists (the store validates; a plan must not guess)."""
    if hook.phase not in HOOK_PHASES:
        raise InvalidHook(hook.phase, hook.label,
                          f"unknown phase (known: {', '.join(HOOK_PHASES)})")
    return hook


def _operator_spec(hook: OperatorHook) -> HookSpec:
    """An operator hook as a HookSpec."""
    return HookSpec(label=hook.label, command=hook.command, timeout=hook.timeout,
                    memory=hook.memory, source="operator")


def _command(spec: HookSpec, timeout: float, memory: int) -> Command:
    """A HookSpec with the phase's defaults filled in."""
    return Command(
        label=spec.label or derive_label(spec.command),
        command=spec.command,
        timeout=spec.timeout if spec.timeout is not None else timeout,
        memory=spec.memory if spec.memory is not None else memory,
        source=spec.source,
        first_deploy_only=spec.first_deploy_only,
    )


def _processes(
    procfile: Procfile | None, toml: DockyardManifest | None, notes: list[str]
) -> list[ProcessType]:
    """Procfile process types, with dockyard.toml's scales, command overrides and additions."""
    processes = {p.name: p for p in (procfile.processes if procfile is not None else [])}
    for override in toml.processes if toml is not None else []:
        current = processes.get(override.name)
        if current is None:
            if override.command is None:
                raise ManifestError(
                    "dockyard.toml", override.line,
                    f"processes.{override.name}: no `{override.name}:` line in the Procfile"
                    " and no `command` here",
                )
            current = ProcessType(name=override.name, command=override.command,
                                  source=override.source)
        elif override.command is not None:
            notes.append(f"processes.{override.name}: dockyard.toml command overrides"
                         f" {current.source}")
            current = msgspec.structs.replace(current, command=override.command,
                                              source=override.source)
        if override.scale is not None:
            current = msgspec.structs.replace(current, scale=override.scale)
        processes[override.name] = current
    return list(processes.values())
