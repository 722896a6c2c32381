"""App names: DNS labels, since an app answers at `<app>.<domain>` and names NATS keys."""

from __future__ import annotations

import re

from dockyard.plan.errors import InvalidAppName

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_LABEL_CHAR = re.compile(r"[a-z0-9-]")


def validate_app_name(name: str) -> str:
    """The name itself if it is a DNS label (lowercase letters, digits, hyphens, 1-63 chars)."""
    if not name:
        raise InvalidAppName(name, "must not be empty")
    if len(name) > 63:
        raise InvalidAppName(name, f"is {len(name)} characters long (at most 63)")
    if name != name.lower() and _LABEL.fullmatch(name.lower()):
        raise InvalidAppName(name, f"must be lowercase (try {name.lower()!r})")
    if name.startswith("-") or name.endswith("-"):
        raise InvalidAppName(name, "must not start or end with a hyphen")
    if not _LABEL.fullmatch(name):
        bad = sorted({c for c in name if not _LABEL_CHAR.fullmatch(c)})
        shown = " ".join(repr(c) for c in bad)
        raise InvalidAppName(name, f"may hold only a-z, 0-9 and '-' (found {shown})")
    return name
