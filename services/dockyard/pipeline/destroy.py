"""Destroying an app, as plain values: which runtimes its kept live releases ran on."""

from __future__ import annotations

from collections.abc import Sequence

from dockyard.contract.state import LiveRelease


def runtimes_of(history: Sequence[LiveRelease], default: str) -> list[str]:
    """The runtimes an app being destroyed may have left something on: those its kept live
    releases ran on, and the default one (a deploy that never went live was built there)."""
    return sorted({default, *(record.spec.runtime for record in history)})
