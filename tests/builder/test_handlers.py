"""The builder's handlers on in-memory doors, a fake runtime and a recording emitter; the deploy
queue's bound and its order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dockyard import archive
from dockyard.builder.app import SERVICE, BuilderDoors
from dockyard.builder.handlers import STEP, WAIT_RETRY, Builder
from dockyard.bus.broker import Rejected
from dockyard.bus.emit import Emitter
from dockyard.bus.service import ServiceContext
from dockyard.contract import codec
from dockyard.contract.events import (
    BuildFailed,
    BuildStarted,
    BuildSucceeded,
    CancelRequested,
    DeployFailed,
    DeployQueued,
    DeployRequested,
    DeploySpec,
    Event,
    FailureData,
    InstanceRef,
    KindData,
    SpecData,
    event_id,
    new_id,
)
from dockyard.contract.manifest import OperatorHook, OperatorHooks
from dockyard.contract.plan import Rollout, RolloutOverride
from dockyard.contract.state import LiveRelease, Queue, QueueEntry
from dockyard.plan.detect import LISTING
from dockyard.plan.merge import build_plan
from dockyard.runtime.base import BuildError
from dockyard.runtime.select import Runtimes
from dockyard.settings import Settings
from tests.fakes import (
    Crash,
    FakeCancels,
    FakeConfig,
    FakeHooks,
    FakeInFlight,
    FakeLocks,
    FakeMaintenance,
    FakeManifests,
    FakeMessage,
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

APP = "shop"
PROCFILE = "web: python app.py\nrelease: ./migrate\n"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class World:
    """A builder on fakes, and the fakes to look at."""

    builder: Builder
    broker: RecordingBroker
    nc: FakeNats
    runtime: FakeRuntime
    queue: FakeQueue
    locks: FakeLocks
    releases: FakeReleases
    steps: FakeSteps
    cancels: FakeCancels
    hooks: FakeHooks
    manifests: FakeManifests
    sources: FakeSources
    routes: FakeRoutes
    config: FakeConfig
    sinks: FakeSinks

    def events(self) -> list[tuple[type[Event[Any]], int, Any]]:
        """(type, release, data) of every event published so far."""
        return [(type(e), e.release, e.data) for e in self.broker.events]

    async def deliver(self, cmd: DeployRequested, stored_at: datetime = T0) -> FakeMessage:
        """One delivery of a deploy request; the message as the handler left it."""
        msg = FakeMessage(stored_at)
        await self.builder.on_deploy(cmd, msg.as_message())
        return msg


def world(settings: Settings | None = None) -> World:
    broker, nc, runtime = RecordingBroker(), FakeNats(), FakeRuntime()
    queue, locks, releases, steps = FakeQueue(), FakeLocks(), FakeReleases(), FakeSteps()
    cancels, hooks, manifests = FakeCancels(), FakeHooks(), FakeManifests()
    sources, routes, inflight = FakeSources(), FakeRoutes(), FakeInFlight()
    config, sinks = FakeConfig(), FakeSinks()
    doors = BuilderDoors(queue=queue, locks=locks, releases=releases, steps=steps,
                         cancels=cancels, hooks=hooks, manifests=manifests, sources=sources,
                         routes=routes, inflight=inflight, config=config, sinks=sinks,
                         maintenance=FakeMaintenance())
    builder = Builder(service_context(SERVICE, broker, nc, settings), doors,
                      FakeRuntimes(runtime))
    return World(builder=builder, broker=broker, nc=nc, runtime=runtime, queue=queue,
                 locks=locks, releases=releases, steps=steps, cancels=cancels, hooks=hooks,
                 manifests=manifests, sources=sources, routes=routes, config=config,
                 sinks=sinks)


async def upload(w: World, tmp_path: Path, dep: str, files: dict[str, str]) -> str:
    """Pack a source tree of these files and upload it, as `dockyard deploy` does."""
    tree = tmp_path / f"src-{dep[:6]}"
    tree.mkdir()
    for name, text in files.items():
        (tree / name).write_text(text)
    return await w.sources.upload(APP, dep, archive.pack(tree))


def request(dep: str, source: str | None, **fields: Any) -> DeployRequested:
    return DeployRequested(deployment_id=dep, app=APP, source_object=source, runtime="process",
                           **fields)


def spec_of(dep: str, files: dict[str, str], operator: list[OperatorHook] | None = None,
            release: int = 1) -> DeploySpec:
    build = f"v{release}-{dep[:8]}"
    artifact = f"artifact-{APP}-{build}"
    return DeploySpec(runtime="process", build_id=build, artifact=artifact,
                      plan=build_plan(files, operator or []), kind="source",
                      build_artifact=artifact)


async def test_a_request_is_queued_built_and_its_outcome_published(tmp_path: Path) -> None:
    w = world()
    dep = new_id()
    files = {"Procfile": PROCFILE}
    source = await upload(w, tmp_path, dep, files)
    during_build: list[set[tuple[str, str]]] = []

    async def look(operation: str, _: object) -> None:
        during_build.append(set(w.locks.holding))

    w.runtime.on_call = look
    msg = await w.deliver(request(dep, source))

    spec = spec_of(dep, files)
    assert w.events() == [
        (DeployQueued, 0, KindData(kind="source")),
        (BuildStarted, 1, KindData(kind="source")),
        (BuildSucceeded, 1, SpecData(spec=spec)),
    ]
    for published in w.broker.published:
        event = published.event
        assert event.id == event_id(dep, event.type)
        assert (event.source, event.subject, event.deployment_id) == ("dockyard/builder", APP,
                                                                      dep)
        assert published.subject == event.nats_subject()
        assert published.headers["Nats-Msg-Id"] == event.id
    assert msg.nacks == []
    assert w.runtime.built == [spec.build_id]
    # The lock is held while building, and stays with the deployment after it (the scheduler
    # or the hook-runner gives it up when the deploy ends).
    assert during_build == [{(APP, dep)}]
    assert w.locks.held == {APP: dep} and w.locks.holding == set()
    assert w.queue.queues[APP] == Queue()
    # The manifests and the tree's listing (what detection reads), kept for later plans.
    assert w.manifests.kept == {(APP, spec.build_id): {**files, LISTING: "Procfile"}}
    recorded = await w.steps.outcome(dep, STEP)
    assert recorded is not None and recorded.id == event_id(dep, "dockyard.build.succeeded")
    log = w.nc.texts(dep)
    assert log[0] == "===== build =====" and f"building {spec.build_id}" in log


async def test_operator_hooks_join_the_plan(tmp_path: Path) -> None:
    w = world()
    dep = new_id()
    files = {"Procfile": PROCFILE}
    hook = OperatorHook(phase="postdeploy", label="Warm", command="./warm")
    w.hooks.hooks[APP] = OperatorHooks(hooks=[hook])
    await w.deliver(request(dep, await upload(w, tmp_path, dep, files)))
    [*_, (_, _, data)] = w.events()
    assert data == SpecData(spec=spec_of(dep, files, [hook]))
    assert [c.source for c in data.spec.plan.postdeploy] == ["operator"]


async def test_a_deploys_own_rollout_goes_over_the_manifests_and_is_noted(
        tmp_path: Path) -> None:
    w = world()
    dep = new_id()
    files = {"Procfile": PROCFILE, "dockyard.toml": '[rollout]\nsteps = [5, 25]\nwatch = "5m"\n'}
    asked = RolloutOverride(steps=[50], hold=10)
    await w.deliver(request(dep, await upload(w, tmp_path, dep, files), rollout=asked))
    [*_, (_, _, data)] = w.events()
    assert data.spec.plan.rollout == Rollout(steps=[50], hold=10, watch=300)
    assert data.spec.plan.notes[-1] == ("rollout: steps [50], hold 10s, watch 300s, as the "
                                        "deploy asked")


async def test_a_deploys_rollout_the_router_cannot_give_ends_the_build_failed(
        tmp_path: Path) -> None:
    # Another publisher than the CLI (which checks first) is checked as strictly.
    w = world()
    dep = new_id()
    source = await upload(w, tmp_path, dep, {"Procfile": PROCFILE})
    await w.deliver(request(dep, source, rollout=RolloutOverride(steps=[3])))
    assert failure(w).status == "build-error"
    assert "3 is not a share the router can give" in failure(w).reason
    assert w.runtime.built == []


async def test_a_redelivered_request_publishes_the_recorded_outcome_and_builds_nothing(
        tmp_path: Path) -> None:
    w = world()
    dep = new_id()
    cmd = request(dep, await upload(w, tmp_path, dep, {"Procfile": PROCFILE}))
    await w.deliver(cmd)
    first = w.broker.events[-1]
    w.broker.clear()

    msg = await w.deliver(cmd)

    assert w.broker.events == [first]
    assert len(w.runtime.built) == 1
    assert w.releases.last == {APP: 1}
    assert msg.nacks == []


async def test_killed_after_recording_the_outcome_publishes_it_on_redelivery(
        tmp_path: Path) -> None:
    w = world()
    dep = new_id()
    cmd = request(dep, await upload(w, tmp_path, dep, {"Procfile": PROCFILE}))
    w.broker.crash_on = {BuildSucceeded}
    with pytest.raises(Crash):
        await w.deliver(cmd)
    assert [t for t, _, _ in w.events()] == [DeployQueued, BuildStarted]

    await w.deliver(cmd)

    assert [t for t, _, _ in w.events()] == [DeployQueued, BuildStarted, BuildSucceeded]
    assert len(w.runtime.built) == 1


async def test_a_runtime_fault_records_nothing_so_the_redelivery_builds_again(
        tmp_path: Path) -> None:
    w = world()
    dep = new_id()
    cmd = request(dep, await upload(w, tmp_path, dep, {"Procfile": PROCFILE}))
    w.runtime.build_error = OSError("engine went away")
    with pytest.raises(OSError, match="engine went away"):
        await w.deliver(cmd)
    assert await w.steps.outcome(dep, STEP) is None
    assert w.locks.held == {APP: dep}  # kept for the retry (re-entrant), lapses if none comes

    w.runtime.build_error = None
    await w.deliver(cmd)

    assert len(w.runtime.built) == 2
    ends = [(t, release) for t, release, _ in w.events() if t is BuildSucceeded]
    assert ends == [(BuildSucceeded, 1)]  # the same release number again


async def test_in_progress_acks_keep_a_long_build_from_being_redelivered(
        tmp_path: Path) -> None:
    w = world(Settings(ack_wait=0.15))
    dep = new_id()
    cmd = request(dep, await upload(w, tmp_path, dep, {"Procfile": PROCFILE}))
    msg = FakeMessage(T0)

    async def slow_build(operation: str, _: object) -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while msg.beats < 2:
            assert asyncio.get_running_loop().time() < deadline, "no in-progress ack came"
            await asyncio.sleep(0.01)

    w.runtime.on_call = slow_build
    await w.builder.on_deploy(cmd, msg.as_message())
    assert msg.beats >= 2
    assert type(w.broker.events[-1]) is BuildSucceeded


async def test_a_cancel_before_the_turn_ends_the_deploy_cancelled(tmp_path: Path) -> None:
    w = world()
    dep = new_id()
    cmd = request(dep, await upload(w, tmp_path, dep, {"Procfile": PROCFILE}))
    await w.cancels.request(dep, "not today")

    await w.deliver(cmd)

    assert w.events() == [(DeployFailed, 0, FailureData(status="cancelled", reason="not today"))]
    assert w.runtime.built == [] and w.locks.held == {}
    assert await w.steps.outcome(dep, STEP) == w.broker.events[0]


async def test_a_cancel_while_queued_ends_the_deploy_cancelled_and_leaves_the_queue(
        tmp_path: Path) -> None:
    w = world()
    dep, other = new_id(), new_id()
    cmd = request(dep, await upload(w, tmp_path, dep, {"Procfile": PROCFILE}))
    w.locks.held[APP] = other

    msg = await w.deliver(cmd)
    assert msg.nacks == [WAIT_RETRY]
    assert [e.deployment_id for e in w.queue.queues[APP].entries] == [dep]
    await w.builder.on_cancel(CancelRequested(deployment_id=dep, app=APP, reason="changed mind"))
    msg = await w.deliver(cmd)

    assert msg.nacks == []
    assert w.events() == [(DeployQueued, 0, KindData(kind="source")),
                          (DeployFailed, 0, FailureData(status="cancelled",
                                                        reason="changed mind"))]
    assert w.queue.queues[APP] == Queue()
    assert w.locks.held == {APP: other} and w.runtime.built == []


async def test_a_cancel_during_the_build_is_left_to_the_next_phase(tmp_path: Path) -> None:
    w = world()
    dep = new_id()
    cmd = request(dep, await upload(w, tmp_path, dep, {"Procfile": PROCFILE}))

    async def cancel(operation: str, _: object) -> None:
        await w.cancels.request(dep, "stop it")

    w.runtime.on_call = cancel
    await w.deliver(cmd)
    # A build is not interrupted; the hook-runner finds the marker and ends the deploy cancelled.
    assert type(w.broker.events[-1]) is BuildSucceeded
    assert await w.cancels.reason(dep) == "stop it"


async def test_another_deployment_holding_the_lock_keeps_the_request_waiting(
        tmp_path: Path) -> None:
    w = world()
    dep, other = new_id(), new_id()
    cmd = request(dep, await upload(w, tmp_path, dep, {"Procfile": PROCFILE}))
    w.locks.held[APP] = other

    first = await w.deliver(cmd)
    again = await w.deliver(cmd)

    assert first.nacks == [WAIT_RETRY] and again.nacks == [WAIT_RETRY]
    # Queued once: the second look changed nothing, so nothing is announced again.
    assert w.events() == [(DeployQueued, 0, KindData(kind="source"))]
    assert w.runtime.built == []

    await w.locks.release(APP, other)
    done = await w.deliver(cmd)
    assert done.nacks == []
    assert [t for t, _, _ in w.events()] == [DeployQueued, BuildStarted, BuildSucceeded]
    assert w.locks.held == {APP: dep}


async def test_requests_take_their_turn_in_the_order_the_bus_stored_them(tmp_path: Path) -> None:
    w = world()
    early, late, other = new_id(), new_id(), new_id()
    files = {"Procfile": PROCFILE}
    early_cmd = request(early, await upload(w, tmp_path, early, files))
    late_cmd = request(late, await upload(w, tmp_path, late, files))
    w.locks.held[APP] = other
    # The later request is delivered first, but the bus stored the earlier one before it.
    await w.deliver(late_cmd, stored_at=T0 + timedelta(seconds=2))
    await w.deliver(early_cmd, stored_at=T0 + timedelta(seconds=1))
    assert [e.deployment_id for e in w.queue.queues[APP].entries] == [early, late]
    await w.locks.release(APP, other)

    behind = await w.deliver(late_cmd, stored_at=T0 + timedelta(seconds=2))
    ahead = await w.deliver(early_cmd, stored_at=T0 + timedelta(seconds=1))

    assert behind.nacks == [WAIT_RETRY] and ahead.nacks == []
    assert w.locks.held == {APP: early}
    assert [e.deployment_id for e in w.queue.queues[APP].entries] == [late]
    assert w.runtime.built == [f"v1-{early[:8]}"]


def failure(w: World) -> FailureData:
    [(cls, release, data)] = [e for e in w.events() if e[0] is BuildFailed]
    assert release == 1
    assert isinstance(data, FailureData)
    return data


async def test_a_build_error_ends_the_build_failed_with_the_log_tail(tmp_path: Path) -> None:
    w = world()
    dep = new_id()
    cmd = request(dep, await upload(w, tmp_path, dep, {"Procfile": PROCFILE}))
    w.runtime.build_error = BuildError("docker build exited with code 2")

    await w.deliver(cmd)

    build = f"v1-{dep[:8]}"
    assert [t for t, _, _ in w.events()] == [DeployQueued, BuildStarted, BuildFailed]
    assert failure(w) == FailureData(
        status="build-error", reason="docker build exited with code 2",
        tail=["===== build =====", f"building {APP} {build} on the process runtime",
              f"building {build}", "build failed: docker build exited with code 2"])
    assert await w.steps.outcome(dep, STEP) == w.broker.events[-1]
    # The lock stays with the deployment: the scheduler's abort and the hook-runner's on-failure
    # come next, and the hook-runner gives the lock up.
    assert w.locks.held == {APP: dep}


@pytest.mark.parametrize(("files", "reason"), [
    ({"Procfile": "this is no procfile\n"},
     "Procfile:1: expected `name: command`, got 'this is no procfile'"),
    ({"Procfile": PROCFILE, "dockyard.toml": "drain = [\n"}, "dockyard.toml"),
])
async def test_a_bad_manifest_ends_the_build_failed(tmp_path: Path, files: dict[str, str],
                                                    reason: str) -> None:
    w = world()
    dep = new_id()
    await w.deliver(request(dep, await upload(w, tmp_path, dep, files)))
    assert failure(w).status == "build-error"
    assert failure(w).reason.startswith(reason)
    assert w.runtime.built == []


async def test_a_missing_or_unreadable_source_ends_the_build_failed(tmp_path: Path) -> None:
    w = world()
    dep = new_id()
    await w.deliver(request(dep, f"{APP}/{dep}.tar.gz"))
    assert failure(w).reason == (f"source archive '{APP}/{dep}.tar.gz' not found in the object "
                                 "store")

    w = world()
    dep = new_id()
    w.sources.objects[f"{APP}/{dep}.tar.gz"] = b"not a tarball at all"
    await w.deliver(request(dep, f"{APP}/{dep}.tar.gz"))
    # Read member by member, within limits: it fails at its first header.
    assert failure(w).reason.startswith(f"source archive '{APP}/{dep}.tar.gz' cannot be read "
                                        "after member '(archive header)'")

    w = world()
    dep = new_id()
    await w.deliver(request(dep, None))
    assert failure(w).reason == ("the deploy request names no source archive; this "
                                 f"deployment's is '{APP}/{dep}.tar.gz'")
    assert w.runtime.built == []


async def test_a_config_deploy_of_an_app_never_released_ends_the_build_failed() -> None:
    w = world()
    dep = new_id()
    await w.deliver(request(dep, None, kind="config"))
    assert w.events()[0] == (DeployQueued, 0, KindData(kind="config"))
    assert failure(w) == FailureData(
        status="build-error", reason=f"{APP} has no release yet: deploy its source first",
        tail=["===== build =====", f"build failed: {APP} has no release yet: deploy its source "
              "first"])


async def test_a_config_deploy_releases_the_live_build_again_without_building() -> None:
    w = world()
    dep = new_id()
    files = {"Procfile": PROCFILE}
    live_spec = DeploySpec(runtime="process", build_id="v1-aaaaaaaa", artifact="art-v1+predeploy",
                           plan=build_plan(files), config_version=4, build_artifact="art-v1")
    await w.routes.set_live(LiveRelease(app=APP, release=1, deployment_id="d0", spec=live_spec,
                                        instances=[InstanceRef(id="i", process="web",
                                                               release=1)]))
    await w.manifests.keep(APP, "v1-aaaaaaaa", files)
    hook = OperatorHook(phase="release", label="Seed", command="./seed")
    w.hooks.hooks[APP] = OperatorHooks(hooks=[hook])

    await w.deliver(request(dep, None, kind="config"))

    assert w.events()[-1] == (BuildSucceeded, 1, SpecData(spec=DeploySpec(
        runtime="process", build_id="v1-aaaaaaaa", artifact="art-v1", build_artifact="art-v1",
        plan=build_plan(files, [hook]), config_version=0, kind="config")))
    assert w.runtime.built == []


async def test_a_rollback_releases_an_earlier_build_with_its_config_without_building() -> None:
    w = world(Settings(keep_releases=2))
    files = {"Procfile": PROCFILE}
    for n in (1, 2, 3):
        spec = DeploySpec(runtime="process", build_id=f"v{n}-aaaaaaaa",
                          artifact=f"art-v{n}+predeploy", build_artifact=f"art-v{n}",
                          plan=build_plan(files), config_version=n)
        await w.routes.set_live(LiveRelease(app=APP, release=n, deployment_id=f"d{n}",
                                            spec=spec, instances=[]))
    dep = new_id()
    await w.deliver(request(dep, None, kind="rollback"))  # the release before the live one
    assert w.events()[0] == (DeployQueued, 0, KindData(kind="rollback"))
    assert w.events()[-1] == (BuildSucceeded, 1, SpecData(spec=DeploySpec(
        runtime="process", build_id="v2-aaaaaaaa", artifact="art-v2", build_artifact="art-v2",
        plan=build_plan(files), config_version=2, kind="rollback", rolled_back_to=2)))
    assert w.runtime.built == []
    assert any("does not roll back databases" in t for t in w.nc.texts(dep))

    for to, reason in ((1, "v1 is no longer kept (DOCKYARD_KEEP_RELEASES=2)"),
                       (7, f"{APP} has no release v7 that went live (kept: v2, v3)")):
        await w.locks.release(APP, dep)  # the deploy before ended (the hook-runner frees it)
        w.broker.clear()
        dep = new_id()
        await w.deliver(request(dep, None, kind="rollback", to_release=to))
        [failed] = [data for cls, _, data in w.events() if cls is BuildFailed]
        assert failed.reason == reason and failed.status == "build-error"


@pytest.mark.parametrize("app", ["Shop", "shop.evil", "-x", ""])
async def test_a_request_with_a_bad_app_name_is_rejected(app: str) -> None:
    w = world()
    with pytest.raises(Rejected, match="invalid app name"):
        await w.deliver(DeployRequested(deployment_id=new_id(), app=app, source_object="x"))
    with pytest.raises(Rejected, match="invalid app name"):
        await w.builder.on_cancel(CancelRequested(deployment_id=new_id(), app=app))
    assert w.broker.published == [] and w.queue.queues == {} and w.cancels.reasons == {}


async def test_a_request_with_a_bad_deployment_id_is_rejected() -> None:
    w = world()
    with pytest.raises(Rejected, match="invalid deployment id"):
        await w.deliver(DeployRequested(deployment_id="../../x", app=APP, source_object="x"))
    with pytest.raises(Rejected, match="invalid deployment id"):
        await w.builder.on_cancel(CancelRequested(deployment_id="D" * 32, app=APP))
    assert w.broker.published == [] and w.cancels.reasons == {}


async def test_a_cancel_request_marks_the_deployment() -> None:
    w = world()
    dep = new_id()
    await w.builder.on_cancel(CancelRequested(deployment_id=dep, app=APP))
    assert w.cancels.reasons == {dep: "cancelled by user"}
    assert w.broker.published == []


# The queue's bound and its order, on a builder with its real Runtimes.

class DecodingBroker:
    """Just enough of a broker for an Emitter: keeps what is published."""

    connection = None

    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, body: bytes, subject: str, **_: Any) -> None:
        self.published.append(codec.decode_any(body))


@dataclass
class Msg:
    """A JetStream message as the handler sees it: stored at `stored`."""

    stored: datetime
    nacks: list[float | None] = field(default_factory=list)

    @property
    def raw_message(self) -> Any:
        return SimpleNamespace(metadata=SimpleNamespace(timestamp=self.stored))

    async def nack(self, delay: float | None = None) -> None:
        self.nacks.append(delay)

    async def in_progress(self) -> None:
        return None


def builder(tmp: Any, queue_limit: int = 20) -> tuple[Builder, BuilderDoors, DecodingBroker]:
    broker = DecodingBroker()
    settings = Settings(data_dir=tmp, queue_limit=queue_limit)
    ctx = ServiceContext(name="builder", settings=settings, broker=broker,  # type: ignore[arg-type]
                         nc=None, js=None,  # type: ignore[arg-type]
                         emitter=Emitter(broker, "builder", SERVICE.publishes),  # type: ignore[arg-type]
                         log=None)
    doors = BuilderDoors(queue=FakeQueue(), locks=FakeLocks(), releases=FakeReleases(),
                         steps=FakeSteps(), cancels=FakeCancels(), hooks=FakeHooks(),
                         manifests=FakeManifests(), sources=FakeSources(), routes=FakeRoutes(),
                         inflight=FakeInFlight(), config=FakeConfig(), sinks=FakeSinks(),
                         maintenance=FakeMaintenance())
    return Builder(ctx, doors, Runtimes(settings)), doors, broker


async def test_a_request_over_the_queues_bound_ends_rejected_and_leaves_nothing(
        tmp_path: Any) -> None:
    build, doors, broker = builder(tmp_path, queue_limit=2)
    waiting = [QueueEntry(deployment_id=new_id(), requested_at=T0) for _ in range(2)]
    doors.queue.queues["shop"] = Queue(entries=waiting)  # type: ignore[attr-defined]
    doors.locks.held["shop"] = new_id()  # type: ignore[attr-defined]
    cmd = DeployRequested(deployment_id=new_id(), app="shop", source_object="x")
    msg = Msg(stored=T0 + timedelta(seconds=5))
    await build.on_deploy(cmd, msg)  # type: ignore[arg-type]
    [event] = broker.published
    assert isinstance(event, DeployFailed) and event.deployment_id == cmd.deployment_id
    assert event.data.status == "rejected"
    assert event.data.reason.startswith("the deploy queue of shop is full: 2 deployments wait")
    assert (await doors.queue.load("shop")).entries == waiting
    assert msg.nacks == []  # acked: not tried again
    # Redelivered: the recorded outcome goes out again (same id), nothing else happens.
    await build.on_deploy(cmd, Msg(stored=msg.stored))  # type: ignore[arg-type]
    assert [e.id for e in broker.published] == [event.id, event.id]
    assert (await doors.queue.load("shop")).entries == waiting


async def test_the_servers_arrival_time_orders_the_queue_not_requested_at(tmp_path: Any) -> None:
    build, doors, broker = builder(tmp_path)
    doors.locks.held["shop"] = new_id()  # type: ignore[attr-defined]
    first = DeployRequested(deployment_id=new_id(), app="shop")
    sneaky = DeployRequested(deployment_id=new_id(), app="shop",
                             requested_at=datetime(1970, 1, 1, tzinfo=UTC))
    await build.on_deploy(first, Msg(stored=T0))  # type: ignore[arg-type]
    await build.on_deploy(sneaky, Msg(stored=T0 + timedelta(seconds=1)))  # type: ignore[arg-type]
    queue = await doors.queue.load("shop")
    assert [e.deployment_id for e in queue.entries] == [first.deployment_id, sneaky.deployment_id]
    assert queue.entries[1].requested_at == T0 + timedelta(seconds=1)
    assert [type(e) for e in broker.published] == [DeployQueued, DeployQueued]
