"""The prefix cache through a real worker: agent sessions reuse the previous turn, report it in
`cached_tokens`, answer exactly as without the cache, and entries are evicted by bytes."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import parse_config
from tests.conftest import serve

pytestmark = pytest.mark.mlx

DEVELOPER = "You are a coding agent working in /work. Keep answers short; run tests before you say done. " * 4
TOOLS = [{"type": "function", "name": "exec_command", "description": "Runs a shell command.", "strict": False,
          "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}]
USER_TURNS = [
    "The tests in tests/test_store.py fail after the refactor. Find out why and fix them.",
    "Output of the last command:\nFAILED tests/test_store.py::test_ttl - AssertionError: 30 != 60\n1 failed",
    "Now run the whole suite and summarise what changed.",
]


@pytest.fixture(scope="module")
def base(mlx_cache: Path) -> Iterator[str]:
    # Same dummy weights for all three; `distinct` makes greedy output sensitive to every cached key and value.
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: cached, adapter: mlx, source: dummy, testing: {{distinct: true}}}}
  - {{name: uncached, adapter: mlx, source: dummy, prefix_cache_mb: 0, testing: {{distinct: true}}}}
  - {{name: one-entry, adapter: mlx, source: dummy, prefix_cache_mb: 0.4, testing: {{distinct: true}}}}
"""
    with serve(parse_config(manifest)) as url:
        yield url


def message(role: str, text: str) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def post(base: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{base}/v1/responses", json=body, timeout=60)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["status"] == "incomplete"  # every answer runs to its budget
    return result


def codex_session(base: str, model: str, key: str, turns: int = 3, first: int = 0) -> list[dict[str, Any]]:
    """Codex's way: store false, the whole history (with the model's own output items) resent every turn."""
    items: list[dict[str, Any]] = [message("developer", DEVELOPER)]
    results = []
    for turn in range(turns):
        items.append(message("user", USER_TURNS[(first + turn) % len(USER_TURNS)]))
        body = {"model": model, "input": copy.deepcopy(items), "tools": TOOLS, "store": False, "temperature": 0,
                "max_output_tokens": 24, "prompt_cache_key": key}
        result = post(base, body)
        results.append(result)
        items += result["output"]
    return results


def texts(results: list[dict[str, Any]]) -> list[str]:
    return ["".join(part["text"] for item in r["output"] for part in item.get("content", [])) for r in results]


def usage(results: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(r["usage"]["input_tokens"], r["usage"]["input_tokens_details"]["cached_tokens"]) for r in results]


def test_a_codex_session_reuses_each_previous_turn_and_answers_as_without_the_cache(base: str) -> None:
    cached = codex_session(base, "cached", "thread-a")
    reference = codex_session(base, "uncached", "thread-a")
    assert texts(cached) == texts(reference)
    (first, none), *later = usage(cached)
    assert none == 0
    previous = first
    for prompt, reused in later:
        # Everything the previous turn's prompt held, plus the start of the answer the template re-renders.
        assert previous <= reused < prompt
        previous = prompt
    assert [reused for _, reused in usage(reference)] == [0, 0, 0]


def test_a_previous_response_id_chain_reuses_the_stored_turn(base: str) -> None:
    first = post(base, {"model": "cached", "input": [message("developer", DEVELOPER), message("user", USER_TURNS[2])],
                        "temperature": 0, "max_output_tokens": 24})
    second = post(base, {"model": "cached", "previous_response_id": first["id"], "input": USER_TURNS[1],
                         "temperature": 0, "max_output_tokens": 24})
    reused = second["usage"]["input_tokens_details"]["cached_tokens"]
    assert first["usage"]["input_tokens"] <= reused < second["usage"]["input_tokens"]


def test_entries_are_evicted_when_the_bytes_run_out(base: str) -> None:
    # 0.4 MB holds one of these sessions (~480 tokens at 512 bytes of keys and values each), not two.
    a = codex_session(base, "one-entry", "thread-a", turns=1)
    b = codex_session(base, "one-entry", "thread-b", turns=1, first=2)  # shares the instructions and tools with a
    again = post(base, {"model": "one-entry", "input": [message("developer", DEVELOPER),
                                                        message("user", USER_TURNS[0]), *a[0]["output"],
                                                        message("user", USER_TURNS[1])],
                        "tools": TOOLS, "store": False, "temperature": 0, "max_output_tokens": 24,
                        "prompt_cache_key": "thread-a"})
    reused = again["usage"]["input_tokens_details"]["cached_tokens"]
    shared_with_b = b[0]["usage"]["input_tokens_details"]["cached_tokens"]
    assert shared_with_b > 0  # b's first turn found the developer prompt in a's entry ...
    assert reused == shared_with_b  # ... and a's entry was then evicted: only that shared part is left
    assert reused < a[0]["usage"]["input_tokens"]
    counters = httpx.get(f"{base}/health", timeout=10).json()["models"]["one-entry"]["prefix_cache"]
    assert counters["evictions"] >= 1 and counters["entries"] == 1 and 0 < counters["bytes"] <= 0.4 * 2**20
    assert counters["hits"] >= 2 and counters["misses"] >= 1


def test_metrics_show_the_worker_and_its_cache(base: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    codex_session(base, "cached", "thread-metrics", turns=2)
    text = httpx.get(f"{base}/metrics", timeout=10).text
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in text_string_to_metric_families(text) for s in family.samples}
    model = (("model", "cached"),)
    assert got[("mlxgw_model_state", (("model", "cached"), ("state", "ready")))] == 1
    assert got[("mlxgw_model_loads_total", model)] == 1
    assert got[("mlxgw_model_memory_bytes", model)] > 0
    assert got[("mlxgw_prefix_cache_hits_total", model)] >= 1
    assert got[("mlxgw_model_queue_depth", model)] == 0
    assert got[("mlxgw_tokens_total", (("kind", "cached"), ("model", "cached")))] > 0
