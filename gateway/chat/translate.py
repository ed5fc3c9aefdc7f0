"""Chat Completions ⇄ Responses: requests in, completion objects out. Pure."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.chat.protocol import ChatCompletionMessage, ChatCompletionRequest
from gateway.errors import InvalidRequest
from gateway.normalize import convert, decode_object
from gateway.policies.tools import WRAPPED_ARGUMENT
from gateway.protocol import (
    ContentPart,
    CustomToolCall,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    InputImage,
    InputItem,
    InputText,
    Message,
    OutputText,
    Reasoning,
    ReasoningConfig,
    ReasoningText,
    Response,
    ResponsesRequest,
    TextConfig,
)

__all__ = ["completion_object", "decode_chat_request", "finish_reason", "to_responses_request", "usage_object"]

def decode_chat_request(body: bytes) -> ChatCompletionRequest:
    return convert(decode_object(body), ChatCompletionRequest)


def _parts(content: str | list[dict[str, Any]] | None, index: int) -> str | list[ContentPart]:
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[ContentPart] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(InputText(text=part["text"]))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise InvalidRequest("An image_url part needs a URL.", param=f"messages[{index}].content[{j}].image_url")
            parts.append(InputImage(image_url=url))
        else:
            raise InvalidRequest(f"Unsupported content part type {kind!r}.", param=f"messages[{index}].content[{j}].type")
    return parts


def _text(content: str | list[ContentPart]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content if isinstance(p, InputText))


def _items(messages: list[ChatCompletionMessage]) -> list[InputItem]:
    items: list[InputItem] = []
    for index, message in enumerate(messages):
        content = _parts(message.content, index)
        if message.role in ("system", "developer", "user"):
            items.append(Message(role=message.role, content=content))
        elif message.role == "assistant":
            if message.reasoning_content:
                items.append(Reasoning(summary=[], content=[ReasoningText(text=message.reasoning_content)]))
            text = _text(content)
            if text:
                items.append(Message(role="assistant", content=[OutputText(text=text)]))
            for call in message.tool_calls or []:
                items.append(FunctionCall(call_id=call.id, name=call.function.name, arguments=call.function.arguments))
        else:  # tool / legacy function results
            call_id = message.tool_call_id or message.name
            if not call_id:
                raise InvalidRequest("A tool message needs `tool_call_id`.", param=f"messages[{index}].tool_call_id")
            items.append(FunctionCallOutput(call_id=call_id, output=_text(content)))
    return items


def _tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any]:
    if choice is None or isinstance(choice, str):
        return choice or "auto"
    function = choice.get("function")
    if choice.get("type") == "function" and isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"type": "function", "name": function["name"]}
    raise InvalidRequest("tool_choice must be none, auto, required or a named function.", param="tool_choice")


def _text_format(response_format: dict[str, Any] | None) -> TextConfig | None:
    """Chat's `response_format` as the Responses `text.format` (json_schema's fields move up one level)."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind in ("text", "json_object"):
        return TextConfig(format={"type": kind})
    spec = response_format.get("json_schema")
    if kind == "json_schema" and isinstance(spec, dict):
        return TextConfig(format={"type": "json_schema", **spec})
    raise InvalidRequest("response_format must be text, json_object or json_schema (with a json_schema object).",
                         param="response_format")


def to_responses_request(chat: ChatCompletionRequest) -> tuple[ResponsesRequest, list[str]]:
    """The same request in Responses terms (never stored), plus its stop sequences."""
    tools = [
        FunctionTool(name=t.function.name, description=t.function.description, parameters=t.function.parameters,
                     strict=t.function.strict)
        for t in chat.tools or []
        if t.type == "function"
    ]
    stop = [chat.stop] if isinstance(chat.stop, str) else list(chat.stop or [])
    request = ResponsesRequest(
        model=chat.model,
        input=_items(chat.messages),
        stream=bool(chat.stream),
        store=False,
        tools=tools,  # type: ignore[arg-type]
        tool_choice=_tool_choice(chat.tool_choice),  # type: ignore[arg-type]
        parallel_tool_calls=chat.parallel_tool_calls if chat.parallel_tool_calls is not None else True,
        max_output_tokens=chat.max_completion_tokens or chat.max_tokens,
        temperature=chat.temperature,
        top_p=chat.top_p,
        reasoning=ReasoningConfig(effort=chat.reasoning_effort) if chat.reasoning_effort else None,
        user=chat.user,
        text=_text_format(chat.response_format),
    )
    return request, stop


# ------------------------------------------------------------------ results


def finish_reason(response: Response) -> str:
    if response.status == "incomplete":
        return "length"
    if any(isinstance(item, (FunctionCall, CustomToolCall)) for item in response.output):
        return "tool_calls"
    return "stop"


def usage_object(response: Response) -> dict[str, Any] | None:
    usage = response.usage
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.input_tokens_details.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.output_tokens_details.reasoning_tokens},
    }


def tool_call_object(item: FunctionCall | CustomToolCall, index: int | None = None) -> dict[str, Any]:
    """A chat `tool_calls` entry; a freeform call is shown with its raw input wrapped as `input`."""
    if isinstance(item, FunctionCall):
        arguments = item.arguments
    else:
        arguments = msgspec.json.encode({WRAPPED_ARGUMENT: item.input}).decode()
    call: dict[str, Any] = {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": arguments}}
    if index is not None:
        call["index"] = index
    return call


def completion_object(response: Response, completion_id: str) -> dict[str, Any]:
    text = "".join(
        part.text
        for item in response.output
        if isinstance(item, Message) and isinstance(item.content, list)
        for part in item.content
        if isinstance(part, OutputText)
    )
    reasoning = "".join(
        part.text
        for item in response.output
        if isinstance(item, Reasoning) and isinstance(item.content, list)
        for part in item.content
    )
    calls = [tool_call_object(i) for i in response.output if isinstance(i, (FunctionCall, CustomToolCall))]
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = reasoning
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": response.created_at,
        "model": response.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(response), "logprobs": None}],
        "usage": usage_object(response),
    }
