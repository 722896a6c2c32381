"""Pure decisions: which instances a release needs, which ones are old."""

from __future__ import annotations

from dockyard.contract.events import InstanceRef
from dockyard.contract.plan import Plan
from dockyard.runtime.base import InstanceSpec

WEB = "web"


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


def older(instances: list[InstanceRef], release: int) -> list[InstanceRef]:
    """Instances of releases before this one (a later release may be starting meanwhile)."""
    return [i for i in instances if i.release < release]


def of_release(instances: list[InstanceRef], release: int) -> list[InstanceRef]:
    """Instances of one release."""
    return [i for i in instances if i.release == release]


def drain_time(plan_drain: float, override: float | None) -> float:
    """How long old instances keep draining after the switch (an operator override wins)."""
    return plan_drain if override is None else override
