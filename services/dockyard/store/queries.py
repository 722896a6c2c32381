"""Read the deployment records as plain JSON-ready dicts, for the API and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, or_
from sqlmodel import Session, col, select

from dockyard.contract.phase import HOOK_PHASES
from dockyard.store.db import BadQueryError, NotFoundError, Store
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

Row = dict[str, Any]
MAX_LIMIT = 1000


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, `Z`-suffixed as the events are."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def deployment_row(d: Deployment) -> Row:
    """One deployment as a dict."""
    return {"id": d.id, "app": d.app, "release": d.release, "status": d.status, "kind": d.kind,
            "reason": d.reason, "exit_code": d.exit_code, "tail": json.loads(d.tail),
            "created_at": iso(d.created_at), "updated_at": iso(d.updated_at),
            "finished_at": iso(d.finished_at)}


def hook_run_row(r: HookRun) -> Row:
    """One hook command run as a dict; `state` is running, succeeded or failed."""
    state = "running" if r.exit_code is None else ("succeeded" if r.exit_code == 0 else "failed")
    return {"phase": r.phase, "index": r.index, "total": r.total, "label": r.label,
            "command": r.command, "state": state, "exit_code": r.exit_code,
            "duration": r.duration, "tail": json.loads(r.tail),
            "started_at": iso(r.started_at), "finished_at": iso(r.finished_at)}


def release_row(r: Release, live: int | None) -> Row:
    """One release as a dict."""
    return {"app": r.app, "number": r.number, "deployment_id": r.deployment_id,
            "build_id": r.build_id, "artifact": r.artifact, "config_version": r.config_version,
            "kind": r.kind, "created_at": iso(r.created_at), "live": r.number == live}


def route_row(r: Route) -> Row:
    """One route as a dict."""
    return {"app": r.app, "release": r.release, "deployment_id": r.deployment_id,
            "upstreams": json.loads(r.upstreams), "switched_at": iso(r.switched_at)}


def instance_row(i: Instance) -> Row:
    """One instance as a dict."""
    return {"id": i.id, "app": i.app, "release": i.release, "deployment_id": i.deployment_id,
            "process": i.process, "host": i.host, "port": i.port, "state": i.state}


def delivery_row(d: Delivery) -> Row:
    """One delivery record as a dict."""
    return {"event_id": d.event_id, "app": d.app, "deployment_id": d.deployment_id,
            "sink": d.sink, "outcome": d.outcome, "attempt": d.attempt,
            "status_code": d.status_code, "error": d.error, "delivered": d.delivered,
            "time": iso(d.time)}


def _latest(session: Session, app: str) -> Deployment | None:
    query = (select(Deployment).where(Deployment.app == app)
             .order_by(col(Deployment.created_at).desc(), col(Deployment.id).desc()).limit(1))
    return session.exec(query).first()


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQueryError("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def list_apps(store: Store) -> list[Row]:
    """Every app with its live release and its latest deployment's status."""
    # One query, whatever the number of apps: each app's newest deployment by a window.
    newest = func.row_number().over(
        partition_by=col(Deployment.app),
        order_by=(col(Deployment.created_at).desc(), col(Deployment.id).desc()))
    ranked = select(col(Deployment.app).label("app"), col(Deployment.status).label("status"),
                    newest.label("n")).subquery()
    query = (select(App, ranked.c.status)
             .join(ranked, (ranked.c.app == App.name) & (ranked.c.n == 1), isouter=True)
             .order_by(col(App.name)))
    with store.session() as s:
        return [{"name": app.name, "created_at": iso(app.created_at),
                 "live_release": app.live_release, "live_deployment_id": app.live_deployment_id,
                 "status": status} for app, status in s.exec(query)]


def get_app(store: Store, name: str) -> Row:
    """One app: live release, latest deployment, route and running instances."""
    with store.session() as s:
        app = s.get(App, name)
        if app is None:
            raise NotFoundError("app", name)
        latest = _latest(s, name)
        route = s.get(Route, name)
        running = s.exec(select(Instance).where(Instance.app == name,
                                                Instance.state == "running")
                         .order_by(col(Instance.release), col(Instance.id)))
        return {"name": app.name, "created_at": iso(app.created_at),
                "live_release": app.live_release, "live_deployment_id": app.live_deployment_id,
                "deployment": deployment_row(latest) if latest else None,
                "route": route_row(route) if route else None,
                "instances": [instance_row(i) for i in running]}


def has_app(store: Store, name: str) -> bool:
    """Whether the records know the app (it has deployments)."""
    with store.session() as s:
        return s.get(App, name) is not None


def unfinished_deployments(store: Store, app: str) -> list[str]:
    """The app's deployments that are queued or running, oldest first."""
    with store.session() as s:
        query = (select(Deployment).where(Deployment.app == app,
                                          col(Deployment.finished_at).is_(None))
                 .order_by(col(Deployment.created_at), col(Deployment.id)))
        return [d.id for d in s.exec(query)]


def list_deployments(store: Store, app: str, limit: int = 50) -> list[Row]:
    """An app's deployments, newest first."""
    with store.session() as s:
        if s.get(App, app) is None:
            raise NotFoundError("app", app)
        query = (select(Deployment).where(Deployment.app == app)
                 .order_by(col(Deployment.created_at).desc(), col(Deployment.id).desc())
                 .limit(_limit(limit)))
        return [deployment_row(d) for d in s.exec(query)]


def list_releases(store: Store, app: str) -> list[Row]:
    """An app's releases, newest first; `live` marks the one serving."""
    with store.session() as s:
        found = s.get(App, app)
        if found is None:
            raise NotFoundError("app", app)
        query = select(Release).where(Release.app == app).order_by(col(Release.number).desc())
        return [release_row(r, found.live_release) for r in s.exec(query)]


def get_deployment(store: Store, deployment_id: str) -> Row:
    """One deployment with its hook runs in the order they run."""
    with store.session() as s:
        dep = s.get(Deployment, deployment_id)
        if dep is None:
            raise NotFoundError("deployment", deployment_id)
        phase_order = case({p.value: n for n, p in enumerate(HOOK_PHASES)}, value=HookRun.phase,
                           else_=len(HOOK_PHASES))
        runs = s.exec(select(HookRun).where(HookRun.deployment_id == deployment_id)
                      .order_by(phase_order, col(HookRun.index)))
        row = deployment_row(dep)
        row["hook_runs"] = [hook_run_row(r) for r in runs]
        return row


def _events(s: Session, *where: Any, after: str | None, limit: int) -> list[Row]:
    query = select(AppliedEvent).where(*where)
    if after:
        mark = s.get(AppliedEvent, after)
        if mark is None:
            raise BadQueryError("after", f"no event with id {after!r}")
        # (time, id) orders events totally, so paging by the last id seen skips nothing.
        query = query.where(or_(col(AppliedEvent.time) > mark.time,
                                (col(AppliedEvent.time) == mark.time)
                                & (col(AppliedEvent.id) > mark.id)))
    query = query.order_by(col(AppliedEvent.time), col(AppliedEvent.id)).limit(_limit(limit))
    return [json.loads(e.payload) for e in s.exec(query)]


def deployment_events(store: Store, deployment_id: str, limit: int = MAX_LIMIT) -> list[Row]:
    """Every event of one deployment (as published), oldest first."""
    with store.session() as s:
        if s.get(Deployment, deployment_id) is None:
            raise NotFoundError("deployment", deployment_id)
        return _events(s, AppliedEvent.deployment_id == deployment_id, after=None, limit=limit)


def list_events(store: Store, app: str | None = None, after: str | None = None,
                limit: int = 100) -> list[Row]:
    """Events (as published) oldest first, optionally of one app and after an event id."""
    with store.session() as s:
        where = [AppliedEvent.app == app] if app else []
        return _events(s, *where, after=after, limit=limit)


def list_instances(store: Store, app: str | None = None, state: str | None = None) -> list[Row]:
    """Instances, optionally of one app and in one state."""
    with store.session() as s:
        query = select(Instance)
        if app:
            query = query.where(Instance.app == app)
        if state:
            query = query.where(Instance.state == state)
        query = query.order_by(col(Instance.app), col(Instance.release), col(Instance.id))
        return [instance_row(i) for i in s.exec(query)]


def list_routes(store: Store) -> list[Row]:
    """Every app's route, for the router to rebuild the proxy's configuration."""
    with store.session() as s:
        return [route_row(r) for r in s.exec(select(Route).order_by(col(Route.app)))]


def list_deliveries(store: Store, event_id: str | None = None,
                    deployment_id: str | None = None) -> list[Row]:
    """Notification attempts and outcomes, in time order."""
    with store.session() as s:
        query = select(Delivery)
        if event_id:
            query = query.where(Delivery.event_id == event_id)
        if deployment_id:
            query = query.where(Delivery.deployment_id == deployment_id)
        query = query.order_by(col(Delivery.time), col(Delivery.id))
        return [delivery_row(d) for d in s.exec(query)]


def count_events(store: Store) -> int:
    """How many events were projected."""
    with store.session() as s:
        return int(s.exec(select(func.count()).select_from(AppliedEvent)).one())
