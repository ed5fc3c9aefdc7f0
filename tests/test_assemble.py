"""The canonical event orders (reference §C.3), driven delta by delta through the assembler."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.adapters.base import (
    Finish,
    ReasoningDelta,
    TextDelta,
    TokenUsage,
    ToolCallArguments,
    ToolCallStart,
)
from gateway.assemble import Assembler
from gateway.errors import GatewayError
from gateway.events import Event
from gateway.protocol import FunctionCall, Response


def skeleton() -> Response:
    return Response(id="resp_1", created_at=1, status="in_progress", model="m")


def run(deltas: list[Any]) -> tuple[list[Event], Assembler]:
    assembler = Assembler(skeleton())
    events = assembler.start()
    for delta in deltas:
        events += assembler.feed(delta)
    return events, assembler


def types(events: list[Event]) -> list[str]:
    return [e.__struct_config__.tag for e in events]  # type: ignore[misc]


USAGE = TokenUsage(input_tokens=10, output_tokens=4, reasoning_tokens=1, cached_tokens=3)


def test_text_answer_order_and_payloads() -> None:
    events, assembler = run([TextDelta(text="Hel"), TextDelta(text="lo"), Finish(usage=USAGE)])
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    created = events[0].response
    assert created.status == "in_progress" and created.output == [] and created.usage is None
    added = events[2].item
    assert added.status == "in_progress" and added.content == [] and added.role == "assistant"
    assert events[3].part.text == "" and events[3].part.annotations == []
    assert [e.delta for e in events[4:6]] == ["Hel", "lo"]
    assert events[6].text == "Hello" and events[7].part.text == "Hello"
    done = events[8].item
    assert done.status == "completed" and done.content[0].text == "Hello"
    final = events[9].response
    assert final.status == "completed" and final.completed_at is not None
    assert final.output == [done]
    usage = msgspec.to_builtins(final.usage)
    assert usage == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 3},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": 14,
    }
    assert assembler.response == final


def test_item_ids_are_identical_in_every_event_and_in_the_final_object() -> None:
    events, _ = run([ReasoningDelta(text="hmm"), TextDelta(text="a"), ToolCallStart(name="f"),
                     ToolCallArguments(text="{}"), Finish()])
    final = events[-1].response
    ids_by_index = {i: item.id for i, item in enumerate(final.output)}
    for event in events:
        if hasattr(event, "output_index"):
            expected = ids_by_index[event.output_index]
            item_id = getattr(event, "item_id", None) or event.item.id
            assert item_id == expected, event


def test_several_function_calls_are_not_interleaved() -> None:
    events, _ = run(
        [
            ToolCallStart(name="a", call_id="call_a"),
            ToolCallArguments(text='{"x":'),
            ToolCallArguments(text="1}"),
            ToolCallStart(name="b", call_id="call_b"),
            ToolCallArguments(text="{}"),
            Finish(reason="tool_calls"),
        ]
    )
    assert types(events)[2:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    first_added = events[2].item
    assert isinstance(first_added, FunctionCall) and first_added.arguments == ""
    assert first_added.call_id == "call_a" and first_added.status == "in_progress"
    args_done = events[5]
    assert args_done.name == "a" and args_done.arguments == '{"x":1}'
    assert events[6].item.arguments == '{"x":1}' and events[6].item.status == "completed"
    assert [e.output_index for e in events[2:7]] == [0] * 5
    assert [e.output_index for e in events[7:11]] == [1] * 4
    final = events[-1].response
    assert [o.call_id for o in final.output] == ["call_a", "call_b"]


def test_custom_tool_call_streams_raw_input() -> None:
    events, _ = run([ToolCallStart(name="apply_patch", call_id="call_p", custom=True),
                     ToolCallArguments(text="*** Begin"), ToolCallArguments(text=" Patch"), Finish()])
    assert types(events)[2:] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[2].item
    assert msgspec.to_builtins(added) == {
        "type": "custom_tool_call", "id": added.id, "call_id": "call_p", "name": "apply_patch", "input": "",
        "status": "in_progress",
    }
    assert events[3].call_id == "call_p" and events[5].input == "*** Begin Patch"
    assert events[6].item.input == "*** Begin Patch"


def test_namespace_is_carried_onto_the_call_item() -> None:
    events, _ = run([ToolCallStart(name="search", namespace="mcp_docs"), ToolCallArguments(text="{}"), Finish()])
    done = events[-2].item
    assert msgspec.to_builtins(done)["namespace"] == "mcp_docs" and done.name == "search"


def test_reasoning_then_text_emits_summary_and_raw_forms() -> None:
    events, _ = run([ReasoningDelta(text="think"), ReasoningDelta(text="ing"), TextDelta(text="ok"),
                     Finish(usage=USAGE)])
    assert types(events)[2:] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.content_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    reasoning_added = events[2].item
    assert reasoning_added.summary == [] and reasoning_added.id.startswith("rs_")
    reasoning_done = events[13].item
    assert msgspec.to_builtins(reasoning_done) == {
        "type": "reasoning", "id": reasoning_added.id,
        "summary": [{"type": "summary_text", "text": "thinking"}],
        "content": [{"type": "reasoning_text", "text": "thinking"}], "status": "completed",
    }
    assert events[14].output_index == 1
    final = events[-1].response
    assert final.usage.output_tokens_details.reasoning_tokens == 1


def test_max_output_tokens_gives_incomplete() -> None:
    events, assembler = run([TextDelta(text="partial"), Finish(reason="length", usage=USAGE)])
    assert types(events)[-4:] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete",
    ]
    final = events[-1].response
    assert final.status == "incomplete"
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.output[0].status == "incomplete"
    assert assembler.terminal


def test_failure_after_text_closes_the_message_and_fails() -> None:
    assembler = Assembler(skeleton())
    events = assembler.start() + assembler.feed(TextDelta(text="so far"))
    events += assembler.fail(GatewayError("worker died", code="model_crashed"))
    assert types(events)[-4:] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.failed",
    ]
    failed = events[-1].response
    assert failed.status == "failed"
    assert msgspec.to_builtins(failed.error) == {"code": "model_crashed", "message": "worker died"}
    assert failed.usage is None


def test_failure_during_a_tool_call_never_announces_it_done() -> None:
    assembler = Assembler(skeleton())
    events = assembler.start() + assembler.feed(ToolCallStart(name="rm")) + assembler.feed(ToolCallArguments(text='{"p'))
    events += assembler.fail(GatewayError("boom"))
    assert "response.output_item.done" not in types(events)
    assert types(events)[-1] == "response.failed"
    assert events[-1].response.output[0].status == "incomplete"


def test_nothing_after_the_terminal_event() -> None:
    assembler = Assembler(skeleton())
    assembler.start()
    assembler.feed(Finish())
    assert assembler.feed(TextDelta(text="late")) == []
    assert assembler.fail(GatewayError("late")) == []


def test_empty_deltas_emit_nothing() -> None:
    assembler = Assembler(skeleton())
    assembler.start()
    assert assembler.feed(TextDelta(text="")) == []
    assert assembler.feed(ToolCallArguments(text="orphan")) == []


def test_keepalive_is_an_in_progress_event_with_the_next_sequence_number() -> None:
    assembler = Assembler(skeleton())
    start = assembler.start()
    (keepalive,) = assembler.keepalive()
    assert keepalive.__struct_config__.tag == "response.in_progress"
    assert keepalive.sequence_number == start[-1].sequence_number + 1


def test_queued_start() -> None:
    assembler = Assembler(msgspec.structs.replace(skeleton(), status="queued", background=True))
    assert types(assembler.start(queued=True)) == ["response.created", "response.queued"]


def test_cancel_records_status_without_events() -> None:
    assembler = Assembler(skeleton())
    assembler.start()
    assembler.feed(TextDelta(text="x"))
    assembler.cancel()
    assert assembler.response.status == "cancelled"
    assert assembler.response.output[0].status == "incomplete"


@pytest.mark.parametrize("delta", [TextDelta(text="a"), ReasoningDelta(text="a"), ToolCallStart(name="f")])
def test_added_snapshots_are_not_mutated_later(delta: Any) -> None:
    events, _ = run([delta, ToolCallArguments(text="{}"), TextDelta(text="more"), Finish()])
    added = events[2].item
    encoded = msgspec.json.encode(added)
    assert b'"status":"in_progress"' in encoded


def test_whitespace_between_calls_is_not_a_message() -> None:
    _, assembler = run([
        ToolCallStart(name="go", call_id="c1"), ToolCallArguments(text="{}"), TextDelta(text="\n"),
        ToolCallStart(name="go", call_id="c2"), ToolCallArguments(text="{}"), TextDelta(text=" \n"),
        Finish(reason="tool_calls", usage=USAGE),
    ])
    assert [type(item).__name__ for item in assembler.output] == ["FunctionCall", "FunctionCall"]


def test_leading_whitespace_stays_with_the_text_it_precedes() -> None:
    events, assembler = run([TextDelta(text="\n\n"), TextDelta(text="Hi"), Finish(usage=USAGE)])
    deltas = [e.delta for e in events if e.__struct_config__.tag == "response.output_text.delta"]  # type: ignore[attr-defined,misc]
    assert "".join(deltas) == "\n\nHi"
    assert assembler.output[0].content[0].text == "\n\nHi"  # type: ignore[union-attr]


def test_an_answer_of_only_whitespace_is_kept() -> None:
    _, assembler = run([TextDelta(text=" "), Finish(usage=USAGE)])
    assert assembler.output[0].content[0].text == " "  # type: ignore[union-attr]
