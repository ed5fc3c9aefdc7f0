"""Worker lifecycle over HTTP: load failures, crashes, concurrency, cancellation, idle unload, eviction."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import parse_config
from tests.adapters.mlx.conftest import pid_alive
from tests.conftest import serve
from tests.process import wait_for
from tests.sse import iter_response_events

pytestmark = pytest.mark.mlx

LONG = " ".join(f"word{i}" for i in range(150))  # ~300 forced tokens: seconds at 30 ms a step


def manifest(cache: Path, models: str, mlx: str = "") -> str:
    return f"mlx: {{cache_dir: {json.dumps(str(cache))}{mlx}}}\nmodels:\n{models}"


@pytest.fixture(scope="module")
def base(mlx_cache: Path) -> Iterator[str]:
    models = """
  - {name: a, adapter: mlx, source: dummy, testing: {force: last_user, step_delay_ms: 30}}
  - {name: b, adapter: mlx, source: dummy, max_batch: 1, max_queued: 2, testing: {force: last_user, step_delay_ms: 30}}
  - {name: missing, adapter: mlx, source: /nonexistent/models/qwen}
  - {name: offline, adapter: mlx, source: "hf:mlx-community/not-a-cached-model-4bit"}
"""
    with serve(parse_config(manifest(mlx_cache, models))) as url:
        yield url


def health(base: str, model: str) -> dict[str, Any]:
    return httpx.get(f"{base}/health", timeout=10).json()["models"][model]  # type: ignore[no-any-return]


def timed_stream(base: str, model: str, text: str) -> list[tuple[float, dict[str, Any]]]:
    with httpx.Client(base_url=base, timeout=60) as http:
        with http.stream("POST", "/v1/responses", json={"model": model, "input": text, "stream": True}) as response:
            return list(iter_response_events(response))


def test_a_model_that_cannot_load_answers_503_with_the_reason(base: str) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        first = http.post("/v1/responses", json={"model": "missing", "input": "hi"})
        assert first.status_code == 503
        error = first.json()["error"]
        assert error["code"] == "model_unavailable"
        assert "no model directory at '/nonexistent/models/qwen'" in error["message"]
        again = http.post("/v1/responses", json={"model": "missing", "input": "hi"})  # within the backoff: no worker
        assert again.status_code == 503 and "next attempt in" in again.json()["error"]["message"]
        assert health(base, "missing")["load_failures"] == 1 and health(base, "missing")["state"] == "backoff"

        offline = http.post("/v1/responses", json={"model": "offline", "input": "hi"})
        assert offline.status_code == 503
        assert "not in the Hugging Face cache" in offline.json()["error"]["message"]


def test_a_load_failure_while_streaming_ends_with_response_failed(base: str) -> None:
    time.sleep(1.1)  # past the first backoff step of 'offline' (1 s), so this request tries again
    events = [e for _, e in timed_stream(base, "offline", "hi")]
    assert next(e["type"] for e in events) == "response.created"
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "model_unavailable"
    assert health(base, "offline")["load_failures"] == 2


def test_two_models_stream_at_the_same_time(base: str) -> None:
    text = " ".join(f"w{i}" for i in range(30))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda m: timed_stream(base, m, "warm"), ["a", "b"]))  # loaded first: loads take unequal time
        runs = list(pool.map(lambda m: timed_stream(base, m, text), ["a", "b"]))
    deltas = [[t for t, e in run if e["type"] == "response.output_text.delta"] for run in runs]
    assert all(run[-1][1]["type"] == "response.completed" for run in runs)
    assert all(len(d) > 10 for d in deltas)
    # Each model was producing tokens while the other was too: the two streams overlap.
    assert deltas[0][0] < deltas[1][-1] and deltas[1][0] < deltas[0][-1]


def test_a_killed_worker_fails_its_stream_leaves_others_alone_and_restarts(base: str) -> None:
    timed_stream(base, "a", "warm up")  # make sure a is loaded, so its pid is known
    victim = health(base, "a")["pid"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        other = pool.submit(timed_stream, base, "b", " ".join(f"b{i}" for i in range(40)))
        with httpx.Client(base_url=base, timeout=60) as http:
            with http.stream("POST", "/v1/responses", json={"model": "a", "input": LONG, "stream": True}) as response:
                events: list[dict[str, Any]] = []
                for _, event in iter_response_events(response):
                    events.append(event)
                    if event["type"] == "response.output_text.delta" and sum(
                        e["type"] == "response.output_text.delta" for e in events
                    ) == 3:
                        os.kill(victim, signal.SIGKILL)
        other_events = [e for _, e in other.result(timeout=60)]
    assert events[-1]["type"] == "response.failed"
    error = events[-1]["response"]["error"]
    assert error["code"] == "model_unavailable" and "SIGKILL" in error["message"]
    assert other_events[-1]["type"] == "response.completed"  # b never noticed
    state = health(base, "a")
    assert state["crashes"] == 1 and not pid_alive(victim)

    restarted = [e for _, e in timed_stream(base, "a", "back again")]
    assert restarted[-1]["type"] == "response.completed"
    assert restarted[-1]["response"]["output"][0]["content"][0]["text"] == "back again"
    state = health(base, "a")
    assert state["state"] == "ready" and state["pid"] != victim and state["loads"] == 2


def test_a_client_disconnect_stops_generation_within_a_step(base: str) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        served = health(base, "a")["served"]
        with http.stream("POST", "/v1/responses", json={"model": "a", "input": LONG, "stream": True}) as response:
            seen = 0
            for _, event in iter_response_events(response):
                seen += event["type"] == "response.output_text.delta"
                if seen == 3:
                    break  # leaving the block closes the connection
        state = wait_for(lambda: (s := health(base, "a"))["active"] == 0 and "last_cancel" in s and s, 5, "the cancel")
        # 300 tokens were asked for; the loop stopped at the next token boundary after the cancel arrived.
        assert state["last_cancel"]["after_cancel"] <= 1
        assert state["last_cancel"]["generated"] < 60
        assert state["served"] == served
        began = time.monotonic()
        quick = [e for _, e in timed_stream(base, "a", "next")]
        assert quick[-1]["type"] == "response.completed" and time.monotonic() - began < 5


def test_requests_beyond_a_busy_worker_queue_and_then_overflow(base: str) -> None:
    def post(_: int) -> httpx.Response:
        return httpx.post(f"{base}/v1/responses", json={"model": "b", "input": "one two three four"}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(post, range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 429]  # one served, two queued (max_queued: 2), one turned away
    answers = [r.json()["output"][0]["content"][0]["text"] for r in responses if r.status_code == 200]
    assert answers == ["one two three four"] * 3
    assert next(r for r in responses if r.status_code == 429).json()["error"]["code"] == "rate_limit_exceeded"


def test_idle_models_unload_and_come_back_and_preload_loads_at_start(mlx_cache: Path) -> None:
    models = """
  - {name: idle, adapter: mlx, source: dummy, idle_unload_seconds: 0.5, testing: {force: last_user, step_delay_ms: 20}}
  - {name: eager, adapter: mlx, source: dummy, preload: true}
"""
    with serve(parse_config(manifest(mlx_cache, models))) as url:
        wait_for(lambda: health(url, "eager")["state"] == "ready", 30, "the preload")
        assert health(url, "idle")["state"] == "unloaded"
        pid = None
        with httpx.Client(base_url=url, timeout=60) as http:
            with http.stream("POST", "/v1/responses", json={"model": "idle", "input": "hello " * 10, "stream": True}) as r:
                for _, event in iter_response_events(r):
                    if pid is None and event["type"] == "response.output_text.delta":
                        pid = health(url, "idle")["pid"]  # busy while streaming: cannot be unloaded under us
                assert event["response"]["output"][0]["content"][0]["text"] == "hello " * 10
        assert pid is not None
        wait_for(lambda: health(url, "idle")["state"] == "unloaded", 10, "the idle unload")
        assert not pid_alive(pid) and health(url, "idle")["unloads"] == 1
        second = httpx.post(f"{url}/v1/responses", json={"model": "idle", "input": "again"}, timeout=60).json()
        assert second["output"][0]["content"][0]["text"] == "again"
        state = health(url, "idle")
        assert state["loads"] == 2 and state["pid"] != pid
        assert health(url, "eager")["state"] == "ready"  # no idle limit: stays loaded


def test_the_least_recently_used_model_is_evicted_under_the_cap(mlx_cache: Path) -> None:
    models = "".join(f"  - {{name: {n}, adapter: mlx, source: dummy, testing: {{force: last_user}}}}\n" for n in "xyz")
    with serve(parse_config(manifest(mlx_cache, models, ", max_loaded_models: 2"))) as url:
        def ask(model: str) -> None:
            answer = httpx.post(f"{url}/v1/responses", json={"model": model, "input": model}, timeout=60).json()
            assert answer["output"][0]["content"][0]["text"] == model

        def states() -> dict[str, str]:
            models = httpx.get(f"{url}/health", timeout=10).json()["models"]
            return {name: models[name]["state"] for name in "xyz"}

        ask("x")
        ask("y")
        x_pid = health(url, "x")["pid"]
        ask("z")
        assert states() == {"x": "unloaded", "y": "ready", "z": "ready"}
        assert not pid_alive(x_pid)
        ask("y")  # y is now more recent than z
        ask("x")
        assert states() == {"x": "ready", "y": "ready", "z": "unloaded"}
        assert health(url, "x")["loads"] == 2 and health(url, "z")["unloads"] == 1


def test_an_hf_source_is_served_from_the_local_cache_offline(
    mlx_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--acme--tiny-chat"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (dummy,) = mlx_cache.glob("dummy-*")
    shutil.copytree(dummy, repo / "snapshots" / commit)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # the worker is spawned with this environment
    models = '  - {name: cached, adapter: mlx, source: "hf:acme/tiny-chat", testing: {force: last_user}}\n'
    with serve(parse_config(manifest(mlx_cache, models))) as url:
        answer = httpx.post(f"{url}/v1/responses", json={"model": "cached", "input": "from the cache"}, timeout=60)
        assert answer.json()["output"][0]["content"][0]["text"] == "from the cache"
        assert health(url, "cached")["state"] == "ready"
