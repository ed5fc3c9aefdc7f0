"""Chat Completions wire types (the subset agents send), decoded leniently like Responses requests."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

__all__ = [
    "ChatCompletionMessage",
    "ChatCompletionRequest",
    "ChatFunction",
    "ChatTool",
    "ChatToolCall",
    "ChatToolCallFunction",
    "StreamOptions",
]


class ChatFunction(Struct, kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(Struct, kw_only=True):
    type: str = "function"
    function: ChatFunction


class ChatToolCallFunction(Struct, kw_only=True):
    name: str
    arguments: str = ""


class ChatToolCall(Struct, kw_only=True):
    id: str
    type: str = "function"
    function: ChatToolCallFunction


class ChatCompletionMessage(Struct, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ChatToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class StreamOptions(Struct, kw_only=True):
    include_usage: bool = False


class ChatCompletionRequest(Struct, kw_only=True):
    """POST /v1/chat/completions. Unknown fields are ignored."""

    model: str
    messages: Annotated[list[ChatCompletionMessage], Meta(min_length=1)]
    tools: list[ChatTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Meta(ge=1)] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Meta(ge=1, le=1)] | None = None
    reasoning_effort: str | None = None
    user: str | None = None
    response_format: dict[str, Any] | None = None  # text / json_object / json_schema: enforced like text.format
