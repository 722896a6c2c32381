"""What the records must say before a switch, tested as plain values."""

from __future__ import annotations

import msgspec
import pytest

from dockyard.contract.events import (
    DeployQueued,
    HookFailed,
    HookStarted,
    HookSucceeded,
    InstanceRef,
)
from dockyard.router.errors import (
    BadEnvelope,
    ForeignHost,
    NoVerdict,
    PlacementMismatch,
    Unverified,
)
from dockyard.router.verify import (
    Verified,
    checked_envelope,
    runtime_hosts,
    verified_switch,
    web_instances,
)
from dockyard.state.placements import Placement
from tests.events import make

from .conftest import deployment, hook_succeeded, spec

D1 = deployment()
WEB = InstanceRef(id="shop-2-web-1", process="web", release=2, port=5001)
WEB2 = InstanceRef(id="shop-2-web-2", process="web", release=2, port=5002)
WORKER = InstanceRef(id="shop-2-worker-1", process="worker", release=2)
ATTACKER = InstanceRef(id="shop-2-web-1", process="web", release=2, port=6666)
SUBJECT = "dockyard.evt.shop.hook.succeeded"


def genuine(*instances: InstanceRef) -> HookSucceeded:
    return hook_succeeded("shop", D1, 2, list(instances or (WEB, WORKER)))


def placed(*instances: InstanceRef, deployment_id: str = D1) -> Placement:
    return Placement(app="shop", release=2, deployment_id=deployment_id,
                     instances=list(instances or (WEB, WORKER)))


def refused(event: HookSucceeded, verdict: object, placement: Placement | None,
            subject: str = SUBJECT) -> Unverified:
    with pytest.raises(Unverified) as caught:
        verified_switch(event, subject, verdict, placement)  # type: ignore[arg-type]
    return caught.value


def test_a_genuine_event_is_verified_with_what_the_records_say() -> None:
    event = genuine()
    assert verified_switch(event, SUBJECT, event, placed()) == Verified(
        app="shop", deployment_id=D1, release=2, spec=spec(), instances=[WEB, WORKER])


def test_the_routed_instances_come_from_the_placement_in_any_order() -> None:
    event = genuine(WEB2, WEB)
    record = placed(WEB, WEB2)
    assert verified_switch(event, SUBJECT, event, record).instances == [WEB, WEB2]


def test_postdeploy_still_running_hook_started_renamed() -> None:
    started = make(HookStarted, app="shop", deployment_id=D1, release=2, spec=spec(),
                   instances=[WEB, WORKER])
    # The forgery: hook.started's bytes with its type renamed to hook.succeeded.
    raw = msgspec.json.encode(started).replace(b"dockyard.hook.started", b"dockyard.hook.succeeded")
    forged = msgspec.json.decode(raw, type=HookSucceeded)
    error = refused(forged, None, placed())
    assert isinstance(error, NoVerdict)
    assert "still running" in str(error) and D1 in str(error)


def test_postdeploy_failed() -> None:
    failure = make(HookFailed, app="shop", deployment_id=D1, release=2, status="hook-error",
                   reason="exit 1")
    error = refused(genuine(), failure, placed())
    assert isinstance(error, NoVerdict) and "dockyard.hook.failed" in str(error)


@pytest.mark.parametrize("change", [
    {"release": 3}, {"app": "blog"}, {"id": "forged-id"}, {"deployment_id": deployment()},
], ids=["release", "app", "id", "deployment"])
def test_a_verdict_of_another_event(change: dict[str, object]) -> None:
    fields: dict[str, object] = {"app": "shop", "deployment_id": D1, "release": 2}
    fields.update(change)
    other = make(HookSucceeded, spec=spec(), instances=[WEB, WORKER], **fields)  # type: ignore[arg-type]
    assert isinstance(refused(genuine(), other, placed()), NoVerdict)


def test_instances_of_the_attackers_choosing() -> None:
    # The verdict is genuine; the event copies it with another upstream.
    error = refused(genuine(ATTACKER, WORKER), genuine(), placed())
    assert isinstance(error, PlacementMismatch)
    assert "6666" in str(error) and "5001" in str(error)


def test_an_extra_instance() -> None:
    assert isinstance(refused(genuine(WEB, WEB2), genuine(WEB, WEB2), placed(WEB)),
                      PlacementMismatch)


def test_no_placement_recorded() -> None:
    error = refused(genuine(), genuine(), None)
    assert isinstance(error, PlacementMismatch) and "no instances" in str(error)


def test_a_placement_of_another_deployment() -> None:
    error = refused(genuine(), genuine(), placed(deployment_id=deployment()))
    assert isinstance(error, PlacementMismatch)


def test_a_spec_other_than_the_recorded_one() -> None:
    event = genuine()
    other_spec = msgspec.structs.replace(spec(), artifact="/tmp/evil")
    forged = msgspec.structs.replace(event, data=msgspec.structs.replace(event.data,
                                                                          spec=other_spec))
    assert isinstance(refused(forged, event, placed()), NoVerdict)


def test_an_instance_off_the_runtimes_host() -> None:
    remote = msgspec.structs.replace(WEB, host="10.0.0.5")
    event = genuine(remote)
    error = refused(event, event, placed(remote))
    assert isinstance(error, ForeignHost) and "10.0.0.5" in str(error)


def test_a_swarm_instance_is_routed_only_on_the_nodes_configured() -> None:
    on_node = msgspec.structs.replace(WEB, host="10.0.0.5")
    event = genuine(on_node)
    swarm = msgspec.structs.replace(event, data=msgspec.structs.replace(
        event.data, spec=msgspec.structs.replace(spec(), runtime="swarm")))
    hosts = runtime_hosts(("10.0.0.5", "10.0.0.6"))
    assert verified_switch(swarm, SUBJECT, swarm, placed(on_node), hosts).instances == [on_node]
    # The same node is no host of the docker runtime's, nor of a swarm on other nodes.
    assert isinstance(refused(event, event, placed(on_node)), ForeignHost)
    with pytest.raises(ForeignHost, match="10.0.0.5.*10.0.0.7"):
        verified_switch(swarm, SUBJECT, swarm, placed(on_node), runtime_hosts(("10.0.0.7",)))


def test_an_unknown_runtime_has_no_host_of_its_own() -> None:
    event = genuine()
    odd = msgspec.structs.replace(event, data=msgspec.structs.replace(
        event.data, spec=msgspec.structs.replace(spec(), runtime="elsewhere")))
    assert isinstance(refused(odd, odd, placed()), ForeignHost)


def test_an_impossible_port() -> None:
    bad = msgspec.structs.replace(WEB, port=70000)
    event = genuine(bad)
    assert isinstance(refused(event, event, placed(bad)), ForeignHost)


def test_subject_of_another_app() -> None:
    event = genuine()
    error = refused(event, event, placed(), subject="dockyard.evt.blog.hook.succeeded")
    assert isinstance(error, BadEnvelope) and "dockyard.evt.blog.hook.succeeded" in str(error)


@pytest.mark.parametrize("app", ["../../../../tmp/x", "Shop", "a.b", "", "x" * 64])
def test_an_app_name_that_is_no_dns_label(app: str) -> None:
    event = hook_succeeded(app, D1, 2, [WEB])
    error = refused(event, event, placed(), subject=f"dockyard.evt.{app}.hook.succeeded")
    assert isinstance(error, BadEnvelope) and "invalid app name" in str(error)


@pytest.mark.parametrize("deployment_id", ["d1", "hook-runner.>", D1.upper(), "*"])
def test_a_malformed_deployment_id(deployment_id: str) -> None:
    event = hook_succeeded("shop", deployment_id, 2, [WEB])
    error = refused(event, event, placed(deployment_id=deployment_id))
    assert isinstance(error, BadEnvelope) and "invalid deployment id" in str(error)


def test_envelope_of_other_events() -> None:
    queued = make(DeployQueued, app="shop", deployment_id=D1)
    assert checked_envelope(queued, "dockyard.evt.shop.deploy.queued") == "shop"
    with pytest.raises(BadEnvelope):
        checked_envelope(queued, "dockyard.evt.blog.deploy.queued")


def test_web_instances_are_sorted_and_only_web() -> None:
    assert web_instances([WORKER, WEB2, WEB]) == [WEB, WEB2]
