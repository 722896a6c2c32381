"""The SQL tables of the deployment records (sqlmodel); datetimes are aware UTC."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class App(SQLModel, table=True):
    """An app and what serves it now."""

    __tablename__ = "app"

    name: str = Field(primary_key=True)
    created_at: datetime
    live_release: int | None = None
    live_deployment_id: str | None = None


class Release(SQLModel, table=True):
    """One numbered release of an app: a build artifact plus a config version."""

    __tablename__ = "release"
    __table_args__ = (UniqueConstraint("app", "number", name="uq_release_app_number"),)

    id: int | None = Field(default=None, primary_key=True)
    app: str = Field(index=True)
    number: int
    deployment_id: str
    build_id: str = ""
    artifact: str = ""
    config_version: int = 0
    kind: str = "source"
    created_at: datetime


class Deployment(SQLModel, table=True):
    """One deploy of an app and where it stands; `finished_at` is set once it is terminal."""

    __tablename__ = "deployment"

    id: str = Field(primary_key=True)
    app: str = Field(index=True)
    release: int = 0
    status: str = "queued"
    kind: str = "source"
    reason: str = ""
    exit_code: int | None = None
    tail: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


class HookRun(SQLModel, table=True):
    """One hook command of a deployment: started, then finished with its exit code."""

    __tablename__ = "hook_run"
    __table_args__ = (
        UniqueConstraint("deployment_id", "phase", "index", name="uq_hook_run_step"),
    )

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str = Field(index=True)
    phase: str
    index: int
    total: int = 0
    label: str = ""
    command: str = ""
    exit_code: int | None = None
    duration: float | None = None
    tail: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Instance(SQLModel, table=True):
    """A process instance of a release: running, retired (drained) or removed (failed deploy)."""

    __tablename__ = "instance"

    id: str = Field(primary_key=True)
    app: str = Field(index=True)
    release: int
    deployment_id: str = ""
    process: str
    host: str = "127.0.0.1"
    port: int | None = None
    state: str = "running"


class Route(SQLModel, table=True):
    """Where the proxy sends an app's host: enough for the router to rebuild its config."""

    __tablename__ = "route"

    app: str = Field(primary_key=True)
    release: int
    deployment_id: str
    upstreams: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    switched_at: datetime


class Delivery(SQLModel, table=True):
    """One notification attempt or outcome for one event and one sink."""

    __tablename__ = "delivery"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(index=True)
    app: str = ""
    deployment_id: str = ""
    sink: str
    outcome: str
    attempt: int
    status_code: int | None = None
    error: str | None = None
    delivered: bool = False
    time: datetime


class AppliedEvent(SQLModel, table=True):
    """Every projected event: the event log, and the check that makes projection idempotent."""

    __tablename__ = "applied_event"

    id: str = Field(primary_key=True)
    type: str
    app: str
    deployment_id: str
    time: datetime
    payload: str = Field(sa_column=Column(Text, nullable=False))


# In creation order, for migration 1 (the shared SQLModel.metadata may hold other tables).
TABLES: list[Table] = [SQLModel.metadata.tables[str(m.__tablename__)] for m in (
    App, Release, Deployment, HookRun, Instance, Route, Delivery, AppliedEvent)]
