"""The scheduler's decisions, as plain values: what starting, failing and retiring amount to."""

from __future__ import annotations

from dockyard.contract.events import (
    DeployAborted,
    DeploySpec,
    DeploySucceeded,
    EndData,
    Fact,
    FailureData,
    InstanceRef,
    InstancesData,
    RetireData,
    RetireSucceeded,
    StartFailed,
    StartSucceeded,
)


def started(spec: DeploySpec, instances: list[InstanceRef]) -> Fact[InstancesData]:
    """Every new instance is up (and `web` healthy)."""
    return Fact.of(StartSucceeded, InstancesData(spec=spec, instances=instances))


def start_failed(spec: DeploySpec, exc: Exception, tail: list[str]) -> Fact[FailureData]:
    """An instance did not start or become healthy."""
    return Fact.of(StartFailed, FailureData(status="start-error", reason=str(exc), tail=tail,
                                            spec=spec))


def cancelled(reason: str, spec: DeploySpec) -> Fact[FailureData]:
    """The start phase did not run: the deployment was cancelled."""
    return Fact.of(StartFailed, FailureData(status="cancelled", reason=reason, spec=spec))


def aborted(failure: FailureData) -> Fact[FailureData]:
    """The failed deploy's instances are gone; on-failure comes next."""
    return Fact.of(DeployAborted, failure)


def succeeded() -> Fact[EndData]:
    """The deploy ended: the new release serves."""
    return Fact.of(DeploySucceeded, EndData())


def retired(stopped: list[InstanceRef]) -> Fact[RetireData]:
    """The old instances were drained and stopped."""
    return Fact.of(RetireSucceeded, RetireData(stopped=[r.id for r in stopped]))

