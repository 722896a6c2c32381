"""Pure: a canary's decisions as values — which share of the dial slots the new release takes,
and whether a step's figures promote it, given the old release's over the same step."""

from __future__ import annotations

import msgspec

from dockyard.contract.events import ReleaseFigures, RolloutVerdict
from dockyard.contract.plan import Rollout
from dockyard.contract.state import RolloutAction
from dockyard.router.figures import Figures

# Below this, a p95 difference is noise (a loopback answer takes a millisecond or two): a new
# release is never failed for latency unless its p95 is also this much above the old one's.
LATENCY_SLACK = 0.025


class Canary(msgspec.Struct, frozen=True, kw_only=True):
    """An app's canary in progress: the new release's upstreams and the share they take."""

    deployment_id: str
    release: int
    upstreams: tuple[str, ...]
    percent: int = 0


def canary_slots(percent: int, slots: int) -> int:
    """How many of `slots` dial slots the new release takes for `percent` % of requests: at
    least one while it takes any, never all before the promotion."""
    if percent <= 0:
        return 0
    return min(slots - 1, max(1, round(slots * percent / 100)))


def split(old: tuple[str, ...], new: tuple[str, ...], percent: int,
          slots: int) -> list[str]:
    """The address of each dial slot: the first slots (a client's cookie keeps its slot, so a
    client that reached the new release stays on it as the share grows) are the new release's,
    the rest the old's, each side's addresses repeated over its slots."""
    taken = canary_slots(percent, slots) if old and new else (slots if new else 0)
    return ([new[i % len(new)] for i in range(taken)]
            + [old[i % len(old)] for i in range(slots - taken)])


def release_figures(figures: Figures) -> ReleaseFigures:
    """The figures an event carries."""
    return ReleaseFigures(release=figures.release, requests=figures.requests,
                          errors=figures.errors, error_rate=round(figures.error_rate, 4),
                          p95=None if figures.p95 is None else round(figures.p95, 4))


def _shown(f: Figures) -> str:
    p95 = "no p95" if f.p95 is None else f"p95 {f.p95 * 1000:.0f} ms"
    return (f"v{f.release}: {f.requests} requests, {f.errors} errors "
            f"({f.error_rate:.1%}), {p95}")


def judge(new: Figures, old: Figures, rollout: Rollout, *,
          measured: bool = True) -> tuple[RolloutVerdict, str]:
    """A step's verdict on the new release's figures against the old one's over the step
    (`measured` False: the router reads no access log, so nothing can be judged)."""
    if not measured:
        return "inconclusive", ("the router measures no request (DOCKYARD_ACCESS_LOG=off, or "
                                "an operator's Caddy)")
    both = f"{_shown(new)}; {_shown(old)}"
    if new.requests < rollout.min_requests:
        return "inconclusive", (f"too few requests to judge ({new.requests} < "
                                f"{rollout.min_requests}); {both}")
    allowed = old.error_rate + rollout.max_error_increase
    if new.error_rate > allowed:
        return "failed", (f"error rate {new.error_rate:.1%} above the allowed {allowed:.1%} "
                          f"(old {old.error_rate:.1%} + {rollout.max_error_increase:.1%}); "
                          f"{both}")
    if new.p95 is not None and old.p95 is not None:
        limit = max(old.p95 * rollout.max_latency_ratio, old.p95 + LATENCY_SLACK)
        if new.p95 > limit:
            return "failed", (f"p95 {new.p95 * 1000:.0f} ms above the allowed "
                              f"{limit * 1000:.0f} ms ({rollout.max_latency_ratio:g}× the "
                              f"old {old.p95 * 1000:.0f} ms); {both}")
    return "passed", f"within the thresholds; {both}"


def aborts(verdict: RolloutVerdict, rollout: Rollout) -> bool:
    """Whether a step's verdict sends every request back to the old release."""
    return verdict == "failed" or (verdict == "inconclusive" and rollout.inconclusive == "abort")


def ordered_verdict(action: RolloutAction, measured: str) -> tuple[RolloutVerdict, str]:
    """A step's verdict when an operator ordered it (whatever the figures said)."""
    if action == "abort":
        return "failed", f"aborted by an operator's order; {measured}"
    return "passed", f"promoted by an operator's order; {measured}"

