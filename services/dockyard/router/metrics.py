"""Adapter: each release's figures as Prometheus metrics, computed when scraped (the services'
one registry, served where DOCKYARD_METRICS_ADDR says)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dockyard.router.figures import Measurements

QUANTILES = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))


class ReleaseFigures(Collector):
    """dockyard_release_* gauges: per app and release, over the last window."""

    def __init__(self, measured: Measurements) -> None:
        self.measured = measured

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["app", "release"]
        window = f"over the last {self.measured.window:g} s, measured at the router"
        requests = GaugeMetricFamily("dockyard_release_requests",
                                     f"Requests a release answered {window}", labels=labels)
        errors = GaugeMetricFamily("dockyard_release_errors",
                                   f"5xx answers of a release {window}", labels=labels)
        failures = GaugeMetricFamily("dockyard_release_failures", "Requests the proxy got no "
                                     f"answer for from a release's instance {window}",
                                     labels=labels)
        latency = GaugeMetricFamily("dockyard_release_latency_seconds",
                                    f"Latency percentiles of a release {window}",
                                    labels=[*labels, "quantile"])
        for found in self.measured.every(time.monotonic()):
            key = [found.app, str(found.release)]
            requests.add_metric(key, found.requests)
            errors.add_metric(key, found.errors)
            failures.add_metric(key, found.failures)
            for quantile, name in QUANTILES:
                value = getattr(found, name)
                if value is not None:
                    latency.add_metric([*key, quantile], value)
        yield from (requests, errors, failures, latency)
