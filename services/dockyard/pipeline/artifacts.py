"""Which build artifacts may be deleted: never one the live release uses."""

from __future__ import annotations

from dockyard.contract.events import DeploySpec
from dockyard.contract.state import LiveRelease


def disposable_artifacts(failed: DeploySpec, live: LiveRelease | None,
                         kept: list[DeploySpec] | None = None) -> list[str]:
    """Artifacts a failed deploy made that neither the live release nor a kept one (`kept`: a
    failed rollback runs a kept release's build) uses (safe to delete)."""
    keep = {a for spec in [*([live.spec] if live else []), *(kept or [])]
            for a in (spec.artifact, spec.build_artifact)}
    made = [failed.artifact, failed.build_artifact]
    return [a for a in dict.fromkeys(made) if a and a not in keep]


def replaced_artifacts(previous: list[DeploySpec], keep_specs: list[DeploySpec]) -> list[str]:
    """Artifacts of replaced releases that no kept release uses (a config release shares its
    build with the release it replaced; a rollback runs an old build again)."""
    keep = {a for spec in keep_specs for a in (spec.artifact, spec.build_artifact)}
    made = [a for spec in previous for a in (spec.artifact, spec.build_artifact)]
    return [a for a in dict.fromkeys(made) if a and a not in keep]
