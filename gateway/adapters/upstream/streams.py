"""An upstream's SSE stream → the gateway's deltas, for chat completion chunks and for Responses events.

Both parsers are pure (data in, deltas out) so they are tested without a server. Anything that does not parse,
or a stream that ends before it said it finished, raises `BadGateway`: the run ends as `response.failed`,
never as `completed`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec

from gateway.adapters.base import (
    Delta,
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    TokenUsage,
    ToolCallArguments,
    ToolCallStart,
)
from gateway.errors import BadGateway

__all__ = ["ChatChunks", "ResponseEvents", "sse_data"]

_MAX_EVENT_BYTES = 64 * 1024 * 1024  # one event above this is an upstream gone wrong, not a long answer
_DECODE = msgspec.json.Decoder()


async def sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The `data` of each SSE event (multi-line data joined by newlines), in order."""
    buffer = b""
    data: list[bytes] = []
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) > _MAX_EVENT_BYTES:
            raise BadGateway("The upstream sent an event larger than 64 MB.")
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # event:, id:, retry: and comments carry nothing the parsers need (Responses data has its type)
    if data:
        yield b"\n".join(data)


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = _DECODE.decode(data)
    except msgspec.DecodeError:
        raise BadGateway(f"The upstream sent a chunk that is not JSON: {data[:200]!r}") from None
    if not isinstance(value, dict):
        raise BadGateway(f"The upstream sent a chunk that is not a JSON object: {data[:200]!r}")
    return value


def _upstream_failure(error: Any) -> BadGateway:
    if isinstance(error, dict):
        message = error.get("message") or str(error)
        return BadGateway(f"The upstream failed: {message}")
    return BadGateway(f"The upstream failed: {error}")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _details(usage: dict[str, Any], key: str, field: str) -> int:
    details = usage.get(key)
    return _int(details.get(field)) if isinstance(details, dict) else 0


# ------------------------------------------------------------------ chat completions


_CHAT_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                                          "function_call": "tool_calls"}


class ChatChunks:
    """Chat completion chunks → deltas. Feed each event's data; `end()` when the stream closes."""

    def __init__(self) -> None:
        self.reason: FinishReason | None = None
        self.done = False
        self.usage = TokenUsage()
        self._calls: dict[int, dict[str, Any]] = {}  # index -> id, name, started, buffered arguments
        self._current: int | None = None

    @property
    def finished(self) -> bool:
        """`[DONE]` came (the usage chunk, if any, comes before it)."""
        return self.done

    def feed(self, data: bytes) -> Iterator[Delta]:
        if data.strip() == b"[DONE]":
            self.done = True
            return
        chunk = _json(data)
        if "error" in chunk:
            raise _upstream_failure(chunk["error"])
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = TokenUsage(
                input_tokens=_int(usage.get("prompt_tokens")),
                output_tokens=_int(usage.get("completion_tokens")),
                cached_tokens=_details(usage, "prompt_tokens_details", "cached_tokens"),
                reasoning_tokens=_details(usage, "completion_tokens_details", "reasoning_tokens"),
            )
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                yield ReasoningDelta(text=reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                yield TextDelta(text=content)
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        yield from self._tool_call(call)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self.reason = _CHAT_REASONS.get(reason, "stop")

    def _tool_call(self, call: dict[str, Any]) -> Iterator[Delta]:
        index = call.get("index", 0) if isinstance(call.get("index", 0), int) else 0
        state = self._calls.get(index)
        if state is None:
            if self._current is not None and not self._calls[self._current]["started"]:
                raise BadGateway("The upstream began a second tool call before naming the first.")
            state = self._calls[index] = {"id": None, "name": "", "started": False, "pending": ""}
            self._current = index
        elif index != self._current:
            raise BadGateway("The upstream interleaved the deltas of two tool calls.")
        function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        if isinstance(call.get("id"), str) and call["id"]:
            state["id"] = call["id"]
        if isinstance(function.get("name"), str):
            state["name"] += function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            state["pending"] += arguments
        if not state["started"] and state["name"]:
            state["started"] = True
            yield ToolCallStart(name=state["name"], call_id=state["id"])
        if state["started"] and state["pending"]:
            yield ToolCallArguments(text=state["pending"])
            state["pending"] = ""

    def end(self) -> Finish:
        """The closing `Finish`, or BadGateway if the stream was cut before the upstream finished."""
        if self.reason is None and not self.done:
            raise BadGateway("The upstream stream ended before the answer was finished.")
        if any(not state["started"] for state in self._calls.values()):
            raise BadGateway("The upstream sent a tool call without a name.")
        reason = self.reason or "stop"
        if self._calls and reason == "stop":
            reason = "tool_calls"  # some servers say "stop" after tool calls
        return Finish(reason=reason, usage=self.usage)


# ------------------------------------------------------------------ responses


class ResponseEvents:
    """Responses streaming events → deltas. The upstream's `response.completed` (or `incomplete`) is the finish."""

    def __init__(self) -> None:
        self.finish: Finish | None = None
        self._calls = 0
        self._streamed: set[str] = set()  # output items whose content arrived as deltas
        self._reasoning_kind: dict[str, str] = {}

    @property
    def finished(self) -> bool:
        return self.finish is not None

    def feed(self, data: bytes) -> Iterator[Delta]:
        event = _json(data)
        kind = event.get("type")
        item_id: str = event["item_id"] if isinstance(event.get("item_id"), str) else ""
        delta = event.get("delta")
        if kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
            # A server may send the same thinking both ways; the first kind seen for the item is the one kept.
            if self._reasoning_kind.setdefault(item_id, kind) != kind:
                return
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta",
                    "response.custom_tool_call_input.delta", "response.reasoning_text.delta",
                    "response.reasoning_summary_text.delta") and isinstance(delta, str):
            self._streamed.add(item_id)
            if kind == "response.output_text.delta":
                yield TextDelta(text=delta)
            elif kind.startswith("response.reasoning"):
                yield ReasoningDelta(text=delta)
            else:
                yield ToolCallArguments(text=delta)
        elif kind == "response.output_item.added":
            yield from self._item_added(event.get("item"))
        elif kind == "response.output_item.done":
            yield from self._item_done(event.get("item"))
        elif kind in ("response.completed", "response.incomplete"):
            self.finish = self._finish(event.get("response"), kind)
        elif kind == "response.failed":
            response: dict[str, Any] = event["response"] if isinstance(event.get("response"), dict) else {}
            raise _upstream_failure(response.get("error") or "response.failed")
        elif kind == "error":
            raise _upstream_failure(event.get("error") or event)

    def _item_added(self, item: Any) -> Iterator[Delta]:
        if not isinstance(item, dict) or item.get("type") not in ("function_call", "custom_tool_call"):
            return
        self._calls += 1
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise BadGateway("The upstream sent a tool call without a name.")
        call_id = item.get("call_id") if isinstance(item.get("call_id"), str) else None
        yield ToolCallStart(name=name, call_id=call_id, custom=item["type"] == "custom_tool_call")

    def _item_done(self, item: Any) -> Iterator[Delta]:
        """Content an upstream sent only whole, in the finished item (no deltas before it)."""
        if not isinstance(item, dict) or item.get("id", "") in self._streamed:
            return
        kind = item.get("type")
        if kind == "function_call" and isinstance(item.get("arguments"), str) and item["arguments"]:
            yield ToolCallArguments(text=item["arguments"])
        elif kind == "custom_tool_call" and isinstance(item.get("input"), str) and item["input"]:
            yield ToolCallArguments(text=item["input"])
        elif kind == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text" and part.get("text"):
                    yield TextDelta(text=part["text"])

    def _finish(self, response: Any, kind: str) -> Finish:
        response = response if isinstance(response, dict) else {}
        usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
        tokens = TokenUsage(
            input_tokens=_int(usage.get("input_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            cached_tokens=_details(usage, "input_tokens_details", "cached_tokens"),
            reasoning_tokens=_details(usage, "output_tokens_details", "reasoning_tokens"),
        )
        reason: FinishReason = "tool_calls" if self._calls else "stop"
        if kind == "response.incomplete":
            details = response.get("incomplete_details")
            if isinstance(details, dict) and details.get("reason") == "max_output_tokens":
                reason = "length"
        return Finish(reason=reason, usage=tokens)

    def end(self) -> Finish:
        if self.finish is None:
            raise BadGateway("The upstream stream ended before the response was finished.")
        return self.finish
