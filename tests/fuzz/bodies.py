"""Whole request bodies: `POST /v1/responses` (every top-level field, input, tools, previous response,
conversation), `POST /v1/chat/completions`, and the Conversations API's create, update and add-items bodies."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.fuzz.gen import ABSENT, BOOLS, OPT_BOOLS, SIZES, Gen
from tests.fuzz.items import input_item, schema, tool, tool_choice
from tests.fuzz.manifest import MODELS
from tests.fuzz.values import CLEAN, HOSTILE, Vocab, ref

# --- Responses API: field values

SMALL_INTS = st.integers(1, 40) | st.sampled_from([1, 2, 3, 4096, 2**31])
RESPONSE_MODELS = st.sampled_from(MODELS * 8 + ["nope", "", "SCRIPTED", "echo\n", "a" * 300])
TEMPERATURES = st.floats(0, 2) | st.sampled_from([0, 1, 2])
TEXT_CONFIGS = st.fixed_dictionaries({}, optional={
    "format": st.sampled_from([{"type": "text"}, {"type": "json_object"},
                               {"type": "json_schema", "name": "x", "schema": {"type": "object"}}]),
    "verbosity": st.sampled_from(["low", "medium", "high"]) | st.none()})
REASONING_CONFIGS = st.fixed_dictionaries({}, optional={
    "effort": st.sampled_from(["none", "minimal", "low", "medium", "high"]) | st.none(),
    "summary": st.sampled_from(["auto", "concise", "detailed"]) | st.none(),
    "generate_summary": st.sampled_from(["auto"]) | st.none()})
METADATA = st.one_of(*[st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4)] * 3,
                     st.dictionaries(st.text(max_size=70), st.text(max_size=600), max_size=17))
UNIT_FLOATS = st.floats(0, 1)
TOP_LOGPROBS = st.integers(0, 20)
TRUNCATIONS = st.sampled_from(["auto", "disabled"])
SERVICE_TIERS = st.sampled_from(["auto", "default", "flex", "priority"])
CALL_TYPES = st.sampled_from(["function", "custom"])
CHAT_TOOL_TYPES = st.sampled_from(["function", "custom", "web_search"])
STREAM_OPTIONS = st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}) | st.none()


@st.composite
def responses_bodies(draw: Any) -> dict[str, Any]:
    g = Gen.start(draw, RESPONSE_SECTIONS)
    v = g.v
    with g.within("fields"):
        body = top_level_fields(g)
    with g.within("input"):
        if not g.chance(15):
            body["input"] = g.draw(v.T) if g.chance(25) else g.items_of(lambda: input_item(g), 6)
        if g.corrupt(5):
            body["input"] = g.draw(HOSTILE)
    with g.within("tools"):
        if g.chance(55):
            body["tools"] = g.items_of(lambda: tool(g), 5)
        if g.corrupt(5):
            body["tools"] = g.draw(HOSTILE)
    with g.within("previous"):
        if g.chance(30) and (previous := g.value(v.response_ids, optional=False)) is not ABSENT:
            body["previous_response_id"] = previous
    if body.get("background") is True and g.chance(50):
        body["model"] = "slow"
        if body.get("stream") is True and not g.chance(10):
            body["stream"] = False
    with g.within("conversation"):
        if g.chance(15) and (conversation := g.value(CONVERSATION_REFS, optional=False)) is not ABSENT:
            body["conversation"] = conversation
            if not g.chance(20):
                body.pop("previous_response_id", None)  # together they are a 400
    return body


CONVERSATION_REFS = st.one_of(*[ref("conversation")] * 5, ref("conversation").map(lambda r: {"id": r}),
                              ref("deleted_conversation"), ref("response"),
                              st.sampled_from(["conv_1", "conv_" + "ab" * 24, {"id": 5}, {"name": "x"}, ""]))

RESPONSE_SECTIONS = st.sampled_from(["fields"] * 2 + ["tool_choice"] * 2 + ["input"] * 3 + ["tools"] * 3
                                    + ["previous", "conversation"])
CHAT_SECTIONS = st.sampled_from(["fields", "messages", "messages", "tools"])


def top_level_fields(g: Gen) -> dict[str, Any]:
    v = g.v
    return g.obj({}, {
        "model": RESPONSE_MODELS,
        "instructions": g.s("opt_T", lambda v: st.none() | v.T),
        "stream": BOOLS,
        "store": BOOLS,
        "background": BOOLS if g.chance(25) else False,
        "tool_choice": lambda: tool_choice(g),
        "parallel_tool_calls": BOOLS,
        "max_output_tokens": SMALL_INTS,
        "max_tool_calls": SMALL_INTS,
        "temperature": TEMPERATURES,
        "top_p": UNIT_FLOATS,
        "top_logprobs": TOP_LOGPROBS,
        "text": TEXT_CONFIGS,
        "reasoning": REASONING_CONFIGS,
        "include": g.s("include", lambda v: st.lists(
            st.sampled_from(["reasoning.encrypted_content", "message.output_text.logprobs"]) | v.S, max_size=3)),
        "truncation": TRUNCATIONS,
        "metadata": METADATA,
        "prompt_cache_key": v.S, "safety_identifier": v.S, "user": v.S,
        "service_tier": SERVICE_TIERS,
        "unknown_field": v.any_json,
    }, required=("model",))


# --- Chat Completions

CHAT_PART_KINDS = st.sampled_from(["text", "text", "image_url", "image_str", "other"])
CHAT_ROLES = ["user", "assistant", "system", "developer", "tool", "function"]
CHAT_MODELS = st.sampled_from(MODELS * 8 + ["nope", ""])


@st.composite
def chat_bodies(draw: Any) -> dict[str, Any]:
    g = Gen.start(draw, CHAT_SECTIONS)
    v = g.v

    def chat_part() -> Any:
        kind = g.draw(CHAT_PART_KINDS)
        if kind == "text":
            return g.obj({"type": "text"}, {"text": v.T}, required=("text",))
        if kind == "image_url":
            image = g.s("chat_image", lambda v: st.fixed_dictionaries({"url": v.S}) | v.any_json)
            return g.obj({"type": "image_url"}, {"image_url": image}, required=("image_url",))
        if kind == "image_str":
            return {"type": "image_url", "image_url": g.draw(v.S)}
        other = g.pick("chat_part_type", lambda v: st.sampled_from(["input_audio", "file", "refusal"]) | v.scalars)
        return g.obj({"type": other}, {"x": v.any_json})

    def tool_call() -> Any:
        arguments = g.s("chat_arguments", lambda v: st.sampled_from(['{"cmd": "ls"}', "{}", "bad"]) | v.T)
        function = g.obj({}, {"name": v.tool_names, "arguments": arguments}, required=("name",))
        return g.obj({}, {"id": v.call_ids, "type": CALL_TYPES, "function": function},
                     required=("id", "function"))

    def message() -> Any:
        if g.corrupt(3):
            role = g.pick("chat_dirty_role", lambda v: st.sampled_from(CHAT_ROLES * 5 + ["", "USER", None, 5]))
        else:
            role = g.pick("chat_role", lambda v: st.sampled_from(CHAT_ROLES))
        chat_content = (lambda: g.items_of(chat_part, 3)) if g.chance(40) else g.s("opt_T2", lambda v: v.T | st.none())
        fields: dict[str, Any] = {"content": chat_content, "name": g.s("chat_name", lambda v: v.S | v.tool_names)}
        if role == "assistant" or g.chance(10):
            fields["tool_calls"] = lambda: g.items_of(tool_call, 3)
            fields["reasoning_content"] = g.s("opt_T", lambda v: st.none() | v.T)
        fixed = {"role": role}
        if role in ("tool", "function") and not g.chance(10):
            fixed["tool_call_id"] = g.draw(v.call_ids)
        elif g.chance(10):
            fields["tool_call_id"] = v.call_ids
        return g.obj(fixed, fields)

    def chat_tool() -> Any:
        function = g.obj({}, {"name": v.tool_names, "description": g.s("opt_T", lambda v: st.none() | v.T),
                              "parameters": lambda: schema(g), "strict": BOOLS},
                         required=("name",))
        return g.obj({}, {"type": CHAT_TOOL_TYPES, "function": function},
                     required=("function",))

    def choices(v: Vocab) -> st.SearchStrategy[Any]:
        named = st.fixed_dictionaries({"type": st.sampled_from(["function"] * 4 + ["custom"]),
                                       "function": st.fixed_dictionaries({"name": v.tool_names})})
        return st.sampled_from(["none", "auto", "required"]) | named | (v.any_json if v is not CLEAN else named)

    g.section = "fields"
    body = g.obj({}, {
        "model": CHAT_MODELS,
        "tool_choice": g.s("chat_choice", choices), "parallel_tool_calls": BOOLS,
        "max_tokens": SMALL_INTS,
        "max_completion_tokens": SMALL_INTS,
        "temperature": TEMPERATURES, "top_p": UNIT_FLOATS,
        "stop": g.s("stop", lambda v: v.S | st.lists(v.S, max_size=3) | st.none()),
        "stream": OPT_BOOLS,
        "stream_options": STREAM_OPTIONS,
        "n": 1, "reasoning_effort": g.s("effort", lambda v: st.sampled_from(["low", "high", "none"]) | v.S),
        "user": v.S, "logprobs": BOOLS, "seed": v.numbers, "response_format": v.any_json,
    }, required=("model",))
    g.section = "messages"
    size = 1 + g.draw(SIZES[5]) if not g.corrupt(3) else 0
    body["messages"] = [message() for _ in range(size)] if not g.corrupt(3) else g.draw(HOSTILE)
    g.section = "tools"
    if g.chance(50):
        body["tools"] = g.items_of(chat_tool, 4) if not g.corrupt(5) else g.draw(HOSTILE)
    return body


# --- Conversations API: create, update, add items


@st.composite
def conversation_bodies(draw: Any, *, items: bool, metadata: bool) -> Any:
    g = Gen.start(draw, st.sampled_from(["items", "metadata", "body"]))
    body: dict[str, Any] = {}
    with g.within("items"):
        if items and not g.chance(10):
            body["items"] = g.items_of(lambda: input_item(g), 5)
        if g.corrupt(10):
            body["items"] = g.draw(HOSTILE)
    with g.within("metadata"):
        if (metadata or g.chance(40)) and (value := g.value(METADATA, optional=not metadata)) is not ABSENT:
            body["metadata"] = value
    with g.within("body"):
        if g.corrupt(20):
            return g.draw(HOSTILE)
    return body

