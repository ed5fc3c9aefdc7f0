"""Upstream faults through a real front gateway to a real misbehaving upstream (stub_server.py): each fault gets
its documented status and envelope before the first byte, or `response.failed` after it, within its timeout; nothing
half-done is stored `completed`; retries, breakers and client disconnects act on the real connection."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adapters.upstream.stub_server import FAULTS
from tests.process import GatewayProcess, free_port, wait_for
from tests.sse import response_events as parse_sse

READ_TIMEOUT = 1.0


class StubProcess:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "tests.adapters.upstream.stub_server",
                                         "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(self._up, timeout=15, what="the stub upstream")

    def _up(self) -> bool:
        assert self.process.poll() is None, self.process.stderr.read() if self.process.stderr else ""
        try:
            return httpx.get(f"{self.base}/v1/models", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.base}/stub/stats", timeout=5).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def _manifest(stub: StubProcess, api: str, extra: str = "") -> str:
    models = "".join(
        f"  - {{name: {api}-{fault}, adapter: upstream, api: {api}, base_url: '{stub.base}/v1', model: {fault}, "
        f"read_timeout_seconds: {READ_TIMEOUT}, connect_timeout_seconds: 1, breaker_failures: 1000{extra}}}\n"
        for fault in FAULTS
    )
    return "models:\n" + models


@pytest.fixture(scope="module")
def stub() -> Iterator[StubProcess]:
    process = StubProcess()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def front(stub: StubProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("front")
    manifest = folder / "gateway.yaml"
    manifest.write_text(_manifest(stub, "chat") + _manifest(stub, "responses").removeprefix("models:\n"))
    with GatewayProcess(manifest, folder / "front.log") as process:
        yield process


def _post(front: GatewayProcess, model: str, **body: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = httpx.post(f"{front.base}/v1/responses", json={"model": model, "input": "hi", **body}, timeout=15)
    return answer, time.monotonic() - started


def _stored(front: GatewayProcess, response_id: str) -> dict[str, Any]:
    return httpx.get(f"{front.base}/v1/responses/{response_id}", timeout=5).json()  # type: ignore[no-any-return]


API = pytest.mark.parametrize("api", ["chat", "responses"])


@API
@pytest.mark.parametrize("stream", [False, True])
def test_a_healthy_upstream_answers_with_text_and_usage(front: GatewayProcess, api: str, stream: bool) -> None:
    answer, _ = _post(front, f"{api}-ok", stream=stream)
    assert answer.status_code == 200
    if stream:
        events = parse_sse(answer.text)
        assert events[-1]["type"] == "response.completed"
        body = events[-1]["response"]
    else:
        body = answer.json()
    assert body["status"] == "completed"
    assert body["output"][-1]["content"][0]["text"] == "Hello there"
    assert body["usage"]["input_tokens"] == 7 and body["usage"]["input_tokens_details"]["cached_tokens"] == 4
    assert _stored(front, body["id"])["status"] == "completed"


@API
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [("status-500", 502, "upstream_error"), ("slow-headers", 504, "upstream_timeout"),
     ("status-401", 502, "upstream_auth_failed")],
)
def test_failures_before_the_first_byte_are_http_errors(
    front: GatewayProcess, api: str, stream: bool, fault: str, status: int, code: str
) -> None:
    answer, elapsed = _post(front, f"{api}-{fault}", stream=stream)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == code and error["type"] == "server_error"
    assert elapsed < READ_TIMEOUT + 2  # the slow upstream is given up on at the read timeout, not retried
    if fault == "status-500":
        assert "engine exploded" in error["message"] and answer.headers["retry-after"] == "1"


@API
def test_an_upstream_4xx_comes_back_as_it_was_given(front: GatewayProcess, api: str) -> None:
    answer, _ = _post(front, f"{api}-status-400", stream=True)
    assert answer.status_code == 400
    assert answer.json()["error"] == {"message": "max_tokens is too large", "type": "invalid_request_error",
                                      "param": "max_tokens", "code": "invalid_value"}


@API
@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [("reset-mid-stream", "upstream_error", "broke"), ("malformed-chunk", "upstream_error", "not JSON"),
     ("hang-mid-stream", "upstream_timeout", "sent nothing"), ("cut-without-finish", "upstream_error", "ended before")],
)
def test_failures_after_the_first_byte_end_the_stream_failed_and_are_stored_failed(
    front: GatewayProcess, api: str, fault: str, code: str, words: str
) -> None:
    answer, elapsed = _post(front, f"{api}-{fault}", stream=True)
    assert answer.status_code == 200  # the upstream had accepted: the client already had its first event
    events = parse_sse(answer.text)
    kinds = [event["type"] for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.failed"
    assert "response.completed" not in kinds and "response.output_text.delta" in kinds
    failed = events[-1]["response"]
    assert failed["error"]["code"] == code and words in failed["error"]["message"]
    assert elapsed < READ_TIMEOUT + 3
    assert _stored(front, failed["id"])["status"] == "failed"


@API
def test_a_mid_stream_failure_of_a_non_streaming_request_is_its_status(front: GatewayProcess, api: str) -> None:
    answer, _ = _post(front, f"{api}-hang-mid-stream")
    assert answer.status_code == 504 and answer.json()["error"]["code"] == "upstream_timeout"
    answer, _ = _post(front, f"{api}-malformed-chunk")
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstream_error"


@API
def test_a_failed_attempt_is_retried_before_the_first_byte(front: GatewayProcess, stub: StubProcess, api: str) -> None:
    before = stub.stats()["attempts"].get("fail-once", 0)
    answer, _ = _post(front, f"{api}-fail-once", stream=True)
    assert answer.status_code == 200 and parse_sse(answer.text)[-1]["type"] == "response.completed"
    assert stub.stats()["attempts"]["fail-once"] - before in (1, 2)  # the 500 was only on the stub's first attempt
    if before == 0:
        assert stub.stats()["attempts"]["fail-once"] == 2


@API
def test_a_client_that_leaves_mid_stream_closes_the_upstream_request(
    front: GatewayProcess, stub: StubProcess, api: str
) -> None:
    before = stub.stats()["closed_early"]
    with httpx.stream("POST", f"{front.base}/v1/responses", timeout=15,
                      json={"model": f"{api}-slow-stream", "input": "hi", "stream": True}) as answer:
        for line in answer.iter_lines():
            if "output_text.delta" in line:
                break  # leave after the first delta
    wait_for(lambda: stub.stats()["closed_early"] > before, timeout=5, what="the upstream to see the client leave")


def test_a_refused_replica_is_skipped_its_breaker_shows_and_a_probe_brings_it_back(
    stub: StubProcess, tmp_path: Path
) -> None:
    dead = free_port()
    manifest = tmp_path / "gateway.yaml"
    manifest.write_text(
        "models:\n  - {name: pair, adapter: upstream, api: chat, model: ok, breaker_failures: 2, "
        f"breaker_open_seconds: 0.5, base_url: ['{stub.base}/v1', 'http://127.0.0.1:{dead}/v1']}}\n"
    )
    with GatewayProcess(manifest, tmp_path / "front.log") as front:
        for _ in range(6):
            answer = httpx.post(f"{front.base}/v1/responses", json={"model": "pair", "input": "hi"}, timeout=15)
            assert answer.status_code == 200  # the refused attempt is retried on the other replica
        model = httpx.get(f"{front.base}/health", timeout=5).json()["models"]["pair"]
        assert model["state"] == "degraded"
        states = {r["url"]: r["state"] for r in model["replicas"]}
        assert states == {f"{stub.base}/v1": "closed", f"http://127.0.0.1:{dead}/v1": "open"}
        assert httpx.get(f"{front.base}/ready", timeout=5).status_code == 200  # one replica still serves
        metrics = httpx.get(f"{front.base}/metrics", timeout=5).text
        assert f'mlxgw_upstream_replica_up{{model="pair",replica="http://127.0.0.1:{dead}/v1"}} 0.0' in metrics
        revived = StubProcess(port=dead)
        try:
            wait_for(lambda: httpx.get(f"{front.base}/health", timeout=5).json()["models"]["pair"]["state"] == "ready",
                     timeout=5, what="the probe to close the breaker")
        finally:
            revived.stop()


def test_every_replica_open_is_unreachable_and_not_ready(tmp_path: Path) -> None:
    manifest = tmp_path / "gateway.yaml"
    manifest.write_text("models:\n  - {name: gone, adapter: upstream, api: chat, breaker_failures: 1, "
                        f"retries: 0, base_url: 'http://127.0.0.1:{free_port()}/v1'}}\n")
    with GatewayProcess(manifest, tmp_path / "front.log") as front:
        first = httpx.post(f"{front.base}/v1/responses", json={"model": "gone", "input": "hi"}, timeout=15)
        assert first.status_code == 502 and "refused" in first.json()["error"]["message"]
        again = httpx.post(f"{front.base}/v1/responses", json={"model": "gone", "input": "hi"}, timeout=15)
        assert again.status_code == 502 and "Every replica" in again.json()["error"]["message"]
        assert httpx.get(f"{front.base}/health", timeout=5).json()["models"]["gone"]["state"] == "unreachable"
        assert httpx.get(f"{front.base}/ready", timeout=5).status_code == 503


@API
def test_a_client_that_leaves_a_non_streaming_request_closes_the_upstream_request(
    front: GatewayProcess, stub: StubProcess, api: str
) -> None:
    """No body has started, so nothing streams to notice the client gone: the gateway watches for the disconnect."""
    before = stub.stats()["closed_early"]
    with pytest.raises(httpx.ReadTimeout):  # the answer would take 10 s; the client gives up after 1 s
        httpx.post(f"{front.base}/v1/responses", json={"model": f"{api}-slow-stream", "input": "hi"}, timeout=1)
    wait_for(lambda: stub.stats()["closed_early"] > before, timeout=5, what="the upstream to see the client leave")


def _chat(front: GatewayProcess, model: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{front.base}/v1/chat/completions", timeout=15,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}], **body})


def test_stop_on_a_responses_upstream_is_applied_by_the_gateway(front: GatewayProcess, stub: StubProcess) -> None:
    """The Responses API has no `stop`: the front ends the text before it and closes the upstream request."""
    answer = _chat(front, "responses-ok", stop=[" the"])
    assert answer.status_code == 200 and "x-gateway-degraded" not in answer.headers
    choice = answer.json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("Hello", "stop")
    assert "stop" not in stub.stats()["last_body"]  # never sent: the upstream would refuse an unknown parameter
    unmatched = _chat(front, "responses-ok", stop=["nowhere"]).json()
    assert unmatched["choices"][0]["message"]["content"] == "Hello there"
    assert unmatched["usage"]["prompt_tokens"] == 7  # ran to its end: the upstream's own usage

    before = stub.stats()["closed_early"]
    started = time.monotonic()
    slow = _chat(front, "responses-slow-stream", stop=["lHe"], stream=True)  # "Hel" every 0.2 s for 10 s
    assert slow.status_code == 200 and time.monotonic() - started < 5
    chunks = [json.loads(line[6:]) for line in slow.text.splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "He"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    wait_for(lambda: stub.stats()["closed_early"] > before, timeout=5, what="the upstream request to be closed")


def test_stop_on_a_chat_upstream_is_the_upstreams_to_apply(front: GatewayProcess, stub: StubProcess) -> None:
    assert _chat(front, "chat-ok", stop=[" the"]).status_code == 200
    assert stub.stats()["last_body"]["stop"] == [" the"]
