"""mlx_lm.server as a chat upstream (`api: chat`), a real process on a dummy model: text streamed and not, the
length limit, and a tool call found by mlx_lm.server's own parser, all coming out of the front as Responses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.adapters.mlx.dummy import ensure_dummy
from gateway.config import DummyArch
from tests.process import GatewayProcess, free_port, wait_for
from tests.sse import response_events

TEXT = "Hello from mlx_lm.server."
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch = DummyArch(hidden_size=64, layers=2, heads=2, kv_heads=1, intermediate_size=128, vocab_size=1024)
    return ensure_dummy(arch, tmp_path_factory.mktemp("mlx-cache"))


def _server(model_dir: Path, force: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "tests.adapters.upstream.forced_mlx_lm_server", "--model", str(model_dir),
               "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                   env={**os.environ, "FORCE_TEXT": force, "HF_HUB_OFFLINE": "1"})
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"{base}/v1/models", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=60, what="mlx_lm.server")
    return process, base


@pytest.fixture(scope="module")
def front(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("mlx-lm-server")
    servers = [_server(model_dir, TEXT, folder / "text.log"), _server(model_dir, CALL, folder / "call.log")]
    (_, text_base), (_, call_base) = servers
    manifest = folder / "front.yaml"
    manifest.write_text(
        "models:\n"
        f"  - {{name: talker, adapter: upstream, api: chat, base_url: '{text_base}/v1', model: '{model_dir}'}}\n"
        f"  - {{name: caller, adapter: upstream, api: chat, base_url: '{call_base}/v1', model: '{model_dir}'}}\n"
    )
    try:
        with GatewayProcess(manifest, folder / "front.log") as process:
            yield process
    finally:
        for server, _ in servers:
            server.kill()
            server.wait(timeout=10)


def _post(front: GatewayProcess, **body: Any) -> httpx.Response:
    return httpx.post(f"{front.base}/v1/responses", json=body, timeout=120)


@pytest.mark.parametrize("stream", [False, True])
def test_text_from_mlx_lm_server_comes_out_as_a_response(front: GatewayProcess, stream: bool) -> None:
    answer = _post(front, model="talker", input="Say hello.", stream=stream)
    assert answer.status_code == 200, answer.text
    if stream:
        events = response_events(answer.text)
        deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
        assert len(deltas) > 1 and "".join(deltas) == TEXT  # streamed as it was generated, not in one piece
        body = events[-1]["response"]
    else:
        body = answer.json()
    assert body["status"] == "completed"
    assert body["output"][-1]["content"][0]["text"] == TEXT
    assert body["usage"]["input_tokens"] > 3 and body["usage"]["output_tokens"] >= len(TEXT.split())


def test_max_output_tokens_reaches_mlx_lm_server(front: GatewayProcess) -> None:
    answer = _post(front, model="talker", input="Say hello.", max_output_tokens=2)
    body = answer.json()
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["output_tokens"] == 2 and TEXT.startswith(body["output"][-1]["content"][0]["text"])


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_parsed_by_mlx_lm_server_is_a_function_call(front: GatewayProcess, stream: bool) -> None:
    answer = _post(front, model="caller", input="Weather in Paris?", tools=[WEATHER], stream=stream)
    assert answer.status_code == 200, answer.text
    body = response_events(answer.text)[-1]["response"] if stream else answer.json()
    assert body["status"] == "completed"
    (call,) = [item for item in body["output"] if item["type"] == "function_call"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    assert call["call_id"]
    assert not [item for item in body["output"] if item["type"] == "message"]  # the markup never leaks as text
