"""The deployment records as the API's structs (sync: the routes run these in a thread)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec

from dockyard.api.models import (
    AppDetail,
    AppSummary,
    DeploymentDetail,
    DeploymentRow,
    HealthState,
    ReleaseRow,
)
from dockyard.api.timeline import timeline
from dockyard.store import Store, queries


def health(live_release: int | None, running: int) -> HealthState:
    """`none` with nothing live, else whether the live release has instances running."""
    if live_release is None:
        return "none"
    return "healthy" if running else "down"


def apps(store: Store) -> list[AppSummary]:
    """Every app with its live release, health and latest deployment's status."""
    rows = queries.list_apps(store)
    running = Counter((i["app"], i["release"])
                      for i in queries.list_instances(store, state="running"))
    return [AppSummary(**row, running=running[row["name"], row["live_release"]],
                       health=health(row["live_release"],
                                     running[row["name"], row["live_release"]]))
            for row in rows]


def app(store: Store, name: str) -> AppDetail:
    """One app: live release and health, latest deployment, route and running instances."""
    row = queries.get_app(store, name)
    live = row["live_release"]
    row["health"] = health(live, sum(1 for i in row["instances"] if i["release"] == live))
    return msgspec.convert(row, AppDetail)


def deployments(store: Store, app: str, limit: int) -> list[DeploymentRow]:
    """An app's deployments, newest first."""
    return msgspec.convert(queries.list_deployments(store, app, limit=limit), list[DeploymentRow])


def releases(store: Store, app: str) -> list[ReleaseRow]:
    """An app's releases, newest first."""
    return msgspec.convert(queries.list_releases(store, app), list[ReleaseRow])


def deployment_row(store: Store, deployment_id: str) -> DeploymentRow:
    """One deployment's record alone."""
    row = queries.get_deployment(store, deployment_id)
    row.pop("hook_runs")
    return msgspec.convert(row, DeploymentRow)


def deployment(store: Store, deployment_id: str) -> DeploymentDetail:
    """One deployment with its timeline, hook runs and events."""
    row = queries.get_deployment(store, deployment_id)
    events = queries.deployment_events(store, deployment_id)
    row["events"] = events
    row["timeline"] = msgspec.to_builtins(timeline(events, row["status"] == "cancelled"))
    row["links"] = {"logs": f"/deployments/{deployment_id}/logs",
                    "events": f"/apps/{row['app']}/events/stream", "app": f"/apps/{row['app']}"}
    return msgspec.convert(row, DeploymentDetail)


def events(store: Store, app: str | None, after: str | None, limit: int) -> list[dict[str, Any]]:
    """Events as published, oldest first."""
    return queries.list_events(store, app=app, after=after, limit=limit)


def ended(store: Store, deployment_id: str) -> bool:
    """Whether a deployment has reached its end (its log gets no more lines)."""
    return deployment_row(store, deployment_id).finished_at is not None
