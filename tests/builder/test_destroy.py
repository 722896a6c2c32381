"""The builder's side of a destroy, on fakes: refused while a deploy is queued or running; else
it takes the app's lock and starts the chain; at its end it forgets the app's state and frees
the lock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dockyard.builder import decide
from dockyard.bus.broker import Rejected
from dockyard.contract.events import (
    DeployRequested,
    DestroyData,
    DestroyFailed,
    DestroyRequested,
    DestroyStarted,
    DestroyStopped,
    DestroySucceeded,
    new_id,
)
from dockyard.contract.manifest import OperatorHook, OperatorHooks
from dockyard.contract.sinks import Sink, Sinks
from dockyard.contract.state import Queue, QueueEntry
from tests.builder.test_handlers import APP, World, world
from tests.events import make
from tests.fakes import FakeMessage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OP = "0f" + "0" * 30
DEP = "de" + "0" * 30


def waiting(*ids: str) -> Queue:
    return Queue(entries=[QueueEntry(deployment_id=i, requested_at=T0) for i in ids])


def test_a_destroy_goes_only_when_no_deploy_is_queued_or_holds_the_lock() -> None:
    assert decide.destroy_refusal(APP, OP, Queue(), None) is None
    assert decide.destroy_refusal(APP, OP, Queue(), OP) is None  # its own lock, redelivered
    running = decide.destroy_refusal(APP, OP, Queue(), DEP)
    assert running is not None and running.cls is DestroyFailed
    assert running.data.reason == (f"a deploy of {APP} is running ({DEP}): wait for it to end "
                                   f"or cancel it (dockyard cancel {DEP}), then destroy again")
    queued = decide.destroy_refusal(APP, OP, waiting(DEP, "x" * 32), None)
    assert queued is not None
    assert queued.data.reason.startswith(f"2 deploy(s) of {APP} are queued ({DEP}, ")


def test_a_destroy_request_names_an_app_and_an_operation_in_their_one_form() -> None:
    assert decide.check_destroy(DestroyRequested(operation_id=OP, app=APP)).app == APP
    with pytest.raises(ValueError, match="app name"):
        decide.check_destroy(DestroyRequested(operation_id=OP, app="Not_An_App"))
    with pytest.raises(ValueError):
        decide.check_destroy(DestroyRequested(operation_id="short", app=APP))


async def start(w: World, op: str = OP) -> FakeMessage:
    msg = FakeMessage(T0)
    await w.builder.on_destroy(DestroyRequested(operation_id=op, app=APP), msg.as_message())
    return msg


async def test_a_destroy_takes_the_lock_and_starts_once() -> None:
    w = world()
    await start(w)
    assert w.locks.held[APP] == OP
    [event] = w.broker.events
    assert isinstance(event, DestroyStarted) and event.deployment_id == OP
    assert event.subject == APP and event.release == 0
    # Nothing ever went live: only the default runtime may hold something of the app.
    assert event.data == DestroyData(runtimes=[w.runtime.name])
    assert [e.deployment_id for e in w.queue.queues[APP].entries] == [OP]
    await start(w)  # redelivered: the recorded outcome again, same id
    assert [e.id for e in w.broker.events] == [event.id, event.id]


async def test_no_deploy_starts_during_a_destroy_even_if_its_lease_lapsed() -> None:
    w = world()
    await start(w)
    del w.locks.held[APP]  # a service of the chain was down longer than the lease
    dep = new_id()
    msg = await w.deliver(DeployRequested(deployment_id=dep, app=APP, source_object="x"))
    assert msg.nacks and APP not in w.locks.held  # it waits behind the destroy
    assert [e.deployment_id for e in w.queue.queues[APP].entries] == [OP, dep]
    w.locks.held[APP] = OP
    await w.builder.on_destroy_stopped(make(DestroyStopped, app=APP, deployment_id=OP),
                                       FakeMessage(T0).as_message())
    assert [e.deployment_id for e in w.queue.queues[APP].entries] == [dep]
    assert APP not in w.locks.held  # its turn now


async def test_a_destroy_is_refused_while_a_deploy_runs_or_waits() -> None:
    w = world()
    w.locks.held[APP] = DEP
    await start(w)
    [refused] = w.broker.events
    assert isinstance(refused, DestroyFailed) and DEP in refused.data.reason
    assert w.locks.held[APP] == DEP  # the deploy keeps its lock
    w2 = world()
    w2.queue.queues[APP] = waiting(DEP)
    await start(w2)
    assert isinstance(w2.broker.events[0], DestroyFailed) and APP not in w2.locks.held


async def test_a_bad_request_is_dead_lettered() -> None:
    w = world()
    with pytest.raises(Rejected):
        await w.builder.on_destroy(DestroyRequested(operation_id=OP, app="../x"),
                                   FakeMessage(T0).as_message())
    assert w.broker.events == []


async def test_the_end_forgets_the_apps_state_and_frees_the_lock() -> None:
    w = world()
    queued = new_id()
    w.locks.held[APP] = OP
    w.sources.objects.update({f"{APP}/{DEP}.tar.gz": b"a", f"{APP}/{queued}.tar.gz": b"b",
                              f"{APP}x/{DEP}.tar.gz": b"c"})
    w.queue.queues[APP] = waiting(queued)  # asked for during the destroy: it stays
    w.manifests.kept[(APP, "v1-de000000")] = {"Procfile": "web: x"}
    await w.config.change(APP, {"A": "1"}, [])
    w.hooks.hooks[APP] = OperatorHooks(hooks=[OperatorHook(phase="postdeploy", label="L",
                                                           command="true")])
    w.sinks.sinks[APP] = Sinks(sinks=[Sink(name="ops", url="https://x.example/h")])
    await w.releases.allocate(APP, DEP)
    stopped = make(DestroyStopped, app=APP, deployment_id=OP, removed=["route of x"])
    await w.builder.on_destroy_stopped(stopped, FakeMessage(T0).as_message())
    [end] = w.broker.events
    assert isinstance(end, DestroySucceeded)
    assert end.data == DestroyData(removed=[
        "1 source archive(s)", "1 manifest(s)", "config (every version)", "1 operator hook(s)",
        "notification sinks", "release numbering (the next deploy is v1)"])
    assert set(w.sources.objects) == {f"{APP}/{queued}.tar.gz", f"{APP}x/{DEP}.tar.gz"}
    assert w.queue.queues[APP] == waiting(queued)
    assert w.manifests.kept == {} and w.config.versions == {} and w.hooks.hooks == {}
    assert w.sinks.sinks == {} and await w.releases.allocate(APP, "e" * 32) == 1
    assert APP not in w.locks.held
    # Redelivered: the same end again, nothing else.
    await w.builder.on_destroy_stopped(stopped, FakeMessage(T0).as_message())
    assert [e.id for e in w.broker.events] == [end.id, end.id]


async def test_an_empty_queue_goes_with_the_app() -> None:
    w = world()
    w.locks.held[APP] = OP
    w.queue.queues[APP] = Queue()
    await w.builder.on_destroy_stopped(make(DestroyStopped, app=APP, deployment_id=OP),
                                        FakeMessage(T0).as_message())
    assert APP not in w.queue.queues
