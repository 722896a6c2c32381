"""The router's errors: one base, a subclass per way a thing can go wrong, each with its fields."""

from __future__ import annotations

from pathlib import Path


class RouterError(Exception):
    """Base of every error of dockyard.router."""


class UnsafePath(RouterError):
    """A path the router was asked to write that is not inside its directory."""

    def __init__(self, root: Path, app: str, problem: str) -> None:
        self.root = root
        self.app = app
        self.problem = problem
        super().__init__(f"refusing to write routes of app {app!r} under {root}: {problem}")


class Unverified(RouterError):
    """An event the recorded state does not vouch for: refused, nothing changed."""

    def __init__(self, app: str, deployment_id: str, problem: str) -> None:
        self.app = app
        self.deployment_id = deployment_id
        self.problem = problem
        super().__init__(f"{problem} (app {app!r}, deployment {deployment_id!r})")


class BadEnvelope(Unverified):
    """The event's app or deployment id is malformed, or its NATS subject names another app."""


class NoVerdict(Unverified):
    """The hook-runner recorded no successful postdeploy outcome matching the event."""


class PlacementMismatch(Unverified):
    """The event's instances are not the ones the scheduler recorded for the release."""


class ForeignHost(Unverified):
    """An instance to route to is not on the runtime's own host."""


class EndedDeploy(Unverified):
    """The builder's watchdog ended the deployment: a late event must not switch to it."""
