"""What the records must say before a scale reroutes the live release, as plain values."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.contract.events import Fact, InstanceRef, ScaleData, ScalePlaced, stamp
from dockyard.contract.state import LiveRelease
from dockyard.router.errors import BadEnvelope, ForeignHost, PlacementMismatch
from dockyard.router.verify import verified_scale
from dockyard.state.placements import Placement

from .conftest import deployment, spec

D1, OP = deployment(), deployment()
WEB = InstanceRef(id="shop-2-web-1", process="web", release=2, port=5001)
WEB2 = InstanceRef(id="shop-2-web-2", process="web", release=2, port=5002)
SUBJECT = "dockyard.evt.shop.scale.placed"
LIVE = LiveRelease(app="shop", release=2, deployment_id=D1, spec=spec(), instances=[WEB])


def placed_event(*instances: InstanceRef, release: int = 2) -> ScalePlaced:
    event = stamp(Fact.of(ScalePlaced, ScaleData(spec=spec(), instances=list(instances))),
                  source="dockyard/scheduler", app="shop", deployment_id=OP, release=release)
    assert isinstance(event, ScalePlaced)
    return event


def placement(*instances: InstanceRef, operation: str | None = OP) -> Placement:
    return Placement(app="shop", release=2, deployment_id=D1, instances=list(instances),
                     operation_id=operation)


def test_a_placed_scale_routes_the_live_release_to_the_recorded_instances() -> None:
    routed = verified_scale(placed_event(WEB2, WEB), SUBJECT, LIVE, placement(WEB, WEB2))
    assert routed == msgspec.structs.replace(LIVE, instances=[WEB, WEB2])


@pytest.mark.parametrize(("live", "record", "problem"), [
    (None, placement(WEB, WEB2), "not the live release"),
    (msgspec.structs.replace(LIVE, release=3), placement(WEB, WEB2), "not the live release"),
    (LIVE, None, "recorded no instances"),
    (LIVE, placement(WEB, WEB2, operation=None), "recorded no instances"),
    (LIVE, placement(WEB, WEB2, operation=deployment()), "recorded no instances"),
    (LIVE, placement(WEB), "the scheduler placed"),
])
def test_anything_the_records_do_not_vouch_for_is_refused(
        live: LiveRelease | None, record: Placement | None, problem: str) -> None:
    with pytest.raises(PlacementMismatch, match=problem):
        verified_scale(placed_event(WEB, WEB2), SUBJECT, live, record)


def test_a_foreign_host_or_another_apps_subject_is_refused() -> None:
    far = msgspec.structs.replace(WEB2, host="10.0.0.9")
    with pytest.raises(ForeignHost):
        verified_scale(placed_event(WEB, far), SUBJECT, LIVE, placement(WEB, far))
    with pytest.raises(BadEnvelope):
        verified_scale(placed_event(WEB), "dockyard.evt.blog.scale.placed", LIVE,
                       placement(WEB))
