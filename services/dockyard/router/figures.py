"""Pure: what each release of each app answered, over a sliding window, from the proxy's own
access log (one sample per request, attributed to the release whose instance served it)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import msgspec

WINDOW = 60.0  # seconds of samples kept per release
MAX_SAMPLES = 20_000  # per release: a flood keeps the latest, memory stays bounded
KEPT_RELEASES = 3  # per app: the live one, the one it replaced (drain, switch-back), one more


class Sample(msgspec.Struct, frozen=True):
    """One request a release answered (or failed to)."""

    at: float  # monotonic seconds
    status: int
    seconds: float
    failed: bool = False  # the proxy could not get an answer from the instance (dial, reset)


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    """A release's answers over a window."""

    app: str
    release: int
    window: float
    requests: int
    errors: int  # 5xx answers, failures included
    failures: int  # no answer from the instance: the proxy's own 502/504
    error_rate: float  # errors / requests (0 with no request)
    p50: float | None  # seconds; None with no request
    p95: float | None
    p99: float | None


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * fraction // 1))  # ceil, at least the first
    return sorted_values[int(rank) - 1]


def figures_of(app: str, release: int, samples: Iterable[Sample], now: float,
               window: float = WINDOW) -> Figures:
    """The figures of the samples inside [now - window, now]."""
    inside = [s for s in samples if now - window <= s.at <= now]
    durations = sorted(s.seconds for s in inside)
    errors = sum(1 for s in inside if s.status >= 500 or s.failed)
    return Figures(app=app, release=release, window=window, requests=len(inside), errors=errors,
                   failures=sum(1 for s in inside if s.failed),
                   error_rate=errors / len(inside) if inside else 0.0,
                   p50=percentile(durations, 0.50), p95=percentile(durations, 0.95),
                   p99=percentile(durations, 0.99))


class Measurements:
    """Samples per (app, release), each release's kept for WINDOW seconds and at most
    MAX_SAMPLES; an app's oldest releases beyond KEPT_RELEASES are forgotten."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self.samples: dict[str, dict[int, deque[Sample]]] = {}

    def add(self, app: str, release: int, sample: Sample) -> None:
        """Count one request of a release."""
        releases = self.samples.setdefault(app, {})
        kept = releases.get(release)
        if kept is None:
            kept = releases[release] = deque(maxlen=MAX_SAMPLES)
            for old in sorted(releases)[:-KEPT_RELEASES]:
                del releases[old]
        kept.append(sample)
        while kept and kept[0].at < sample.at - self.window:
            kept.popleft()

    def figures(self, app: str, release: int, now: float,
                window: float | None = None) -> Figures:
        """A release's figures over the last `window` seconds (at most the kept WINDOW)."""
        span = min(window or self.window, self.window)
        return figures_of(app, release, self.samples.get(app, {}).get(release, ()), now, span)

    def forget(self, app: str) -> None:
        """An app destroyed: its figures go."""
        self.samples.pop(app, None)

    def every(self, now: float) -> Iterator[Figures]:
        """The figures of every kept release, app by app."""
        for app in sorted(self.samples):
            for release in sorted(self.samples[app]):
                yield self.figures(app, release, now)
