"""Naming a deployment: a whole id, a unique id prefix, or a release number (`v7`) of an app.

Resolved one way, against the deployments the bus's kept events name (`deploy.queued` gives every
deployment's id and app, `deploy.succeeded`/`deploy.failed` how it ended, `build.started` its
release number): see DockyardClient.known_deployments. Pure: references and records in, one
record or an error out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dockyard.cli.errors import (
    AmbiguousDeployment,
    NoSuchDeployment,
    PrefixTooShort,
    ReleaseNeedsApp,
)

if TYPE_CHECKING:
    from dockyard.client import KnownDeployment

MIN_PREFIX = 4
_RELEASE = re.compile(r"[vV]([0-9]+)")


def release_number(ref: str) -> int | None:
    """The release number a reference like `v7` names, else None."""
    found = _RELEASE.fullmatch(ref.strip())
    return int(found.group(1)) if found else None


def resolve(ref: str, known: Iterable[KnownDeployment],
            app: str | None = None) -> KnownDeployment:
    """The one deployment `ref` names among `known` (of `app` only, when given)."""
    candidates = [k for k in known if app is None or k.app == app]
    number = release_number(ref)
    if number is not None:
        if app is None:
            raise ReleaseNeedsApp(ref)
        matches = [k for k in candidates if k.release == number]
        if not matches:
            raise NoSuchDeployment(ref, app)
        return matches[-1]
    wanted = ref.strip().lower()
    exact = [k for k in candidates if k.id == wanted]
    if exact:
        return exact[0]
    if len(wanted) < MIN_PREFIX:
        raise PrefixTooShort(ref, MIN_PREFIX)
    matches = [k for k in candidates if k.id.startswith(wanted)]
    if not matches:
        raise NoSuchDeployment(ref, app)
    if len(matches) > 1:
        raise AmbiguousDeployment(ref, [k.id for k in matches])
    return matches[0]


def may_name_app(ref: str, app_option: str | None) -> bool:
    """Whether `dockyard logs REF` may mean an app's running instances (if an app of that name
    exists): not with --app, not a release number (`v7`), not a whole deployment id (32 hex
    digits). Otherwise REF names a deployment."""
    from dockyard.contract.names import InvalidName, check_app

    if app_option is not None or release_number(ref) is not None:
        return False
    if re.fullmatch(r"[0-9a-f]{32}", ref.strip().lower()):
        return False
    try:
        check_app(ref)
    except InvalidName:
        return False
    return True
