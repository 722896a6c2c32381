"""The phases of a deploy, spelt one way in code, subjects, logs, env vars and docs."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """A phase of the pipeline; hook phases run commands from the plan."""

    BUILD = "build"
    PREDEPLOY = "predeploy"
    RELEASE = "release"
    START = "start"
    POSTDEPLOY = "postdeploy"
    SWITCH = "switch"
    AFTER_SWITCH = "after_switch"
    RETIRE = "retire"
    ON_FAILURE = "on_failure"


# The phases whose commands come from the plan, in the order a deploy reaches them.
HOOK_PHASES: tuple[Phase, ...] = (
    Phase.PREDEPLOY,
    Phase.RELEASE,
    Phase.POSTDEPLOY,
    Phase.AFTER_SWITCH,
    Phase.ON_FAILURE,
)


def hook_phase(name: str) -> Phase:
    """The hook phase of that name, or ValueError listing the known ones."""
    try:
        phase = Phase(name)
    except ValueError:
        phase = None
    if phase not in HOOK_PHASES:
        raise ValueError(f"unknown phase `{name}` (known phases: "
                         f"{', '.join(p.value for p in HOOK_PHASES)})")
    assert phase is not None
    return phase
