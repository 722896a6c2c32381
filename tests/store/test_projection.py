"""Projection of events into the deployment records, on SQLite and PostgreSQL
(tests/store/conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import select

from dockyard.contract.events import (
    BuildStarted,
    BuildSucceeded,
    CommandFinished,
    CommandStarted,
    DeployAborted,
    DeployFailed,
    DeployQueued,
    DeploySpec,
    DeploySucceeded,
    Event,
    HookFailed,
    HookStarted,
    HookSucceeded,
    InstanceRef,
    NotificationAttempted,
    NotificationDelivered,
    ReleaseStarted,
    ReleaseSucceeded,
    RetireSucceeded,
    RolloutPromoted,
    RolloutStep,
    StartStarted,
    StartSucceeded,
    TrafficSwitched,
)
from dockyard.contract.plan import Plan
from dockyard.store import Store, apply_event, project
from dockyard.store.models import AppliedEvent, Delivery, HookRun, Instance
from dockyard.store.projection import next_status
from dockyard.store.queries import (
    get_app,
    get_deployment,
    list_deliveries,
    list_deployments,
    list_instances,
    list_releases,
    list_routes,
)
from tests.events import make

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def spec(release: int) -> DeploySpec:
    return DeploySpec(runtime="process", build_id=f"b{release}", artifact=f"/art/{release}",
                      plan=Plan(), config_version=3)


class Seq:
    """Builds one deployment's events with increasing times."""

    def __init__(self, app: str, dep: str, release: int, start: datetime = T0) -> None:
        self.app, self.dep, self.release, self.t, self.n = app, dep, release, start, 0

    def __call__(self, cls: type[Event[Any]], **kw: Any) -> Any:
        self.n += 1
        self.t += timedelta(seconds=1)
        kw.setdefault("release", self.release)
        return make(cls, id=f"{self.dep}-{self.n}", source="test", app=self.app,
                    deployment_id=self.dep, time=self.t, **kw)


def instances(release: int, tag: str) -> list[InstanceRef]:
    return [InstanceRef(id=f"{tag}-web", process="web", release=release, port=5000 + release),
            InstanceRef(id=f"{tag}-worker", process="worker", release=release)]


def successful(app: str, dep: str, release: int, start: datetime = T0,
               retire: list[str] | None = None) -> list[Event[Any]]:
    e = Seq(app, dep, release, start)
    inst = instances(release, dep)
    return [
        e(DeployQueued, release=0), e(BuildStarted, release=0),
        e(BuildSucceeded, spec=spec(release)), e(ReleaseStarted, spec=spec(release)),
        e(CommandStarted, hook_phase="release", label="Migrate", index=1, total=1,
          command="migrate"),
        e(CommandFinished, hook_phase="release", label="Migrate", index=1, total=1,
          command="migrate", exit_code=0, duration=0.5, tail=["ok"]),
        e(ReleaseSucceeded, spec=spec(release)), e(StartStarted, spec=spec(release)),
        e(StartSucceeded, spec=spec(release), instances=inst),
        e(HookStarted, spec=spec(release), instances=inst),
        e(CommandStarted, hook_phase="postdeploy", label="Warm", index=1, total=2, command="warm"),
        e(CommandFinished, hook_phase="postdeploy", label="Warm", index=1, total=2,
          command="warm", exit_code=0, duration=1.0),
        e(CommandStarted, hook_phase="postdeploy", label="Ping", index=2, total=2, command="ping"),
        e(CommandFinished, hook_phase="postdeploy", label="Ping", index=2, total=2,
          command="ping", exit_code=0, duration=2.0),
        e(HookSucceeded, spec=spec(release), instances=inst),
        e(TrafficSwitched, spec=spec(release), instances=inst),
        e(RetireSucceeded, stopped=retire or []),
        e(DeploySucceeded),
    ]


def hook_error(app: str, dep: str, release: int, start: datetime) -> list[Event[Any]]:
    e = Seq(app, dep, release, start)
    inst = instances(release, dep)
    tail = [f"line {i}" for i in range(3)]
    return [
        e(DeployQueued, release=0), e(BuildStarted, release=0),
        e(BuildSucceeded, spec=spec(release)),
        e(ReleaseStarted, spec=spec(release)), e(ReleaseSucceeded, spec=spec(release)),
        e(StartStarted, spec=spec(release)), e(StartSucceeded, spec=spec(release), instances=inst),
        e(HookStarted, spec=spec(release), instances=inst),
        e(CommandStarted, hook_phase="postdeploy", label="Warm", index=1, total=1, command="warm"),
        e(CommandFinished, hook_phase="postdeploy", label="Warm", index=1, total=1,
          command="warm", exit_code=-128, duration=1200.0, tail=tail),
        e(HookFailed, status="hook-error", reason="postdeploy command timed out",
          exit_code=-128, tail=tail, command="warm"),
        e(DeployAborted, status="hook-error", reason="postdeploy command timed out"),
        e(DeployFailed, status="hook-error", reason="postdeploy command timed out"),
    ]


def apply_all(store: Store, events: list[Event[Any]]) -> list[bool]:
    return [project(store, ev) for ev in events]


def test_successful_then_hook_error_deploy(store: Store) -> None:
    assert all(apply_all(store, successful("shop", "d1", 1)))
    app = get_app(store, "shop")
    assert app["live_release"] == 1 and app["live_deployment_id"] == "d1"
    assert app["deployment"]["status"] == "succeeded"
    assert app["deployment"]["finished_at"] is not None
    assert app["route"]["upstreams"] == ["127.0.0.1:5001"]
    assert [i["id"] for i in app["instances"]] == ["d1-web", "d1-worker"]
    dep = get_deployment(store, "d1")
    assert dep["release"] == 1 and dep["status"] == "succeeded"
    assert [(r["phase"], r["index"], r["label"], r["state"]) for r in dep["hook_runs"]] == [
        ("release", 1, "Migrate", "succeeded"),
        ("postdeploy", 1, "Warm", "succeeded"),
        ("postdeploy", 2, "Ping", "succeeded"),
    ]
    assert dep["hook_runs"][0]["tail"] == ["ok"]

    assert all(apply_all(store, hook_error("shop", "d2", 2, T0 + timedelta(minutes=5))))
    dep2 = get_deployment(store, "d2")
    assert dep2["status"] == "hook-error"
    assert dep2["reason"] == "postdeploy command timed out"
    assert dep2["exit_code"] == -128 and dep2["tail"] == ["line 0", "line 1", "line 2"]
    assert dep2["hook_runs"][0]["exit_code"] == -128 and dep2["hook_runs"][0]["state"] == "failed"
    app = get_app(store, "shop")
    # The old release keeps serving and the new instances are gone.
    assert app["live_release"] == 1 and app["route"]["deployment_id"] == "d1"
    assert app["deployment"]["id"] == "d2"
    assert {i["id"]: i["state"] for i in list_instances(store, "shop")} == {
        "d1-web": "running", "d1-worker": "running", "d2-web": "removed", "d2-worker": "removed"}
    assert [d["id"] for d in list_deployments(store, "shop")] == ["d2", "d1"]
    assert [(r["number"], r["live"], r["build_id"], r["config_version"])
            for r in list_releases(store, "shop")] == [(2, False, "b2", 3), (1, True, "b1", 3)]


def test_next_deploy_retires_old_instances(store: Store) -> None:
    apply_all(store, successful("web", "a1", 1))
    apply_all(store, successful("web", "a2", 2, T0 + timedelta(minutes=1),
                                retire=["a1-web", "a1-worker"]))
    states = {i["id"]: i["state"] for i in list_instances(store, "web")}
    assert states == {"a1-web": "retired", "a1-worker": "retired",
                      "a2-web": "running", "a2-worker": "running"}
    assert list_routes(store)[0]["release"] == 2
    assert get_app(store, "web")["live_deployment_id"] == "a2"


def test_applying_twice_changes_nothing(store: Store) -> None:
    events = successful("twice", "t1", 1)
    assert all(apply_all(store, events))
    with store.session() as s:
        before = (s.exec(select(AppliedEvent)).all(), s.exec(select(HookRun)).all(),
                  s.exec(select(Instance)).all())
        snapshot = [sorted(r.model_dump_json() for r in rows) for rows in before]
    dep = get_deployment(store, "t1")
    assert not any(apply_all(store, events))
    with store.session() as s:
        after = (s.exec(select(AppliedEvent)).all(), s.exec(select(HookRun)).all(),
                 s.exec(select(Instance)).all())
        assert [sorted(r.model_dump_json() for r in rows) for rows in after] == snapshot
    assert get_deployment(store, "t1") == dep


def test_out_of_order_status_never_regresses(store: Store) -> None:
    e = Seq("late", "o1", 1)
    queued, building = e(DeployQueued, release=0), e(BuildStarted, release=0)
    started = e(StartStarted, spec=spec(1))
    failed = e(HookFailed, status="hook-error", reason="boom", exit_code=2, tail=["x"])
    terminal = e(DeployFailed, status="hook-error", reason="postdeploy failed")
    late = e(HookStarted, spec=spec(1), instances=[])
    # The terminal event arrives before the failure and before the deployment was queued.
    for ev in (terminal, started, failed, queued, building, late):
        project(store, ev)
    dep = get_deployment(store, "o1")
    assert dep["status"] == "hook-error"
    assert dep["reason"] == "postdeploy failed"
    assert dep["finished_at"] is not None
    assert dep["created_at"] == "2025-03-01T12:00:01Z"


def test_late_progress_event_does_not_pull_status_back(store: Store) -> None:
    e = Seq("lag", "l1", 1)
    queued, building = e(DeployQueued, release=0), e(BuildStarted, release=0)
    hook = e(HookStarted, spec=spec(1), instances=[])
    apply_all(store, [queued, hook, building])
    assert get_deployment(store, "l1")["status"] == "postdeploy"
    project(store, e(HookFailed, status="hook-error", reason="r"))
    project(store, e(StartStarted, spec=spec(1)))
    assert get_deployment(store, "l1")["status"] == "hook-error"


def test_terminal_success_beats_rank_and_is_final(store: Store) -> None:
    e = Seq("fin", "f1", 1)
    events = [e(DeployQueued, release=0), e(HookSucceeded, spec=spec(1), instances=[]),
              e(DeploySucceeded), e(BuildStarted, release=0),
              e(HookFailed, status="hook-error", reason="late")]
    apply_all(store, events)
    dep = get_deployment(store, "f1")
    assert dep["status"] == "succeeded" and dep["reason"] == ""


def test_next_status_rules() -> None:
    e = Seq("x", "n1", 1)
    assert next_status("queued", False, e(BuildStarted)) == "building"
    assert next_status("postdeploy", False, e(BuildStarted)) is None
    assert next_status("hook-error", False, e(StartStarted, spec=spec(1))) is None
    assert next_status("switching", False,
                       e(HookFailed, status="hook-error", reason="r")) == "hook-error"
    assert next_status("hook-error", False,
                       e(DeployAborted, status="cancelled", reason="r")) is None
    assert next_status("hook-error", False, e(DeploySucceeded)) == "succeeded"
    assert next_status("succeeded", True, e(DeployFailed, status="hook-error", reason="r")) is None
    # A canary: `canary` from its first step to the end (its promotion does not pull it back).
    step = e(RolloutStep, step=1, steps=2, percent=5)
    assert next_status("switching", False, step) == "canary"
    assert next_status("canary", False, e(RolloutPromoted, step=3, steps=2, percent=100)) is None
    assert next_status("canary", False, e(HookSucceeded, spec=spec(1), instances=[])) is None
    assert next_status("canary", False, e(DeployFailed, status="canary-error",
                                          reason="r")) == "canary-error"


def test_the_config_version_is_the_one_the_release_phase_pinned(store: Store) -> None:
    # build.succeeded carries the build's spec, before the hook-runner pinned the config
    # version; release.started onwards carry the pinned one.
    e = Seq("pin", "v1", 1)
    unpinned = DeploySpec(runtime="process", build_id="b1", artifact="/art/1", plan=Plan())
    apply_all(store, [e(DeployQueued, release=0), e(BuildSucceeded, spec=unpinned),
                      e(ReleaseStarted, spec=spec(1)), e(ReleaseSucceeded, spec=spec(1))])
    assert [(r["number"], r["build_id"], r["config_version"])
            for r in list_releases(store, "pin")] == [(1, "b1", 3)]
    # In any order: a late build.succeeded does not unpin it.
    late = Seq("pin2", "v2", 1)
    queued, built, started = (late(DeployQueued, release=0), late(BuildSucceeded, spec=unpinned),
                              late(ReleaseStarted, spec=spec(1)))
    apply_all(store, [queued, started, built])
    assert [r["config_version"] for r in list_releases(store, "pin2")] == [3]


def test_instances_announced_after_abort_are_removed(store: Store) -> None:
    e = Seq("ab", "x1", 1)
    apply_all(store, [e(DeployQueued), e(DeployAborted, status="cancelled", reason="cancelled"),
                      e(StartSucceeded, spec=spec(1), instances=instances(1, "x1"))])
    assert {i["state"] for i in list_instances(store, "ab")} == {"removed"}


def test_command_finished_before_started(store: Store) -> None:
    e = Seq("cmd", "c1", 1)
    started = e(CommandStarted, hook_phase="release", label="L", index=1, total=1, command="c")
    finished = e(CommandFinished, hook_phase="release", label="L", index=1, total=1,
                 command="c", exit_code=3, duration=1.0, tail=["bad"])
    apply_all(store, [finished, started])
    runs = get_deployment(store, "c1")["hook_runs"]
    assert len(runs) == 1 and runs[0]["exit_code"] == 3 and runs[0]["tail"] == ["bad"]


def test_notifications_become_deliveries(store: Store) -> None:
    e = Seq("note", "n1", 1)
    apply_all(store, [
        e(NotificationAttempted, sink="hook", event_id="ev1", attempt=1, status_code=500),
        e(NotificationAttempted, sink="hook", event_id="ev1", attempt=2, status_code=200),
        e(NotificationDelivered, sink="hook", event_id="ev1", attempts=2, status_code=200),
    ])
    rows = list_deliveries(store, event_id="ev1")
    assert [(r["outcome"], r["attempt"], r["delivered"]) for r in rows] == [
        ("attempted", 1, False), ("attempted", 2, True), ("delivered", 2, True)]
    with store.session() as s:
        assert len(s.exec(select(Delivery)).all()) == 3


def test_apply_event_is_uncommitted_until_the_caller_commits(store: Store) -> None:
    ev = Seq("tx", "tx1", 1)(DeployQueued)
    with store.session() as s:
        assert apply_event(s, ev)
        s.rollback()
    assert project(store, ev)
