"""A model's memory tracked as it grows (weights, KV caches, prefix cache, MLX's buffer cache), through real workers:
shown in /health and /metrics, and what `mlx.max_memory_gb` evicts by."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import parse_config
from tests.conftest import serve
from tests.process import wait_for

pytestmark = pytest.mark.mlx

LONG = " ".join(f"word{i}" for i in range(600))  # ~3,500 prompt tokens: a few MB of KV on the dummy model
PARTS = ("weights", "kv", "prefix_cache", "mlx_cache")


def _manifest(cache: Path, names: str, mlx: str = "") -> str:
    models = "".join(f"  - {{name: {n}, adapter: mlx, source: dummy, testing: {{force: last_user, step_delay_ms: 5}}}}\n"
                     for n in names)
    return f"mlx: {{cache_dir: {json.dumps(str(cache))}{mlx}}}\nmodels:\n{models}"


def _model(url: str, name: str) -> dict[str, Any]:
    return httpx.get(f"{url}/health", timeout=10).json()["models"][name]  # type: ignore[no-any-return]


def _ask(url: str, model: str, text: str, tokens: int) -> dict[str, Any]:
    answer = httpx.post(f"{url}/v1/responses", timeout=120,
                        json={"model": model, "input": text, "max_output_tokens": tokens})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_memory_grows_with_the_kv_cache_and_the_prefix_cache_and_is_reported(mlx_cache: Path) -> None:
    with serve(parse_config(_manifest(mlx_cache, "a"))) as url:
        _ask(url, "a", "hi", 4)
        before = _model(url, "a")
        assert before["memory"]["weights"] > 100_000  # the dummy's parameters, counted from the arrays
        assert before["memory_bytes"] == before["memory"]["total"] == sum(before["memory"][p] for p in PARTS)

        during: list[dict[str, Any]] = []

        def watch() -> None:
            for _ in range(400):  # bounded: ~20 s
                memory = _model(url, "a").get("memory", {})
                if memory.get("kv", 0) > before["memory"]["kv"] + 500_000:
                    during.append(memory)
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        body = _ask(url, "a", LONG, 400)  # 400 forced tokens at 5 ms a step: reported every 0.5 s meanwhile
        watcher.join()
        assert body["usage"]["input_tokens"] > 3000
        assert during, "the KV caches of the running request never showed in /health"

        after = _model(url, "a")
        memory = after["memory"]
        # The finished request's cache went to the prefix cache, which the report counts at its own size.
        assert memory["prefix_cache"] == after["prefix_cache"]["bytes"] > before["memory"]["prefix_cache"] + 1_000_000
        assert memory["weights"] == before["memory"]["weights"]
        assert after["memory_bytes"] == memory["total"] == sum(memory[p] for p in PARTS) > before["memory_bytes"]

        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text)
                   for s in family.samples}
        assert samples[("mlxgw_model_memory_bytes", (("model", "a"),))] == memory["total"]
        for part in PARTS:
            assert samples[("mlxgw_model_memory_part_bytes", (("model", "a"), ("part", part)))] == memory[part]


def test_a_model_that_grows_past_the_cap_evicts_an_idle_one(mlx_cache: Path) -> None:
    # Two dummies fit in 4 MB when loaded (~0.9 MB each); one long conversation kept in y's prefix cache does not.
    with serve(parse_config(_manifest(mlx_cache, "xy", ", max_memory_gb: 0.004"))) as url:
        _ask(url, "x", "hi", 4)
        _ask(url, "y", "hi", 4)
        assert (_model(url, "x")["state"], _model(url, "y")["state"]) == ("ready", "ready")
        assert _model(url, "x")["memory_bytes"] + _model(url, "y")["memory_bytes"] < 4e6

        _ask(url, "y", LONG, 100)
        wait_for(lambda: _model(url, "x")["state"] == "unloaded", timeout=10, what="x to be evicted")
        x, y = _model(url, "x"), _model(url, "y")
        assert (x["unloads"], x["evictions"]) == (1, 1) and y["state"] == "ready"
        assert y["memory_bytes"] > 4e6  # a lone model over the cap keeps serving
        assert _ask(url, "y", "still here", 8)["status"] == "completed"
