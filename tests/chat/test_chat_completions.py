"""/v1/chat/completions through the same pipeline, driven by the openai SDK and raw HTTP."""

from __future__ import annotations

import json

import pytest
from litestar.testing import TestClient
from openai import BadRequestError, NotFoundError, OpenAI

from gateway.chat.translate import decode_chat_request, to_responses_request
from gateway.errors import InvalidRequest
from gateway.protocol import FunctionCall, FunctionCallOutput, Message, OutputText, Reasoning
from tests.sse import chat_chunks
from tests.test_routes import assert_envelope

TOOLS = [{"type": "function", "function": {"name": "exec_command", "description": "run",
                                            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}}]


def test_chat_history_becomes_responses_items() -> None:
    chat = decode_chat_request(json.dumps({
        "model": "m", "max_tokens": 7, "stop": "END", "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "exec_command"}},
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:x"}}]},
            {"role": "assistant", "content": "", "reasoning_content": "hmm",
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "exec_command", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "out"},
            {"role": "assistant", "content": "done"},
        ],
    }).encode())
    request, stop = to_responses_request(chat)
    assert stop == ["END"] and request.max_output_tokens == 7 and request.store is False
    assert request.tool_choice == {"type": "function", "name": "exec_command"}
    kinds = [type(i) for i in request.input]
    assert kinds == [Message, Message, Reasoning, FunctionCall, FunctionCallOutput, Message]
    assert request.input[3] == FunctionCall(call_id="c1", name="exec_command", arguments="{}")
    assert request.input[4] == FunctionCallOutput(call_id="c1", output="out")
    assert request.input[5].content == [OutputText(text="done")]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0].type"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9}, "temperature"),
    ],
)
def test_bad_chat_requests_name_their_param(body: dict, param: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidRequest) as info:
        to_responses_request(decode_chat_request(json.dumps(body).encode()))
    assert info.value.param == param


def test_sdk_tool_loop_without_streaming(live: str) -> None:
    sdk = OpenAI(base_url=f"{live}/v1", api_key="dummy", max_retries=0)
    messages = [{"role": "user", "content": "run it"}]
    first = sdk.chat.completions.create(model="scripted", messages=messages, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "exec_command" and json.loads(call.function.arguments) == {"cmd": "echo hi"}
    assert first.usage.prompt_tokens > 0 and first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    messages += [choice.message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "hi"}]
    second = sdk.chat.completions.create(model="scripted", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == "The command printed hi."
    assert second.choices[0].finish_reason == "stop"


def test_sdk_streaming_with_usage(live: str) -> None:
    sdk = OpenAI(base_url=f"{live}/v1", api_key="dummy", max_retries=0)
    chunks = list(sdk.chat.completions.create(model="demo", messages=[{"role": "user", "content": "go"}], tools=TOOLS,
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    arguments = "".join(tc.function.arguments or "" for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or [])
    assert text == "Running it." and reasoning == "I should run a command."
    assert json.loads(arguments) == {"cmd": "echo hi"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_sdk_errors(live: str) -> None:
    sdk = OpenAI(base_url=f"{live}/v1", api_key="dummy", max_retries=0)
    with pytest.raises(NotFoundError):
        sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(BadRequestError):
        sdk.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}], max_tokens=0)


def test_stream_ends_with_done_and_length_on_max_tokens(client: TestClient) -> None:
    text = client.post("/v1/chat/completions", json={"model": "demo", "stream": True, "max_tokens": 2,
                                                     "messages": [{"role": "user", "content": "x"}]}).text
    payloads = chat_chunks(text)  # also checks it ends with data: [DONE]
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"


def test_failure_mid_stream_is_an_error_chunk(client: TestClient) -> None:
    from gateway.app import create_app
    from tests.conftest import make_config

    config = make_config("models: [{name: f, adapter: scripted, script: {steps: [{text: abc, error: broke}]}}]")
    with TestClient(app=create_app(config)) as failing:
        text = failing.post("/v1/chat/completions", json={"model": "f", "stream": True,
                                                           "messages": [{"role": "user", "content": "x"}]}).text
        assert '"error":{"message":"broke"' in text
        payloads = chat_chunks(text)  # also checks it ends with data: [DONE]
        assert payloads[-1] == {"error": {"message": "broke", "type": "server_error", "param": None, "code": "model_error"}}
        assert "".join(p["choices"][0]["delta"].get("content", "") for p in payloads[:-1]) == "abc"
        assert_envelope(failing.post("/v1/chat/completions", json={"model": "f", "messages": [{"role": "user", "content": "x"}]}),
                        500, code="model_error")


def test_wrapped_custom_call_reaches_chat_clients_as_a_function(client: TestClient) -> None:
    from gateway.app import create_app
    from tests.conftest import make_config

    config = make_config("models: [{name: p, adapter: scripted, script: {chunk_chars: 3, steps: [{calls: [{custom: apply_patch, input: 'a\"b'}]}]}}]")
    with TestClient(app=create_app(config)) as patcher:
        text = patcher.post("/v1/chat/completions", json={"model": "p", "stream": True,
                                                           "messages": [{"role": "user", "content": "x"}]}).text
        payloads = chat_chunks(text)
        arguments = "".join(tc["function"].get("arguments", "") for p in payloads for tc in p["choices"][0]["delta"].get("tool_calls", []) if p["choices"])
        assert json.loads(arguments) == {"input": 'a"b'}
        plain = patcher.post("/v1/chat/completions", json={"model": "p", "messages": [{"role": "user", "content": "x"}]}).json()
        assert json.loads(plain["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {"input": 'a"b'}
