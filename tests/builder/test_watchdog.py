"""The watchdog: deadlines as values, and the builder ending a late deploy once, on fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from dockyard.builder import watchdog
from dockyard.builder.app import SERVICE, BuilderDoors
from dockyard.builder.handlers import Builder
from dockyard.contract.events import (
    AfterSwitchSucceeded,
    BuildStarted,
    BuildSucceeded,
    DeployAborted,
    DeployFailed,
    DeployRequested,
    DeploySpec,
    DeploySucceeded,
    ReleaseSucceeded,
    StartFailed,
)
from dockyard.contract.plan import Command, Health, Plan, ProcessType, Rollout
from dockyard.contract.state import InFlight
from dockyard.settings import Settings
from tests.events import make
from tests.fakes import (
    FakeCancels,
    FakeConfig,
    FakeHooks,
    FakeInFlight,
    FakeLocks,
    FakeMaintenance,
    FakeManifests,
    FakeNats,
    FakeQueue,
    FakeReleases,
    FakeRoutes,
    FakeRuntime,
    FakeRuntimes,
    FakeSinks,
    FakeSources,
    FakeSteps,
    RecordingBroker,
    service_context,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
APP, DEP = "shop", "0123456789abcdef0123456789abcdef"


def cmd(timeout: float) -> Command:
    return Command(label="x", command="./x", timeout=timeout)


PLAN = Plan(processes=[ProcessType(name="web", command="./serve", scale=2),
                       ProcessType(name="worker", command="./work")],
            predeploy=[cmd(10)], release=[cmd(20), cmd(5)], postdeploy=[cmd(7)],
            after_switch=[cmd(3)], on_failure=[cmd(4)], health=Health(timeout=6), drain=9)
SPEC = DeploySpec(runtime="process", build_id="v3-abc", artifact="a", plan=PLAN)


def budget(phase: str, plan: Plan | None = PLAN, drain: float | None = None) -> float:
    return watchdog.budget(plan, phase, grace=2, margin=30, drain=drain)


def test_each_phase_may_take_its_timeouts_each_with_the_grace_plus_the_margin() -> None:
    assert budget("release") == (10 + 2) + (20 + 2) + (5 + 2) + 30
    assert budget("start") == 2 * 6 + 30  # two web instances, one after the other
    assert budget("postdeploy") == 7 + 2 + 30
    assert budget("after-switch") == 3 + 2 + 30
    assert budget("on-failure") == 4 + 2 + 30
    assert budget("abort") == 9 + 2 * 3 * 2 + 30  # the drain, then three instances stopped
    assert budget("abort", drain=0) == 2 * 3 * 2 + 30  # DOCKYARD_DRAIN wins over the plan's
    assert budget("switch") == budget("end") == 30
    # A canary holds each step (each with the margin for its own work) before the switch.
    canary = msgspec.structs.replace(PLAN, rollout=Rollout(steps=[5, 25, 50], hold=60))
    assert budget("switch", canary) == 3 * (60 + 30) + 30
    # A watch window: the end waits for it.
    watched = msgspec.structs.replace(PLAN, rollout=Rollout(steps=[], watch=300))
    assert budget("end", watched) == 300 + 30
    assert budget("start", plan=None) == 30  # a build failure carries no plan


def test_a_deadline_counts_from_when_the_phase_became_due() -> None:
    assert watchdog.deadline(PLAN, "postdeploy", T0, grace=2, margin=30) == (
        T0 + timedelta(seconds=39))


def released(release: int = 3, deployment_id: str = DEP) -> ReleaseSucceeded:
    return make(ReleaseSucceeded, app=APP, deployment_id=deployment_id, release=release,
                spec=SPEC)


def advance(current: InFlight | None, event: Any, now: datetime = T0) -> InFlight | None:
    return watchdog.advance(current, event, now, grace=2, margin=30)


def test_an_event_makes_its_next_phase_due_with_its_deadline() -> None:
    record = advance(None, released())
    assert record == InFlight(app=APP, deployment_id=DEP, release=3, phase="start", since=T0,
                              deadline=T0 + timedelta(seconds=42), spec=SPEC)


def test_a_redelivered_earlier_event_never_moves_a_deploy_back() -> None:
    started = advance(None, released())
    again = make(BuildSucceeded, app=APP, deployment_id=DEP, release=3, spec=SPEC)
    assert advance(started, again, T0 + timedelta(seconds=5)) == started


def test_a_failure_keeps_its_reason_and_the_spec_for_on_failure() -> None:
    started = advance(None, released())
    failure = make(StartFailed, app=APP, deployment_id=DEP, release=3, status="start-error",
                   reason="boom", spec=SPEC)
    aborting = advance(started, failure)
    assert aborting is not None and aborting.phase == "abort"
    assert aborting.failure == failure.data
    no_spec = make(DeployAborted, app=APP, deployment_id=DEP, release=3, status="start-error",
                   reason="boom")
    on_failure = advance(aborting, no_spec)
    assert on_failure is not None and on_failure.phase == "on-failure"
    assert on_failure.spec == SPEC and on_failure.failure == no_spec.data


def test_another_deployments_record_and_other_events_are_left_alone() -> None:
    other = advance(None, released(deployment_id="f" * 32))
    assert advance(other, released()) == other
    queued = make(BuildStarted, app=APP, deployment_id=DEP, release=3, kind="source")
    assert advance(None, queued) is None


def test_a_late_deploy_times_out_naming_its_phase_and_deadline() -> None:
    record = advance(None, released())
    assert record is not None
    assert not watchdog.late(record, T0 + timedelta(seconds=41))
    assert watchdog.late(record, T0 + timedelta(seconds=42))
    verdict = watchdog.timed_out(record)
    assert verdict.phase == "start"
    assert verdict.reason == ("the start phase (scheduler) passed its deadline of 42s "
                              "(due since 12:00:00 UTC)")
    fact = watchdog.failed(verdict, record)
    assert fact.cls is DeployFailed
    assert (fact.data.status, fact.data.reason, fact.data.spec) == ("timeout", verdict.reason,
                                                                    SPEC)
    lost = watchdog.timed_out(record, lost_to="f" * 32)
    assert lost.reason == (f"the start phase lost the lock of {APP} to deployment {'f' * 32} "
                           "(its lease lapsed)")


def test_a_late_on_failure_names_the_failure_it_followed() -> None:
    record = InFlight(app=APP, deployment_id=DEP, release=3, phase="on-failure", since=T0,
                      deadline=T0 + timedelta(seconds=36), spec=SPEC,
                      failure=make(StartFailed, status="start-error", reason="boom").data)
    assert watchdog.timed_out(record).reason.endswith(", after start-error: boom")


# The builder's watchdog on fakes.


class Builders:
    """Two builder instances sharing the same doors, as two processes share the bus."""

    def __init__(self) -> None:
        self.broker, self.locks, self.inflight = RecordingBroker(), FakeLocks(), FakeInFlight()
        self.steps, self.cancels, self.queue = FakeSteps(), FakeCancels(), FakeQueue()
        doors = BuilderDoors(queue=self.queue, locks=self.locks, releases=FakeReleases(),
                             steps=self.steps, cancels=self.cancels, hooks=FakeHooks(),
                             manifests=FakeManifests(), sources=FakeSources(),
                             routes=FakeRoutes(), inflight=self.inflight,
                             config=FakeConfig(), sinks=FakeSinks(),
                         maintenance=FakeMaintenance())
        settings = Settings(kill_grace=2.0, phase_margin=30.0)
        self.all = [Builder(service_context(SERVICE, self.broker, FakeNats(), settings), doors,
                            FakeRuntimes(FakeRuntime())) for _ in range(2)]

    def ended(self) -> list[Any]:
        return [e for e in self.broker.events if isinstance(e, DeployFailed)]


async def test_the_record_follows_the_events_and_goes_at_the_end() -> None:
    b = Builders()
    one = b.all[0]
    await one.on_event(make(BuildSucceeded, app=APP, deployment_id=DEP, release=3, spec=SPEC))
    record = b.inflight.records[APP]
    assert (record.deployment_id, record.phase) == (DEP, "release")
    await one.on_event(released())
    assert b.inflight.records[APP].phase == "start"
    await one.on_event(make(DeploySucceeded, app=APP, deployment_id=DEP, release=3))
    assert APP not in b.inflight.records
    # A late event of the ended deploy brings no record back.
    await one.on_event(make(AfterSwitchSucceeded, app=APP, deployment_id=DEP, release=3,
                            spec=SPEC))
    assert APP not in b.inflight.records


async def test_in_time_the_lock_is_renewed_between_phases() -> None:
    b = Builders()
    await b.all[0].on_event(released())
    assert await b.locks.acquire(APP, DEP)
    refreshed = b.locks.refreshed
    await b.all[0].look(datetime.now(UTC))
    assert b.locks.held == {APP: DEP} and b.locks.refreshed == refreshed + 1
    assert b.ended() == []


async def test_a_lock_released_at_the_end_is_not_taken_again_by_a_look() -> None:
    """The scheduler released the lock at the deploy's end before the builder read that end:
    a look in between must not take the lock again (it lingered for a lease: seen in CI)."""
    b = Builders()
    await b.all[0].on_event(released())
    await b.all[0].look(datetime.now(UTC))
    assert b.locks.held == {}
    assert b.ended() == []


async def test_past_its_deadline_a_deploy_ends_once_as_timeout_and_the_lock_moves_on() -> None:
    b = Builders()
    now = datetime.now(UTC)
    await b.all[0].on_event(released())
    assert await b.locks.acquire(APP, DEP)
    late = now + timedelta(seconds=43)
    for builder in b.all:  # both instances look; both look again
        await builder.look(late)
        await builder.look(late)
    ended = b.ended()
    assert len({e.id for e in ended}) == 1  # the same event (ids dedupe on the bus)
    assert ended[0].data.status == "timeout"
    assert "the start phase (scheduler) passed its deadline of 42s" in ended[0].data.reason
    assert ended[0].data.spec == SPEC
    assert b.locks.held == {}
    assert b.inflight.records == {}
    assert DEP in b.inflight.verdicts
    # Phases still to run, and hooks running now, see the deploy cancelled.
    assert b.cancels.reasons[DEP] == ended[0].data.reason
    # Late events of it bring no record back.
    await b.all[1].on_event(make(StartFailed, app=APP, deployment_id=DEP, release=3,
                                 status="cancelled", reason="x", spec=SPEC))
    assert b.inflight.records == {}


async def test_a_deploy_whose_lock_another_took_ends_naming_it() -> None:
    b = Builders()
    await b.all[0].on_event(released())
    assert await b.locks.acquire(APP, "f" * 32)
    await b.all[0].look(datetime.now(UTC))
    [ended] = b.ended()
    assert ended.data.reason.startswith(f"the start phase lost the lock of {APP} to deployment")
    assert b.locks.held == {APP: "f" * 32}  # not the other deploy's to give up


async def test_no_queued_deploy_starts_while_another_is_in_flight() -> None:
    b = Builders()
    await b.all[0].on_event(released())
    queued = DeployRequested(deployment_id="e" * 32, app=APP, source_object="shop/x.tar.gz")
    assert await b.all[0]._busy(queued)
    assert not await b.all[0]._busy(DeployRequested(deployment_id=DEP, app=APP))
