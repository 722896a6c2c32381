"""Reads of the deployment records, on SQLite and PostgreSQL (tests/store/conftest.py): order,
filters, paging and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from dockyard.contract.events import (
    CommandStarted,
    DeployFailed,
    DeployQueued,
    Event,
    NotificationAttempted,
    NotificationDelivered,
)
from dockyard.contract.phase import Phase
from dockyard.store import BadQueryError, NotFoundError, Store, project
from dockyard.store.queries import (
    MAX_LIMIT,
    count_events,
    deployment_events,
    get_app,
    get_deployment,
    iso,
    list_apps,
    list_deliveries,
    list_deployments,
    list_events,
    list_instances,
    list_releases,
    list_routes,
)
from tests.events import make

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def queued(app: str, dep: str, seconds: float, id: str | None = None) -> Event[Any]:
    return make(DeployQueued, app=app, deployment_id=dep, time=at(seconds), id=id)


def test_iso_is_utc_with_a_z() -> None:
    assert iso(None) is None
    assert iso(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"
    plus_two = timezone(timedelta(hours=2))
    assert iso(datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus_two)) == "2026-01-02T03:04:05Z"


def test_unknown_records_are_not_found(store: Store) -> None:
    for read, kind in ((lambda: get_app(store, "ghost"), "app"),
                       (lambda: list_deployments(store, "ghost"), "app"),
                       (lambda: list_releases(store, "ghost"), "app"),
                       (lambda: get_deployment(store, "nope"), "deployment"),
                       (lambda: deployment_events(store, "nope"), "deployment")):
        with pytest.raises(NotFoundError) as missing:
            read()
        assert missing.value.kind == kind


def test_limits_outside_1_to_the_maximum_are_refused(store: Store) -> None:
    project(store, queued("shop", "d1", 1))
    for limit in (0, -1, MAX_LIMIT + 1):
        with pytest.raises(BadQueryError, match=f"bad limit: must be between 1 and {MAX_LIMIT}"):
            list_deployments(store, "shop", limit=limit)
        with pytest.raises(BadQueryError):
            list_events(store, limit=limit)
    assert len(list_deployments(store, "shop", limit=1)) == 1


def test_deployments_newest_first_and_apps_by_name_with_their_latest_status(store: Store) -> None:
    for n, (app, dep) in enumerate([("shop", "d1"), ("blog", "b1"), ("shop", "d2")]):
        project(store, queued(app, dep, n))
    assert [d["id"] for d in list_deployments(store, "shop")] == ["d2", "d1"]
    assert [d["id"] for d in list_deployments(store, "shop", limit=1)] == ["d2"]
    assert [(a["name"], a["status"], a["live_release"]) for a in list_apps(store)] == [
        ("blog", "queued", None), ("shop", "queued", None)]
    row = get_app(store, "shop")
    assert (row["deployment"]["id"], row["route"], row["instances"]) == ("d2", None, [])
    assert row["deployment"]["created_at"] == "2026-03-01T12:00:02Z"


def test_each_app_shows_its_newest_deployments_status_whichever_ended(store: Store) -> None:
    # Ended, then a newer one queued; and one whose newest (and only) deployment failed.
    project(store, queued("shop", "d1", 0))
    project(store, make(DeployFailed, app="shop", deployment_id="d1", time=at(1),
                        status="hook-error", reason="exit 1"))
    project(store, queued("shop", "d2", 5))
    project(store, queued("blog", "b1", 6))
    project(store, make(DeployFailed, app="blog", deployment_id="b1", time=at(7),
                        status="build-error", reason="no Dockerfile"))
    project(store, queued("wiki", "w1", 2))
    assert [(a["name"], a["status"]) for a in list_apps(store)] == [
        ("blog", "build-error"), ("shop", "queued"), ("wiki", "queued")]


def test_hook_runs_come_in_the_order_a_deploy_runs_them(store: Store) -> None:
    project(store, queued("shop", "d1", 0))
    order = [(Phase.ON_FAILURE, 1), (Phase.AFTER_SWITCH, 1), (Phase.POSTDEPLOY, 2),
             (Phase.RELEASE, 1), (Phase.POSTDEPLOY, 1), (Phase.PREDEPLOY, 1)]
    for n, (phase, index) in enumerate(order, start=1):
        project(store, make(CommandStarted, app="shop", deployment_id="d1", time=at(n),
                            id_parts=(phase.value, index), hook_phase=phase,
                            label=f"{phase}-{index}", index=index, total=2, command="true"))
    runs = get_deployment(store, "d1")["hook_runs"]
    assert [(r["phase"], r["index"], r["state"]) for r in runs] == [
        ("predeploy", 1, "running"), ("release", 1, "running"), ("postdeploy", 1, "running"),
        ("postdeploy", 2, "running"), ("after_switch", 1, "running"),
        ("on_failure", 1, "running")]


def test_events_oldest_first_filtered_by_app_and_paged_after_an_id(store: Store) -> None:
    # Two events share a time: (time, id) still orders them one way.
    sent = [queued("shop", "d1", 1, "e1"), queued("blog", "b1", 2, "e2"),
            queued("shop", "d2", 3, "e3b"), queued("shop", "d3", 3, "e3a"),
            queued("shop", "d4", 4, "e4")]
    for event in sent:
        project(store, event)
    assert [e["id"] for e in list_events(store)] == ["e1", "e2", "e3a", "e3b", "e4"]
    assert [e["id"] for e in list_events(store, app="shop")] == ["e1", "e3a", "e3b", "e4"]
    assert [e["id"] for e in list_events(store, after="e2", limit=2)] == ["e3a", "e3b"]
    assert [e["id"] for e in list_events(store, app="shop", after="e3b")] == ["e4"]
    assert list_events(store, after="e4") == []
    with pytest.raises(BadQueryError, match="bad after: no event with id 'nope'"):
        list_events(store, after="nope")
    # Events come back as they were published.
    assert list_events(store, app="blog")[0]["subject"] == "blog"
    assert [e["id"] for e in deployment_events(store, "d2")] == ["e3b"]
    assert count_events(store) == 5


def test_deliveries_filtered_by_event_and_deployment(store: Store) -> None:
    project(store, queued("shop", "d1", 0, "q1"))
    for n, (dep, event_id) in enumerate([("d1", "q1"), ("d2", "q2")], start=1):
        project(store, make(NotificationAttempted, app="shop", deployment_id=dep, time=at(n),
                            id_parts=(event_id, "ops", 1), sink="ops", event_id=event_id,
                            attempt=1, status_code=500))
        project(store, make(NotificationDelivered, app="shop", deployment_id=dep,
                            time=at(n + 0.5), id_parts=(event_id, "ops"), sink="ops",
                            event_id=event_id, attempts=2, status_code=204))
    rows = list_deliveries(store, event_id="q1")
    assert [(r["outcome"], r["attempt"], r["status_code"], r["delivered"]) for r in rows] == [
        ("attempted", 1, 500, False), ("delivered", 2, 204, True)]
    assert {r["event_id"] for r in list_deliveries(store, deployment_id="d2")} == {"q2"}
    assert len(list_deliveries(store)) == 4
    # Notifications are not deployments' events: no app or deployment appears for them.
    assert [a["name"] for a in list_apps(store)] == ["shop"]


def test_no_instances_or_routes_before_any_start(store: Store) -> None:
    project(store, queued("shop", "d1", 0))
    assert list_instances(store) == [] and list_instances(store, "shop", "running") == []
    assert list_routes(store) == []
    assert list_releases(store, "shop") == []
