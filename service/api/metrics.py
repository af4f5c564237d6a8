"""Prometheus metrics, one `CollectorRegistry` per app (tests build many apps in one process, and the global
registry would refuse duplicate metric names).

Request metrics are labelled by route *template* (`/v1/artists/{artist_id}`), never the raw path, so label
cardinality stays bounded whatever callers send. Batcher, gallery and embedding-cache figures are read at scrape
time from callables the app registers (`gauge_from`, `counter_from`). /metrics needs no key: nothing here is
labelled by collection or counts a collection's contents — the embedding cache's hits, misses, evictions and
bytes are the process's, over every collection. Covered by tests/service/test_api_health.py and
tests/service/test_cache.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
UNMATCHED_ROUTE = "<unmatched>"


class _GaugeCallbacks(Collector):
    """Gauges (and counters: totals that only grow) whose values come from callables at scrape time (queue depth,
    gallery sizes, embedding-cache hits, …)."""

    def __init__(self) -> None:
        self._sources: dict[str, tuple[str, Callable[[], float | None], type]] = {}

    def add(self, name: str, doc: str, fn: Callable[[], float | None], kind: type = GaugeMetricFamily) -> None:
        self._sources[name] = (doc, fn, kind)

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        for name, (doc, fn, kind) in self._sources.items():
            try:
                value = fn()
            except Exception:  # a broken source must not take /metrics down with it
                log.exception("metrics source %s failed", name)
                continue
            if value is not None:
                yield kind(name, doc, value=float(value))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "brushprint_http_requests_total",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "brushprint_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "brushprint_http_requests_in_flight", "HTTP requests being answered now", registry=self.registry
        )
        self.batch_size = Histogram(
            "brushprint_batch_size",
            "Backbone inputs (crops) per run (micro-batching)",
            ["batcher"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_latency = Histogram(
            "brushprint_batch_duration_seconds",
            "Time of one backbone run",
            ["batcher"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "brushprint_decisions_total",
            "Scoring answers given, by route and decision",
            ["route", "decision"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "brushprint_model_info",
            "The served model (value 1; identity in the labels)",
            ["model_id", "name", "version", "backbone", "head"],
            registry=self.registry,
        )
        self._callbacks = _GaugeCallbacks()
        self.registry.register(self._callbacks)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def observe_batch(self, size: int, seconds: float, batcher: str = "backbone") -> None:
        self.batch_size.labels(batcher).observe(size)
        self.batch_latency.labels(batcher).observe(seconds)

    def set_model(self, model_id: str, name: str, version: str, backbone: str, head: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model_id, name, version, backbone, head).set(1)

    def gauge_from(self, name: str, doc: str, fn: Callable[[], float | None]) -> None:
        self._callbacks.add(name, doc, fn)

    def counter_from(self, name: str, doc: str, fn: Callable[[], float | None]) -> None:
        """A counter read from `fn` at scrape time (a total that only grows); exposed as `<name>_total`."""
        self._callbacks.add(name, doc, fn, CounterMetricFamily)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
