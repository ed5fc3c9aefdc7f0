"""The upstream adapter against real engines, all real processes on 127.0.0.1:

* mlx_lm.server (`api: chat`) on a dummy model, forced to say fixed texts: its own template, generation, reasoning
  and tool-call parsing, and usage (cached tokens included) come out of the front gateway as Responses;
* another `gateway run` (`api: responses`) as the model host: the front keeps the chain (previous_response_id), the
  host gets the whole conversation with `store: false` and keeps nothing; usage, reasoning and input token counts
  come through unchanged.

Where the engine's own answer is the reference, the test asks the engine directly for the same conversation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.adapters.mlx.dummy import ensure_dummy
from gateway.config import DummyArch
from tests.adapters.upstream.engine_servers import logged_requests, logged_since, mlx_lm_servers
from tests.model_host import model_host
from tests.process import GatewayProcess
from tests.sse import response_events

pytestmark = pytest.mark.mlx  # every fixture here runs a dummy model through mlx-lm

TEXT = "Hello from mlx_lm.server."
THINK = "<think>\nI should greet.\n</think>\n\nHello."
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"type": "function", "name": "get_weather", "parameters": WEATHER_PARAMETERS}
# The same tool as the front's chat body sends it (gateway/adapters/upstream/bodies.py), for direct requests.
CHAT_WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMETERS}}


def _post(gateway: GatewayProcess, **body: Any) -> httpx.Response:
    return httpx.post(f"{gateway.base}/v1/responses", json=body, timeout=60)


def _final(answer: httpx.Response, stream: bool) -> dict[str, Any]:
    """The finished response, from the JSON body or from the stream's last event."""
    assert answer.status_code == 200, answer.text
    return response_events(answer.text)[-1]["response"] if stream else answer.json()


def _items(response: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [item for item in response["output"] if item["type"] == kind]


def _joined(events: list[dict[str, Any]], kind: str) -> str:
    return "".join(e["delta"] for e in events if e["type"] == kind)


# ================================================================== mlx_lm.server, api: chat


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch = DummyArch(hidden_size=64, layers=2, heads=2, kv_heads=1, intermediate_size=128, vocab_size=1024)
    return ensure_dummy(arch, tmp_path_factory.mktemp("mlx-cache"))


@pytest.fixture(scope="module")
def engines(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    folder = tmp_path_factory.mktemp("mlx-lm-servers")
    with mlx_lm_servers(model_dir, {"talker": TEXT, "thinker": THINK, "caller": CALL}, folder) as bases:
        yield bases


@pytest.fixture(scope="module")
def chat_front(engines: dict[str, str], model_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("chat-front")
    manifest = folder / "front.yaml"
    manifest.write_text("models:\n" + "".join(
        f"  - {{name: {name}, adapter: upstream, api: chat, base_url: '{base}/v1', model: '{model_dir}'}}\n"
        for name, base in engines.items()
    ))
    with GatewayProcess(manifest, folder / "front.log") as process:
        yield process


def _direct_chat(engines: dict[str, str], model_dir: Path, name: str, messages: list[dict[str, Any]],
                 **extra: Any) -> dict[str, Any]:
    """mlx_lm.server's own non-streaming answer (the reference for what the front should report)."""
    answer = httpx.post(f"{engines[name]}/v1/chat/completions", timeout=60,
                        json={"model": str(model_dir), "messages": messages, **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("stream", [False, True])
def test_text_and_usage_from_mlx_lm_server(chat_front: GatewayProcess, engines: dict[str, str], model_dir: Path,
                                           stream: bool) -> None:
    answer = _post(chat_front, model="talker", input="Say hello.", stream=stream)
    body = _final(answer, stream)
    assert body["status"] == "completed"
    (message,) = body["output"]
    assert message["type"] == "message" and message["content"][0]["text"] == TEXT
    if stream:
        deltas = [e["delta"] for e in response_events(answer.text) if e["type"] == "response.output_text.delta"]
        assert len(deltas) > 1 and "".join(deltas) == TEXT  # streamed as generated, not in one piece
    # mlx_lm.server's own count for the same conversation is what the front reports.
    direct = _direct_chat(engines, model_dir, "talker", [{"role": "user", "content": "Say hello."}])["usage"]
    usage = body["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (direct["prompt_tokens"], direct["completion_tokens"])
    assert usage["total_tokens"] == direct["total_tokens"]


def test_cached_prompt_tokens_from_mlx_lm_server(chat_front: GatewayProcess) -> None:
    prompt = "A prompt no other test sends, so its first run finds little of it in the prompt cache."
    first = _final(_post(chat_front, model="talker", input=prompt), stream=False)["usage"]
    again = _final(_post(chat_front, model="talker", input=prompt, stream=True), stream=True)["usage"]
    assert first["input_tokens"] == again["input_tokens"] > 10
    cached_first, cached_again = (u["input_tokens_details"]["cached_tokens"] for u in (first, again))
    assert cached_first < first["input_tokens"] // 2  # at most a shared chat-markup prefix
    assert first["input_tokens"] // 2 < cached_again <= again["input_tokens"]  # mlx_lm.server's prompt cache


@pytest.mark.parametrize("stream", [False, True])
def test_max_output_tokens_reaches_mlx_lm_server(chat_front: GatewayProcess, stream: bool) -> None:
    answer = _post(chat_front, model="talker", input="Say hello.", max_output_tokens=2, stream=stream)
    body = _final(answer, stream)
    if stream:
        assert response_events(answer.text)[-1]["type"] == "response.incomplete"
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["output_tokens"] == 2
    text = body["output"][-1]["content"][0]["text"]
    assert text and TEXT.startswith(text) and text != TEXT


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_from_mlx_lm_server_comes_through_once(chat_front: GatewayProcess, engines: dict[str, str],
                                                         model_dir: Path, stream: bool) -> None:
    direct = _direct_chat(engines, model_dir, "thinker", [{"role": "user", "content": "Greet me."}])
    said = direct["choices"][0]["message"]
    assert "I should greet." in said["reasoning"] and "think>" not in said["content"]  # split by mlx_lm.server
    answer = _post(chat_front, model="thinker", input="Greet me.", stream=stream)
    body = _final(answer, stream)
    reasoning, message = body["output"]
    assert reasoning["type"] == "reasoning" and reasoning["content"][0]["text"] == said["reasoning"]
    assert message["type"] == "message" and message["content"][0]["text"] == said["content"]
    if stream:
        events = response_events(answer.text)
        added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
        assert added == ["reasoning", "message"]
        assert _joined(events, "response.reasoning_text.delta") == said["reasoning"]  # once, not twice


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_parsed_by_mlx_lm_server_is_a_function_call(chat_front: GatewayProcess, engines: dict[str, str],
                                                                model_dir: Path, stream: bool) -> None:
    # Asked directly, mlx_lm.server's own parser turns the markup into tool_calls: the parsing is upstream.
    direct = _direct_chat(engines, model_dir, "caller", [{"role": "user", "content": "Weather?"}],
                          tools=[CHAT_WEATHER])["choices"][0]
    assert direct["finish_reason"] == "tool_calls" and not direct["message"]["content"]
    (parsed,) = direct["message"]["tool_calls"]
    answer = _post(chat_front, model="caller", input="Weather?", tools=[WEATHER], stream=stream)
    body = _final(answer, stream)
    assert body["status"] == "completed"
    (call,) = body["output"]  # the markup never leaks as a message
    assert call["type"] == "function_call" and call["name"] == parsed["function"]["name"] == "get_weather"
    assert json.loads(call["arguments"]) == json.loads(parsed["function"]["arguments"]) == {"city": "Paris"}
    assert call["call_id"]
    if stream:
        events = response_events(answer.text)
        assert _joined(events, "response.function_call_arguments.delta") == call["arguments"]
        (done,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert done["arguments"] == call["arguments"]


def test_a_tool_round_trip_sends_mlx_lm_server_the_whole_conversation(chat_front: GatewayProcess,
                                                                      engines: dict[str, str],
                                                                      model_dir: Path) -> None:
    first = _final(_post(chat_front, model="caller", input="Weather in Paris?", tools=[WEATHER]), stream=False)
    (call,) = _items(first, "function_call")
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
    second = _final(_post(chat_front, model="caller", previous_response_id=first["id"], tools=[WEATHER],
                          input=[output], stream=True), stream=True)
    assert second["status"] == "completed" and second["previous_response_id"] == first["id"]
    # The chain was resolved on the front: mlx_lm.server got (and its template rendered) the whole conversation,
    # so the prompt it counted is the one it counts for that conversation sent explicitly.
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call["call_id"], "type": "function",
             "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["call_id"], "content": "sunny"},
    ]
    direct = _direct_chat(engines, model_dir, "caller", history, tools=[CHAT_WEATHER])["usage"]
    assert second["usage"]["input_tokens"] == direct["prompt_tokens"] > first["usage"]["input_tokens"]


# ================================================================== a gateway as the upstream, api: responses

WEATHER_MODEL = """
  - name: weather
    adapter: scripted
    script:
      steps:
        - reasoning: "I need the weather."
          calls: [{function: get_weather, arguments: {city: Paris}}]
        - text: "It is sunny in Paris."
"""
# Forced on the host's MLX model (`testing: {force: last_user}`); \x1f splits tokenization at the think markers.
FORCED_THINK = "<think>\x1fI should greet.\x1f</think>\x1fHello there."


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


def _stored(gateway: GatewayProcess, response_id: str) -> bool:
    status = httpx.get(f"{gateway.base}/v1/responses/{response_id}", timeout=5).status_code
    assert status in (200, 404), status
    return status == 200


def _host_stored_nothing(host: GatewayProcess, model: str, before: int, count: int) -> list[dict[str, Any]]:
    """The host's `count` log lines for `model` after the first `before`; checks it kept none of those responses."""
    lines = logged_since(host, model, before, count)
    assert [_stored(host, line["response_id"]) for line in lines] == [False] * count
    return lines


def test_the_host_stores_what_it_is_asked_to(host: GatewayProcess) -> None:
    """The control for the `store: false` checks below: a request sent to the host itself is kept."""
    body = _final(_post(host, model="weather", input="Weather?", tools=[WEATHER]), stream=False)
    assert _stored(host, body["id"])


@pytest.mark.parametrize("stream", [False, True])
def test_a_real_mlx_model_through_two_gateways(front: GatewayProcess, host: GatewayProcess, stream: bool) -> None:
    before = len(logged_requests(host, "local-mlx"))
    direct = _final(_post(host, model="local-mlx", input=FORCED_THINK, store=False), stream=False)
    answer = _post(front, model="coder", input=FORCED_THINK, stream=stream)
    body = _final(answer, stream)
    assert body["status"] == "completed" and body["model"] == "coder"
    assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
    reasoning, message = body["output"]
    assert reasoning["content"] == direct["output"][0]["content"] == [{"type": "reasoning_text",
                                                                       "text": "I should greet."}]
    assert message["content"][0]["text"] == direct["output"][1]["content"][0]["text"] == "Hello there."
    if stream:
        events = response_events(answer.text)
        assert _joined(events, "response.reasoning_text.delta") == "I should greet."  # once, not twice
        assert _joined(events, "response.output_text.delta") == "Hello there."
    # The usage is the host's, cached tokens (its prefix cache, warm from the direct request) included.
    lines = _host_stored_nothing(host, "local-mlx", before, 2)  # the direct request, and the front's
    (logged,) = [line for line in lines if line["response_id"] != direct["id"]]
    usage = body["usage"]
    assert usage["input_tokens"] == logged["input_tokens"] == direct["usage"]["input_tokens"]
    assert usage["output_tokens"] == logged["output_tokens"] == direct["usage"]["output_tokens"]
    assert usage["input_tokens_details"]["cached_tokens"] == logged["cached_tokens"] > 0
    assert usage["output_tokens_details"]["reasoning_tokens"] == direct["usage"]["output_tokens_details"][
        "reasoning_tokens"] > 0
    assert _stored(front, body["id"])


def test_a_real_mlx_tool_call_through_two_gateways(front: GatewayProcess) -> None:
    body = _final(_post(front, model="coder", input=CALL, tools=[WEATHER]), stream=False)
    (call,) = body["output"]  # parsed by the host's MLX adapter, passed on as a function_call
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_round_trip_chains_on_the_front_and_the_host_keeps_nothing(front: GatewayProcess,
                                                                          host: GatewayProcess,
                                                                          stream: bool) -> None:
    before = len(logged_requests(host, "weather"))
    answer = _post(front, model="weather", input="Weather in Paris?", tools=[WEATHER], stream=stream)
    first = _final(answer, stream)
    reasoning, call = first["output"]
    assert reasoning["type"] == "reasoning" and reasoning["content"][0]["text"] == "I need the weather."  # once
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    if stream:
        events = response_events(answer.text)
        assert _joined(events, "response.reasoning_text.delta") == "I need the weather."
        assert [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"] == [
            "reasoning", "function_call"]
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
    answer = _post(front, model="weather", previous_response_id=first["id"], tools=[WEATHER], input=[output],
                   stream=stream)
    second = _final(answer, stream)
    # The scripted host picks its step by the tool outputs it received: step 1 means it got the history.
    assert second["output"][-1]["content"][0]["text"] == "It is sunny in Paris."
    assert second["previous_response_id"] == first["id"]
    assert _stored(front, first["id"]) and _stored(front, second["id"])  # the front keeps the chain
    # The host got stateless requests: the second held the whole conversation (user message, call, output; the
    # reasoning is not sent back), and it stored neither.
    turns = _host_stored_nothing(host, "weather", before, 2)
    assert [(t["input_items"], t["tool_outputs"]) for t in turns] == [(1, 0), (3, 1)]
    for response, turn in zip((first, second), turns, strict=True):
        assert (response["usage"]["input_tokens"], response["usage"]["output_tokens"]) == (
            turn["input_tokens"], turn["output_tokens"])


def test_input_tokens_on_the_front_are_the_hosts_count(front: GatewayProcess, host: GatewayProcess) -> None:
    first = _final(_post(front, model="coder", input="Remember this sentence, please."), stream=False)
    said = first["output"][-1]["content"][0]["text"]
    follow_up = [{"role": "user", "content": "And now say this one back."}]
    counted = httpx.post(f"{front.base}/v1/responses/input_tokens", timeout=60,
                         json={"model": "coder", "previous_response_id": first["id"], "input": follow_up})
    assert counted.status_code == 200, counted.text
    # The host's count for the whole conversation, sent explicitly (as the front sends it).
    history = [{"role": "user", "content": "Remember this sentence, please."},
               {"role": "assistant", "content": said}, *follow_up]
    direct = httpx.post(f"{host.base}/v1/responses/input_tokens", timeout=60,
                        json={"model": "local-mlx", "input": history})
    assert direct.status_code == 200, direct.text
    assert counted.json()["input_tokens"] == direct.json()["input_tokens"] > first["usage"]["input_tokens"]
    # And the turn itself, run through the front, is billed that many input tokens by the host.
    second = _final(_post(front, model="coder", previous_response_id=first["id"], input=follow_up), stream=False)
    assert second["usage"]["input_tokens"] == counted.json()["input_tokens"]


def test_the_front_names_the_host_in_health(front: GatewayProcess, host: GatewayProcess) -> None:
    model = httpx.get(f"{front.base}/health", timeout=5).json()["models"]["coder"]
    assert model["adapter"] == "upstream" and model["state"] == "ready"
    assert [r["url"] for r in model["replicas"]] == [f"{host.base}/v1"] and model["replicas"][0]["requests"] >= 1
