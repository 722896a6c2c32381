"""bus/permissions.py: declarations in, permission values out (no server here)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dockyard.bus.permissions import (
    Permissions,
    covers,
    grant_subjects,
    inbox_prefix,
    matches,
    reader_permissions,
    service_permissions,
)
from dockyard.bus.service import SERVICES, declaration
from dockyard.bus.topology import STREAM_FEED, stream_names
from dockyard.contract import subjects
from dockyard.notifier.delivery import state_key
from dockyard.stack import identities
from dockyard.state.deliveries import status_key
from dockyard.state.door import Grant

ALL = identities()
GATE = subjects.event("shop", "hook", "succeeded")


def test_one_identity_per_service_plus_cli_reader_and_admin() -> None:
    assert set(ALL) == {*SERVICES, "cli", "reader", "admin"}


def test_subject_matching_follows_nats_wildcards() -> None:
    assert matches("dockyard.evt.*.hook.succeeded", GATE)
    assert not matches("dockyard.evt.*.hook.succeeded", "dockyard.evt.shop.hook.started")
    assert matches("$KV.b.>", "$KV.b.x.y") and not matches("$KV.b.>", "$KV.b")
    assert covers("_INBOX.cli.>", "_INBOX.cli.abc.*")
    assert not covers("_INBOX.cli.>", "_INBOX.>") and not covers("_INBOX.cli.>", "_INBOX.*.x")


def test_only_the_hook_runner_publishes_hook_succeeded() -> None:
    allowed = {name for name, p in ALL.items() if p.may_publish(GATE)}
    assert allowed == {"hook-runner"}


def test_each_service_publishes_exactly_its_declared_events() -> None:
    for name in SERVICES:
        service = declaration(name)
        events = {p for p in service_permissions(service).publish if p.startswith("dockyard.evt.")}
        assert events == {subjects.events_of(e.topic, e.outcome) for e in service.publishes}, name


def test_deploy_logs_only_for_services_that_declare_them() -> None:
    for name in SERVICES:
        writes_logs = ALL[name].may_publish(subjects.log("d1"))
        assert writes_logs is declaration(name).logs, name
    assert not any(ALL[n].may_publish(subjects.log("d1")) for n in ("cli", "reader", "admin"))


def test_log_writers_may_read_the_last_line_of_a_log_and_no_one_else() -> None:
    """A deploy log counts its bytes from its last line (get_last_msg on LOGS); only the
    services writing logs need it, and nothing more of the stream."""
    last = f"$JS.API.STREAM.MSG.GET.{subjects.STREAM_LOGS}"
    for name in SERVICES:
        assert ALL[name].may_publish(last) is declaration(name).logs, name
        if declaration(name).logs:
            for other in (f"$JS.API.STREAM.MSG.DELETE.{subjects.STREAM_LOGS}",
                          f"$JS.API.STREAM.PURGE.{subjects.STREAM_LOGS}",
                          f"$JS.API.STREAM.MSG.GET.{subjects.STREAM_EVENTS}"):
                assert not ALL[name].may_publish(other), (name, other)
    assert not any(ALL[n].may_publish(last) for n in ("cli", "reader", "admin"))


def test_a_service_dead_letters_only_to_its_own_subject() -> None:
    for name in SERVICES:
        for other in SERVICES:
            assert ALL[name].may_publish(subjects.dlq(other)) is (name == other), (name, other)


def test_durable_consumers_are_reachable_only_by_their_service() -> None:
    """Create (with its filter), info, fetch and ack of `router-hook-succeeded`: the router's."""
    create = (f"$JS.API.CONSUMER.CREATE.{subjects.STREAM_EVENTS}.router-hook-succeeded."
              f"{subjects.events_of('hook', 'succeeded')}")
    for subject in (create,
                    f"$JS.API.CONSUMER.MSG.NEXT.{subjects.STREAM_EVENTS}.router-hook-succeeded",
                    f"$JS.ACK.{subjects.STREAM_EVENTS}.router-hook-succeeded.1.2.3.4.5"):
        assert {n for n, p in ALL.items() if p.may_publish(subject)} == {"router"}, subject
    # Even the router cannot point it at another filter.
    assert not ALL["router"].may_publish(create.replace("hook.succeeded", "hook.started"))


def test_no_one_may_create_consumers_by_name_where_durables_live() -> None:
    """The legacy ephemeral create updates any consumer its body names: never granted on the
    events and commands streams (readers use the FEED mirror)."""
    for stream in (subjects.STREAM_EVENTS, subjects.STREAM_COMMANDS):
        for name, p in ALL.items():
            assert not p.may_publish(f"$JS.API.CONSUMER.CREATE.{stream}"), (name, stream)
    assert ALL["reader"].may_publish(f"$JS.API.CONSUMER.CREATE.{STREAM_FEED}")


def test_only_admin_creates_updates_or_deletes_streams() -> None:
    for stream in stream_names():
        for verb in ("CREATE", "UPDATE", "DELETE"):
            subject = f"$JS.API.STREAM.{verb}.{stream}"
            allowed = {n for n, p in ALL.items() if p.may_publish(subject)}
            assert allowed == ({"admin"} if verb != "DELETE" else set()), subject
    assert not ALL["admin"].may_publish("$JS.API.STREAM.CREATE.KV_new_bucket")


def test_purging_is_only_what_object_store_writes_need() -> None:
    purgers = {(n, s) for n, p in ALL.items() for s in stream_names()
               if p.may_publish(f"$JS.API.STREAM.PURGE.{s}")}
    assert purgers == {("builder", f"OBJ_{subjects.OBJ_BUILDS}"),
                       ("builder", f"OBJ_{subjects.OBJ_SOURCES}"),  # a destroyed app's sources
                       ("cli", f"OBJ_{subjects.OBJ_SOURCES}"),
                       ("api", f"OBJ_{subjects.OBJ_SOURCES}")}  # the API's upload


@pytest.mark.parametrize(("bucket", "readers"), [
    (subjects.KV_CONFIG, {"hook-runner", "scheduler", "cli", "api"}),
    (subjects.KV_SINKS, {"notifier", "cli", "api"}),
])
def test_config_values_and_sinks_are_read_through_doors_alone(bucket: str,
                                                              readers: set[str]) -> None:
    subject = f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.shop"
    assert {n for n, p in ALL.items() if p.may_publish(subject)} == readers


def test_the_builder_forgets_config_and_sinks_without_reading_them() -> None:
    """Destroying an app, the builder purges its config and sinks: it may publish to the keys
    and see which exist (stream info), but never get a value or open a consumer on them."""
    builder = ALL["builder"]
    for bucket in (subjects.KV_CONFIG, subjects.KV_SINKS):
        assert builder.may_publish(f"$KV.{bucket}.shop")
        assert builder.may_publish(f"$JS.API.STREAM.INFO.KV_{bucket}")
        assert not builder.may_publish(f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.shop")
        assert not builder.may_publish(f"$JS.API.CONSUMER.CREATE.KV_{bucket}")
        assert not builder.may_publish(f"$JS.API.CONSUMER.CREATE.KV_{bucket}.x.$KV.{bucket}.>")


def test_key_prefix_grants_allow_direct_gets_under_the_prefix_and_no_consumers() -> None:
    """`keys="{service}"`: the service's own keys only, and no consumer (it would read all)."""
    own = grant_subjects(Grant("kv", subjects.KV_STEPS, "write", keys="{service}"), "builder")
    p = Permissions(publish=own, subscribe=())
    assert p.may_publish(f"$JS.API.DIRECT.GET.KV_{subjects.KV_STEPS}.$KV.{subjects.KV_STEPS}"
                         ".builder.d1.build")
    assert not p.may_publish(f"$JS.API.DIRECT.GET.KV_{subjects.KV_STEPS}.$KV.{subjects.KV_STEPS}"
                             ".hook-runner.d1.postdeploy")
    assert p.may_publish(f"$KV.{subjects.KV_STEPS}.builder.d1.build")
    assert not p.may_publish(f"$KV.{subjects.KV_STEPS}.router.d1.x")
    assert not any(s.startswith("$JS.API.CONSUMER.CREATE") for s in own)


def test_the_cli_reads_sink_statuses_and_no_delivery_records() -> None:
    """The STATUS_READER door: `notify ls` reads the `sink.*` keys of the deliveries bucket,
    never the per-event delivery records (the notifier's alone), and writes nothing there."""
    bucket = subjects.KV_DELIVERIES
    stream = f"KV_{bucket}"

    def get(key: str) -> str:
        return f"$JS.API.DIRECT.GET.{stream}.$KV.{bucket}.{key}"

    status, record = status_key("shop", "ops"), state_key("d1:deploy.queued", "ops")
    assert {n for n, p in ALL.items() if p.may_publish(get(status))} == {"notifier", "cli", "api"}
    assert {n for n, p in ALL.items() if p.may_publish(get(record))} == {"notifier"}
    for key in (status, record):
        assert {n for n, p in ALL.items() if p.may_publish(f"$KV.{bucket}.{key}")} == {"notifier"}
    # No consumer on the bucket for the CLI or the api: a watch or history would read every key.
    for reader in ("cli", "api"):
        assert not any(ALL[reader].may_publish(f"$JS.API.CONSUMER.CREATE.{stream}{tail}")
                       for tail in ("", ".x", ".x.$KV.>"))


def test_every_identity_gets_replies_under_its_own_inbox_only() -> None:
    for name, p in ALL.items():
        assert p.subscribe == (f"{inbox_prefix(name)}.>",), name
        assert not p.may_subscribe("_INBOX.>")
        assert p.may_subscribe(f"{inbox_prefix(name)}.abc.*")


def test_the_reader_publishes_nothing_of_dockyards_and_reads_no_state() -> None:
    reader = reader_permissions()
    assert all(s.startswith(("$JS.API.", "$JS.FC.")) for s in reader.publish)
    for stream in (STREAM_FEED, subjects.STREAM_LOGS):
        assert reader.may_publish(f"$JS.API.CONSUMER.CREATE.{stream}")
    assert not any("KV_" in s or "OBJ_" in s or "DIRECT" in s for s in reader.publish)


def test_the_permissions_are_the_servers_config_shape() -> None:
    config = ALL["api"].as_config()
    assert set(config) == {"publish", "subscribe"}
    assert config["subscribe"] == {"allow": ["_INBOX.api.>"]}
    assert "dockyard.dlq.api" in config["publish"]["allow"]


def test_each_service_publishes_exactly_its_declared_commands() -> None:
    """The api asks for deploys, cancels, scales and destroys; no other service sends a
    command (the cli's are its own identity's)."""
    for name in SERVICES:
        service = declaration(name)
        sent = {p for p in service_permissions(service).publish if p.startswith("dockyard.cmd.")}
        assert sent == {str(getattr(c, "subject")) for c in service.commands}, name  # noqa: B009
    assert {n for n, p in ALL.items() if p.may_publish(subjects.CMD_DEPLOY)} == {"cli", "api"}
    assert {n for n, p in ALL.items() if p.may_publish(subjects.CMD_CANCEL)} == {"cli", "api"}
    assert {n for n, p in ALL.items() if p.may_publish(subjects.CMD_DESTROY)} == {"cli", "api"}
    assert {n for n, p in ALL.items() if p.may_publish(subjects.CMD_SCALE)} == {"cli", "api"}
    assert {n for n, p in ALL.items() if p.may_publish(subjects.CMD_RUN)} == {"cli"}


def test_a_declared_command_is_granted_and_an_undeclared_one_is_not() -> None:
    """The grant follows the declaration: drop the api's commands and it may send none."""
    api = declaration("api")
    assert service_permissions(api).may_publish(subjects.CMD_DEPLOY)
    bare = replace(api, commands=())
    assert not any(s.startswith("dockyard.cmd.") for s in service_permissions(bare).publish)


def test_the_api_follows_the_feed_and_deploy_logs_and_nothing_where_durables_live() -> None:
    """Its SSE streams: ordered consumers on FEED and LOGS, as the CLI's; no writes to either."""
    api = ALL["api"]
    for stream in (STREAM_FEED, subjects.STREAM_LOGS):
        assert api.may_publish(f"$JS.API.CONSUMER.CREATE.{stream}")
    for stream in (subjects.STREAM_EVENTS, subjects.STREAM_COMMANDS, subjects.STREAM_DLQ):
        assert not api.may_publish(f"$JS.API.CONSUMER.CREATE.{stream}"), stream
    assert not api.may_publish(subjects.log("d1"))  # it reads logs, never writes them
    assert not api.may_publish(subjects.event("shop", "deploy", "succeeded"))
    readers = {n for n, p in ALL.items()
               if p.may_publish(f"$JS.API.CONSUMER.CREATE.{subjects.STREAM_LOGS}")}
    assert readers == {"cli", "reader", "api"}


def test_only_the_builder_writes_deploys_in_flight_and_the_others_read_verdicts_only() -> None:
    bucket = subjects.KV_INFLIGHT
    get = f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}"
    for name in ("scheduler", "hook-runner", "router"):
        p = ALL[name]
        assert p.may_publish(f"{get}.timedout.d1"), name
        assert not p.may_publish(f"{get}.app.shop"), name
        assert not p.may_publish(f"$KV.{bucket}.timedout.d1"), name
    builder = ALL["builder"]
    assert builder.may_publish(f"$KV.{bucket}.app.shop")
    assert builder.may_publish(f"$KV.{bucket}.timedout.d1")
    assert not any(ALL[n].may_publish(f"$KV.{bucket}.app.shop")
                   for n in ALL if n != "builder" and n != "admin")
