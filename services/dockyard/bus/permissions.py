"""Each bus identity's NATS permissions, generated from the declarations the code runs on.

A service's `Service` table (its subscriptions, the events and commands it publishes, whether it
writes deploy logs, the streams it follows) and its doors' `Grant`s become subject allow-lists;
nothing else is allowed. Pure: tables in, `Permissions` values out (bus/auth.py writes them into
the server's config).

Why each kind of subject:
- a durable consumer is reached only through subjects naming it (`CONSUMER.CREATE.<stream>.
  <durable>.<filter>`, `INFO`, `MSG.NEXT`, its acks), so no identity may touch another's;
- the legacy ephemeral create (`$JS.API.CONSUMER.CREATE.<stream>`) takes a consumer *name* in
  its body and then updates any consumer of that name (filter included), so it is granted only
  on streams where no durable lives: readers follow events on FEED, a mirror of the events;
- KV reads are direct gets with the key in the subject (buckets are made with allow_direct), so a
  key prefix in a grant is enforced; a bucket whose keys are restricted gets no consumers, which
  would read every key;
- a service writing deploy logs may get a message of the LOGS stream (the last line of a log
  carries the byte count a deploy log continues from); the request's body names the subject,
  so the grant reaches any deploy log's lines (already redacted), and nothing else of LOGS;
- replies come to a per-identity inbox prefix, so nobody can subscribe to another's replies;
- stream, bucket and store creation, update and deletion belong to `admin` alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.bus.topology import STREAM_FEED
from dockyard.contract import subjects
from dockyard.state.door import Grant
from dockyard.state.registry import grants_of

if TYPE_CHECKING:  # the declarations come in as values; bus.service imports the settings
    from dockyard.bus.service import Service

API = "$JS.API"
ADMIN = "admin"
CLI = "cli"
READER = "reader"


@dataclass(frozen=True)
class Permissions:
    """What one identity may publish and subscribe to (allow-lists; all else is denied)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def as_config(self) -> dict[str, Any]:
        """The `permissions` map of a user in nats-server's `authorization` block."""
        return {"publish": {"allow": list(self.publish)},
                "subscribe": {"allow": list(self.subscribe)}}

    def may_publish(self, subject: str) -> bool:
        """Whether a concrete subject is allowed for publishing."""
        return any(matches(pattern, subject) for pattern in self.publish)

    def may_subscribe(self, subject: str) -> bool:
        """Whether a subscription to subject (possibly a wildcard) stays inside the allow-list."""
        return any(covers(pattern, subject) for pattern in self.subscribe)


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` one or more trailing tokens."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def covers(pattern: str, subject: str) -> bool:
    """Whether every subject a (wildcard) subject matches is matched by pattern."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or have[i] == ">":
            return False
        if token != "*" and (token != have[i]):
            return False
    return len(want) == len(have)


def inbox_prefix(identity: str) -> str:
    """The reply inbox prefix of one identity: its connections get replies only under it."""
    return f"_INBOX.{identity}"


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def durable_consumer(stream: str, durable: str, filter_subject: str) -> tuple[str, ...]:
    """Using one's own durable pull consumer: create (named, filtered), info, fetch, ack."""
    return (
        f"{API}.CONSUMER.CREATE.{stream}.{durable}.{filter_subject}",
        f"{API}.CONSUMER.INFO.{stream}.{durable}",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    )


def ephemeral_consumers(stream: str) -> tuple[str, ...]:
    """Ordered (ephemeral) consumers on a stream where no durable lives: watch, history, read."""
    return (
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.CREATE.{stream}.>",
        f"{API}.CONSUMER.INFO.{stream}.*",
        f"{API}.CONSUMER.DELETE.{stream}.*",
        f"$JS.FC.{stream}.>",
    )


def _keys(grant: Grant, service: str) -> str:
    """A grant's key pattern as subject tokens: `>`, `*`, or `<prefix>.>`."""
    keys = grant.keys.replace("{service}", service)
    return keys if keys in (">", "*") else f"{keys}.>"


def last_log_line() -> str:
    """Reading the last message of a subject of the LOGS stream (a deploy log's byte count)."""
    return f"{API}.STREAM.MSG.GET.{subjects.STREAM_LOGS}"


def grant_subjects(grant: Grant, service: str) -> tuple[str, ...]:
    """The publish subjects one door grant needs, as `service`."""
    if grant.kind == "kv":
        stream, keys = f"KV_{grant.bucket}", _keys(grant, service)
        if grant.access == "forget":
            return (f"{API}.STREAM.INFO.{stream}", f"$KV.{grant.bucket}.{keys}")
        found = [f"{API}.STREAM.INFO.{stream}",
                 f"{API}.DIRECT.GET.{stream}.$KV.{grant.bucket}.{keys}"]
        if keys == ">":
            found += ephemeral_consumers(stream)  # history and watches
        if grant.access == "write":
            found.append(f"$KV.{grant.bucket}.{keys}")
        return tuple(found)
    stream = f"OBJ_{grant.bucket}"
    # Reading an object: its meta by last subject, its chunks through an ordered consumer (whose
    # stream nats-py looks up by subject).
    found = [f"{API}.STREAM.NAMES", f"{API}.STREAM.MSG.GET.{stream}", *ephemeral_consumers(stream)]
    if grant.access == "write":
        # Replacing an object purges its old chunks.
        found += [f"$O.{grant.bucket}.>", f"{API}.STREAM.PURGE.{stream}"]
    return tuple(found)


def grants_subjects(grants: Iterable[Grant], service: str) -> tuple[str, ...]:
    """The publish subjects of every grant."""
    return _unique(s for grant in grants for s in grant_subjects(grant, service))


def service_permissions(service: Service[Any]) -> Permissions:
    """A service's permissions, from its declaration alone."""
    name = service.name
    publish: list[str] = []
    for on in service.subscribes:
        publish += durable_consumer(on.stream, on.durable(name), on.subject)
    publish += (subjects.events_of(event.topic, event.outcome) for event in service.publishes)
    # getattr: only commands have `subject` (a ClassVar); Message's type has none.
    publish += (str(getattr(command, "subject")) for command in service.commands)  # noqa: B009
    for stream in service.reads:
        publish += ephemeral_consumers(stream)
    if service.logs:
        publish.append(subjects.log("*"))
        # A deploy log counts its bytes from its last line's header (bus/logs.py: get_last_msg
        # on the LOGS stream, a request whose body names the subject).
        publish.append(last_log_line())
    if service.app_logs:
        publish.append(subjects.APPLOG_ALL)
        # Each instance's shipping goes on from its last line's cursor (scheduler/applogs.py).
        publish.append(f"{API}.STREAM.MSG.GET.{subjects.STREAM_APPLOGS}")
    publish.append(subjects.dlq(name))
    publish += grants_subjects(grants_of(service.doors), name)
    return Permissions(publish=_unique(publish), subscribe=(f"{inbox_prefix(name)}.>",))


def client_permissions(doors: type[Any], commands: Sequence[str]) -> Permissions:
    """The CLI's: its doors, the commands it sends, and reading events, logs (deploy logs and the
    instances' output) and dead letters."""
    publish = [*commands, *grants_subjects(grants_of(doors), CLI)]
    for stream in (STREAM_FEED, subjects.STREAM_LOGS, subjects.STREAM_APPLOGS,
                   subjects.STREAM_DLQ):
        publish += ephemeral_consumers(stream)
    return Permissions(publish=_unique(publish), subscribe=(f"{inbox_prefix(CLI)}.>",))


def reader_permissions() -> Permissions:
    """Outside subscribers: events and deploy logs through their own ordered consumers."""
    publish = [p for stream in (STREAM_FEED, subjects.STREAM_LOGS)
               for p in ephemeral_consumers(stream)]
    return Permissions(publish=_unique(publish), subscribe=(f"{inbox_prefix(READER)}.>",))


def admin_permissions(streams: Sequence[str]) -> Permissions:
    """Provisioning: create, update and inspect the given streams and their consumers; no data."""
    publish = [f"{API}.INFO", f"{API}.STREAM.NAMES", f"{API}.STREAM.LIST"]
    for stream in streams:
        publish += (f"{API}.STREAM.CREATE.{stream}", f"{API}.STREAM.UPDATE.{stream}",
                    f"{API}.STREAM.INFO.{stream}", f"{API}.CONSUMER.NAMES.{stream}",
                    f"{API}.CONSUMER.LIST.{stream}", f"{API}.CONSUMER.INFO.{stream}.*")
    return Permissions(publish=_unique(publish), subscribe=(f"{inbox_prefix(ADMIN)}.>",))


def every_identity(services: Sequence[Service[Any]], client_doors: type[Any],
                   commands: Sequence[str], streams: Sequence[str]) -> dict[str, Permissions]:
    """Every identity's permissions: one per service, `cli`, `reader` and `admin`."""
    found = {service.name: service_permissions(service) for service in services}
    found[CLI] = client_permissions(client_doors, commands)
    found[READER] = reader_permissions()
    found[ADMIN] = admin_permissions(streams)
    return found


def as_mapping(permissions: Mapping[str, Permissions]) -> dict[str, dict[str, Any]]:
    """Permissions as plain dicts (for JSON, docs and tests)."""
    return {name: p.as_config() for name, p in permissions.items()}
