"""A destroyed app leaves no record in the api's store but its destroy's own events; another
app's records stay; the name starts again as a new app."""

from __future__ import annotations

from sqlmodel import select

from dockyard.contract.events import (
    DeployQueued,
    DestroyStarted,
    DestroySucceeded,
    DestroyUnrouted,
    type_of,
)
from dockyard.store import Store, project
from dockyard.store.db import NotFoundError
from dockyard.store.models import AppliedEvent, HookRun, Instance, Release
from dockyard.store.queries import get_app, has_app, list_apps, unfinished_deployments
from tests.api.test_http import D1, D2, events
from tests.events import make

OP = "0f" + "0" * 30


def test_destroy_succeeded_deletes_every_record_of_the_app(store: Store) -> None:
    for event in events():
        project(store, event)
    assert has_app(store, "blog") and unfinished_deployments(store, "other") == [D2]
    for cls in (DestroyStarted, DestroyUnrouted):
        project(store, make(cls, app="blog", deployment_id=OP))
    assert has_app(store, "blog")  # only the end forgets; the steps create no deployment
    end = make(DestroySucceeded, app="blog", deployment_id=OP, removed=["route of blog"])
    assert project(store, end)
    assert not has_app(store, "blog")
    try:
        get_app(store, "blog")
    except NotFoundError:
        pass
    else:
        raise AssertionError("the app is still recorded")
    assert [row["name"] for row in list_apps(store)] == ["other"]
    with store.session() as s:
        assert s.exec(select(Release).where(Release.app == "blog")).all() == []
        assert s.exec(select(Instance).where(Instance.app == "blog")).all() == []
        assert s.exec(select(HookRun).where(HookRun.deployment_id == D1)).all() == []
        kept = s.exec(select(AppliedEvent).where(AppliedEvent.app == "blog")).all()
        assert sorted(e.type for e in kept) == sorted(
            type_of(c) for c in (DestroyStarted, DestroyUnrouted, DestroySucceeded))
    assert not project(store, end)  # applied once
    # The name deploys again as a new app.
    project(store, make(DeployQueued, app="blog", deployment_id="ab" * 16))
    assert has_app(store, "blog") and unfinished_deployments(store, "blog") == ["ab" * 16]
