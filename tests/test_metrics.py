from __future__ import annotations

import re
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_request_fields_become_metrics() -> None:
    metrics = Metrics()
    metrics.observe("/v1/responses", 200, {"model": "m", "ttft_ms": 120.0, "input_tokens": 50, "output_tokens": 20,
                                           "cached_tokens": 30, "tokens_per_second": 95.0,
                                           "response_status": "completed",
                                           "degradations": ["tool:web_search:note", "tool:apply_patch:wrap"]}, 0.5)
    metrics.observe("/v1/responses", 404, {}, 0.001)
    got = samples(metrics)
    assert got[("mlxgw_requests_total", (("endpoint", "/v1/responses"), ("model", "m"), ("status", "200")))] == 1
    assert got[("mlxgw_requests_total", (("endpoint", "/v1/responses"), ("model", ""), ("status", "404")))] == 1
    assert got[("mlxgw_tokens_total", (("kind", "output"), ("model", "m")))] == 20
    assert got[("mlxgw_tokens_total", (("kind", "cached"), ("model", "m")))] == 30
    assert got[("mlxgw_time_to_first_token_seconds_sum", (("model", "m"),))] == 0.12
    assert got[("mlxgw_output_tokens_per_second_count", (("model", "m"),))] == 1
    assert got[("mlxgw_responses_total", (("model", "m"), ("status", "completed")))] == 1
    assert got[("mlxgw_degradations_total", (("action", "note"), ("kind", "tool")))] == 1
    assert got[("mlxgw_degradations_total", (("action", "wrap"), ("kind", "tool")))] == 1


def test_state_is_read_at_scrape_time() -> None:
    state = {"models": {"m": {"state": "loaded", "active": 2, "queued": 1, "memory_bytes": 1024, "loads": 3,
                              "evictions": 1, "crashes": 2, "prefix_cache": {"hits": 7, "misses": 3}}},
             "store": {"backend": "redis", "state": "unavailable", "errors": 4}}
    got = samples(Metrics(lambda: state))
    assert got[("mlxgw_model_state", (("model", "m"), ("state", "loaded")))] == 1
    assert got[("mlxgw_model_active_requests", (("model", "m"),))] == 2
    assert got[("mlxgw_model_queue_depth", (("model", "m"),))] == 1
    assert got[("mlxgw_model_loads_total", (("model", "m"),))] == 3
    assert got[("mlxgw_model_evictions_total", (("model", "m"),))] == 1
    assert got[("mlxgw_worker_crashes_total", (("model", "m"),))] == 2
    assert got[("mlxgw_model_memory_bytes", (("model", "m"),))] == 1024
    assert got[("mlxgw_prefix_cache_hits_total", (("model", "m"),))] == 7
    assert got[("mlxgw_prefix_cache_misses_total", (("model", "m"),))] == 3
    assert got[("mlxgw_store_up", (("backend", "redis"),))] == 0
    assert got[("mlxgw_store_errors_total", ())] == 4
    state["models"]["m"]["state"] = "unloaded"
    assert ("mlxgw_model_state", (("model", "m"), ("state", "unloaded"))) in samples(Metrics(lambda: state))


def test_upstream_replicas_are_read_at_scrape_time() -> None:
    replica = {"url": "http://h:1/v1", "state": "open", "active": 2, "requests": 9, "errors": 3}
    state = {"models": {"u": {"state": "degraded", "replicas": [replica, {**replica, "url": "http://h:2/v1",
                                                                        "state": "closed", "errors": 0}]}}}
    got = samples(Metrics(lambda: state))
    one, two = (("model", "u"), ("replica", "http://h:1/v1")), (("model", "u"), ("replica", "http://h:2/v1"))
    assert got[("mlxgw_upstream_replica_up", one)] == 0 and got[("mlxgw_upstream_replica_up", two)] == 1
    assert got[("mlxgw_upstream_replica_active_requests", one)] == 2
    assert got[("mlxgw_upstream_replica_requests_total", one)] == 9
    assert got[("mlxgw_upstream_replica_errors_total", one)] == 3
    assert got[("mlxgw_model_state", (("model", "u"), ("state", "degraded")))] == 1


def test_registries_are_per_instance() -> None:
    first, second = Metrics(), Metrics()
    first.observe("/health", 200, {}, 0.001)
    assert not any(name == "mlxgw_requests_total" for name, _ in samples(second))


def test_store_capacity_is_read_at_scrape_time() -> None:
    state = {"models": {}, "store": {
        "backend": "memory", "state": "ok", "errors": 0,
        "pool": {"size": 64, "in_use": 5, "idle": 59, "waiting": 3, "timeouts": 2},
        "memory": {"used_bytes": 1000, "max_bytes": 4096, "chains": 2, "evicted_chains": 1,
                   "evicted_responses": 7, "evicted_bytes": 900}}}
    got = samples(Metrics(lambda: state))
    assert got[("mlxgw_store_pool_connections", (("state", "in_use"),))] == 5
    assert got[("mlxgw_store_pool_connections", (("state", "idle"),))] == 59
    assert got[("mlxgw_store_pool_waiting", ())] == 3
    assert got[("mlxgw_store_pool_timeouts_total", ())] == 2
    assert got[("mlxgw_store_memory_bytes", ())] == 1000
    assert got[("mlxgw_store_memory_limit_bytes", ())] == 4096
    assert got[("mlxgw_store_evictions_total", ())] == 7
    assert got[("mlxgw_store_evicted_bytes_total", ())] == 900


def test_a_redis_store_has_no_memory_metrics() -> None:
    state = {"models": {}, "store": {"backend": "redis", "state": "ok", "errors": 0,
                                     "pool": {"size": 8, "in_use": 0, "idle": 8, "waiting": 0, "timeouts": 0}}}
    names = {name for name, _ in samples(Metrics(lambda: state))}
    assert "mlxgw_store_pool_waiting" in names
    assert not {"mlxgw_store_memory_bytes", "mlxgw_store_evictions_total"} & names


def readme_metrics() -> dict[str, set[str] | None]:
    """The metric names the README's Operations section documents, with their labels where it gives them."""
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    operations = readme.split("\n## Operations\n", 1)[1].split("\n## ", 1)[0]
    bullet = operations.split("- **Metrics**", 1)[1].split("\n- **", 1)[0]
    documented: dict[str, set[str] | None] = {}
    for name, labels in re.findall(r"`(mlxgw_[a-z0-9_]+)(\{[^}`]*\})?`", bullet):
        documented[name] = set(re.findall(r"([a-z_]+)(?==|,|\})", labels)) if labels else None
    return documented


def test_the_readme_lists_every_metric_the_code_exports_and_no_other(tmp_path: Path) -> None:
    """Both ways: a live /metrics (after real requests, with a manifest file so reload metrics exist) against the
    README's list; counters by their `_total` name, as they are scraped."""
    from tests.conftest import make_config, serve

    manifest = tmp_path / "gateway.yaml"
    manifest.write_text("models:\n  - {name: m, adapter: scripted, script: {steps: [{text: hello there}]}}\n")
    with serve(make_config(manifest.read_text()), manifest_path=manifest) as base, httpx.Client(base_url=base) as http:
        http.post("/v1/responses", json={"model": "m", "input": "hi", "tools": [{"type": "web_search"}]})
        http.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
        http.post("/v1/responses", json={"model": "nope", "input": "hi"})
        text = http.get("/metrics").text
    families = list(text_string_to_metric_families(text))
    companions = {f"{f.name}_created" for f in families if f.type in ("counter", "histogram")}
    exported: dict[str, set[str]] = {}
    for family in families:
        if family.name in companions:
            continue  # prometheus_client's creation timestamp of a counter or histogram, not a metric of its own
        name = family.name + "_total" if family.type == "counter" else family.name
        exported[name] = {label for sample in family.samples for label in sample.labels if label != "le"}
    documented = readme_metrics()
    assert sorted(set(exported) - set(documented)) == [], "exported but not in the README"
    assert sorted(set(documented) - set(exported)) == [], "in the README but not exported"
    for name, labels in documented.items():
        if labels is not None and exported[name]:  # a family with samples carries exactly the documented labels
            assert exported[name] == labels, name


def test_a_scripted_models_speed_is_not_reported() -> None:
    """A scripted model 'decodes' at ~100,000 tok/s: no rate in the log line, the histogram or the status page."""
    from litestar.testing import TestClient

    from gateway.app import create_app
    from tests.conftest import make_config

    manifest = "models:\n  - {name: demo, adapter: scripted, script: {mode: echo, chunk_chars: 3}}\n"
    with TestClient(app=create_app(make_config(manifest))) as client:
        for _ in range(3):
            assert client.post("/v1/responses", json={"model": "demo", "input": "hello " * 40}).status_code == 200
        status = client.get("/status.json").json()
        assert [entry["tokens_per_second"] for entry in status["recent"] if entry.get("model") == "demo"] == [None] * 3
        assert status["models"]["demo"]["recent_tokens_per_second"] is None
        exposition = client.get("/metrics").text
    assert 'mlxgw_output_tokens_per_second_count{model="demo"}' not in exposition
    assert 'mlxgw_tokens_total{kind="output",model="demo"}' in exposition  # tokens are still counted
