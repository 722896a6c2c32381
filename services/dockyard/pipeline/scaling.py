"""Pure: what a scale or a restart of the live release starts and stops, and the formation a
new release starts at."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.contract.events import MAX_SCALE, InstanceRef, ScaleRequested
from dockyard.contract.plan import Plan


class ScaleRefused(ValueError):
    """A scale or restart that cannot be done as asked (the sentence says why)."""


@dataclass(frozen=True)
class Start:
    """One instance to start: its process type and index (unique among the release's)."""

    process: str
    index: int


@dataclass(frozen=True)
class Change:
    """What an operation does to the live release's instances."""

    start: tuple[Start, ...]
    stop: tuple[InstanceRef, ...]
    formation: dict[str, int]


def check_counts(plan: Plan, counts: dict[str, int]) -> dict[str, int]:
    """The counts, if every process type is the plan's and every count is in 0..MAX_SCALE."""
    if not counts:
        raise ScaleRefused("no process type to scale (e.g. web=2)")
    known = [p.name for p in plan.processes]
    for name, count in counts.items():
        if name not in known:
            raise ScaleRefused(f"no process type {name!r} in the live release "
                               f"(it has {', '.join(known) or 'none'})")
        if not 0 <= count <= MAX_SCALE:
            raise ScaleRefused(f"{name}={count}: a count must be between 0 and {MAX_SCALE}")
    return dict(counts)


def check_request(plan: Plan, kind: str, counts: dict[str, int], process: str | None) -> None:
    """ScaleRefused unless a scale's counts or a restart's process type fit the plan (checked by
    the cli and the api before anything is sent, and by the scheduler again)."""
    if kind == "scale":
        check_counts(plan, counts)
        return
    known = [p.name for p in plan.processes]
    if process is not None and process not in known:
        raise ScaleRefused(f"no process type {process!r} in the live release "
                           f"(it has {', '.join(known) or 'none'})")


def formation_of(plan: Plan, recorded: dict[str, int] | None) -> dict[str, int]:
    """How many instances of each of the plan's process types to run: the recorded formation's
    count, else the plan's scale (a process type the formation never named)."""
    recorded = recorded or {}
    return {p.name: recorded.get(p.name, p.scale) for p in plan.processes}


def _by_process(running: list[InstanceRef], process: str) -> list[InstanceRef]:
    return sorted((i for i in running if i.process == process), key=lambda i: i.id)


def change(cmd: ScaleRequested, plan: Plan, running: list[InstanceRef],
           recorded: dict[str, int] | None) -> Change:
    """What the operation starts and stops among `running` (the live release's instances)."""
    current = formation_of(plan, recorded)
    if cmd.kind == "restart":
        known = [p.name for p in plan.processes]
        if cmd.process is not None and cmd.process not in known:
            raise ScaleRefused(f"no process type {cmd.process!r} in the live release "
                               f"(it has {', '.join(known) or 'none'})")
        olds = tuple(i for i in sorted(running, key=lambda i: (i.process, i.id))
                     if cmd.process in (None, i.process))
        if not olds:
            raise ScaleRefused("nothing to restart: no instance of "
                               + (cmd.process or "the live release") + " runs")
        starts: list[Start] = []
        for process in dict.fromkeys(i.process for i in olds):
            count = len(_by_process(running, process))
            starts += [Start(process, count + n) for n in range(1, count + 1)]
        return Change(start=tuple(starts), stop=olds, formation=current)
    counts = check_counts(plan, cmd.counts)
    starts = []
    stops: list[InstanceRef] = []
    for process, want in counts.items():
        have = _by_process(running, process)
        if want > len(have):
            starts += [Start(process, len(have) + n) for n in range(1, want - len(have) + 1)]
        else:
            stops += have[want:]
    return Change(start=tuple(starts), stop=tuple(stops), formation={**current, **counts})


def kept(running: list[InstanceRef], stop: tuple[InstanceRef, ...]) -> list[InstanceRef]:
    """The running instances that stay."""
    gone = {i.id for i in stop}
    return [i for i in running if i.id not in gone]
