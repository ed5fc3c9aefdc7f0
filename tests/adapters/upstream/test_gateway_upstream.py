"""A `gateway run` as the upstream of another (`api: responses`): the scale-out layout, with real processes.

The front keeps the chain; the model host gets the whole conversation with `store: false` and keeps nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.model_host import model_host
from tests.process import GatewayProcess
from tests.sse import response_events

WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}

WEATHER_MODEL = """
  - name: weather
    adapter: scripted
    script:
      steps:
        - reasoning: "I need the weather."
          calls: [{function: get_weather, arguments: {city: Paris}}]
        - text: "It is sunny in Paris."
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with model_host(tmp_path_factory.mktemp("host"), WEATHER_MODEL) as process:
        yield process


@pytest.fixture(scope="module")
def front(host: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("front")
    manifest = folder / "front.yaml"
    manifest.write_text(
        "models:\n"
        f"  - {{name: coder, adapter: upstream, api: responses, model: local-mlx, base_url: '{host.base}/v1'}}\n"
        f"  - {{name: weather, adapter: upstream, api: responses, base_url: '{host.base}/v1'}}\n"
    )
    with GatewayProcess(manifest, folder / "front.log") as process:
        yield process


def _stored_bytes(gateway: GatewayProcess) -> float:
    for line in httpx.get(f"{gateway.base}/metrics", timeout=5).text.splitlines():
        if line.startswith("mlxgw_store_memory_bytes "):
            return float(line.split()[1])
    raise AssertionError("no mlxgw_store_memory_bytes")


def _post(front: GatewayProcess, **body: Any) -> httpx.Response:
    return httpx.post(f"{front.base}/v1/responses", json=body, timeout=120)


@pytest.mark.parametrize("stream", [False, True])
def test_a_real_mlx_model_answers_through_two_gateways(front: GatewayProcess, host: GatewayProcess,
                                                       stream: bool) -> None:
    sentence = "Say this back, word for word."
    answer = _post(front, model="coder", input=sentence, stream=stream)
    assert answer.status_code == 200, answer.text
    body = response_events(answer.text)[-1]["response"] if stream else answer.json()
    assert body["status"] == "completed" and body["model"] == "coder"
    assert body["output"][-1]["content"][0]["text"] == sentence  # forced through real mlx-lm generation
    assert body["usage"]["input_tokens"] > 5 and body["usage"]["output_tokens"] >= 5
    assert httpx.get(f"{front.base}/v1/responses/{body['id']}", timeout=5).json()["status"] == "completed"
    assert _stored_bytes(host) == 0  # the model host was sent store: false


def test_a_tool_round_trip_chains_on_the_front_and_the_host_sees_the_whole_conversation(
    front: GatewayProcess, host: GatewayProcess
) -> None:
    first = _post(front, model="weather", input="Weather in Paris?", tools=[WEATHER], stream=True)
    events = response_events(first.text)
    response = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    reasoning, call = response["output"]
    assert reasoning["type"] == "reasoning" and reasoning["content"][0]["text"] == "I need the weather."  # once
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["arguments"] == '{"city":"Paris"}'
    second = _post(front, model="weather", previous_response_id=response["id"], tools=[WEATHER],
                   input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}])
    assert second.status_code == 200, second.text
    # The scripted host picks its step by the tool outputs in what it received: step 1 means it got the history.
    assert second.json()["output"][-1]["content"][0]["text"] == "It is sunny in Paris."
    assert _stored_bytes(host) == 0


def test_input_tokens_on_the_front_are_the_hosts_count(front: GatewayProcess, host: GatewayProcess) -> None:
    body = {"input": [{"role": "user", "content": "Count these tokens, please."}]}
    via_front = httpx.post(f"{front.base}/v1/responses/input_tokens", json={"model": "coder", **body}, timeout=60)
    direct = httpx.post(f"{host.base}/v1/responses/input_tokens", json={"model": "local-mlx", **body}, timeout=60)
    assert via_front.status_code == direct.status_code == 200
    assert via_front.json()["input_tokens"] == direct.json()["input_tokens"] > 5


def test_the_front_names_the_host_in_health(front: GatewayProcess, host: GatewayProcess) -> None:
    model = httpx.get(f"{front.base}/health", timeout=5).json()["models"]["coder"]
    assert model["adapter"] == "upstream" and model["state"] == "ready"
    assert [r["url"] for r in model["replicas"]] == [f"{host.base}/v1"] and model["replicas"][0]["requests"] >= 1
