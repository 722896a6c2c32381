"""The names and ids that cross every edge, each checked by one function.

App names are DNS labels (an app answers at `<app>.<domain>`, and names subjects, keys and
files); deployment ids are 32 lowercase hex digits (a uuid4, as `new_id` makes them).
"""

from __future__ import annotations

import re

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_LABEL_CHAR = re.compile(r"[a-z0-9-]")
_DEPLOYMENT_ID = re.compile(r"[0-9a-f]{32}")
MAX_APP_NAME = 63


class InvalidName(ValueError):
    """A name or id that is not in its one accepted form."""

    def __init__(self, what: str, value: str, problem: str) -> None:
        self.what = what
        self.value = value
        self.problem = problem
        super().__init__(f"invalid {what} {value!r}: {problem}")


class InvalidAppName(InvalidName):
    """An app name that is not a DNS label."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__("app name", name, problem)
        self.name = name


class InvalidDeploymentId(InvalidName):
    """A deployment id that is not 32 lowercase hex digits."""

    def __init__(self, value: str, problem: str) -> None:
        super().__init__("deployment id", value, problem)


def check_app(name: str) -> str:
    """The name itself if it is a DNS label (lowercase letters, digits, hyphens, 1-63 chars)."""
    if not name:
        raise InvalidAppName(name, "must not be empty")
    if len(name) > MAX_APP_NAME:
        raise InvalidAppName(name, f"is {len(name)} characters long (at most {MAX_APP_NAME})")
    if name != name.lower() and _LABEL.fullmatch(name.lower()):
        raise InvalidAppName(name, f"must be lowercase (try {name.lower()!r})")
    if name.startswith("-") or name.endswith("-"):
        raise InvalidAppName(name, "must not start or end with a hyphen")
    if not _LABEL.fullmatch(name):
        bad = sorted({c for c in name if not _LABEL_CHAR.fullmatch(c)})
        shown = " ".join(repr(c) for c in bad)
        raise InvalidAppName(name, f"may hold only a-z, 0-9 and '-' (found {shown})")
    return name


def check_deployment_id(value: str) -> str:
    """The id itself if it is 32 lowercase hex digits."""
    if not _DEPLOYMENT_ID.fullmatch(value):
        raise InvalidDeploymentId(value, "must be 32 lowercase hex digits (a uuid4 without dashes)")
    return value
