"""Prometheus metrics for ``/metrics``: this instance's own figures plus what storage knows.

Two kinds of figures go into one exposition:

* counted here, by this web instance: HTTP responses, errors, results applied per persona,
  request-to-answer latency, open websockets (:class:`WebMetrics`, prometheus_client
  metrics in a registry of the app's own, never the global one);
* read from storage at scrape time: queue depths and every worker's latest heartbeat
  (batch sizes, generation latency, tokens, per-persona counters), exposed by
  :class:`_StorageCollector` from a :class:`Figures` taken just before rendering. Worker
  counters are cumulative per worker, labelled by worker id, so a restart reads as a
  counter reset, which is what Prometheus expects.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import prometheus_client
from litestar.enums import ScopeType
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from playhouse import ids
from playhouse.storage.ops import BATCH_BUCKETS, LATENCY_BUCKETS, WorkerBeat

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from playhouse.messages import GenerationResult

CONTENT_TYPE = "text/plain; version=0.0.4"
"""The classic text format (what generate_latest writes); Litestar appends the charset."""
REQUEST_LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass
class Figures:
    """What storage said at one moment (``depths`` is None when it did not answer)."""

    at: float
    depths: dict[str, int] | None
    workers: list[WorkerBeat] = field(default_factory=list)


class WebMetrics:
    """The figures one web instance keeps, and the renderer of ``/metrics``."""

    def __init__(self) -> None:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.http = Counter("playhouse_http_requests", "HTTP responses by method and status.",
                            ["method", "status"], registry=r)
        self.errors = Counter(
            "playhouse_errors",
            "Errors seen by this web instance: http (5xx answers), crash (unexpected "
            "exceptions), consumer (results that could not be applied yet), generation "
            "(failed results applied).",
            ["source"], registry=r,
        )
        self.results = Counter("playhouse_results",
                               "Generation results applied by this instance, per persona.",
                               ["persona", "status"], registry=r)
        self.latency = Histogram(
            "playhouse_request_latency_seconds",
            "From a generation request's creation to its result being applied.",
            buckets=REQUEST_LATENCY_BUCKETS, registry=r,
        )
        self.websockets = Gauge("playhouse_websocket_clients",
                                "Websocket connections open on this instance.", registry=r)
        self._snapshot = Figures(at=0.0, depths=None)
        r.register(_StorageCollector(self))

    def result_applied(self, result: GenerationResult, *, now: float | None = None) -> None:
        """Count an applied (not duplicate) result and its end-to-end latency."""
        self.results.labels(result.persona or "-", "ok" if result.ok else "failed").inc()
        if not result.ok:
            self.errors.labels("generation").inc()
        if ids.is_id(result.request_id):
            waited = (now or time.time()) - ids.id_time(result.request_id)
            self.latency.observe(max(0.0, waited))

    def render(self, snapshot: Figures) -> bytes:
        """The exposition text with ``snapshot`` as the storage figures (synchronous, so
        two scrapes cannot interleave their snapshots)."""
        self._snapshot = snapshot
        return prometheus_client.generate_latest(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware counting HTTP responses and open websockets."""

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == ScopeType.WEBSOCKET:
                self.websockets.inc()
                try:
                    await app(scope, receive, send)
                finally:
                    self.websockets.dec()
                return
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            method = str(scope.get("method", "GET"))

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    self.http.labels(method, str(status)).inc()
                    if status >= 500:
                        self.errors.labels("http").inc()
                await send(message)

            await app(scope, receive, sending)

        return counted


class _StorageCollector(Collector):
    def __init__(self, metrics: WebMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        snap = self.metrics._snapshot
        up = GaugeMetricFamily("playhouse_storage_up", "1 when storage answered this scrape.")
        up.add_metric([], 0.0 if snap.depths is None else 1.0)
        yield up
        depth = GaugeMetricFamily("playhouse_queue_depth",
                                  "Approximate messages in each queue.", labels=["queue"])
        for queue, n in sorted((snap.depths or {}).items()):
            depth.add_metric([queue], float(n))
        yield depth
        yield from _worker_families(snap)


def _worker_families(snap: Figures) -> Iterator[Metric]:
    labels = ["worker", "kind"]
    alive = GaugeMetricFamily("playhouse_worker_up",
                              "1 while a worker's heartbeat is fresh, 0 once stopped or silent.",
                              labels=[*labels, "host"])
    seen = GaugeMetricFamily("playhouse_worker_last_seen_timestamp_seconds",
                             "When a worker last wrote its heartbeat.", labels=labels)
    requests = CounterMetricFamily("playhouse_worker_requests",
                                   "Requests a worker finished, by outcome.",
                                   labels=[*labels, "outcome"])
    tokens = CounterMetricFamily("playhouse_worker_tokens", "Tokens a worker generated.",
                                 labels=labels)
    rate = GaugeMetricFamily("playhouse_worker_tokens_per_second",
                             "Tokens per second of generation over the last heartbeat.",
                             labels=labels)
    batches = HistogramMetricFamily("playhouse_batch_size", "Requests per generated batch.",
                                    labels=labels)
    latency = HistogramMetricFamily(
        "playhouse_generation_seconds",
        "Generation time of each request (its batch's time on the model).", labels=labels,
    )
    persona_requests = CounterMetricFamily(
        "playhouse_persona_requests",
        "Requests per persona by outcome, summed over the workers' latest heartbeats.",
        labels=["persona", "outcome"],
    )
    available = GaugeMetricFamily(
        "playhouse_persona_available",
        "1 when a live worker can serve the persona (its model is not unavailable).",
        labels=["persona"],
    )
    per_persona: dict[tuple[str, str], int] = {}
    usable: dict[str, float] = {}
    for w in sorted(snap.workers, key=lambda b: b.worker_id):
        key = [w.worker_id, w.kind]
        live = w.alive(snap.at)
        alive.add_metric([*key, w.host], 1.0 if live else 0.0)
        seen.add_metric(key, w.seen_at)
        requests.add_metric([*key, "answered"], float(w.answered))
        requests.add_metric([*key, "failed"], float(w.failed))
        requests.add_metric([*key, "poisoned"], float(w.poisoned))
        tokens.add_metric(key, float(w.tokens))
        rate.add_metric(key, w.tokens_per_s if live else 0.0)
        batches.add_metric(key, _buckets(BATCH_BUCKETS, w.batch_buckets), float(w.batch_sum))
        latency.add_metric(key, _buckets(LATENCY_BUCKETS, w.latency_buckets), w.latency_sum)
        for p in w.personas:
            for outcome, n in (("answered", p.answered), ("failed", p.failed)):
                per_persona[(p.name, outcome)] = per_persona.get((p.name, outcome), 0) + n
            if live:
                ok = 0.0 if p.model == "unavailable" else 1.0
                usable[p.name] = max(usable.get(p.name, 0.0), ok)
    for (name, outcome), n in sorted(per_persona.items()):
        persona_requests.add_metric([name, outcome], float(n))
    for name, ok in sorted(usable.items()):
        available.add_metric([name], ok)
    yield from (alive, seen, requests, tokens, rate, batches, latency, persona_requests,
                available)


def _buckets(bounds: tuple[float, ...], cumulative: tuple[int, ...]) -> list[tuple[str, Any]]:
    """``(le, count)`` pairs, +Inf last; a row from an older worker (no buckets) reads 0."""
    counts = list(cumulative) if len(cumulative) == len(bounds) + 1 else [0] * (len(bounds) + 1)
    out: list[tuple[str, Any]] = [
        (repr(float(b)), float(c))
        for b, c in zip(bounds, counts, strict=False)
    ]
    out.append(("+Inf", float(counts[-1])))
    return out
