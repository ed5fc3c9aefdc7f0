"""Streaming behaviour only a real socket shows: timing of events, keepalives, disconnects."""

from __future__ import annotations

import time

import httpx

from tests.conftest import make_config, serve
from tests.sse import iter_response_events, response_events

SLOW = """
server: {keepalive_seconds: 0.2}
models:
  - name: slow
    adapter: scripted
    script:
      first_delay_ms: 1000
      delay_ms: 40
      chunk_chars: 1
      steps: [{text: "%s"}]
""" % ("x" * 300)


def test_events_arrive_as_they_happen_with_keepalives_during_prefill() -> None:
    with serve(make_config(SLOW)) as base, httpx.Client(base_url=base, timeout=10) as http:
        started = time.monotonic()
        arrivals = []
        with http.stream("POST", "/v1/responses", json={"model": "slow", "input": "hi", "stream": True}) as response:
            for at, event in iter_response_events(response):
                arrivals.append((at - started, event["type"]))
                if event["type"] == "response.output_text.delta":
                    break
        assert arrivals[0][1] == "response.created"
        assert arrivals[0][0] < 0.5  # sent before the model produced anything
        first_delta = arrivals[-1][0]
        assert first_delta >= 0.9
        keepalives = [t for t, kind in arrivals[2:] if kind == "response.in_progress"]
        assert len(keepalives) >= 3
        gaps = [b - a for a, b in zip([arrivals[1][0], *keepalives], [*keepalives, first_delta], strict=True)]
        assert max(gaps) < 0.6  # never silent for long


def test_client_disconnect_cancels_generation_promptly() -> None:
    with serve(make_config(SLOW)) as base, httpx.Client(base_url=base, timeout=10) as http:
        with http.stream("POST", "/v1/responses", json={"model": "slow", "input": "hi", "stream": True}) as response:
            during = None
            for _, event in iter_response_events(response):
                if event["type"] == "response.output_text.delta":
                    # Still reading (leaving the loop closes the connection): the generation is running.
                    during = http.get("/health").json()["models"]["slow"]
                    break
        assert during is not None, "no text delta arrived"
        assert during["active"] == 1 and during["served"] == 0
        deadline = time.monotonic() + 2
        state = {}
        while time.monotonic() < deadline:
            state = http.get("/health").json()["models"]["slow"]
            if state["active"] == 0:
                break
            time.sleep(0.02)
        # The script needs 300 x 40 ms = 12 s; it stopped within 2 s of the disconnect.
        assert state["active"] == 0 and state["served"] == 1


def test_two_streams_at_once_do_not_wait_for_each_other() -> None:
    manifest = """
models:
  - {name: a, adapter: scripted, script: {delay_ms: 20, chunk_chars: 1, steps: [{text: "aaaaaaaaaaaaaaaaaaaa"}]}}
  - {name: b, adapter: scripted, script: {delay_ms: 20, chunk_chars: 1, steps: [{text: "bbbbbbbbbbbbbbbbbbbb"}]}}
"""
    import concurrent.futures

    with serve(make_config(manifest)) as base:
        def run(model: str) -> float:
            with httpx.Client(base_url=base, timeout=10) as http:
                began = time.monotonic()
                text = http.post("/v1/responses", json={"model": model, "input": "x", "stream": True}).text
                assert response_events(text)[-1]["type"] == "response.completed"
                return time.monotonic() - began

        began = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            durations = list(pool.map(run, ["a", "b"]))
        wall = time.monotonic() - began
        assert wall < sum(durations) * 0.8  # they overlapped
