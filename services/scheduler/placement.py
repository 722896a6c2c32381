"""Pure decisions: which instances a release needs, which ones are old."""

from __future__ import annotations

from dockyard.runtime.base import InstanceSpec
from dockyard.schemas.events import DeploySpec, InstanceRef
from dockyard.schemas.plan import Plan
from dockyard.schemas.state import LiveRelease


def wanted(plan: Plan, *, app: str, deployment_id: str, release: int, artifact: str,
           env_for: dict[str, dict[str, str]]) -> list[InstanceSpec]:
    """One spec per instance: every process type at its scale, `web` first."""
    specs: list[InstanceSpec] = []
    for proc in sorted(plan.processes, key=lambda p: (p.name != "web", p.name)):
        for index in range(1, proc.scale + 1):
            specs.append(InstanceSpec(app=app, deployment_id=deployment_id, release=release,
                                      process=proc.name, index=index, artifact=artifact,
                                      command=proc.command, env=env_for[f"{proc.name}-{index}"]))
    return specs


def old(instances: list[InstanceRef], live_release: int) -> list[InstanceRef]:
    """Instances of any release other than the one now live."""
    return [i for i in instances if i.release != live_release]


def of_release(instances: list[InstanceRef], release: int) -> list[InstanceRef]:
    """Instances of one release."""
    return [i for i in instances if i.release == release]


def drain_time(plan_drain: float, override: float | None) -> float:
    """How long old instances keep draining after the switch (an operator override wins)."""
    return plan_drain if override is None else override


def disposable_artifacts(failed: DeploySpec, live: LiveRelease | None) -> list[str]:
    """Artifacts a failed deploy made that the live release does not use (safe to delete)."""
    keep = {live.spec.artifact, live.spec.build_artifact} if live else set()
    made = [failed.artifact, failed.build_artifact]
    return [a for a in dict.fromkeys(made) if a and a not in keep]


def replaced_artifacts(previous: list[DeploySpec], live: DeploySpec) -> list[str]:
    """Artifacts of replaced releases that the live release does not use (a config release
    shares its build with the release it replaced)."""
    keep = {live.artifact, live.build_artifact}
    made = [a for spec in previous for a in (spec.artifact, spec.build_artifact)]
    return [a for a in dict.fromkeys(made) if a and a not in keep]
