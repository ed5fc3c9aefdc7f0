from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.normalize import MAX_JSON_DEPTH, decode_request, item_to_wire, items_from_wire, tool_to_wire
from gateway.protocol import (
    CustomTool,
    CustomToolCall,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    HostedTool,
    InputImage,
    InputText,
    ItemReference,
    LocalShellTool,
    Message,
    NamespaceTool,
    OutputText,
    Reasoning,
    UnknownItem,
    UnknownPart,
    UnknownTool,
)


def decode(body: dict[str, Any]) -> Any:
    return decode_request(json.dumps(body).encode())


def rejected(body: dict[str, Any] | bytes) -> InvalidRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(InvalidRequest) as info:
        decode_request(raw)
    return info.value


def test_string_input_is_one_user_message() -> None:
    request = decode({"model": "m", "input": "hello"})
    assert request.input == [Message(role="user", content="hello")]


def test_short_form_messages_with_string_or_part_content() -> None:
    request = decode(
        {
            "model": "m",
            "input": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}, {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
                {"role": "assistant", "content": []},
                {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                 "content": [{"type": "output_text", "text": "yo", "annotations": []}]},
            ],
        }
    )
    system, developer, user, empty_assistant, assistant = request.input
    assert system == Message(role="system", content="be brief")
    assert developer.content == [InputText(text="rules")]
    assert user.content[1] == InputImage(image_url="data:image/png;base64,AA")
    assert empty_assistant.content == []
    assert assistant.id == "msg_1" and assistant.content == [OutputText(text="yo")]


def test_codex_history_items_are_accepted_with_their_ids() -> None:
    request = decode(
        {
            "model": "m",
            "store": False,
            "input": [
                {"type": "message", "role": "developer", "id": "msg_x", "content": [{"type": "input_text", "text": "p"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "content": None, "encrypted_content": "opaque"},
                {"type": "function_call", "id": "fc_1", "status": "completed", "name": "exec_command",
                 "arguments": "{}", "call_id": "call_1"},
                {"type": "function_call_output", "id": "fco_1", "call_id": "call_1", "output": "ok"},
                {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
                {"type": "custom_tool_call_output", "id": "ctco_1", "call_id": "call_2", "output": "Success"},
                {"type": "function_call_output", "call_id": "call_3",
                 "output": [{"type": "input_text", "text": "a"}, {"type": "input_image", "image_url": "http://x"}]},
            ],
        }
    )
    kinds = [type(item).__name__ for item in request.input]
    assert kinds == ["Message", "Reasoning", "FunctionCall", "FunctionCallOutput", "CustomToolCall",
                     "CustomToolCallOutput", "FunctionCallOutput"]
    reasoning = request.input[1]
    assert isinstance(reasoning, Reasoning) and reasoning.content is None and reasoning.encrypted_content == "opaque"
    assert request.store is False


def test_unknown_item_and_part_types_are_wrapped_not_rejected() -> None:
    request = decode(
        {
            "model": "m",
            "input": [
                {"type": "web_search_call", "id": "ws_1", "action": {"query": "x"}},
                {"type": "compaction", "encrypted_content": "zzz"},
                {"role": "user", "content": [{"type": "input_audio", "data": "..."}]},
                {"type": "item_reference", "id": "msg_9"},
            ],
        }
    )
    assert request.input[0] == UnknownItem(item_type="web_search_call", data={"id": "ws_1", "action": {"query": "x"}})
    assert request.input[1] == UnknownItem(item_type="compaction", data={"encrypted_content": "zzz"})
    assert request.input[2].content == [UnknownPart(part_type="input_audio", data={"data": "..."})]
    assert request.input[3] == ItemReference(id="msg_9")


def test_every_tool_type_is_accepted() -> None:
    request = decode(
        {
            "model": "m",
            "tools": [
                {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False},
                {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
                {"type": "namespace", "name": "mcp", "description": "d",
                 "tools": [{"type": "function", "name": "g"}, {"type": "web_search"}]},
                {"type": "local_shell"},
                {"type": "web_search", "external_web_access": False},
                {"type": "tool_search", "execution": "client"},
                {"type": "mcp", "server_label": "deepwiki"},
                {"type": "image_generation"},
                {"type": "file_search", "vector_store_ids": ["v"]},
                {"type": "quantum_teleport", "power": 9},
            ],
        }
    )
    tools = request.tools
    assert isinstance(tools[0], FunctionTool)
    assert isinstance(tools[1], CustomTool) and tools[1].format["syntax"] == "lark"
    assert isinstance(tools[2], NamespaceTool)
    assert tools[2].tools == [FunctionTool(name="g"), HostedTool(tool_type="web_search")]
    assert isinstance(tools[3], LocalShellTool)
    assert [t.tool_type for t in tools[4:9]] == ["web_search", "tool_search", "mcp", "image_generation", "file_search"]
    assert tools[9] == UnknownTool(tool_type="quantum_teleport", options={"power": 9})


def test_tools_round_trip_to_the_wire_shape() -> None:
    sent = [
        {"type": "web_search", "external_web_access": False},
        {"type": "namespace", "name": "ns", "description": None, "tools": [{"type": "mcp", "server_label": "s"}]},
        {"type": "quantum_teleport", "power": 9},
    ]
    request = decode({"model": "m", "tools": sent})
    assert [tool_to_wire(t) for t in request.tools] == sent


def test_unknown_top_level_fields_are_ignored() -> None:
    request = decode({"model": "m", "client_metadata": {"a": 1}, "context_management": [], "moderation": "x",
                      "prompt_cache_options": {}, "stream_options": {"include_obfuscation": False}, "future": True})
    assert request.model == "m"


def test_every_documented_parameter_is_accepted() -> None:
    request = decode(
        {
            "model": "m", "input": "x", "instructions": "i", "stream": True, "store": False,
            "tools": [], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []},
            "parallel_tool_calls": False, "max_output_tokens": 5, "max_tool_calls": 2, "temperature": 0.2,
            "top_p": 0.9, "top_logprobs": 3, "include": ["reasoning.encrypted_content"], "truncation": "auto",
            "metadata": {"k": "v"}, "prompt_cache_key": "thread", "safety_identifier": "s", "user": "u",
            "service_tier": "auto", "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}, "verbosity": "low"},
            "prompt": {"id": "p"}, "prompt_cache_retention": "24h", "conversation": None,
        }
    )
    assert request.max_output_tokens == 5 and request.reasoning.effort == "low"
    assert request.text.verbosity == "low"


def test_nulls_mean_defaults() -> None:
    request = decode({"model": "m", "input": None, "tools": None, "tool_choice": None, "reasoning": None,
                      "store": None, "stream": None, "parallel_tool_calls": None})
    assert request.input == [] and request.tools == [] and request.tool_choice == "auto"
    assert request.store is True and request.stream is False and request.reasoning is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": 5}, "model"),
        ({"model": "m", "temperature": "hot"}, "temperature"),
        ({"model": "m", "temperature": 2.5}, "temperature"),
        ({"model": "m", "top_p": -1}, "top_p"),
        ({"model": "m", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m", "max_output_tokens": -3}, "max_output_tokens"),
        ({"model": "m", "input": 7}, "input"),
        ({"model": "m", "input": [1]}, "input[0]"),
        ({"model": "m", "input": [{"content": "no role"}]}, "input[0].type"),
        ({"model": "m", "input": [{"role": "user", "content": 3}]}, "input[0].content"),
        ({"model": "m", "input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": [{"role": "user", "content": [{"text": "x"}]}]}, "input[0].content[0].type"),
        ({"model": "m", "input": ["x", {"role": "user", "content": [{"type": "input_text", "text": 5}]}]}, "input[0]"),
        ({"model": "m", "input": [{"role": "user", "content": "ok"}, {"type": "function_call", "name": "f"}]}, "input[1].call_id"),
        ({"model": "m", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "m", "tools": [{"name": "f"}]}, "tools[0].type"),
        ({"model": "m", "tools": "all"}, "tools"),
        ({"model": "m", "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "m", "metadata": {"k": 1}}, "metadata.k"),
        ({"model": "m", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"model": "m", "background": True, "store": False}, "background"),
        ({"model": "m", "previous_response_id": "resp_1", "conversation": "conv_1"}, "conversation"),
        ({"model": "m", "truncation": "sometimes"}, "truncation"),
    ],
)
def test_bad_values_name_their_param(body: dict[str, Any], param: str) -> None:
    error = rejected(body)
    assert error.status == 400
    assert error.param == param
    assert param in error.message or param in ("input[0]", "metadata", "background", "conversation")


@pytest.mark.parametrize("raw", [b"{bad", b"", b"\xff\xfe", b"[1, 2]", b'"text"', b"null"])
def test_not_a_json_object_is_a_400_without_param(raw: bytes) -> None:
    error = rejected(raw)
    assert error.status == 400 and error.param is None


def test_items_from_wire_prefixes_the_param() -> None:
    with pytest.raises(InvalidRequest) as info:
        items_from_wire([{"role": "user", "content": "a"}, {"type": "function_call_output", "output": "x"}])
    assert info.value.param == "input[1].call_id"


def test_item_to_wire_restores_unknown_shapes() -> None:
    item = UnknownItem(item_type="web_search_call", data={"id": "ws", "status": "completed"})
    assert item_to_wire(item) == {"type": "web_search_call", "id": "ws", "status": "completed"}
    message = Message(role="user", content=[UnknownPart(part_type="input_audio", data={"x": 1})])
    assert item_to_wire(message)["content"] == [{"type": "input_audio", "x": 1}]
    call = FunctionCall(call_id="c", name="n", arguments="{}")
    assert item_to_wire(call) == {"type": "function_call", "call_id": "c", "name": "n", "arguments": "{}"}
    assert items_from_wire([item_to_wire(call)]) == [call]
    output = FunctionCallOutput(call_id="c", output="o")
    custom = CustomToolCall(call_id="c2", name="apply_patch", input="raw")
    assert items_from_wire([item_to_wire(output), item_to_wire(custom)]) == [output, custom]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 100_000])
def test_nesting_beyond_the_limit_is_a_400(depth: int) -> None:
    body = b'{"model": "m", "input": "x", "metadata": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(InvalidRequest) as info:
        decode_request(body)
    assert f"deeper than {MAX_JSON_DEPTH} levels" in info.value.message


def test_nesting_up_to_the_limit_is_accepted() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(MAX_JSON_DEPTH - 6):  # tools[0].parameters... sits 4 levels below the body
        schema = {"type": "array", "items": schema}
    tool = {"type": "function", "name": "deep", "parameters": schema}
    request = decode_request(json.dumps({"model": "m", "input": "x", "tools": [tool]}).encode())
    assert request.tools[0].name == "deep"  # type: ignore[union-attr]


@pytest.mark.parametrize(("body", "param"), [
    ({"max_output_tokens": 2**64}, "max_output_tokens"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"maximum": -(2**63) - 1}}]},
     "tools[0].parameters.maximum"),
    ({"input": [{"type": "some_future_item", "count": 2**70}]}, "input[0].count"),
])
def test_integers_beyond_64_bits_are_a_400_naming_their_path(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_request(json.dumps({"model": "m", "input": "x", **body}).encode())
    assert info.value.param == param and "64 bits" in info.value.message
