"""Errors of plan building and of operator hooks: one base class, subclasses carrying fields."""

from __future__ import annotations

from dockyard.contract.text import one_line


class PlanError(Exception):
    """Base of every error of dockyard.plan: its message is always one line."""


class ManifestError(PlanError):
    """A manifest that cannot be turned into a plan: the file, the line (if known) and why."""

    def __init__(self, file: str, line: int | None, problem: str) -> None:
        self.file = file
        self.line = line
        self.problem = problem
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return one_line(f"{where}: {self.problem}")


class InvalidHook(PlanError):
    """An operator hook that cannot be stored (unknown phase, empty command, bad timeout...)."""

    def __init__(self, phase: str, label: str, problem: str) -> None:
        self.phase = phase
        self.label = label
        self.problem = problem
        super().__init__(one_line(f"hook {label!r} ({phase}): {problem}"))


class HookNotFound(PlanError):
    """No operator hook with that label in that phase of that app."""

    def __init__(self, app: str, phase: str, label: str, known: list[str]) -> None:
        self.app = app
        self.phase = phase
        self.label = label
        self.known = known
        listed = ", ".join(repr(k) for k in known) if known else "none"
        super().__init__(one_line(
            f"app {app!r} has no {phase} hook labelled {label!r} ({phase} hooks: {listed})"
        ))
