"""Errors of the notifier: one base class, subclasses carrying fields."""

from __future__ import annotations


class NotifierError(Exception):
    """Base of every error of dockyard.notifier."""


class InvalidSink(NotifierError):
    """A sink that cannot be stored (bad name, kind, URL, attempts...)."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"sink {name!r}: {problem}")


class SinkNotFound(NotifierError):
    """No sink of that name is registered for the app."""

    def __init__(self, app: str, name: str) -> None:
        self.app = app
        self.name = name
        super().__init__(f"app {app!r} has no sink named {name!r}")


class ConcurrentUpdate(NotifierError):
    """A KV entry kept changing under us; the write was given up."""

    def __init__(self, key: str, tries: int) -> None:
        self.key = key
        self.tries = tries
        super().__init__(f"{key!r} changed concurrently {tries} times; giving up")


class InvalidSignature(NotifierError):
    """A webhook whose signature, timestamp or headers do not verify."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"invalid webhook signature: {problem}")
