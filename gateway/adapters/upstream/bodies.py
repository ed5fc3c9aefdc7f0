"""What the upstream is sent: a stateless request built from the gateway's `GenerationRequest`.

The gateway has already resolved the chain, conversation, item references and tool policies, so the upstream
gets the whole conversation as chat messages (`api: chat`) or as a full Responses `input` with `store: false`
(`api: responses`). Earlier reasoning is not sent back: chat servers have no field for it, and a Responses
upstream would need the encrypted form it never gave.
"""

from __future__ import annotations

from typing import Any

from gateway.adapters.base import GenerationRequest, TemplateMessage, ToolSpec

__all__ = ["chat_body", "responses_body"]

# The schema name an upstream needs for a JSON answer (the request's own name was not carried this far).
_SCHEMA_NAME = "response"


def chat_body(request: GenerationRequest, model: str, *, structured: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [_chat_message(m) for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = [_chat_tool(t) for t in request.tools]
        body["tool_choice"] = _chat_tool_choice(request.tool_choice)
        body["parallel_tool_calls"] = request.parallel_tool_calls
    _sampling(body, request, max_key="max_tokens")
    if request.stop:
        body["stop"] = list(request.stop)
    if request.reasoning_effort:
        body["reasoning_effort"] = request.reasoning_effort
    if request.chat_template_kwargs:
        body["chat_template_kwargs"] = dict(request.chat_template_kwargs)
    schema = request.constraint.schema if request.constraint is not None else None
    if structured and schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": _SCHEMA_NAME, "schema": schema}}
    return body


def responses_body(request: GenerationRequest, model: str, *, structured: bool, stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "input": [item for m in request.messages for item in _response_items(m)],
        "store": False,
        "stream": stream,
    }
    if request.tools:
        body["tools"] = [_response_tool(t) for t in request.tools]
        body["tool_choice"] = _response_tool_choice(request.tool_choice)
        body["parallel_tool_calls"] = request.parallel_tool_calls
    _sampling(body, request, max_key="max_output_tokens")
    if request.reasoning_effort:
        body["reasoning"] = {"effort": request.reasoning_effort}
    if request.prompt_cache_key:
        body["prompt_cache_key"] = request.prompt_cache_key
    schema = request.constraint.schema if request.constraint is not None else None
    if structured and schema is not None:
        body["text"] = {"format": {"type": "json_schema", "name": _SCHEMA_NAME, "schema": schema}}
    return body


def _sampling(body: dict[str, Any], request: GenerationRequest, *, max_key: str) -> None:
    if request.max_tokens is not None:
        body[max_key] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p


# ------------------------------------------------------------------ chat


def _chat_message(message: TemplateMessage) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role  # most engines know no "developer"
    out: dict[str, Any] = {"role": role}
    if message.role == "user" and message.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
        parts += [{"type": "image_url", "image_url": {"url": url}} for url in message.images]
        out["content"] = parts
    else:
        out["content"] = message.content
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
        out["content"] = message.content or None
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id or ""
    return out


def _chat_tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, dict):
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    return choice


# ------------------------------------------------------------------ responses


def _response_items(message: TemplateMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "function_call_output", "call_id": message.tool_call_id or "", "output": message.content}]
    if message.role == "assistant":
        items: list[dict[str, Any]] = []
        if message.content:
            items.append({"role": "assistant", "content": message.content})
        items += [
            {"type": "function_call", "call_id": c.call_id, "name": c.name, "arguments": c.arguments}
            for c in message.tool_calls
        ]
        return items
    if message.role == "user" and message.images:
        parts: list[dict[str, Any]] = [{"type": "input_text", "text": message.content}] if message.content else []
        parts += [{"type": "input_image", "image_url": url, "detail": "auto"} for url in message.images]
        return [{"role": "user", "content": parts}]
    return [{"role": message.role, "content": message.content}]


def _response_tool(tool: ToolSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "name": tool.name, "parameters": tool.parameters, "strict": False}
    if tool.description:
        out["description"] = tool.description
    return out


def _response_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, dict):
        return {"type": "function", "name": choice.get("name", "")}
    return choice
