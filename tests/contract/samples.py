"""One plausible instance of every event type, for contract tests."""

from __future__ import annotations

from typing import Any

from dockyard.contract.events import (
    CommandData,
    CommandResultData,
    DeploySpec,
    DestroyData,
    DestroyFailureData,
    EndData,
    Event,
    Fact,
    FailureData,
    InstanceRef,
    InstancesData,
    KindData,
    NotificationAttemptData,
    NotificationDeliveredData,
    NotificationFailedData,
    ReleaseFigures,
    RetireData,
    RolloutData,
    ScaleData,
    ScaleFailureData,
    SpecData,
    SwitchData,
    WatchData,
    new_id,
    stamp,
)
from dockyard.contract.phase import Phase
from dockyard.contract.plan import Plan

SPEC = DeploySpec(runtime="process", build_id="v1-abc", artifact="/a", plan=Plan())
INSTANCES = [InstanceRef(id="i1", process="web", release=1, port=5000)]

_DATA: dict[type[Any], Any] = {
    KindData: KindData(),
    DestroyData: DestroyData(removed=["instance i0 (web, v1)"]),
    DestroyFailureData: DestroyFailureData(reason="a deploy of shop is running"),
    SpecData: SpecData(spec=SPEC),
    InstancesData: InstancesData(spec=SPEC, instances=INSTANCES),
    SwitchData: SwitchData(spec=SPEC, instances=INSTANCES, previous_release=None),
    FailureData: FailureData(status="build-error", reason="no Dockerfile", exit_code=1,
                             tail=["boom"], spec=SPEC),
    RetireData: RetireData(stopped=["i0"]),
    EndData: EndData(),
    CommandData: CommandData(hook_phase=Phase.POSTDEPLOY, label="warm", index=1, total=1,
                             command="true"),
    CommandResultData: CommandResultData(hook_phase=Phase.POSTDEPLOY, label="warm", index=1,
                                         total=1, command="true", exit_code=0, duration=0.1),
    NotificationAttemptData: NotificationAttemptData(sink="ops", event_id="e", attempt=1,
                                                     status_code=500),
    NotificationDeliveredData: NotificationDeliveredData(sink="ops", event_id="e", attempts=2,
                                                         status_code=200),
    NotificationFailedData: NotificationFailedData(sink="ops", event_id="e", attempts=5,
                                                   reason="HTTP 500"),
    ScaleData: ScaleData(spec=SPEC, instances=INSTANCES, formation={"web": 1}, started=["i1"]),
    ScaleFailureData: ScaleFailureData(reason="no live release"),
    WatchData: WatchData(spec=SPEC, watch=300, reason="the watch window passed",
                         new=ReleaseFigures(release=2, requests=4000, errors=3,
                                            error_rate=0.0008, p95=0.012)),
    RolloutData: RolloutData(step=1, steps=2, percent=5, verdict="passed",
                             reason="within the thresholds",
                             new=ReleaseFigures(release=2, requests=40, errors=0, error_rate=0.0,
                                                p95=0.012),
                             old=ReleaseFigures(release=1, requests=760, errors=1,
                                                error_rate=0.0013, p95=0.011)),
}


def data_type(cls: type[Event[Any]]) -> type[Any]:
    """The payload type an event class carries."""
    for base in getattr(cls, "__orig_bases__", ()):
        args = getattr(base, "__args__", ())
        if args:
            return args[0]  # type: ignore[no-any-return]
    raise TypeError(cls)


def sample_event(cls: type[Event[Any]], *, app: str = "shop", release: int = 1) -> Event[Any]:
    """An event of that type with plausible data."""
    return stamp(Fact.of(cls, _DATA[data_type(cls)]), source="dockyard/test", app=app,
                 deployment_id=new_id(), release=release)
