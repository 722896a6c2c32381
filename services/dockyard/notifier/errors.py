"""Errors of the notifier: one base class, subclasses carrying fields."""

from __future__ import annotations


class NotifierError(Exception):
    """Base of every error of dockyard.notifier."""


class InvalidSignature(NotifierError):
    """A webhook whose signature, timestamp or headers do not verify."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"invalid webhook signature: {problem}")
