"""The CLI's errors: each one a user can cause, printed as one line with its exit code."""

from __future__ import annotations

from collections.abc import Sequence

# Exit codes (README "Exit codes"): a deploy that ended failed is 1; a request that cannot be
# done as asked (usage, unknown names, nothing reachable, a timeout) is 2; Ctrl-C is 130; a
# reader that went away (a closed pipe) is 141, as a shell reports SIGPIPE.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class CliError(Exception):
    """A request the CLI cannot carry out as asked."""

    code = EXIT_USAGE


class UnknownApp(CliError):
    """An app that has no deployments, config, hooks, sinks or live release."""

    def __init__(self, app: str, *, can_create: bool = False) -> None:
        self.app = app
        hint = (", or add --create to set it up before its first deploy" if can_create
                else " (`dockyard deploy` creates an app)")
        super().__init__(f"no app named {app!r}: it has no deployments, config, hooks or "
                         f"notifications; check the name{hint}")


class DeploymentRefError(CliError):
    """A deployment reference that names no single deployment."""

    def __init__(self, ref: str, message: str) -> None:
        self.ref = ref
        super().__init__(message)


class NoSuchDeployment(DeploymentRefError):
    """No deployment matches the reference."""

    def __init__(self, ref: str, app: str | None = None) -> None:
        self.app = app
        where = f" of {app}" if app else ""
        super().__init__(ref, f"no deployment{where} matches {ref!r}")


class AmbiguousDeployment(DeploymentRefError):
    """More than one deployment matches an id prefix."""

    def __init__(self, ref: str, matches: Sequence[str]) -> None:
        self.matches = tuple(matches)
        shown = ", ".join(sorted(self.matches)[:5]) + (", …" if len(self.matches) > 5 else "")
        super().__init__(ref, f"{ref!r} matches {len(self.matches)} deployments ({shown}); "
                              "give more of the id")


class PrefixTooShort(DeploymentRefError):
    """An id prefix too short to name a deployment."""

    def __init__(self, ref: str, minimum: int) -> None:
        self.minimum = minimum
        super().__init__(ref, f"{ref!r} is too short: give at least {minimum} characters of a "
                              "deployment id, or a release number like v7 with --app")


class ReleaseNeedsApp(DeploymentRefError):
    """A release number (`v7`) given without the app it belongs to."""

    def __init__(self, ref: str) -> None:
        super().__init__(ref, f"{ref!r} is a release number: say whose with --app APP")


class DeploymentEnded(CliError):
    """A deployment that has ended cannot be cancelled."""

    def __init__(self, deployment_id: str, status: str) -> None:
        self.deployment_id = deployment_id
        self.status = status
        super().__init__(f"deployment {deployment_id} already ended {status}: nothing to cancel")


class ProcessNeedsApp(CliError):
    """`logs --process` with a deployment (only an app's logs have process types)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"--process is for an app's logs, and no app is named {ref!r}")
