"""Responses streaming events. The struct tag is the event name (`type`)."""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from gateway.protocol import ContentPart, OutputItem, Response, SummaryText

__all__ = [
    "STREAM_ENDINGS",
    "STREAM_ENDING_TYPES",
    "TERMINAL_EVENTS",
    "ContentPartAdded",
    "ContentPartDone",
    "CustomToolCallInputDelta",
    "CustomToolCallInputDone",
    "ErrorEvent",
    "Event",
    "FunctionCallArgumentsDelta",
    "FunctionCallArgumentsDone",
    "OutputItemAdded",
    "OutputItemDone",
    "OutputTextDelta",
    "OutputTextDone",
    "ReasoningSummaryPartAdded",
    "ReasoningSummaryPartDone",
    "ReasoningSummaryTextDelta",
    "ReasoningSummaryTextDone",
    "ReasoningTextDelta",
    "ReasoningTextDone",
    "ResponseCompleted",
    "ResponseCreated",
    "ResponseFailed",
    "ResponseInProgress",
    "ResponseIncomplete",
    "ResponseQueued",
    "StreamEvent",
]


class Event(Struct, tag_field="type", kw_only=True):
    sequence_number: int

    @property
    def event_type(self) -> str:
        """The event name (`type` on the wire): the struct's tag."""
        tag = self.__struct_config__.tag
        assert isinstance(tag, str), "every event class declares its tag"
        return tag


class ResponseCreated(Event, tag="response.created", kw_only=True):
    response: Response


class ResponseQueued(Event, tag="response.queued", kw_only=True):
    response: Response


class ResponseInProgress(Event, tag="response.in_progress", kw_only=True):
    response: Response


class ResponseCompleted(Event, tag="response.completed", kw_only=True):
    response: Response


class ResponseIncomplete(Event, tag="response.incomplete", kw_only=True):
    response: Response


class ResponseFailed(Event, tag="response.failed", kw_only=True):
    response: Response


class OutputItemAdded(Event, tag="response.output_item.added", kw_only=True):
    output_index: int
    item: OutputItem


class OutputItemDone(Event, tag="response.output_item.done", kw_only=True):
    output_index: int
    item: OutputItem


class ContentPartAdded(Event, tag="response.content_part.added", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    part: ContentPart


class ContentPartDone(Event, tag="response.content_part.done", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    part: ContentPart


class OutputTextDelta(Event, tag="response.output_text.delta", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = []


class OutputTextDone(Event, tag="response.output_text.done", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = []


class FunctionCallArgumentsDelta(Event, tag="response.function_call_arguments.delta", kw_only=True):
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDone(Event, tag="response.function_call_arguments.done", kw_only=True):
    item_id: str
    output_index: int
    name: str
    arguments: str


class CustomToolCallInputDelta(Event, tag="response.custom_tool_call_input.delta", kw_only=True):
    item_id: str
    output_index: int
    call_id: str
    delta: str


class CustomToolCallInputDone(Event, tag="response.custom_tool_call_input.done", kw_only=True):
    item_id: str
    output_index: int
    call_id: str
    input: str


class ReasoningSummaryPartAdded(Event, tag="response.reasoning_summary_part.added", kw_only=True):
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class ReasoningSummaryPartDone(Event, tag="response.reasoning_summary_part.done", kw_only=True):
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class ReasoningSummaryTextDelta(Event, tag="response.reasoning_summary_text.delta", kw_only=True):
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class ReasoningSummaryTextDone(Event, tag="response.reasoning_summary_text.done", kw_only=True):
    item_id: str
    output_index: int
    summary_index: int
    text: str


class ReasoningTextDelta(Event, tag="response.reasoning_text.delta", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ReasoningTextDone(Event, tag="response.reasoning_text.done", kw_only=True):
    item_id: str
    output_index: int
    content_index: int
    text: str


class ErrorEvent(Event, tag="error", kw_only=True):
    code: str | None
    message: str
    param: str | None = None


StreamEvent = (
    ResponseCreated
    | ResponseQueued
    | ResponseInProgress
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
    | OutputItemAdded
    | OutputItemDone
    | ContentPartAdded
    | ContentPartDone
    | OutputTextDelta
    | OutputTextDone
    | FunctionCallArgumentsDelta
    | FunctionCallArgumentsDone
    | CustomToolCallInputDelta
    | CustomToolCallInputDone
    | ReasoningSummaryPartAdded
    | ReasoningSummaryPartDone
    | ReasoningSummaryTextDelta
    | ReasoningSummaryTextDone
    | ReasoningTextDelta
    | ReasoningTextDone
    | ErrorEvent
)

# The events that end a response stream, and their wire names. The API has no `response.cancelled`:
# a cancelled background stream ends with an `error` event, so a log reader counts `error` too.
TERMINAL_EVENTS = (ResponseCompleted, ResponseIncomplete, ResponseFailed)
STREAM_ENDINGS = (*TERMINAL_EVENTS, ErrorEvent)
STREAM_ENDING_TYPES = frozenset(cls.__struct_config__.tag for cls in STREAM_ENDINGS)
