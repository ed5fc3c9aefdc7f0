"""What an upstream is sent: the whole conversation, stateless, in its API's shape."""

from __future__ import annotations

from gateway.adapters.base import Constraint, GenerationRequest, TemplateMessage, ToolCallRecord, ToolSpec
from gateway.adapters.upstream.bodies import chat_body, responses_body


def _request(**overrides: object) -> GenerationRequest:
    fields: dict[str, object] = {
        "request_id": "resp_1",
        "messages": [
            TemplateMessage(role="developer", content="Be brief."),
            TemplateMessage(role="user", content="look", images=["data:image/png;base64,AAAA"]),
            TemplateMessage(role="assistant", content="", reasoning="hidden",
                            tool_calls=[ToolCallRecord(call_id="c1", name="read", arguments='{"p":"a"}')]),
            TemplateMessage(role="tool", content="file text", tool_call_id="c1"),
        ],
        "tools": [ToolSpec(name="read", description="Read a file",
                           parameters={"type": "object", "properties": {"p": {"type": "string"}}})],
        "tool_choice": {"name": "read"},
        "parallel_tool_calls": False,
        "max_tokens": 64,
        "temperature": 0.2,
        "stop": ["END"],
        "reasoning_effort": "low",
        "prompt_cache_key": "k",
    }
    fields.update(overrides)
    return GenerationRequest(**fields)  # type: ignore[arg-type]


def test_chat_body_carries_the_conversation_tools_and_sampling() -> None:
    body = chat_body(_request(), "qwen", structured=False)
    assert body["model"] == "qwen"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},  # engines rarely know "developer"
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read", "arguments": '{"p":"a"}'}}]},
        {"role": "tool", "content": "file text", "tool_call_id": "c1"},
    ]
    assert body["tools"] == [{"type": "function", "function": {
        "name": "read", "description": "Read a file",
        "parameters": {"type": "object", "properties": {"p": {"type": "string"}}}}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "read"}}
    assert body["parallel_tool_calls"] is False
    assert (body["max_tokens"], body["temperature"], body["stop"], body["reasoning_effort"]) == (64, 0.2, ["END"], "low")
    assert "response_format" not in body


def test_responses_body_is_stateless_and_complete() -> None:
    body = responses_body(_request(), "qwen", structured=False)
    assert body["store"] is False and body["stream"] is True and "previous_response_id" not in body
    assert body["input"] == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,AAAA",
                                      "detail": "auto"}]},
        {"type": "function_call", "call_id": "c1", "name": "read", "arguments": '{"p":"a"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "file text"},
    ]
    assert body["tools"][0] == {"type": "function", "name": "read", "description": "Read a file",
                                "parameters": {"type": "object", "properties": {"p": {"type": "string"}}},
                                "strict": False}
    assert body["tool_choice"] == {"type": "function", "name": "read"}
    assert (body["max_output_tokens"], body["reasoning"], body["prompt_cache_key"]) == (64, {"effort": "low"}, "k")


def test_a_json_answer_is_asked_of_upstreams_that_enforce_it_only() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    request = _request(constraint=Constraint(schema=schema))
    assert chat_body(request, "m", structured=True)["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    assert responses_body(request, "m", structured=True)["text"] == {
        "format": {"type": "json_schema", "name": "response", "schema": schema}}
    assert "response_format" not in chat_body(request, "m", structured=False)
    assert "text" not in responses_body(request, "m", structured=False)


def test_without_tools_no_tool_fields_are_sent() -> None:
    body = chat_body(_request(tools=[], tool_choice="auto"), "m", structured=False)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & body.keys()
    assert responses_body(_request(tools=[], tool_choice="required"), "m", structured=False).get("tools") is None
