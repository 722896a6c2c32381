"""Apply one decoded event to the deployment records, idempotently
(an applied event id is a no-op)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from dockyard.contract import codec
from dockyard.contract.events import (
    FAILED_STATUSES,
    STATUS_AFTER,
    BuildSucceeded,
    CommandFinished,
    CommandStarted,
    DeployAborted,
    DeployFailed,
    DeployQueued,
    DeploySucceeded,
    DestroyFailed,
    DestroyStarted,
    DestroyStopped,
    DestroySucceeded,
    DestroyUnrouted,
    Event,
    FailureData,
    HookStarted,
    HookSucceeded,
    InstanceRef,
    NotificationAttempted,
    NotificationDelivered,
    NotificationFailed,
    RetireSucceeded,
    ScaleFailed,
    ScalePlaced,
    ScaleSucceeded,
    StartSucceeded,
    TrafficScaled,
    TrafficSwitched,
    type_of,
)
from dockyard.store.db import Store
from dockyard.store.models import (
    App,
    AppliedEvent,
    Delivery,
    Deployment,
    HookRun,
    Instance,
    Release,
    Route,
)

log = structlog.get_logger()

# Progress order of the in-flight statuses; any failure ranks above them all, so a late
# `start.started` can never pull a `hook-error` deployment back to `starting`.
_PROGRESS = ("queued", "building", "releasing", "starting", "postdeploy", "switching", "canary")
_FAILURE_RANK = len(_PROGRESS)
_TERMINAL = (DeploySucceeded, DeployFailed)
_NOTIFICATIONS = (NotificationAttempted, NotificationDelivered, NotificationFailed)
_SCALE = (ScalePlaced, TrafficScaled, ScaleSucceeded, ScaleFailed)
_ABORTED = type_of(DeployAborted)
_DESTROY = (DestroyStarted, DestroyStopped, DestroyUnrouted, DestroySucceeded, DestroyFailed)


def utc(value: datetime) -> datetime:
    """Aware UTC, the one form every datetime is stored in (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def rank(status: str) -> int:
    """How far along a non-terminal status is."""
    if status in _PROGRESS:
        return _PROGRESS.index(status)
    return _FAILURE_RANK


def spec_of(event: Event[Any]) -> Any:
    """The DeploySpec an event carries, if any."""
    return getattr(event.data, "spec", None)


def next_status(current: str, finished: bool, event: Event[Any]) -> str | None:
    """The status a deployment moves to on event, or None when it stays."""
    if isinstance(event, _TERMINAL):
        # The first terminal event decides; it beats any rank.
        return None if finished else event.data.status
    if finished:
        return None
    if isinstance(event.data, FailureData):
        # The first failure names the cause; later ones (deploy.aborted) only follow it.
        return None if current in FAILED_STATUSES else event.data.status
    status = STATUS_AFTER.get(type_of(type(event)))
    if status is None or rank(status) <= rank(current):
        return None
    return status


def apply_event(session: Session, event: Event[Any]) -> bool:
    """Apply event in session (not committed); False when its id was applied before."""
    if session.get(AppliedEvent, event.id) is not None:
        return False
    t = utc(event.time)
    session.add(AppliedEvent(id=event.id, type=type_of(type(event)), app=event.subject,
                             deployment_id=event.deployment_id, time=t,
                             payload=codec.encode(event).decode()))
    if isinstance(event, _NOTIFICATIONS):
        _delivery(session, event, t)
        return True
    if isinstance(event, _SCALE):
        # A scale or restart is no deployment: it changes the live release's instances.
        _app(session, event.subject, t)
        if isinstance(event, TrafficScaled):
            _instances(session, event, event.data.instances)
            _rescaled(session, event)
        elif isinstance(event, ScaleSucceeded):
            _retire(session, event.data.stopped)
    if isinstance(event, _DESTROY):
        # A destroy is no deployment: only its events are kept, and its end forgets the app.
        if isinstance(event, DestroySucceeded):
            forget_app(session, event.subject)
        return True
    _app(session, event.subject, t)
    dep = _deployment(session, event, t)
    _move(dep, event, t)
    spec = spec_of(event)
    if spec is not None and event.release > 0:
        _release(session, event, spec, t)
    if isinstance(event, (StartSucceeded, HookStarted, HookSucceeded, TrafficSwitched)):
        _instances(session, event, event.data.instances)
    if isinstance(event, TrafficSwitched):
        _switch(session, event, t)
    elif isinstance(event, RetireSucceeded):
        _retire(session, event.data.stopped)
    elif isinstance(event, DeployAborted):
        _remove_unrouted(session, dep)
    elif isinstance(event, (CommandStarted, CommandFinished)):
        _hook_run(session, event, t)
    return True


def forget_app(session: Session, app: str) -> None:
    """Delete every record of an app: it, its releases, deployments, hook runs, instances,
    route, deliveries and events; a destroy's own events stay (the record that it was)."""
    deployments = [d.id for d in session.exec(select(Deployment).where(Deployment.app == app))]
    for chunk in range(0, len(deployments), 500):
        for run in session.exec(select(HookRun).where(
                col(HookRun.deployment_id).in_(deployments[chunk:chunk + 500]))):
            session.delete(run)
    kept = [type_of(cls) for cls in _DESTROY]
    for model in (Release, Deployment, Instance, Delivery):
        for row in session.exec(select(model).where(model.app == app)):
            session.delete(row)
    for row in session.exec(select(AppliedEvent).where(
            AppliedEvent.app == app, col(AppliedEvent.type).not_in(kept))):
        session.delete(row)
    for one in (session.get(Route, app), session.get(App, app)):
        if one is not None:
            session.delete(one)


def project(store: Store, event: Event[Any]) -> bool:
    """Apply and commit one event; False when it was applied before (also by a racing instance)."""
    with store.session() as session:
        try:
            applied = apply_event(session, event)
            session.commit()
        except IntegrityError:
            session.rollback()
            # Another api instance committed the same event first: that is a duplicate,
            # not an error.
            if session.get(AppliedEvent, event.id) is not None:
                return False
            raise
    if applied:
        log.debug("projected", type=type_of(type(event)), app=event.subject,
                  deployment_id=event.deployment_id, release=event.release)
    return applied


def _app(session: Session, name: str, t: datetime) -> App:
    app = session.get(App, name)
    if app is None:
        app = App(name=name, created_at=t)
        session.add(app)
    elif t < app.created_at:
        app.created_at = t
    return app


def _deployment(session: Session, event: Event[Any], t: datetime) -> Deployment:
    dep = session.get(Deployment, event.deployment_id)
    if dep is None:
        # Any event may arrive first: the deployment exists from whichever comes.
        dep = Deployment(id=event.deployment_id, app=event.subject, release=event.release,
                         created_at=t, updated_at=t)
        session.add(dep)
    if isinstance(event, DeployQueued):
        dep.kind = event.data.kind
        dep.created_at = min(dep.created_at, t)
    spec = spec_of(event)
    if spec is not None:
        dep.kind = spec.kind
    if dep.release == 0 and event.release > 0:
        dep.release = event.release
    dep.updated_at = max(dep.updated_at, t)
    return dep


def _move(dep: Deployment, event: Event[Any], t: datetime) -> None:
    status = next_status(dep.status, dep.finished_at is not None, event)
    if status is None:
        return
    dep.status = status
    if isinstance(event.data, FailureData):
        failed = event.data
        dep.reason = failed.reason
        # deploy.failed often repeats the cause without its details: keep the earlier ones.
        if failed.exit_code is not None:
            dep.exit_code = failed.exit_code
        if failed.tail:
            dep.tail = json.dumps(failed.tail)
    if isinstance(event, _TERMINAL):
        dep.finished_at = t


def _release(session: Session, event: Event[Any], spec: Any, t: datetime) -> None:
    found = session.exec(select(Release).where(Release.app == event.subject,
                                               Release.number == event.release)).first()
    if found is not None:
        if not isinstance(event, BuildSucceeded):
            # The hook-runner pins the config version when the release phase starts: the
            # build's spec does not have it yet, every later one does.
            found.config_version = spec.config_version
        return
    session.add(Release(app=event.subject, number=event.release,
                        deployment_id=event.deployment_id, build_id=spec.build_id,
                        artifact=spec.artifact, config_version=spec.config_version,
                        kind=spec.kind, created_at=t))


def _aborted(session: Session, deployment_id: str) -> bool:
    query = select(AppliedEvent.id).where(AppliedEvent.deployment_id == deployment_id,
                                          AppliedEvent.type == _ABORTED)
    return session.exec(query).first() is not None


def _instances(session: Session, event: Event[Any], refs: Iterable[InstanceRef]) -> None:
    # Instances announced after their deploy was aborted are already gone.
    state = "removed" if _aborted(session, event.deployment_id) else "running"
    for ref in refs:
        if session.get(Instance, ref.id) is not None:
            continue
        session.add(Instance(id=ref.id, app=event.subject, release=ref.release,
                             deployment_id=event.deployment_id, process=ref.process,
                             host=ref.host, port=ref.port, state=state))


def _switch(session: Session, event: TrafficSwitched, t: datetime) -> None:
    route = session.get(Route, event.subject)
    if route is not None and route.switched_at > t:
        return  # a newer switch was already projected
    upstreams = json.dumps([f"{i.host}:{i.port}" for i in event.data.instances
                            if i.port is not None])
    if route is None:
        route = Route(app=event.subject, release=event.release,
                      deployment_id=event.deployment_id, upstreams=upstreams, switched_at=t)
        session.add(route)
    else:
        route.release = event.release
        route.deployment_id = event.deployment_id
        route.upstreams = upstreams
        route.switched_at = t
    app = _app(session, event.subject, t)
    app.live_release = event.release
    app.live_deployment_id = event.deployment_id


def _rescaled(session: Session, event: TrafficScaled) -> None:
    route = session.get(Route, event.subject)
    if route is not None and route.release == event.release:
        route.upstreams = json.dumps([f"{i.host}:{i.port}" for i in event.data.instances
                                      if i.process == "web" and i.port is not None])


def _retire(session: Session, stopped: Iterable[str]) -> None:
    for instance_id in stopped:
        instance = session.get(Instance, instance_id)
        if instance is not None:
            instance.state = "retired"


def _remove_unrouted(session: Session, dep: Deployment) -> None:
    route = session.get(Route, dep.app)
    if route is not None and route.deployment_id == dep.id:
        return  # failed after the switch: its instances serve and stay
    query = select(Instance).where(Instance.deployment_id == dep.id,
                                   col(Instance.state) == "running")
    for instance in session.exec(query):
        instance.state = "removed"


def _hook_run(session: Session, event: CommandStarted | CommandFinished, t: datetime) -> None:
    about = event.data
    query = select(HookRun).where(HookRun.deployment_id == event.deployment_id,
                                  HookRun.phase == about.hook_phase.value,
                                  HookRun.index == about.index)
    run = session.exec(query).first()
    if run is None:
        run = HookRun(deployment_id=event.deployment_id, phase=about.hook_phase.value,
                      index=about.index)
        session.add(run)
    run.label = about.label
    run.command = about.command
    run.total = about.total
    if isinstance(event, CommandStarted):
        run.started_at = t
        return
    ended = event.data
    run.exit_code = ended.exit_code
    run.duration = ended.duration
    run.tail = json.dumps(ended.tail)
    run.finished_at = t
    if run.started_at is None:
        run.started_at = t - timedelta(seconds=ended.duration)


def _delivery(session: Session,
              event: NotificationAttempted | NotificationDelivered | NotificationFailed,
              t: datetime) -> None:
    if isinstance(event, NotificationAttempted):
        a = event.data
        ok = a.error is None and a.status_code is not None and 200 <= a.status_code < 300
        row = Delivery(event_id=a.event_id, sink=a.sink, outcome="attempted", attempt=a.attempt,
                       status_code=a.status_code, error=a.error, delivered=ok, time=t)
    elif isinstance(event, NotificationDelivered):
        d = event.data
        row = Delivery(event_id=d.event_id, sink=d.sink, outcome="delivered",
                       attempt=d.attempts, status_code=d.status_code, delivered=True, time=t)
    else:
        f = event.data
        row = Delivery(event_id=f.event_id, sink=f.sink, outcome="failed", attempt=f.attempts,
                       error=f.reason, delivered=False, time=t)
    row.app = event.subject
    row.deployment_id = event.deployment_id
    session.add(row)
