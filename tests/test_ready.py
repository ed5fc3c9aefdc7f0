"""Readiness: stable answers for a load balancer. One broken model never takes the healthy ones out; a gateway
whose every model is broken, whose store is down or which is shutting down is out (503), poll after poll."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from gateway.api.ops import can_serve
from tests.conftest import make_config, serve
from tests.redisproc import RedisProcess

HEALTHY = "  - {name: healthy, adapter: scripted, script: {steps: [{text: hi}]}}\n"
# A local source path that does not exist: the worker starts, the load fails, the model goes backoff → failed.
BROKEN = "  - {name: broken, adapter: mlx, source: /nonexistent/mlxgw-ready-test/model, preload: true}\n"
KEYS = "auth: {keys: [{name: ops, env: READY_TEST_KEY}]}\n"


def poll_while(http: httpx.Client, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0,
               on_poll: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """Poll /ready (and the broken model's state, from that answer or else /health) every 50 ms until `done(polls)`, at most `timeout` s."""
    polls: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not polls or not done(polls):
        assert time.monotonic() < deadline, f"timed out; polls so far: {polls[-5:]}"
        answer = http.get("/ready")
        body = answer.json()
        # The state from the same answer where /ready shows it: a second request could see the next state.
        broken = body["models"]["broken"] if "models" in body else http.get("/health").json()["models"]["broken"]["state"]
        polls.append({"status": answer.status_code, "body": body, "broken": broken})
        if on_poll is not None:
            on_poll(polls)
        time.sleep(0.05)
    return polls


def failed_load(http: httpx.Client) -> None:
    """Wait until the preloaded broken model's first load has failed."""
    poll_while(http, lambda polls: polls[-1]["broken"] in ("backoff", "failed"))


def retry_cycle(http: httpx.Client) -> list[dict[str, Any]]:
    """From `failed`, a request to the broken model retries the load (loading → backoff → failed): the cycle that
    made /ready flap. Returns the polls made across it."""
    poll_while(http, lambda polls: polls[-1]["broken"] == "failed")
    sent: list[int] = []

    def send_once(polls: list[dict[str, Any]]) -> None:
        if not sent:
            sent.append(http.post("/v1/responses", json={"model": "broken", "input": "x"}).status_code)

    polls = poll_while(http, lambda polls: bool(sent) and [p["broken"] for p in polls][-1] == "failed"
                       and "backoff" in [p["broken"] for p in polls], on_poll=send_once)
    assert sent == [503]
    return polls


def test_one_broken_model_leaves_the_gateway_ready_poll_after_poll() -> None:
    with serve(make_config("models:\n" + HEALTHY + BROKEN)) as base, httpx.Client(base_url=base, timeout=10) as http:
        failed_load(http)
        polls = retry_cycle(http)
        assert {p["broken"] for p in polls} >= {"backoff", "failed"}
        assert [p["status"] for p in polls] == [200] * len(polls)  # not a single 503 across the whole cycle
        body = polls[-1]["body"]
        assert body == {"ready": True, "problems": [], "manifest_version": 1, "store": "ok",
                        "models": {"healthy": "ready", "broken": "failed"}, "unavailable": ["broken"]}
        assert http.post("/v1/responses", json={"model": "healthy", "input": "x"}).status_code == 200
        assert http.get("/health").json()["status"] == "degraded"  # alive, but a model cannot serve


def test_only_broken_models_keep_the_gateway_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READY_TEST_KEY", "ready-key")
    keyed = {"authorization": "Bearer ready-key"}
    with serve(make_config(KEYS + "models:\n" + BROKEN)) as base, \
            httpx.Client(base_url=base, timeout=10, headers=keyed) as http:
        failed_load(http)
        polls = retry_cycle(http)
        assert {p["broken"] for p in polls} >= {"backoff", "failed"}
        assert [p["status"] for p in polls] == [503] * len(polls)  # a retry does not make it look ready
        assert polls[-1]["body"] == {"ready": False, "problems": ["models: none can serve"], "manifest_version": 1,
                                     "store": "ok", "models": {"broken": "failed"}, "unavailable": ["broken"]}
        anonymous = httpx.get(f"{base}/ready", timeout=10)
        assert (anonymous.status_code, anonymous.json()) == (503, {"ready": False})  # no key: the verdict only
        probe = httpx.head(f"{base}/ready", timeout=10)  # balancers that probe with HEAD get the same verdict
        assert (probe.status_code, probe.content) == (503, b"")
        assert httpx.head(f"{base}/health", timeout=10).status_code == 200  # alive


def test_a_store_that_stops_answering_takes_the_gateway_out(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis").start()
    try:
        manifest = f"store: {{url: '{redis.url}'}}\nmodels:\n" + HEALTHY
        with serve(make_config(manifest)) as base, httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/ready").status_code == 200
            redis.stop()
            statuses = []
            for _ in range(5):  # every poll: a balancer must not see it come and go
                answer = http.get("/ready")
                statuses.append(answer.status_code)
                assert answer.json()["problems"] == ["store: unavailable"]
                assert answer.json()["models"] == {"healthy": "ready"}
            assert statuses == [503] * 5
            redis.start()
            deadline = time.monotonic() + 15
            while http.get("/ready").status_code != 200:
                assert time.monotonic() < deadline, "/ready did not recover with the store"
                time.sleep(0.1)
    finally:
        redis.stop()


def test_a_draining_gateway_is_not_ready(client: TestClient) -> None:
    assert client.get("/ready").status_code == 200
    assert client.head("/ready").status_code == 200
    client.app.state.runtime.draining = True  # what SIGTERM sets before the grace period
    assert client.head("/ready").status_code == 503
    answer = client.get("/ready")
    assert answer.status_code == 503
    assert answer.json()["problems"] == ["draining: the gateway is shutting down"]


@pytest.mark.parametrize(("model", "serves"), [
    ({"state": "ready"}, True),
    ({"state": "unloaded", "last_error": None}, True),  # loads on demand
    ({"state": "loading", "last_error": None}, True),  # a first load (or after an idle unload)
    ({"state": "loading", "last_error": "no model directory"}, False),  # a retry after a failure
    ({"state": "backoff", "last_error": "x"}, False),
    ({"state": "failed", "last_error": "x"}, False),
    ({"state": "crashed", "last_error": "x"}, False),
    ({"state": "closed"}, False),
])
def test_which_model_states_can_serve(model: dict[str, Any], serves: bool) -> None:
    assert can_serve(model) is serves
