"""Prometheus metrics, one registry per application (no process-global collectors).

Request metrics are recorded from each request's canonical log record when it ends;
model, worker, store and manifest state is read from the running gateway at scrape time.
Every family is exposed from the first scrape (with no samples until there is something
to count), so `/metrics` always lists what the README's Operations section documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_RATES = (1, 5, 10, 25, 50, 100, 200, 400, 800, 1600, 3200)

StateReader = Callable[[], dict[str, Any]]


class _StateCollector(Collector):
    """Per-model adapter state and store state, as the running gateway reports them."""

    def __init__(self, read: StateReader) -> None:
        self.read = read

    def collect(self) -> Iterator[Any]:
        state = self.read()
        models = state.get("models", {})
        model_state = GaugeMetricFamily("mlxgw_model_state", "1 for the state each model is in", labels=["model", "state"])
        active = GaugeMetricFamily("mlxgw_model_active_requests", "Requests the model is serving", labels=["model"])
        queued = GaugeMetricFamily("mlxgw_model_queue_depth", "Requests waiting for the model", labels=["model"])
        memory = GaugeMetricFamily("mlxgw_model_memory_bytes", "Memory the model's worker holds (what max_memory_gb "
                                   "counts)", labels=["model"])
        parts = GaugeMetricFamily("mlxgw_model_memory_part_bytes", "The model's memory by part (weights, kv, "
                                  "prefix_cache, mlx_cache); the parts add up to mlxgw_model_memory_bytes",
                                  labels=["model", "part"])
        counters = {
            "loads": CounterMetricFamily("mlxgw_model_loads", "Times the model was loaded", labels=["model"]),
            "unloads": CounterMetricFamily("mlxgw_model_unloads", "Times the model was unloaded (idle or evicted)",
                                           labels=["model"]),
            "evictions": CounterMetricFamily("mlxgw_model_evictions", "Unloads to make room for another model",
                                             labels=["model"]),
            "crashes": CounterMetricFamily("mlxgw_worker_crashes", "Worker processes that died", labels=["model"]),
        }
        cache = {
            "hits": CounterMetricFamily("mlxgw_prefix_cache_hits", "Prompts that reused cached KV", labels=["model"]),
            "misses": CounterMetricFamily("mlxgw_prefix_cache_misses", "Prompts prefilled from scratch",
                                          labels=["model"]),
        }
        for name, info in models.items():
            model_state.add_metric([name, str(info.get("state", "unknown"))], 1)
            active.add_metric([name], float(info.get("active", 0)))
            queued.add_metric([name], float(info.get("queued", 0)))
            if isinstance(info.get("memory_bytes"), (int, float)):
                memory.add_metric([name], float(info["memory_bytes"]))
            breakdown = info.get("memory")
            if isinstance(breakdown, dict):
                for part in ("weights", "kv", "prefix_cache", "mlx_cache"):
                    if isinstance(breakdown.get(part), (int, float)):
                        parts.add_metric([name, part], float(breakdown[part]))
            for key, family in counters.items():
                if isinstance(info.get(key), (int, float)):
                    family.add_metric([name], float(info[key]))
            prefix = info.get("prefix_cache")
            for key, family in cache.items():
                if isinstance(prefix, dict) and isinstance(prefix.get(key), (int, float)):
                    family.add_metric([name], float(prefix[key]))
        yield from (model_state, active, queued, memory, parts, *counters.values(), *cache.values())
        yield from _replicas(models)
        yield from _manifest(state.get("manifest"))
        store = state.get("store")
        if isinstance(store, dict):
            up = GaugeMetricFamily("mlxgw_store_up", "1 if the response store answers", labels=["backend"])
            up.add_metric([str(store.get("backend", "store"))], 1.0 if store.get("state") == "ok" else 0.0)
            yield up
            errors = store.get("errors")
            if isinstance(errors, (int, float)):
                family = CounterMetricFamily("mlxgw_store_errors", "Store operations that failed", labels=[])
                family.add_metric([], float(errors))
                yield family
            yield from _store_capacity(store)


def _manifest(manifest: Any) -> Iterator[Any]:
    """Manifest reloads by result, and when the running manifest was last loaded successfully (start-up counts)."""
    reloads = CounterMetricFamily("mlxgw_manifest_reloads", "Manifest reloads (file change, SIGHUP, /admin/reload) "
                                  "by result: ok (applied) or rejected (invalid; the running manifest stayed)",
                                  labels=["result"])
    success = GaugeMetricFamily("mlxgw_manifest_last_reload_success_timestamp_seconds",
                                "Unix time the running manifest was loaded: at start-up, then by each applied reload")
    if isinstance(manifest, dict):
        counts = manifest.get("reloads") or {}
        for result in ("ok", "rejected"):
            reloads.add_metric([result], float(counts.get(result, 0)))
        if isinstance(manifest.get("last_success_at"), (int, float)):
            success.add_metric([], float(manifest["last_success_at"]))
    yield from (reloads, success)


def _replicas(models: dict[str, Any]) -> Iterator[Any]:
    """Upstream models: each replica's breaker, load and counts."""
    up = GaugeMetricFamily("mlxgw_upstream_replica_up", "1 while the replica's circuit breaker is closed, 0 while "
                           "it is open (skipped until a health probe succeeds)", labels=["model", "replica"])
    active = GaugeMetricFamily("mlxgw_upstream_replica_active_requests", "Requests the replica is serving",
                               labels=["model", "replica"])
    requests = CounterMetricFamily("mlxgw_upstream_replica_requests", "Requests the replica accepted",
                                   labels=["model", "replica"])
    errors = CounterMetricFamily("mlxgw_upstream_replica_errors", "Failed attempts on the replica (refused, 5xx, "
                                 "timed out, cut mid-stream)", labels=["model", "replica"])
    for name, info in models.items():
        for replica in info.get("replicas") or []:
            labels = [name, str(replica.get("url", ""))]
            up.add_metric(labels, 0.0 if replica.get("state") == "open" else 1.0)
            active.add_metric(labels, float(replica.get("active", 0)))
            requests.add_metric(labels, float(replica.get("requests", 0)))
            errors.add_metric(labels, float(replica.get("errors", 0)))
    yield from (up, active, requests, errors)


def _store_capacity(store: dict[str, Any]) -> Iterator[Any]:
    """The store's connection slots (every backend) and, for memory://, what it holds and what it evicted."""
    pool = store.get("pool")
    if isinstance(pool, dict):
        slots = GaugeMetricFamily("mlxgw_store_pool_connections", "Store round trips in flight (in_use) and "
                                  "free slots for more (idle), out of store.max_connections", labels=["state"])
        for state in ("in_use", "idle"):
            slots.add_metric([state], float(pool.get(state, 0)))
        waiting = GaugeMetricFamily("mlxgw_store_pool_waiting", "Store round trips waiting for a free slot")
        waiting.add_metric([], float(pool.get("waiting", 0)))
        timeouts = CounterMetricFamily("mlxgw_store_pool_timeouts", "Round trips that gave up waiting for a slot "
                                       "(none was freed for the store timeout)")
        timeouts.add_metric([], float(pool.get("timeouts", 0)))
        yield from (slots, waiting, timeouts)
    memory = store.get("memory")
    if isinstance(memory, dict):
        used = GaugeMetricFamily("mlxgw_store_memory_bytes", "Bytes the memory:// store holds (estimated)")
        used.add_metric([], float(memory.get("used_bytes", 0)))
        limit = GaugeMetricFamily("mlxgw_store_memory_limit_bytes", "store.memory_max_mb in bytes")
        limit.add_metric([], float(memory.get("max_bytes", 0)))
        evictions = CounterMetricFamily("mlxgw_store_evictions", "Stored responses evicted to stay under "
                                        "store.memory_max_mb (whole chains at a time)")
        evictions.add_metric([], float(memory.get("evicted_responses", 0)))
        evicted = CounterMetricFamily("mlxgw_store_evicted_bytes", "Bytes freed by those evictions")
        evicted.add_metric([], float(memory.get("evicted_bytes", 0)))
        yield from (used, limit, evictions, evicted)


class Metrics:
    def __init__(self, read_state: StateReader | None = None) -> None:
        """`read_state` is for tests; the app passes the state it gathered to `exposition()` instead."""
        self._state: dict[str, Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("mlxgw_requests", "HTTP requests", ["endpoint", "model", "status"], registry=r)
        self.duration = Histogram("mlxgw_request_duration_seconds", "Request duration, streams included",
                                  ["endpoint", "model"], buckets=_SECONDS, registry=r)
        self.ttft = Histogram("mlxgw_time_to_first_token_seconds", "Time from request to the model's first output",
                              ["model"], buckets=_SECONDS, registry=r)
        self.tokens = Counter("mlxgw_tokens", "Tokens processed", ["model", "kind"], registry=r)
        self.rate = Histogram("mlxgw_output_tokens_per_second", "Decode speed per response", ["model"],
                              buckets=_RATES, registry=r)
        self.responses = Counter("mlxgw_responses", "Responses by final status", ["model", "status"], registry=r)
        self.active_streams = Gauge("mlxgw_active_streams", "Streams being sent", ["model"], registry=r)
        self.degradations = Counter("mlxgw_degradations", "Policy degradations applied", ["kind", "action"],
                                    registry=r)
        self.store_latency = Histogram("mlxgw_store_latency_seconds", "Store operation latency", ["operation"],
                                       buckets=_SECONDS, registry=r)
        r.register(_StateCollector(read_state or (lambda: self._state)))

    def observe(self, endpoint: str, status: int, fields: dict[str, Any], duration: float) -> None:
        """Record one finished request from its canonical log fields."""
        model = str(fields.get("model", ""))
        self.requests.labels(endpoint, model, str(status)).inc()
        self.duration.labels(endpoint, model).observe(duration)
        if not model:
            return
        ttft = fields.get("ttft_ms")
        if isinstance(ttft, (int, float)):
            self.ttft.labels(model).observe(ttft / 1000)
        for kind in ("input", "output", "cached"):
            count = fields.get(f"{kind}_tokens")
            if isinstance(count, int) and count:
                self.tokens.labels(model, kind).inc(count)
        rate = fields.get("tokens_per_second")
        if isinstance(rate, (int, float)) and rate > 0:
            self.rate.labels(model).observe(rate)
        if fields.get("response_status"):
            self.responses.labels(model, str(fields["response_status"])).inc()
        for degradation in fields.get("degradations", ()):
            kind, _, rest = str(degradation).partition(":")
            self.degradations.labels(kind, rest.rsplit(":", 1)[-1]).inc()

    def observe_store(self, operation: str, seconds: float) -> None:
        if operation != "read":  # event-log reads block on purpose while they wait for events
            self.store_latency.labels(operation).observe(seconds)

    def exposition(self, state: dict[str, Any] | None = None) -> bytes:
        """The text format; `state` is the gateway's current state (models, store), gathered by the caller."""
        if state is not None:
            self._state = state
        return generate_latest(self.registry)
