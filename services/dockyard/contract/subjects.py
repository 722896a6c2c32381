"""Every NATS subject, stream, consumer, bucket and store name Dockyard uses;
nowhere else as literals."""

from __future__ import annotations

PREFIX = "dockyard"

# Commands (requests to do something).
CMD_DEPLOY = f"{PREFIX}.cmd.deploy"
CMD_CANCEL = f"{PREFIX}.cmd.cancel"
CMD_RUN = f"{PREFIX}.cmd.run"
CMD_SCALE = f"{PREFIX}.cmd.scale"
CMD_DESTROY = f"{PREFIX}.cmd.destroy"
CMD_ALL = f"{PREFIX}.cmd.>"

# Events (facts): dockyard.evt.<app>.<phase>.<outcome>.
EVT_ALL = f"{PREFIX}.evt.>"

# Live deploy output: dockyard.log.<deployment_id> (a one-off run's: dockyard.log.<run_id>).
LOG_ALL = f"{PREFIX}.log.>"

# The running instances' own output: dockyard.applog.<app>.<process>.<instance>.
APPLOG_ALL = f"{PREFIX}.applog.>"

# Dead letters: dockyard.dlq.<service>.
DLQ_ALL = f"{PREFIX}.dlq.>"

# JetStream streams.
STREAM_EVENTS = "DOCKYARD_EVENTS"
STREAM_COMMANDS = "DOCKYARD_COMMANDS"
STREAM_LOGS = "DOCKYARD_LOGS"
STREAM_DLQ = "DOCKYARD_DLQ"
STREAM_APPLOGS = "DOCKYARD_APPLOGS"

# KV buckets (one per piece of state, so a permission names a bucket) and object stores.
KV_LOCKS = "dockyard_locks"
KV_CANCEL = "dockyard_cancel"
KV_STEPS = "dockyard_steps"
KV_CONFIG = "dockyard_config"
KV_HOOKS = "dockyard_hooks"
KV_ROUTES = "dockyard_routes"
KV_QUEUE = "dockyard_queue"
KV_RELEASES = "dockyard_releases"
KV_SINKS = "dockyard_sinks"
KV_DELIVERIES = "dockyard_deliveries"
KV_PLACEMENTS = "dockyard_placements"
KV_MAINTENANCE = "dockyard_maintenance"
KV_INFLIGHT = "dockyard_inflight"
KV_FORMATION = "dockyard_formation"
KV_ROLLOUTS = "dockyard_rollouts"
OBJ_SOURCES = "dockyard_sources"
OBJ_BUILDS = "dockyard_builds"


def event(app: str, topic: str, outcome: str) -> str:
    """Subject of one event."""
    return f"{PREFIX}.evt.{app}.{topic}.{outcome}"


def events_of(topic: str, outcome: str) -> str:
    """Wildcard subject of one event type across every app."""
    return f"{PREFIX}.evt.*.{topic}.{outcome}"


def app_events(app: str) -> str:
    """Wildcard subject of every event of one app."""
    return f"{PREFIX}.evt.{app}.>"


def log(deployment_id: str) -> str:
    """Subject of one deployment's live output."""
    return f"{PREFIX}.log.{deployment_id}"


def applog(app: str, process: str, instance: str) -> str:
    """Subject of one running instance's output."""
    return f"{PREFIX}.applog.{app}.{process}.{instance}"


def applogs_of(app: str, process: str | None = None) -> str:
    """Wildcard subject of an app's instances' output (of one process type, if given)."""
    return f"{PREFIX}.applog.{app}.{process or '*'}.*"


def dlq(service: str) -> str:
    """Dead-letter subject of one service."""
    return f"{PREFIX}.dlq.{service}"
