"""Continuous batching through a real worker: concurrent greedy answers equal solo ones, a cancel
removes only its own sequence, and a full queue is refused with a clear 429."""

from __future__ import annotations

import concurrent.futures
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import parse_config
from tests.conftest import serve
from tests.process import wait_for
from tests.sse import iter_response_events

pytestmark = pytest.mark.mlx

PROMPTS = [
    "Read the config file and list every model it names.",
    "hello",
    "Fix the failing test in tests/test_store.py, then run the whole suite again and report.",
    "What does this function return when the input list is empty? " * 3,
]


@pytest.fixture(scope="module")
def base(mlx_cache: Path) -> Iterator[str]:
    # `distinct` makes greedy output depend on the whole logit ranking, so a wrong row or cache shows in the
    # text; `plain` runs the production path (no logits processors at all). Step delays make streams overlap.
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: distinct, adapter: mlx, source: dummy, prefix_cache_mb: 0, testing: {{distinct: true, step_delay_ms: 15}}}}
  - {{name: plain, adapter: mlx, source: dummy, prefix_cache_mb: 0, testing: {{step_delay_ms: 10}}}}
  - {{name: limited, adapter: mlx, source: dummy, max_batch: 2, max_queued: 1,
      testing: {{force: last_user, step_delay_ms: 30}}}}
"""
    with serve(parse_config(manifest)) as url:
        yield url


def stream(base: str, model: str, text: str, tokens: int, stop_after: int | None = None) -> list[tuple[float, dict[str, Any]]]:
    body = {"model": model, "input": text, "stream": True, "temperature": 0, "max_output_tokens": tokens}
    events: list[tuple[float, dict[str, Any]]] = []
    with httpx.Client(base_url=base, timeout=60) as http, http.stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200
        for when, event in iter_response_events(response):
            events.append((when, event))
            deltas = sum(e["type"] == "response.output_text.delta" for _, e in events)
            if stop_after is not None and deltas == stop_after:
                break  # leaving the block closes the connection: the gateway cancels
    return events


def answer(events: list[tuple[float, dict[str, Any]]]) -> tuple[str, int]:
    final = events[-1][1]
    assert final["type"] in ("response.completed", "response.incomplete"), final
    text = "".join(e["delta"] for _, e in events if e["type"] == "response.output_text.delta")
    return text, final["response"]["usage"]["output_tokens"]


def delta_times(events: list[tuple[float, dict[str, Any]]]) -> list[float]:
    return [t for t, e in events if e["type"] == "response.output_text.delta"]


def health(base: str, model: str) -> dict[str, Any]:
    return httpx.get(f"{base}/health", timeout=10).json()["models"][model]  # type: ignore[no-any-return]


@pytest.mark.parametrize("model", ["distinct", "plain"])
def test_concurrent_greedy_answers_equal_their_solo_answers(base: str, model: str) -> None:
    lengths = [40, 24, 48, 32]
    solo = [answer(stream(base, model, text, n)) for text, n in zip(PROMPTS, lengths, strict=False)]
    assert all(tokens == n for (_, tokens), n in zip(solo, lengths, strict=False))  # every answer ran to its budget
    if model == "distinct":
        assert len({text for text, _ in solo}) == len(solo) and all(len(set(t)) > 5 for t, _ in solo)

    # The first request runs alone, then the others join it mid-answer (it moves into the batch) and
    # leave at different times (the last one goes back to decoding alone).
    first_deltas = threading.Event()

    def first() -> list[tuple[float, dict[str, Any]]]:
        events: list[tuple[float, dict[str, Any]]] = []
        body = {"model": model, "input": PROMPTS[0], "stream": True, "temperature": 0, "max_output_tokens": lengths[0]}
        with httpx.Client(base_url=base, timeout=60) as http, http.stream("POST", "/v1/responses", json=body) as r:
            for item in iter_response_events(r):
                events.append(item)
                if len(delta_times(events)) == 3:
                    first_deltas.set()
        first_deltas.set()
        return events

    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        leader = pool.submit(first)
        assert first_deltas.wait(30)
        others = [pool.submit(stream, base, model, text, n) for text, n in zip(PROMPTS[1:], lengths[1:], strict=False)]
        runs = [leader.result(60), *(f.result(60) for f in others)]
    assert [answer(run) for run in runs] == solo
    spans = [(delta_times(run)[0], delta_times(run)[-1]) for run in runs]
    for start, end in spans[1:]:
        assert start < spans[0][1] and spans[0][0] < end  # each joined while the first was still streaming


def test_cancelling_one_sequence_leaves_the_others_unchanged(base: str) -> None:
    keep = [(PROMPTS[0], 40), (PROMPTS[2], 56)]
    solo = [answer(stream(base, "distinct", text, n)) for text, n in keep]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(stream, base, "distinct", text, n) for text, n in keep]
        victim = pool.submit(stream, base, "distinct", PROMPTS[3], 300, stop_after=4)
        cut = victim.result(60)
        results = [run.result(60) for run in runs]
    assert [answer(run) for run in results] == solo
    assert cut[-1][1]["type"] == "response.output_text.delta"  # it never finished: the client left
    state = wait_for(lambda: (s := health(base, "distinct"))["active"] == 0 and "last_cancel" in s and s, 10, "cancel")
    assert state["last_cancel"]["after_cancel"] <= 1  # removed before the next step, not at the end of the batch
    assert state["last_cancel"]["generated"] < 40


def test_a_full_queue_is_refused_with_a_429_envelope(base: str) -> None:
    words = " ".join(f"w{i}" for i in range(40))
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(stream, base, "limited", f"{i} {words}", 200) for i in range(3)]
        # Two are generating (max_batch: 2) and one waits (max_queued: 1): the model is full.
        wait_for(lambda: health(base, "limited")["active"] == 3, 30, "three requests in flight")
        refused = httpx.post(f"{base}/v1/responses", json={"model": "limited", "input": "one more"}, timeout=30)
        with httpx.Client(base_url=base, timeout=30) as http:
            body = {"model": "limited", "input": "one more", "stream": True}
            with http.stream("POST", "/v1/responses", json=body) as response:
                streamed = [e for _, e in iter_response_events(response)]
        answers = [answer(run.result(60)) for run in runs]
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert "2 requests are being generated and 1 more are waiting" in error["message"]
    assert streamed[-1]["type"] == "response.failed"
    assert streamed[-1]["response"]["error"]["code"] == "rate_limit_exceeded"
    assert [text for text, _ in answers] == [f"{i} {words}" for i in range(3)]  # none of the admitted ones suffered
