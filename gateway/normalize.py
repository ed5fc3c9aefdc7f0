"""Raw request JSON → `ResponsesRequest`, and typed items/tools → wire JSON.

Tagged decoding cannot infer a missing tag nor accept a tag it does not know, so
this step rewrites the builtins first: string input becomes one user message,
short-form messages get `type: "message"`, and unknown item/part/tool types are
wrapped (never rejected). Validation errors carry the JSON path as `param`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import InvalidRequest, param_from_validation, validation_code
from gateway.protocol import (
    CONTENT_PART_TAGS,
    HOSTED_TOOL_TYPES,
    INPUT_ITEM_TAGS,
    TOOL_TAGS,
    HostedTool,
    InputItem,
    NamespaceTool,
    ResponsesRequest,
    Tool,
    UnknownItem,
    UnknownPart,
    UnknownTool,
)

__all__ = ["MAX_JSON_DEPTH", "check_metadata", "convert", "decode_object", "decode_request", "item_to_wire", "items_from_wire", "tool_to_wire"]

_JSON = msgspec.json.Decoder()
MAX_JSON_DEPTH = 64  # deep enough for any tool's JSON schema; bounds every recursive step after decoding
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what msgpack (the store's encoding) can hold
_METADATA_MAX_PAIRS = 16
_METADATA_MAX_KEY = 64
_METADATA_MAX_VALUE = 512


def decode_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object within the gateway's limits, or `InvalidRequest`."""
    try:
        raw = _JSON.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    except RecursionError:  # msgspec's own guard, far deeper than MAX_JSON_DEPTH
        raise InvalidRequest(f"The request body nests deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    _check_shape(raw)
    return raw


def _check_shape(raw: dict[str, Any]) -> None:
    """Reject nesting deeper than MAX_JSON_DEPTH (later steps recurse) and integers outside 64 bits (the
    store's msgpack cannot hold them), naming the first offending path. One pass, no recursion."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(raw, ())]
    while stack:
        value, path = stack.pop()
        children = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in children:
            kind = type(child)
            if kind is dict or kind is list:
                if len(path) + 1 >= MAX_JSON_DEPTH:
                    where = _json_path((*path, key))
                    raise InvalidRequest(f"'{where}' nests deeper than {MAX_JSON_DEPTH} levels.", param=where)
                stack.append((child, (*path, key)))
            elif kind is int and not _INT_MIN <= child <= _INT_MAX:
                where = _json_path((*path, key))
                raise InvalidRequest(f"Invalid value for '{where}': integer out of range (64 bits at most).",
                                     param=where)


def _json_path(parts: tuple[str | int, ...]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def convert(obj: Any, type_: Any, prefix: str = "") -> Any:
    """`msgspec.convert`, with a validation error turned into `InvalidRequest` naming the JSON path."""
    try:
        return msgspec.convert(obj, type_)
    except msgspec.ValidationError as exc:
        param, text = param_from_validation(str(exc))
        if prefix:
            param = prefix + param if param and param.startswith("[") else prefix
        raise InvalidRequest(f"Invalid value for '{param or 'body'}': {text}.", param=param,
                             code=validation_code(text)) from None


def decode_request(body: bytes) -> ResponsesRequest:
    """Parse and validate a create-response body; raises `InvalidRequest` with `param`."""
    raw = decode_object(body)
    if raw.get("input") is not None:
        raw["input"] = _normalize_input(raw["input"])
    if isinstance(raw.get("tools"), list):
        raw["tools"] = [_normalize_tool(t, f"tools[{i}]") for i, t in enumerate(raw["tools"])]
    elif raw.get("tools") is None:
        raw.pop("tools", None)
    for optional in ("input", "tool_choice", "parallel_tool_calls", "stream", "store", "background"):
        if optional in raw and raw[optional] is None:
            del raw[optional]  # JSON null means "default" for these
    check_metadata(raw.get("metadata"))
    request = convert(raw, ResponsesRequest)
    if request.background and not request.store:
        raise InvalidRequest("Background responses require `store` to be true.", param="background")
    if request.conversation is not None and request.conversation_id() is None:
        raise InvalidRequest("Invalid 'conversation': expected an id or an object with a string 'id'.",
                             param="conversation")
    if request.previous_response_id is not None and request.conversation is not None:
        raise InvalidRequest(
            "`previous_response_id` cannot be combined with `conversation`.", param="conversation"
        )
    return request


def items_from_wire(raw: list[Any], path: str = "input") -> list[InputItem]:
    """Decode stored or client-sent wire items (the same normalization as requests)."""
    return convert(_normalize_input(raw, path), list[InputItem], prefix=path)


def _normalize_input(value: Any, path: str = "input") -> Any:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        return value  # msgspec reports the type error at `input`
    return [_normalize_item(item, f"{path}[{i}]") for i, item in enumerate(value)]


def _normalize_item(item: Any, path: str) -> Any:
    if not isinstance(item, dict):
        raise InvalidRequest(f"Invalid value for '{path}': expected an object.", param=path)
    kind = item.get("type")
    if kind is None:
        if "role" not in item:
            raise InvalidRequest(f"Missing required parameter: '{path}.type'.", param=f"{path}.type",
                                 code="missing_required_parameter")
        item = {**item, "type": "message"}
        kind = "message"
    if not isinstance(kind, str):
        raise InvalidRequest(f"Invalid value for '{path}.type': expected a string.", param=f"{path}.type",
                             code="invalid_type")
    if kind not in INPUT_ITEM_TAGS:
        data = {k: v for k, v in item.items() if k != "type"}
        return {"type": UnknownItem.__struct_config__.tag, "item_type": kind, "data": data}
    for field in ("content", "output"):
        parts = item.get(field)
        if isinstance(parts, list):
            item = {**item, field: [_normalize_part(p, f"{path}.{field}[{j}]") for j, p in enumerate(parts)]}
    return item


def _normalize_part(part: Any, path: str) -> Any:
    if not isinstance(part, dict):
        raise InvalidRequest(f"Invalid value for '{path}': expected an object.", param=path)
    kind = part.get("type")
    if not isinstance(kind, str):
        raise InvalidRequest(f"Missing required parameter: '{path}.type'.", param=f"{path}.type",
                                 code="missing_required_parameter")
    if kind in CONTENT_PART_TAGS:
        return part
    data = {k: v for k, v in part.items() if k != "type"}
    return {"type": UnknownPart.__struct_config__.tag, "part_type": kind, "data": data}


def _normalize_tool(tool: Any, path: str) -> Any:
    if not isinstance(tool, dict):
        raise InvalidRequest(f"Invalid value for '{path}': expected an object.", param=path)
    kind = tool.get("type")
    if not isinstance(kind, str):
        raise InvalidRequest(f"Missing required parameter: '{path}.type'.", param=f"{path}.type",
                                 code="missing_required_parameter")
    options = {k: v for k, v in tool.items() if k != "type"}
    if kind in HOSTED_TOOL_TYPES:
        return {"type": HostedTool.__struct_config__.tag, "tool_type": kind, "options": options}
    if kind not in TOOL_TAGS:
        return {"type": UnknownTool.__struct_config__.tag, "tool_type": kind, "options": options}
    if kind == "namespace" and isinstance(tool.get("tools"), list):
        children = [_normalize_tool(t, f"{path}.tools[{i}]") for i, t in enumerate(tool["tools"])]
        return {**tool, "tools": children}
    return tool


def check_metadata(metadata: Any) -> None:
    """The API's limits on `metadata`: 16 pairs, keys ≤ 64 and string values ≤ 512 characters."""
    if not isinstance(metadata, dict):
        return  # null is fine; other types are reported by msgspec at `metadata`
    if len(metadata) > _METADATA_MAX_PAIRS:
        raise InvalidRequest(
            f"Invalid 'metadata': at most {_METADATA_MAX_PAIRS} key-value pairs are allowed.", param="metadata"
        )
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise InvalidRequest(f"Invalid 'metadata.{key}': values must be strings.", param=f"metadata.{key}")
        if len(key) > _METADATA_MAX_KEY:
            raise InvalidRequest(
                f"Invalid 'metadata': keys are at most {_METADATA_MAX_KEY} characters.", param=f"metadata.{key}"
            )
        if len(value) > _METADATA_MAX_VALUE:
            raise InvalidRequest(
                f"Invalid 'metadata': values are at most {_METADATA_MAX_VALUE} characters.",
                param=f"metadata.{key}",
            )


# ------------------------------------------------------------- back to wire


def tool_to_wire(tool: Tool) -> dict[str, Any]:
    """The tool as the client sent it (undoing the wrapping above)."""
    if isinstance(tool, (HostedTool, UnknownTool)):
        return {"type": tool.tool_type, **tool.options}
    if isinstance(tool, NamespaceTool):
        wire = msgspec.to_builtins(tool)
        wire["tools"] = [tool_to_wire(child) for child in tool.tools]
        return wire
    return msgspec.to_builtins(tool)


def item_to_wire(item: Any) -> dict[str, Any]:
    """An item (or part) as JSON builtins in the API's shape."""
    if isinstance(item, UnknownItem):
        return {"type": item.item_type, **item.data}
    wire = msgspec.to_builtins(item)
    if wire.get("type") == "message" and isinstance(wire.get("content"), str):
        # Listed as the API lists it: a message's text is always a list of parts, whatever short form it came in.
        text = wire["content"]
        wire["content"] = [{"type": "output_text", "text": text, "annotations": []} if wire.get("role") == "assistant"
                           else {"type": "input_text", "text": text}]
    for field in ("content", "output"):
        parts = getattr(item, field, None)
        if isinstance(parts, list):
            wire[field] = [
                {"type": p.part_type, **p.data} if isinstance(p, UnknownPart) else msgspec.to_builtins(p)
                for p in parts
            ]
    return wire
