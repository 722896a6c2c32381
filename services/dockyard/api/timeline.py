"""A deployment's timeline, phase by phase, from its events (pure: events in, steps out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.api.models import PhaseState, TimelineStep
from dockyard.contract.phase import HOOK_PHASES, Phase

ORDER: tuple[Phase, ...] = tuple(Phase)

# Events that move a whole phase: type -> (phase, state it reaches). `release.started` opens
# the step that runs predeploy's commands and then release's.
_MOVES: dict[str, tuple[Phase, PhaseState]] = {
    "dockyard.build.started": (Phase.BUILD, "running"),
    "dockyard.build.succeeded": (Phase.BUILD, "succeeded"),
    "dockyard.build.failed": (Phase.BUILD, "failed"),
    "dockyard.release.started": (Phase.PREDEPLOY, "running"),
    "dockyard.release.succeeded": (Phase.RELEASE, "succeeded"),
    "dockyard.release.failed": (Phase.RELEASE, "failed"),
    "dockyard.start.started": (Phase.START, "running"),
    "dockyard.start.succeeded": (Phase.START, "succeeded"),
    "dockyard.start.failed": (Phase.START, "failed"),
    "dockyard.hook.started": (Phase.POSTDEPLOY, "running"),
    "dockyard.hook.succeeded": (Phase.POSTDEPLOY, "succeeded"),
    "dockyard.hook.failed": (Phase.POSTDEPLOY, "failed"),
    "dockyard.traffic.switched": (Phase.SWITCH, "succeeded"),
    "dockyard.traffic.failed": (Phase.SWITCH, "failed"),
    "dockyard.after_switch.succeeded": (Phase.AFTER_SWITCH, "succeeded"),
    "dockyard.after_switch.failed": (Phase.AFTER_SWITCH, "failed"),
    "dockyard.retire.succeeded": (Phase.RETIRE, "succeeded"),
}
# A phase that succeeded starts the next one at once (no event of its own marks that start).
_STARTS_NEXT: dict[Phase, Phase] = {
    Phase.POSTDEPLOY: Phase.SWITCH,
    Phase.SWITCH: Phase.AFTER_SWITCH,
    Phase.AFTER_SWITCH: Phase.RETIRE,
}
_ENDS = ("dockyard.deploy.succeeded", "dockyard.deploy.failed", "dockyard.deploy.aborted")
_DONE: tuple[PhaseState, ...] = ("succeeded", "failed", "skipped")


@dataclass
class _Step:
    phase: Phase
    state: PhaseState = "pending"
    started_at: str | None = None
    finished_at: str | None = None
    commands: int = 0
    exit_code: int | None = None
    reason: str | None = None

    def start(self, at: str | None) -> None:
        if self.state == "pending":
            self.state, self.started_at = "running", at

    def finish(self, state: PhaseState, at: str | None) -> None:
        if self.state in _DONE:
            return
        self.started_at = self.started_at or at
        self.state, self.finished_at = state, at

    def ran(self) -> PhaseState:
        """How a phase that is over ended, when nothing failed: skipped if it had no commands."""
        return "succeeded" if self.commands else "skipped"


def _data(event: Mapping[str, Any]) -> Mapping[str, Any]:
    data = event.get("data")
    return data if isinstance(data, Mapping) else {}


def timeline(events: Iterable[Mapping[str, Any]], cancelled: bool = False) -> list[TimelineStep]:
    """Every phase in pipeline order with its state, times, command count and failure.

    `cancelled`: the deployment was cancelled before any end event (it ended while queued)."""
    steps = {phase: _Step(phase) for phase in ORDER}
    ended = False
    for event in events:
        kind, at, data = str(event.get("type", "")), event.get("time"), _data(event)
        when = str(at) if at is not None else None
        if kind in ("dockyard.command.started", "dockyard.command.finished"):
            _command(steps, kind, when, data)
        elif kind in _MOVES:
            _move(steps, *_MOVES[kind], when, data)
        elif kind in _ENDS:
            ended = True
            _end(steps, kind, when, data.get("reason"))
    if cancelled and not ended:
        _end(steps, "dockyard.deploy.failed", None, "cancelled")
    return [TimelineStep(phase=s.phase.value, state=s.state, started_at=s.started_at,
                         finished_at=s.finished_at, commands=s.commands, exit_code=s.exit_code,
                         reason=s.reason) for s in steps.values()]


def _predeploy_over(steps: dict[Phase, _Step], at: str | None) -> None:
    pre = steps[Phase.PREDEPLOY]
    pre.finish(pre.ran(), at)
    if pre.state != "failed":
        steps[Phase.RELEASE].start(at)


def _command(steps: dict[Phase, _Step], kind: str, at: str | None,
             data: Mapping[str, Any]) -> None:
    try:
        phase = Phase(str(data.get("hook_phase")))
    except ValueError:
        return
    if phase not in HOOK_PHASES:
        return
    step = steps[phase]
    if phase == Phase.RELEASE:
        _predeploy_over(steps, at)
    if kind == "dockyard.command.started":
        step.start(at)
        step.commands = max(step.commands, int(data.get("total") or 0))
        return
    code = data.get("exit_code")
    if isinstance(code, int) and code != 0:
        step.exit_code = code
        step.reason = f"{data.get('label') or 'a command'} exited with {code}"
        step.finish("failed", at)
    elif data.get("index") == data.get("total"):
        if phase == Phase.PREDEPLOY:
            _predeploy_over(steps, at)
        elif phase != Phase.RELEASE:  # release.succeeded says when release's step is over
            step.finish("succeeded", at)


def _move(steps: dict[Phase, _Step], phase: Phase, state: PhaseState, at: str | None,
          data: Mapping[str, Any]) -> None:
    step = steps[phase]
    if state == "running":
        step.start(at)
        return
    if phase == Phase.RELEASE:
        if state == "failed" and steps[Phase.PREDEPLOY].state == "failed":
            step.finish("skipped", at)
            return
        _predeploy_over(steps, at)
    step.finish(state, at)
    if state == "failed":
        step.reason = str(data.get("reason") or "") or step.reason
        code = data.get("exit_code")
        step.exit_code = code if isinstance(code, int) else step.exit_code
    elif phase in _STARTS_NEXT:
        steps[_STARTS_NEXT[phase]].start(at)
    # A phase reached means every earlier one is over: those that never ran had nothing to do.
    for earlier in ORDER[:ORDER.index(phase)]:
        if steps[earlier].state == "pending":
            steps[earlier].finish("skipped", at)


def _end(steps: dict[Phase, _Step], kind: str, at: str | None, reason: object) -> None:
    for step in steps.values():
        if kind == "dockyard.deploy.succeeded" and step.phase == Phase.RETIRE:
            step.start(at)  # the old instances drain after the deploy has succeeded
        elif kind == "dockyard.deploy.aborted" and step.phase == Phase.ON_FAILURE:
            continue  # on-failure's commands run next
        elif step.state == "running":
            step.finish("failed", at)
            step.reason = step.reason or (str(reason) if reason else None)
        elif step.state == "pending":
            step.finish("skipped", at)
