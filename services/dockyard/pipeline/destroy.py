"""Destroying an app, as plain values: what its kept live releases left on which runtime."""

from __future__ import annotations

from collections.abc import Sequence

from dockyard.contract.state import LiveRelease


def runtimes_of(history: Sequence[LiveRelease], default: str) -> list[str]:
    """The runtimes an app being destroyed may have left something on: those its kept live
    releases ran on, and the default one (a deploy that never went live was built there)."""
    return sorted({default, *(record.spec.runtime for record in history)})


def artifacts_of(history: Sequence[LiveRelease]) -> list[str]:
    """Every artifact the kept live releases used, as `runtime:artifact`, each once, in order."""
    found: dict[str, None] = {}
    for record in history:
        for artifact in (record.spec.artifact, record.spec.build_artifact):
            if artifact:
                found[f"{record.spec.runtime}:{artifact}"] = None
    return list(found)
