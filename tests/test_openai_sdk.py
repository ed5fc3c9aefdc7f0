"""The official openai SDK against a real server on loopback: create, stream, stream() helper, tool loops."""

from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI

from tests.conftest import make_config, serve

TOOLS = [
    {"type": "function", "name": "exec_command", "description": "run a command",
     "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
]


@pytest.fixture
def sdk(live: str) -> OpenAI:
    return OpenAI(base_url=f"{live}/v1", api_key="dummy", max_retries=0, timeout=20)


def test_create_without_stream_and_a_tool_loop(sdk: OpenAI) -> None:
    first = sdk.responses.create(model="scripted", input="run something", tools=TOOLS)
    assert first.status == "completed"
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "exec_command" and json.loads(call.arguments) == {"cmd": "echo hi"}
    assert call.id.startswith("fc_") and call.call_id.startswith("call_")
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    history = [{"role": "user", "content": "run something"}, *[item.model_dump(exclude_none=True) for item in first.output],
               {"type": "function_call_output", "call_id": call.call_id, "output": "hi"}]
    second = sdk.responses.create(model="scripted", input=history, tools=TOOLS, store=False)
    assert second.output_text == "The command printed hi."


def test_create_with_stream_true(sdk: OpenAI) -> None:
    stream = sdk.responses.create(model="scripted", input="go", tools=TOOLS, stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.done" in kinds
    assert "response.reasoning_summary_text.delta" in kinds
    created, completed = events[0].response, events[-1].response
    assert created.id == completed.id
    added_ids = [e.item.id for e in events if e.type == "response.output_item.added"]
    assert added_ids == [item.id for item in completed.output]


def test_stream_helper_and_final_response(sdk: OpenAI) -> None:
    with sdk.responses.stream(model="scripted", input="go", tools=TOOLS) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "Running it."
    assert final.status == "completed"
    assert final.output_text == "Running it."
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    reasoning = final.output[0]
    assert reasoning.summary[0].text == "I should run a command."


def test_sdk_errors_map_to_its_exception_classes(sdk: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.responses.create(model="no-such-model", input="x")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.responses.create(model="scripted", input="x", max_output_tokens=0)
    assert bad.value.param == "max_output_tokens"
    with pytest.raises(openai.BadRequestError) as unknown_prev:
        sdk.responses.create(model="scripted", input="x", previous_response_id="resp_nope")
    assert unknown_prev.value.code == "previous_response_not_found"
    assert unknown_prev.value.param == "previous_response_id"


def test_custom_tool_call_through_the_sdk() -> None:
    manifest = """
models:
  - name: patcher
    adapter: scripted
    script:
      steps:
        - calls: [{custom: apply_patch, input: "*** Begin Patch\\n*** Add File: a.txt\\n+hi\\n*** End Patch\\n"}]
        - text: patched
"""
    with serve(make_config(manifest)) as base:
        sdk = OpenAI(base_url=f"{base}/v1", api_key="dummy", max_retries=0)
        tools = [{"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}]
        with sdk.responses.stream(model="patcher", input="add a file", tools=tools) as stream:
            kinds = [e.type for e in stream]
            final = stream.get_final_response()
        assert "response.custom_tool_call_input.delta" in kinds and "response.custom_tool_call_input.done" in kinds
        call = final.output[0]
        assert call.type == "custom_tool_call" and call.name == "apply_patch"
        assert call.input.startswith("*** Begin Patch")


def test_stream_helper_accepts_keepalives_between_and_inside_items() -> None:
    """Slow chunks make the gateway send response.in_progress while a message is open and after it closed."""
    manifest = """
server: {keepalive_seconds: 0.1}
models:
  - name: slow
    adapter: scripted
    script:
      delay_ms: 250
      chunk_chars: 4
      steps: [{text: "one two", calls: [{function: exec_command, arguments: {cmd: "ls"}}]}]
"""
    with serve(make_config(manifest)) as base:
        sdk = OpenAI(base_url=f"{base}/v1", api_key="dummy", max_retries=0)
        with sdk.responses.stream(model="slow", input="go", tools=TOOLS) as stream:
            kinds = [e.type for e in stream]
            final = stream.get_final_response()
    first_done = kinds.index("response.output_item.done")
    assert "response.in_progress" in kinds[3:first_done]  # while the message was streaming
    assert "response.in_progress" in kinds[first_done:]  # after an item completed
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output_text == "one two"
