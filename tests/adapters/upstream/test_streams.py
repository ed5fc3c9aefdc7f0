"""Upstream SSE → deltas: chat completion chunks and Responses events, including what a broken upstream sends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.adapters.base import (
    Finish,
    ReasoningDelta,
    TextDelta,
    TokenUsage,
    ToolCallArguments,
    ToolCallStart,
)
from gateway.adapters.upstream.streams import ChatChunks, ResponseEvents, sse_data
from gateway.errors import BadGateway


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _collect(*parts: bytes) -> list[bytes]:
    return [data async for data in sse_data(_chunks(*parts))]


async def test_sse_events_split_anywhere_across_reads_come_out_whole() -> None:
    stream = b'data: {"a":1}\n\nevent: x\ndata: {"b":\ndata: 2}\r\n\r\n: comment\n\ndata: [DONE]\n\n'
    one_byte_reads = [stream[i : i + 1] for i in range(len(stream))]
    expected = [b'{"a":1}', b'{"b":\n2}', b"[DONE]"]
    assert await _collect(stream) == expected
    assert await _collect(*one_byte_reads) == expected


async def test_an_event_without_its_blank_line_at_the_end_is_still_delivered() -> None:
    assert await _collect(b'data: {"a":1}\n') == [b'{"a":1}']


def _chat(**delta: Any) -> bytes:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}).encode()


def _chat_end(reason: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}).encode()


def _feed(parser: ChatChunks | ResponseEvents, *events: bytes) -> list[Any]:
    return [delta for event in events for delta in parser.feed(event)]


def test_chat_text_reasoning_and_usage_with_cached_tokens() -> None:
    parser = ChatChunks()
    usage = {"prompt_tokens": 12, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 8},
             "completion_tokens_details": {"reasoning_tokens": 2}}
    deltas = _feed(parser, _chat(role="assistant", content=""), _chat(reasoning_content="hm"), _chat(reasoning="m"),
                   _chat(content="Hel"), _chat(content="lo"), _chat_end("stop"),
                   json.dumps({"choices": [], "usage": usage}).encode(), b"[DONE]")
    assert deltas == [ReasoningDelta(text="hm"), ReasoningDelta(text="m"), TextDelta(text="Hel"), TextDelta(text="lo")]
    assert parser.end() == Finish(reason="stop", usage=TokenUsage(input_tokens=12, output_tokens=5, cached_tokens=8,
                                                                  reasoning_tokens=2))


def test_chat_tool_call_deltas_become_one_start_then_arguments_per_call() -> None:
    parser = ChatChunks()
    deltas = _feed(
        parser,
        _chat(tool_calls=[{"index": 0, "id": "call_a", "type": "function", "function": {"name": "read", "arguments": ""}}]),
        _chat(tool_calls=[{"index": 0, "function": {"arguments": '{"path":'}}]),
        _chat(tool_calls=[{"index": 0, "function": {"arguments": '"a"}'}}]),
        _chat(tool_calls=[{"index": 1, "id": "call_b", "function": {"name": "ls", "arguments": "{}"}}]),
        _chat_end("tool_calls"),
    )
    assert deltas == [
        ToolCallStart(name="read", call_id="call_a"), ToolCallArguments(text='{"path":'), ToolCallArguments(text='"a"}'),
        ToolCallStart(name="ls", call_id="call_b"), ToolCallArguments(text="{}"),
    ]
    assert parser.end().reason == "tool_calls"


def test_chat_arguments_before_the_name_wait_for_it() -> None:
    parser = ChatChunks()
    deltas = _feed(parser, _chat(tool_calls=[{"index": 0, "id": "c1", "function": {"arguments": "{"}}]),
                   _chat(tool_calls=[{"index": 0, "function": {"name": "go", "arguments": "}"}}]), _chat_end("stop"))
    assert deltas == [ToolCallStart(name="go", call_id="c1"), ToolCallArguments(text="{}")]
    assert parser.end().reason == "tool_calls"  # a server that says "stop" after calls still made calls


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([_chat(content="half an ans")], "ended before the answer was finished"),
        ([b"{not json"], "not JSON"),
        ([b"[1, 2]"], "not a JSON object"),
        ([json.dumps({"error": {"message": "out of memory"}}).encode()], "out of memory"),
        ([_chat(tool_calls=[{"index": 0, "function": {"name": "a"}}]),
          _chat(tool_calls=[{"index": 1, "function": {"name": "b"}}]),
          _chat(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}])], "interleaved"),
        ([_chat(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}]), _chat_end("tool_calls")], "without a name"),
    ],
)
def test_a_broken_chat_stream_is_a_bad_gateway_never_a_finish(events: list[bytes], message: str) -> None:
    parser = ChatChunks()
    with pytest.raises(BadGateway, match=message):
        _feed(parser, *events)
        parser.end()


def _event(kind: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, **fields}).encode()


def _completed(usage: dict[str, Any] | None = None, kind: str = "response.completed", **response: Any) -> bytes:
    return _event(kind, response={"status": "completed", "usage": usage, **response})


def test_responses_events_become_deltas_and_the_completed_usage_the_finish() -> None:
    parser = ResponseEvents()
    usage = {"input_tokens": 30, "output_tokens": 7, "input_tokens_details": {"cached_tokens": 16},
             "output_tokens_details": {"reasoning_tokens": 3}}
    deltas = _feed(
        parser,
        _event("response.created", response={}),
        _event("response.reasoning_text.delta", item_id="rs_1", delta="think"),
        _event("response.reasoning_summary_text.delta", item_id="rs_1", delta="think"),  # the same thought again
        _event("response.output_text.delta", item_id="msg_1", delta="Hi"),
        _event("response.output_item.added", item={"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f"}),
        _event("response.function_call_arguments.delta", item_id="fc_1", delta="{}"),
        _event("response.output_item.done", item={"type": "function_call", "id": "fc_1", "arguments": "{}"}),
        _completed(usage),
    )
    assert deltas == [ReasoningDelta(text="think"), TextDelta(text="Hi"), ToolCallStart(name="f", call_id="c1"),
                      ToolCallArguments(text="{}")]
    assert parser.end() == Finish(reason="tool_calls", usage=TokenUsage(input_tokens=30, output_tokens=7,
                                                                        cached_tokens=16, reasoning_tokens=3))


def test_responses_content_sent_only_in_the_finished_item_is_not_lost() -> None:
    parser = ResponseEvents()
    deltas = _feed(
        parser,
        _event("response.output_item.added", item={"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f"}),
        _event("response.output_item.done", item={"type": "function_call", "id": "fc_1", "arguments": '{"a":1}'}),
        _event("response.output_item.done", item={"type": "message", "id": "m", "content": [
            {"type": "output_text", "text": "whole"}]}),
    )
    assert deltas == [ToolCallStart(name="f", call_id="c"), ToolCallArguments(text='{"a":1}'), TextDelta(text="whole")]


def test_responses_incomplete_for_max_output_tokens_finishes_with_length() -> None:
    parser = ResponseEvents()
    _feed(parser, _completed(kind="response.incomplete", incomplete_details={"reason": "max_output_tokens"}))
    assert parser.end().reason == "length"


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([_event("response.output_text.delta", item_id="m", delta="cut")], "ended before the response was finished"),
        ([_event("response.failed", response={"error": {"code": "model_error", "message": "worker died"}})],
         "worker died"),
        ([_event("error", error={"message": "overloaded"})], "overloaded"),
        ([_event("response.output_item.added", item={"type": "function_call", "id": "x"})], "without a name"),
    ],
)
def test_a_failed_or_cut_responses_stream_is_a_bad_gateway(events: list[bytes], message: str) -> None:
    parser = ResponseEvents()
    with pytest.raises(BadGateway, match=message):
        _feed(parser, *events)
        parser.end()
