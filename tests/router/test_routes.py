"""The route-table decisions, as plain values."""

from __future__ import annotations

from datetime import UTC, datetime

from dockyard.bus.emit import Emitter
from dockyard.contract.events import (
    DeployFailed,
    FailureData,
    InstanceRef,
    SwitchData,
    TrafficFailed,
    TrafficSwitched,
    event_id,
)
from dockyard.contract.state import LiveRelease, Maintenance, Pending
from dockyard.router.app import SERVICE
from dockyard.router.routes import (
    AppRoute,
    Ignore,
    Records,
    Republish,
    Switch,
    decide_failed,
    decide_queued,
    decide_switch,
    previous_release_from_history,
    switch_failed,
    switched,
    table_from_state,
    upstreams,
    with_live,
    with_pending,
    without_pending,
)
from dockyard.router.verify import Verified
from dockyard.state.routes import LIVE, PENDING, RouteGone
from tests.events import make

from .conftest import deploy_queued, hook_succeeded, spec

WEB = InstanceRef(id="w1", process="web", release=2, port=5001)
WEB2 = InstanceRef(id="w2", process="web", release=2, host="10.0.0.2", port=5000)
WORKER = InstanceRef(id="k1", process="worker", release=2, port=6000)
NO_PORT = InstanceRef(id="w3", process="web", release=2)


def live(app: str, deployment_id: str, release: int, *instances: InstanceRef) -> LiveRelease:
    return LiveRelease(app=app, release=release, deployment_id=deployment_id, spec=spec(),
                       instances=list(instances), switched_at=datetime(2024, 1, 1, tzinfo=UTC))


def failed(app: str, deployment_id: str) -> DeployFailed:
    return make(DeployFailed, app=app, deployment_id=deployment_id, status="build-error",
                reason="boom")


# The router's emitter stamps its facts (no broker needed to stamp).
ROUTER = Emitter(None, SERVICE.name, SERVICE.publishes)  # type: ignore[arg-type]


def test_upstreams_are_web_instances_with_a_port_sorted() -> None:
    assert upstreams([WORKER, WEB2, NO_PORT, WEB]) == ("10.0.0.2:5000", "127.0.0.1:5001")


def test_table_from_state_live_wins_over_pending() -> None:
    table = table_from_state([live("shop", "d1", 1, WEB)],
                             [Pending(app="shop", deployment_id="d2"),
                              Pending(app="blog", deployment_id="d3")])
    assert table == {"shop": AppRoute(app="shop", upstreams=("127.0.0.1:5001",)),
                     "blog": AppRoute(app="blog", pending=True)}


def test_table_from_state_leaves_out_records_of_invalid_app_names() -> None:
    table = table_from_state([live("../../x", "d1", 1, WEB), live("shop", "d2", 1, WEB)],
                             [Pending(app="a/b", deployment_id="d3")])
    assert list(table) == ["shop"]


def test_with_live_replaces_only_that_app() -> None:
    table = {"blog": AppRoute(app="blog", pending=True),
             "shop": AppRoute(app="shop", upstreams=("127.0.0.1:1",))}
    assert with_live(table, live("shop", "d2", 2, WEB2)) == {
        "blog": AppRoute(app="blog", pending=True),
        "shop": AppRoute(app="shop", upstreams=("10.0.0.2:5000",)),
    }


def test_with_pending_never_hides_a_live_app() -> None:
    table = {"shop": AppRoute(app="shop", upstreams=("127.0.0.1:1",))}
    assert with_pending(table, "shop") == table
    assert with_pending(table, "blog")["blog"] == AppRoute(app="blog", pending=True)


def test_without_pending_keeps_live_apps() -> None:
    table = {"shop": AppRoute(app="shop", upstreams=("127.0.0.1:1",)),
             "blog": AppRoute(app="blog", pending=True)}
    assert without_pending(table, "blog") == {"shop": table["shop"]}
    assert without_pending(table, "shop") == table


def on(app: str, message: str | None = None) -> Maintenance:
    return Maintenance(app=app, enabled=True, since=datetime(2024, 1, 1, tzinfo=UTC),
                       message=message)


def test_table_from_state_marks_apps_in_maintenance_whatever_their_route() -> None:
    table = table_from_state([live("shop", "d1", 1, WEB)],
                             [Pending(app="blog", deployment_id="d3")],
                             [on("shop", "back at 10:00"), on("blog"), on("idle"),
                              Maintenance(app="cron", enabled=False), on("../x")])
    assert table == {
        # The upstreams stay known: turning maintenance off routes to them again.
        "shop": AppRoute(app="shop", upstreams=("127.0.0.1:5001",), maintenance=True,
                         message="back at 10:00"),
        "blog": AppRoute(app="blog", pending=True, maintenance=True),
        "idle": AppRoute(app="idle", maintenance=True),
    }


def test_a_recorded_message_the_writers_should_have_refused_is_not_shown() -> None:
    table = table_from_state([], [], [on("shop", "{file./etc/passwd}")])
    assert table["shop"] == AppRoute(app="shop", maintenance=True)


def test_a_switch_during_maintenance_keeps_the_maintenance_page() -> None:
    table = {"shop": AppRoute(app="shop", upstreams=("127.0.0.1:1",), maintenance=True,
                              message="m")}
    assert with_live(table, live("shop", "d2", 2, WEB2))["shop"] == AppRoute(
        app="shop", upstreams=("10.0.0.2:5000",), maintenance=True, message="m")


def test_pending_markers_come_and_go_under_maintenance() -> None:
    table = {"blog": AppRoute(app="blog", maintenance=True)}
    marked = with_pending(table, "blog")
    assert marked["blog"] == AppRoute(app="blog", pending=True, maintenance=True)
    assert without_pending(marked, "blog") == table


def verified(deployment_id: str, release: int, *instances: InstanceRef) -> Verified:
    return Verified(app="shop", deployment_id=deployment_id, release=release, spec=spec(),
                    instances=list(instances))


def test_first_switch() -> None:
    decision = decide_switch(verified("d1", 1, WEB), None)
    assert isinstance(decision, Switch)
    assert decision.previous_release is None
    assert (decision.live.app, decision.live.release, decision.live.deployment_id,
            decision.live.instances) == ("shop", 1, "d1", [WEB])


def test_next_switch_names_the_previous_release() -> None:
    decision = decide_switch(verified("d2", 2, WEB2), live("shop", "d1", 1, WEB))
    assert isinstance(decision, Switch)
    assert decision.previous_release == 1


def test_redelivery_only_republishes() -> None:
    current = live("shop", "d1", 1, WEB)
    assert decide_switch(verified("d1", 1, WEB), current) == Republish(live=current)


def test_late_older_release_is_ignored() -> None:
    decision = decide_switch(verified("d1", 1, WEB), live("shop", "d2", 2, WEB2))
    assert isinstance(decision, Ignore)


def test_queued_marks_pending_only_without_a_live_release() -> None:
    event = deploy_queued("shop", "d1")
    assert decide_queued(event, None, None) == Pending(app="shop", deployment_id="d1")
    assert decide_queued(event, live("shop", "d0", 1, WEB), None) is None
    assert decide_queued(event, None, Pending(app="shop", deployment_id="d1")) is None
    assert decide_queued(event, None, Pending(app="shop", deployment_id="d0")) == Pending(
        app="shop", deployment_id="d1")


def test_failed_clears_pending_only_for_that_deployment() -> None:
    marker = Pending(app="shop", deployment_id="d1")
    assert decide_failed(failed("shop", "d1"), None, marker) is True
    assert decide_failed(failed("shop", "d2"), None, marker) is False
    assert decide_failed(failed("shop", "d1"), live("shop", "d0", 1, WEB), marker) is False
    assert decide_failed(failed("shop", "d1"), None, None) is False


def test_switched_event_is_deterministic() -> None:
    record = live("shop", "d2", 2, WEB2)
    assert switched(record, 1) == switched(record, 1)
    assert switched(record, 1).data == SwitchData(spec=spec(), instances=[WEB2],
                                                  previous_release=1)
    trigger = hook_succeeded("shop", "d2", 2, [WEB2])
    first = ROUTER.after(trigger, switched(record, 1))
    again = ROUTER.after(trigger, switched(record, 1))
    assert isinstance(first, TrafficSwitched)
    assert first.id == again.id == event_id("d2", "dockyard.traffic.switched")
    assert first.data == again.data
    assert (first.source, first.app, first.release, first.data.previous_release,
            first.data.instances) == ("dockyard/router", "shop", 2, 1, [WEB2])
    assert first.nats_subject() == "dockyard.evt.shop.traffic.switched"


def test_switch_failed_event() -> None:
    spec = hook_succeeded("shop", "d2", 2, [WEB]).data.spec
    fact = switch_failed("caddy down", spec)
    # The spec goes with it: the new instances are removed by it, on-failure runs from it.
    assert fact.data == FailureData(status="switch-error", reason="caddy down", spec=spec)
    event = ROUTER.after(hook_succeeded("shop", "d2", 2, [WEB]), fact)
    assert isinstance(event, TrafficFailed)
    assert (event.data.status, event.data.reason, event.deployment_id, event.source) == (
        "switch-error", "caddy down", "d2", "dockyard/router")
    assert event.id == event_id("d2", "dockyard.traffic.failed")


def test_previous_release_from_history() -> None:
    history = [live("shop", "d1", 1), live("shop", "d2", 2), live("shop", "d3", 3)]
    assert previous_release_from_history(history, "d2") == 1
    assert previous_release_from_history(history, "d1") is None
    assert previous_release_from_history(history, "d3") == 2


def test_records_take_each_update_and_say_whether_it_changed_anything() -> None:
    records = Records()
    shop = live("shop", "d1", 2, WEB)
    assert records.apply(shop) and not records.apply(shop)  # our own write, come back
    assert records.apply(Pending(app="blog", deployment_id="d2"))
    assert records.table() == {"shop": AppRoute(app="shop", upstreams=("127.0.0.1:5001",)),
                               "blog": AppRoute(app="blog", pending=True)}
    assert records.apply(Maintenance(app="shop", enabled=True, message="back soon"))
    assert records.table()["shop"].maintenance
    assert records.apply(Maintenance(app="shop"))  # turned off: forgotten
    assert records.maintenance == {} and not records.apply(Maintenance(app="shop"))
    assert records.apply(RouteGone(app="blog", kind=PENDING))
    assert not records.apply(RouteGone(app="blog", kind=PENDING))
    assert records.apply(RouteGone(app="shop", kind=LIVE))
    assert records.table() == {}


def test_records_take_one_apps_fresh_reads_whole() -> None:
    records = Records(live={"shop": live("shop", "d1", 1, WEB)},
                      pending={"shop": Pending(app="shop", deployment_id="d1")})
    assert not records.app("shop", live("shop", "d1", 1, WEB),
                           Pending(app="shop", deployment_id="d1"), Maintenance(app="shop"))
    assert records.app("shop", live("shop", "d2", 2, WEB2), None,
                       Maintenance(app="shop", enabled=True))
    assert records.table() == {"shop": AppRoute(app="shop", upstreams=("10.0.0.2:5000",),
                                                maintenance=True)}
