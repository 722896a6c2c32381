"""The scheduler's decisions, as plain values."""

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
from dockyard.contract.plan import Plan
from dockyard.runtime.base import StartError
from dockyard.scheduler import decide

SPEC = DeploySpec(runtime="process", build_id="v2-abc", artifact="a", plan=Plan())
WEB = InstanceRef(id="web-1", process="web", release=2, port=5000)


def test_every_instance_up_is_start_succeeded() -> None:
    assert decide.started(SPEC, [WEB]) == Fact.of(StartSucceeded,
                                                   InstancesData(spec=SPEC, instances=[WEB]))


def test_an_instance_not_starting_is_start_failed_with_the_tail() -> None:
    assert decide.start_failed(SPEC, StartError("web.1 exited"), ["line"]) == Fact.of(
        StartFailed, FailureData(status="start-error", reason="web.1 exited", tail=["line"],
                                 spec=SPEC))


def test_a_cancelled_start_is_start_failed_cancelled() -> None:
    assert decide.cancelled("stop", SPEC) == Fact.of(
        StartFailed, FailureData(status="cancelled", reason="stop", spec=SPEC))


def test_an_abort_carries_the_failure_on() -> None:
    failure = FailureData(status="hook-error", reason="r", exit_code=3, spec=SPEC)
    assert decide.aborted(failure) == Fact.of(DeployAborted, failure)


def test_the_end_and_the_retirement() -> None:
    assert decide.succeeded() == Fact.of(DeploySucceeded, EndData(status="succeeded"))
    old = InstanceRef(id="web-0", process="web", release=1)
    assert decide.retired([old, WEB]) == Fact.of(RetireSucceeded,
                                                 RetireData(stopped=["web-0", "web-1"]))
    assert decide.retired([]).data == RetireData(stopped=[])
