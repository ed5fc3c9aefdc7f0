"""Responses events → chat.completion.chunk SSE lines (ending with `data: [DONE]`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from gateway.chat.translate import finish_reason, usage_object
from gateway.errors import error_type
from gateway.events import (
    CustomToolCallInputDelta,
    Event,
    FunctionCallArgumentsDelta,
    OutputItemAdded,
    OutputTextDelta,
    ReasoningTextDelta,
    ResponseCompleted,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
)
from gateway.policies.tools import WRAPPED_ARGUMENT
from gateway.protocol import CustomToolCall, FunctionCall

__all__ = ["ChunkWriter"]

_ENCODER = msgspec.json.Encoder()


class ChunkWriter:
    """Folds one response's events into chat chunks; tool calls are numbered in order."""

    def __init__(self, completion_id: str, model: str, created: int, include_usage: bool) -> None:
        self.base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self.include_usage = include_usage
        self.calls: dict[str, int] = {}
        self.custom: set[str] = set()
        self.sent_role = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self.sent_role:
            delta = {"role": "assistant", **delta}
            self.sent_role = True
        body = {**self.base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        return b"data: " + _ENCODER.encode(body) + b"\n\n"

    def write(self, event: Event) -> bytes:
        if isinstance(event, OutputTextDelta):
            return self._chunk({"content": event.delta})
        if isinstance(event, ReasoningTextDelta):
            return self._chunk({"reasoning_content": event.delta})
        if isinstance(event, OutputItemAdded) and isinstance(event.item, (FunctionCall, CustomToolCall)):
            index = self.calls.setdefault(event.item.id, len(self.calls))  # type: ignore[arg-type]
            arguments = f'{{"{WRAPPED_ARGUMENT}": "' if isinstance(event.item, CustomToolCall) else ""
            if isinstance(event.item, CustomToolCall):
                self.custom.add(event.item.id)  # type: ignore[arg-type]
            call = {"index": index, "id": event.item.call_id, "type": "function",
                    "function": {"name": event.item.name, "arguments": arguments}}
            return self._chunk({"tool_calls": [call]})
        if isinstance(event, FunctionCallArgumentsDelta):
            return self._arguments(event.item_id, event.delta)
        if isinstance(event, CustomToolCallInputDelta):
            # Inside the JSON string opened above: escape, without the surrounding quotes.
            return self._arguments(event.item_id, _ENCODER.encode(event.delta)[1:-1].decode())
        if isinstance(event, (ResponseCompleted, ResponseIncomplete)):
            return self._end(event)
        if isinstance(event, ResponseFailed):
            error = event.response.error
            code = error.code if error else "server_error"
            body = {"error": {"message": error.message if error else "failed", "type": error_type(code),
                              "param": None, "code": code}}
            return b"data: " + _ENCODER.encode(body) + b"\n\ndata: [DONE]\n\n"
        if isinstance(event, ResponseInProgress):
            return b": keepalive\n\n"
        return b""

    def _arguments(self, item_id: str, text: str) -> bytes:
        index = self.calls.get(item_id)
        if index is None or not text:
            return b""
        return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": text}}]})

    def _end(self, event: ResponseCompleted | ResponseIncomplete) -> bytes:
        out = b""
        for item_id in self.custom:  # close the JSON string of wrapped freeform input
            out += self._arguments(item_id, '"}')
        out += self._chunk({}, finish=finish_reason(event.response))
        if self.include_usage:
            body = {**self.base, "choices": [], "usage": usage_object(event.response)}
            out += b"data: " + _ENCODER.encode(body) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    async def stream(self, batches: AsyncIterator[list[Event]]) -> AsyncIterator[bytes]:
        async for batch in batches:
            chunk = b"".join(self.write(event) for event in batch)
            if chunk:
                yield chunk
