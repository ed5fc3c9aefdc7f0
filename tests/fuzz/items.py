"""The pieces of a request body: content parts, input items (every type, unknown ones included), tools (function,
custom, namespace, local shell, hosted, unknown) and every shape of `tool_choice`."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from gateway.protocol import HOSTED_TOOL_TYPES
from tests.fuzz.gen import OPT_BOOLS, Gen
from tests.fuzz.values import HOSTILE, KEYS, ROLES, UNKNOWN_TYPES, deep

# --- content parts

INPUT_PART_KINDS = st.sampled_from(["input_text", "input_image", "input_file", "output_text", "refusal",
                                    "reasoning_text", "summary_text", "unknown"])
OUTPUT_PART_KINDS = st.sampled_from(["output_text", "refusal", "input_text", "output_text", "refusal",
                                     "reasoning_text", "summary_text", "unknown"])


IMAGE_URLS = ["data:image/png;base64,AA", "https://example.invalid/a.png", ""]


def content_part(g: Gen, *, output: bool = False) -> Any:
    if g.corrupt(3):
        return g.draw(HOSTILE)
    kind = g.draw(OUTPUT_PART_KINDS if output else INPUT_PART_KINDS)
    v = g.v
    if kind == "input_text":
        return g.obj({"type": kind}, {"text": v.T}, required=("text",))
    if kind == "input_image":
        return g.obj({"type": kind}, {
            "image_url": g.s("image_url", lambda v: st.sampled_from(IMAGE_URLS) | v.S),
            "file_id": v.S, "detail": g.s("detail", lambda v: st.sampled_from(["auto", "low", "high"]) | v.S),
        })
    if kind == "input_file":
        return g.obj({"type": kind}, {"file_data": v.S, "file_url": v.S, "file_id": v.S, "filename": v.T})
    if kind == "output_text":
        json_list = g.s("json_list", lambda v: st.lists(v.any_json, max_size=2))
        return g.obj({"type": kind}, {"text": v.T, "annotations": json_list, "logprobs": json_list}, required=("text",))
    if kind == "refusal":
        return g.obj({"type": kind}, {"refusal": v.T}, required=("refusal",))
    if kind in ("reasoning_text", "summary_text"):
        return g.obj({"type": kind}, {"text": v.T}, required=("text",))
    unknown = g.pick("unknown_part_type", lambda v: st.sampled_from([*UNKNOWN_TYPES, "image", "audio"]) | v.S)
    return g.obj({"type": unknown}, {"text": v.T, "data": v.any_json})


def parts(g: Gen, *, output: bool = False, max_size: int = 3) -> list[Any]:
    return g.items_of(lambda: content_part(g, output=output), max_size)


def content(g: Gen, *, output: bool = False) -> Any:
    return g.draw(g.v.T) if g.chance(50) else parts(g, output=output)


# --- input items

ARGUMENTS = ['{"cmd": "ls"}', "{}", "", "not json", '{"input": "x"}']
ITEM_KINDS = st.sampled_from(
    ["message", "message", "short", "short", "function_call", "function_call_output", "custom_tool_call",
     "custom_tool_call_output", "local_shell_call", "local_shell_call_output", "reasoning", "item_reference",
     "unknown"]
)


def input_item(g: Gen) -> Any:
    v = g.v
    if g.corrupt(3):
        return g.pick("odd_item", lambda v: st.one_of(
            v.scalars, st.lists(v.scalars, max_size=2), st.just({}), st.just({"type": None}), st.just({"type": 5}),
            st.just({"content": "no role, no type"})))
    kind = g.draw(ITEM_KINDS)
    status = g.s("status", lambda v: st.sampled_from(["completed", "in_progress", "incomplete"]) | v.S)
    if kind in ("message", "short"):
        if g.corrupt(3):
            role = g.pick("dirty_role", lambda v: st.sampled_from(ROLES * 3 + ["tool", "", "USER"]) | v.scalars)
        else:
            role = g.pick("role", lambda v: st.sampled_from(ROLES))
        fixed = {"type": "message", "role": role} if kind == "message" else {"role": role}
        return g.obj(fixed, {"content": lambda: content(g, output=role == "assistant"),
                             "id": v.item_ids, "status": status, "phase": v.S}, required=("content",))
    if kind == "function_call":
        return g.obj({"type": kind}, {
            "call_id": v.call_ids, "name": v.tool_names,
            "arguments": g.s("arguments", lambda v: st.sampled_from(ARGUMENTS) | v.T),
            "id": v.item_ids, "status": status,
            "namespace": g.s("namespace", lambda v: st.sampled_from(["docs", ""]) | v.S),
        }, required=("call_id", "name", "arguments"))
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = parts(g) if g.chance(30) else g.draw(v.T)
        return g.obj({"type": kind, "output": output}, {"call_id": v.call_ids, "id": v.item_ids, "status": status},
                     required=("call_id",))
    if kind == "custom_tool_call":
        return g.obj({"type": kind}, {"call_id": v.call_ids, "name": v.tool_names, "input": v.T, "id": v.item_ids,
                                      "status": status, "namespace": v.S},
                     required=("call_id", "name", "input"))
    if kind == "local_shell_call":
        action = g.s("action", lambda v: st.fixed_dictionaries(
            {"type": st.just("exec"), "command": st.lists(v.S, max_size=3)}) | v.any_json)
        return g.obj({"type": kind}, {"call_id": v.call_ids, "action": action, "id": v.item_ids, "status": status},
                     required=("call_id", "action"))
    if kind == "local_shell_call_output":
        return g.obj({"type": kind}, {"id": v.call_ids, "output": v.T, "status": status}, required=("id", "output"))
    if kind == "reasoning":
        summary = g.s("summary", lambda v: st.lists(
            st.fixed_dictionaries({"type": st.just("summary_text"), "text": v.S}), max_size=2))
        reasoning_content = g.s("reasoning_content", lambda v: st.none() | st.lists(
            st.fixed_dictionaries({"type": st.just("reasoning_text"), "text": v.S}), max_size=2))
        return g.obj({"type": kind}, {"summary": summary, "content": reasoning_content, "id": v.item_ids,
                                      "encrypted_content": g.s("opt_S", lambda v: st.none() | v.S), "status": status})
    if kind == "item_reference":
        return g.obj({"type": kind}, {"id": v.item_ids}, required=("id",))
    unknown = g.pick("unknown_item_type", lambda v: st.sampled_from(UNKNOWN_TYPES) | v.S)
    return g.obj({"type": unknown}, {"id": v.item_ids, "call_id": v.call_ids, "action": v.any_json, "output": v.T,
                                     "text": v.T, "encrypted_content": v.S})


# --- tools

SCHEMAS = st.sampled_from([
    {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
    {"type": "object"},
    {},
    {"type": "object", "properties": {"x": {"$ref": "#/definitions/x"}}, "definitions": {"x": {"type": "integer"}}},
])
TOOL_KINDS = st.sampled_from(["function", "function", "custom", "namespace", "local_shell", "hosted", "unknown"])
FORMATS = st.sampled_from([
    {"type": "text"},
    {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
    {"type": "grammar", "syntax": "regex", "definition": "^a+$"},
    {"type": "grammar", "definition": 5},
]) | st.none()
HOSTED_TYPES = st.sampled_from(sorted(HOSTED_TOOL_TYPES))


def schema(g: Gen) -> Any:
    if not g.corrupt(20):
        return g.draw(SCHEMAS)
    return g.pick("schema", lambda v: SCHEMAS | st.dictionaries(st.sampled_from(KEYS), v.any_json, max_size=3) | deep())


def tool(g: Gen, *, depth: int = 0) -> Any:
    v = g.v
    if g.corrupt(3):
        return g.pick("odd_tool", lambda v: st.one_of(
            v.scalars, st.just({}), st.just({"type": None}), st.just({"type": ["function"]})))
    kind = g.draw(TOOL_KINDS)
    description = g.s("opt_T", lambda v: st.none() | v.T)
    if kind == "function":
        return g.obj({"type": kind}, {"name": v.tool_names, "description": description,
                                      "parameters": lambda: schema(g), "strict": OPT_BOOLS},
                     required=("name",))
    if kind == "custom":
        return g.obj({"type": kind}, {"name": v.tool_names, "description": description, "format": FORMATS},
                     required=("name",))
    if kind == "namespace":
        children = [] if depth > 1 else g.items_of(lambda: tool(g, depth=depth + 1), 3)
        return g.obj({"type": kind, "tools": children}, {"name": v.tool_names, "description": v.S},
                     required=("name",))
    if kind == "local_shell":
        return {"type": kind}
    if kind == "hosted":
        return g.obj({"type": g.draw(HOSTED_TYPES)},
                     {"name": v.tool_names, "server_label": v.tool_names, "server_url": v.S, "filters": v.any_json,
                      "vector_store_ids": g.s("S_list", lambda v: st.lists(v.S, max_size=2))})
    unknown = g.pick("unknown_tool_type", lambda v: st.sampled_from(UNKNOWN_TYPES) | v.S)
    return g.obj({"type": unknown}, {"name": v.tool_names, "x": v.any_json})


CHOICE_STRINGS = st.sampled_from(["none", "auto", "required"])
CHOICE_KINDS = st.sampled_from(["string", "function", "custom", "allowed", "allowed", "hosted", "odd"])
ALLOWED_TYPES = st.sampled_from(["function", "custom", "mcp"])
HOSTED_CHOICES = st.sampled_from(["web_search", "file_search", "mcp", "image_generation"])


def tool_choice(g: Gen) -> Any:
    with g.within("tool_choice"):
        return _tool_choice(g)


def _tool_choice(g: Gen) -> Any:
    v = g.v
    kind = g.draw(CHOICE_KINDS)
    if kind == "string":
        if g.corrupt(30):
            return g.draw(g.v.S)
        return g.draw(CHOICE_STRINGS)
    if kind in ("function", "custom"):
        return g.obj({"type": kind}, {"name": v.tool_names}, required=("name",))
    if kind == "allowed":
        def entry() -> Any:
            if g.corrupt(5):
                return g.draw(HOSTILE)
            return g.obj({}, {"type": ALLOWED_TYPES, "name": v.tool_names}, required=("type", "name"))

        mode = g.s("mode", lambda v: st.sampled_from(["auto", "required", "none"]) | v.scalars)
        return g.obj({"type": "allowed_tools"}, {"mode": mode, "tools": lambda: g.items_of(entry, 3)},
                     required=("mode", "tools"))
    if kind == "hosted":
        return {"type": g.draw(HOSTED_CHOICES)}
    if not g.corrupt(50):
        return "auto"
    return g.pick("odd_choice", lambda v: st.dictionaries(st.sampled_from(KEYS), v.any_json, max_size=3) | HOSTILE)

