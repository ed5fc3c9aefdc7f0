"""Fold adapter deltas into Responses events and the final response object.

This is the only place output items and events are built: the SSE stream, the
non-stream JSON and the stored response all come out of one `Assembler`, so they
cannot disagree. Pure: no I/O, no clock other than `completed_at`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec
from msgspec import UNSET

from gateway.adapters.base import (
    Delta,
    Finish,
    ReasoningDelta,
    Tally,
    TextDelta,
    TokenUsage,
    ToolCallArguments,
    ToolCallStart,
)
from gateway.errors import GatewayError
from gateway.events import (
    ContentPartAdded,
    ContentPartDone,
    CustomToolCallInputDelta,
    CustomToolCallInputDone,
    Event,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    OutputTextDone,
    ReasoningSummaryPartAdded,
    ReasoningSummaryPartDone,
    ReasoningSummaryTextDelta,
    ReasoningSummaryTextDone,
    ReasoningTextDelta,
    ReasoningTextDone,
    ResponseCompleted,
    ResponseCreated,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    ResponseQueued,
)
from gateway.ids import new_id, now
from gateway.protocol import (
    ContentPart,
    CustomToolCall,
    FunctionCall,
    IncompleteDetails,
    InputTokensDetails,
    Message,
    OutputItem,
    OutputText,
    OutputTokensDetails,
    Reasoning,
    ReasoningText,
    Response,
    ResponseError,
    Status,
    SummaryText,
    Usage,
)

__all__ = ["Assembler", "usage_from"]

ItemKind = Literal["message", "reasoning", "function_call", "custom_tool_call"]
_PREFIX = {"message": "msg", "reasoning": "rs", "function_call": "fc", "custom_tool_call": "ctc"}


class _Open(msgspec.Struct):
    kind: ItemKind
    item_id: str
    index: int
    parts: list[str]
    name: str = ""
    call_id: str = ""
    namespace: str | None = None


def usage_from(tokens: TokenUsage) -> Usage:
    return Usage(
        input_tokens=tokens.input_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=tokens.cached_tokens),
        output_tokens=tokens.output_tokens,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=tokens.reasoning_tokens),
        total_tokens=tokens.input_tokens + tokens.output_tokens,
    )


class Assembler:
    """State machine from deltas to events. Every method returns the events to send, in order."""

    def __init__(self, response: Response, *, new_item_id: Callable[[str], str] = new_id) -> None:
        self.response = response
        self._new_item_id = new_item_id
        self.output: list[OutputItem] = []
        self._open: _Open | None = None
        # Whitespace that would open a message: held until real text follows. Between or after tool calls
        # (the newline between two calls) it is dropped, so it never becomes a message of its own.
        self._blank = ""
        self._seq = 0
        self.terminal = False

    # ----------------------------------------------------------- lifecycle

    def start(self, *, queued: bool = False) -> list[Event]:
        events: list[Event] = [ResponseCreated(sequence_number=self._next(), response=self.snapshot())]
        if queued:
            events.append(ResponseQueued(sequence_number=self._next(), response=self.snapshot()))
        else:
            events.append(ResponseInProgress(sequence_number=self._next(), response=self.snapshot()))
        return events

    def keepalive(self) -> list[Event]:
        """A real event (not an SSE comment): Codex's idle timer only counts events."""
        return [ResponseInProgress(sequence_number=self._next(), response=self.snapshot())]

    def snapshot(self) -> Response:
        return msgspec.structs.replace(self.response, output=list(self.output))

    def feed(self, delta: Delta) -> list[Event]:
        if self.terminal:
            return []
        if isinstance(delta, TextDelta):
            return self._text(delta.text) if delta.text else []
        if isinstance(delta, Finish) and self._blank and not self.output and self._open is None:
            blank, self._blank = self._blank, ""  # an answer that is only whitespace is still the answer
            return self._text(blank, hold=False) + self.finish(delta)
        if not isinstance(delta, Tally):
            self._blank = ""
        if isinstance(delta, ReasoningDelta):
            return self._reasoning(delta.text) if delta.text else []
        if isinstance(delta, ToolCallStart):
            return self._tool_start(delta)
        if isinstance(delta, ToolCallArguments):
            return self._tool_arguments(delta.text)
        if isinstance(delta, Finish):
            return self.finish(delta)
        if isinstance(delta, Tally):
            return []  # counts only (the runner keeps them)
        raise TypeError(f"unknown delta {delta!r}")

    def finish(self, finish: Finish) -> list[Event]:
        truncated = finish.reason == "length"
        events = self._close("incomplete" if truncated else "completed")
        usage = usage_from(finish.usage)
        if truncated:
            self._end("incomplete", usage=usage, incomplete=IncompleteDetails(reason="max_output_tokens"))
            events.append(ResponseIncomplete(sequence_number=self._next(), response=self.snapshot()))
        else:
            self._end("completed", usage=usage)
            events.append(ResponseCompleted(sequence_number=self._next(), response=self.snapshot()))
        return events

    def fail(self, error: GatewayError, usage: TokenUsage | None = None) -> list[Event]:
        if self.terminal:
            return []
        # A half-generated tool call is never announced as done: a client would run it.
        events: list[Event] | None = [] if self._open and self._open.kind in ("function_call", "custom_tool_call") else None
        if events is None:
            events = self._close("incomplete")
        elif self._open is not None:
            self.output.append(self._item(self._open, "incomplete"))
            self._open = None
        code = error.code or "server_error"
        self._end("failed", usage=usage_from(usage) if usage else None, error=ResponseError(code=code, message=error.message))
        events.append(ResponseFailed(sequence_number=self._next(), response=self.snapshot()))
        return events

    def cancel(self, usage: Usage | None = None) -> None:
        """Record a cancellation (client gone or cancel endpoint): no event, final status, and the usage
        counted until then when the adapter reported one."""
        if self._open is not None:
            self.output.append(self._item(self._open, "incomplete"))
            self._open = None
        if not self.terminal:
            self._end("cancelled", usage=usage)

    # --------------------------------------------------------------- items

    def _text(self, text: str, *, hold: bool = True) -> list[Event]:
        events: list[Event] = []
        if self._open is None or self._open.kind != "message":
            if hold and not (self._blank + text).strip():
                self._blank += text
                return []
            text, self._blank = self._blank + text, ""
            events += self._close("completed")
            events += self._open_item("message")
        item = self._open
        assert item is not None
        item.parts.append(text)
        events.append(
            OutputTextDelta(
                sequence_number=self._next(), item_id=item.item_id, output_index=item.index, content_index=0, delta=text
            )
        )
        return events

    def _reasoning(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open is None or self._open.kind != "reasoning":
            events += self._close("completed")
            events += self._open_item("reasoning")
        item = self._open
        assert item is not None
        item.parts.append(text)
        # Summary events show in Codex and OpenCode; raw events let Codex replay the thought.
        events.append(
            ReasoningSummaryTextDelta(
                sequence_number=self._next(), item_id=item.item_id, output_index=item.index, summary_index=0, delta=text
            )
        )
        events.append(
            ReasoningTextDelta(
                sequence_number=self._next(), item_id=item.item_id, output_index=item.index, content_index=0, delta=text
            )
        )
        return events

    def _tool_start(self, start: ToolCallStart) -> list[Event]:
        events = self._close("completed")
        kind: ItemKind = "custom_tool_call" if start.custom else "function_call"
        events += self._open_item(kind, name=start.name, call_id=start.call_id or new_id("call"))
        assert self._open is not None
        self._open.namespace = start.namespace
        return events

    def _tool_arguments(self, text: str) -> list[Event]:
        item = self._open
        if item is None or item.kind not in ("function_call", "custom_tool_call") or not text:
            return []
        item.parts.append(text)
        if item.kind == "custom_tool_call":
            delta: Event = CustomToolCallInputDelta(
                sequence_number=self._next(), item_id=item.item_id, output_index=item.index, call_id=item.call_id, delta=text
            )
        else:
            delta = FunctionCallArgumentsDelta(
                sequence_number=self._next(), item_id=item.item_id, output_index=item.index, delta=text
            )
        return [delta]

    def _open_item(self, kind: ItemKind, *, name: str = "", call_id: str = "") -> list[Event]:
        item = _Open(kind=kind, item_id=self._new_item_id(_PREFIX[kind]), index=len(self.output), parts=[], name=name, call_id=call_id)
        self._open = item
        events: list[Event] = [
            OutputItemAdded(sequence_number=self._next(), output_index=item.index, item=self._item(item, "in_progress"))
        ]
        if kind == "message":
            events.append(
                ContentPartAdded(
                    sequence_number=self._next(), item_id=item.item_id, output_index=item.index, content_index=0,
                    part=OutputText(text=""),
                )
            )
        elif kind == "reasoning":
            events.append(
                ReasoningSummaryPartAdded(
                    sequence_number=self._next(), item_id=item.item_id, output_index=item.index, summary_index=0,
                    part=SummaryText(text=""),
                )
            )
            events.append(
                ContentPartAdded(
                    sequence_number=self._next(), item_id=item.item_id, output_index=item.index, content_index=0,
                    part=ReasoningText(text=""),
                )
            )
        return events

    def _close(self, status: str) -> list[Event]:
        item = self._open
        if item is None:
            return []
        self._open = None
        text = "".join(item.parts)
        iid, index = item.item_id, item.index
        events: list[Event] = []
        if item.kind == "message":
            events.append(OutputTextDone(sequence_number=self._next(), content_index=0, text=text, item_id=iid, output_index=index))
            events.append(ContentPartDone(sequence_number=self._next(), content_index=0, part=OutputText(text=text), item_id=iid, output_index=index))
        elif item.kind == "reasoning":
            events.append(ReasoningSummaryTextDone(sequence_number=self._next(), summary_index=0, text=text, item_id=iid, output_index=index))
            events.append(
                ReasoningSummaryPartDone(sequence_number=self._next(), summary_index=0, part=SummaryText(text=text), item_id=iid, output_index=index)
            )
            events.append(ReasoningTextDone(sequence_number=self._next(), content_index=0, text=text, item_id=iid, output_index=index))
            events.append(ContentPartDone(sequence_number=self._next(), content_index=0, part=ReasoningText(text=text), item_id=iid, output_index=index))
        elif item.kind == "function_call":
            events.append(FunctionCallArgumentsDone(sequence_number=self._next(), name=item.name, arguments=text, item_id=iid, output_index=index))
        else:
            events.append(CustomToolCallInputDone(sequence_number=self._next(), call_id=item.call_id, input=text, item_id=iid, output_index=index))
        final = self._item(item, status)
        self.output.append(final)
        events.append(OutputItemDone(sequence_number=self._next(), output_index=item.index, item=final))
        return events

    def _item(self, item: _Open, status: str) -> OutputItem:
        """A fresh struct per call: events already emitted keep their own snapshot."""
        text = "".join(item.parts) if status != "in_progress" else ""
        if item.kind == "message":
            content: list[ContentPart] = [OutputText(text=text)] if status != "in_progress" else []
            return Message(id=item.item_id, role="assistant", status=status, content=content)
        if item.kind == "reasoning":
            if status == "in_progress":
                return Reasoning(id=item.item_id, summary=[], status=status)
            return Reasoning(
                id=item.item_id, summary=[SummaryText(text=text)], content=[ReasoningText(text=text)], status=status
            )
        namespace = item.namespace if item.namespace is not None else UNSET
        if item.kind == "function_call":
            return FunctionCall(
                id=item.item_id, call_id=item.call_id, name=item.name, arguments=text, status=status, namespace=namespace
            )
        return CustomToolCall(
            id=item.item_id, call_id=item.call_id, name=item.name, input=text, status=status, namespace=namespace
        )

    def _end(
        self,
        status: Status,
        *,
        usage: Usage | None = None,
        error: ResponseError | None = None,
        incomplete: IncompleteDetails | None = None,
    ) -> None:
        self.terminal = True
        self.response = msgspec.structs.replace(
            self.response,
            status=status,
            usage=usage,
            error=error,
            incomplete_details=incomplete,
            output=list(self.output),
            completed_at=now() if status == "completed" else None,
        )

    def _next(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq
