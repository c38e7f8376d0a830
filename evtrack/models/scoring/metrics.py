"""Prometheus metrics of the scoring server (``GET /metrics``), via prometheus_client.

Requests by route and status, latency per route, and rows per model call (which
shows what adaptive batching does). With several workers each process writes to
``PROMETHEUS_MULTIPROC_DIR`` (set by ``evtrack models serve`` for its workers) and
``/metrics`` sums them, as prometheus_client's multiprocess mode documents.
"""

from __future__ import annotations

__all__ = ["ScoringMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536, 262144, 1048576)


class ScoringMetrics:
    def __init__(self, multiprocess: bool = False) -> None:
        from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

        # with workers, prometheus_client writes under PROMETHEUS_MULTIPROC_DIR (set by
        # `evtrack models serve`) and /metrics sums every worker's files
        self.multiprocess = multiprocess
        self.registry = CollectorRegistry()
        # (the process-wide default registry is what multiprocess mode collects from)
        registry = REGISTRY if self.multiprocess else self.registry
        self.requests = Counter(
            "evtrack_scoring_requests", "Requests answered", ["route", "status"], registry=registry
        )
        self.latency = Histogram(
            "evtrack_scoring_request_seconds",
            "Time from request to response",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_rows = Histogram(
            "evtrack_scoring_batch_rows",
            "Rows per model call",
            buckets=_ROW_BUCKETS,
            registry=registry,
        )
        self.batch_requests = Histogram(
            "evtrack_scoring_batch_requests",
            "Requests merged into one model call",
            buckets=_ROW_BUCKETS[:10],
            registry=registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.multiprocess:
            from prometheus_client import CollectorRegistry, multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
