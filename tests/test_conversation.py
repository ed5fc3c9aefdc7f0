from __future__ import annotations

import json

import msgspec
import pytest

from gateway.adapters.base import TemplateMessage, ToolCallRecord
from gateway.conversation import build_messages
from gateway.normalize import items_from_wire


def messages(wire: list[dict], instructions: str | None = None, **kw) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    built = build_messages(instructions, items_from_wire(wire), **kw)
    return [msgspec.to_builtins(m) for m in built]


def test_instructions_and_notes_lead_as_one_system_message() -> None:
    out = messages([{"role": "user", "content": "hi"}], "Be brief.", system_notes=["Note: x is gone."])
    assert out == [
        {"role": "system", "content": "Be brief.\n\nNote: x is gone."},
        {"role": "user", "content": "hi"},
    ]


def test_roles_are_kept_for_the_renderer_to_normalize() -> None:
    out = messages([
        {"role": "developer", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
        {"role": "user", "content": "q"},
        {"role": "system", "content": "late system"},
    ])
    assert [m["role"] for m in out] == ["developer", "user", "system"]
    assert out[0]["content"] == "a\n\nb"


def test_a_tool_round_trip_becomes_assistant_tool_calls_and_tool_messages() -> None:
    out = messages([
        {"role": "user", "content": "list files"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "sum"}], "content": None},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
        {"type": "function_call", "call_id": "c2", "name": "exec_command", "arguments": "{\"cmd\":\"pwd\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "/w"}, {"type": "input_image", "image_url": "data:x"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
    ])
    assert out == [
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": "Let me look.", "reasoning": "sum", "tool_calls": [
            {"call_id": "c1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
            {"call_id": "c2", "name": "exec_command", "arguments": "{\"cmd\":\"pwd\"}"},
        ]},
        {"role": "tool", "content": "a.txt", "tool_call_id": "c1", "name": "exec_command"},
        {"role": "tool", "content": "/w", "images": ["data:x"], "tool_call_id": "c2", "name": "exec_command"},
        {"role": "assistant", "content": "Done."},
    ]


def test_raw_reasoning_content_wins_over_the_summary() -> None:
    out = messages([
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "short"}],
         "content": [{"type": "reasoning_text", "text": "the full thought"}]},
        {"role": "assistant", "content": "answer"},
    ])
    assert out == [{"role": "assistant", "content": "answer", "reasoning": "the full thought"}]


def test_custom_tool_history_is_shown_wrapped_by_default() -> None:
    out = messages([
        {"type": "custom_tool_call", "call_id": "p1", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "p1", "output": "Success"},
    ])
    call = out[0]["tool_calls"][0]
    assert call["name"] == "apply_patch" and json.loads(call["arguments"]) == {"input": "*** Begin Patch"}
    assert out[1] == {"role": "tool", "content": "Success", "tool_call_id": "p1", "name": "apply_patch"}


def test_namer_renames_history_calls_like_the_tool_policy() -> None:
    def namer(name: str, namespace: str | None, custom: bool) -> tuple[str, str]:
        return (f"{namespace}__{name}" if namespace else name), ("input" if custom else "")

    out = messages(
        [{"type": "function_call", "call_id": "c", "name": "search", "namespace": "docs", "arguments": "{}"}],
        namer=namer,
    )
    assert out[0]["tool_calls"][0]["name"] == "docs__search"


def test_assistant_empty_content_and_text_after_calls() -> None:
    out = messages([
        {"role": "assistant", "content": []},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"role": "assistant", "content": "after"},
    ])
    assert out == [
        {"role": "assistant", "tool_calls": [{"call_id": "c", "name": "f", "arguments": "{}"}]},
        {"role": "assistant", "content": "after"},
    ]


def test_unknown_items_are_flattened_as_text_by_role() -> None:
    out = messages([
        {"type": "web_search_call", "id": "ws", "action": {"query": "q"}},
        {"type": "mystery_output", "value": 1},
    ])
    assert out == [
        {"role": "assistant", "content": '[web_search_call] {"id":"ws","action":{"query":"q"}}'},
        {"role": "user", "content": '[mystery_output] {"value":1}'},
    ]


def test_trailing_reasoning_is_kept_on_an_assistant_turn() -> None:
    out = messages([{"role": "user", "content": "q"}, {"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}]}])
    assert out[-1] == {"role": "assistant", "reasoning": "t"}


def test_local_shell_round_trip() -> None:
    out = messages([
        {"type": "local_shell_call", "id": "ls1", "call_id": "c", "action": {"type": "exec", "command": ["ls"]}, "status": "completed"},
        {"type": "local_shell_call_output", "id": "c", "output": "a"},
    ])
    assert out[0]["tool_calls"][0]["name"] == "local_shell"
    assert out[1]["tool_call_id"] == "c" and out[1]["name"] == "local_shell"


def test_unresolved_item_reference_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="msg_1"):
        build_messages(None, items_from_wire([{"type": "item_reference", "id": "msg_1"}]))


def test_same_items_render_identically() -> None:
    wire = [
        {"role": "developer", "content": "p"},
        {"role": "user", "content": "q"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "o"},
    ]
    first = build_messages("i", items_from_wire(wire))
    second = build_messages("i", items_from_wire(wire))
    assert msgspec.json.encode(first) == msgspec.json.encode(second)
    assert isinstance(first[3], TemplateMessage) and first[3].tool_calls == [ToolCallRecord(call_id="c", name="f", arguments="{}")]
