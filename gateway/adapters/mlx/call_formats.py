"""Each tool-call format's grammar rules, keyed by mlx-lm parser name, for the call frame in constrain.py: rule
`tool{index}` is one call to one tool, from its name to the end of its arguments, written as the model's own parser
reads it back.

- json_tools (Hermes / Qwen): `<tool_call>\n{"name": NAME, "arguments": {...}}\n</tool_call>`
- mistral: `[TOOL_CALLS]NAME[ARGS]{...}`, further calls right after (no end marker)
- qwen3_coder (Qwen3-Coder's XML):

      <tool_call>
      <function=NAME>
      <parameter=KEY>
      VALUE
      </parameter>
      </function>
      </tool_call>

  Values are written as they are and the parser converts each by its parameter's declared type: strings stay text,
  other types are read as JSON. So a string parameter is free text (held to its enum, const or length), a wrapped
  custom tool's `input` is its own grammar unescaped, and every other declared type is JSON matching its schema.
  The parser ends a value at the first `</parameter>`, so no value may hold one: a text value and its closing tag
  are one lexeme that contains no earlier closing tag (a lexeme that could run past the tag would never end there).

In the JSON formats a wrapped custom tool's `input` is a JSON string whose content matches its grammar (escaped).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.adapters.base import InputGrammar

__all__ = ["CALL_MARKERS", "TOOL_RULES", "compact"]

_CLOSE = "\n</parameter>"
_NO_EARLIER_CLOSE = r"~/(?s:.*<\/parameter>.+)/"
_JSON_TYPES = frozenset({"integer", "number", "boolean", "object", "array", "null"})
# Compact JSON: a model (a random one above all) cannot spend its budget on whitespace between tokens.
COMPACT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
# The markers of each format, as its mlx-lm parser module declares them (mistral has no end marker).
CALL_MARKERS = {"json_tools": ("<tool_call>", "</tool_call>"), "qwen3_coder": ("<tool_call>", "</tool_call>"),
                "mistral": ("[TOOL_CALLS]", "")}


def compact(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the engine told to write compact JSON (unless the schema says otherwise)."""
    return {**schema, "x-guidance": {**COMPACT, **schema.get("x-guidance", {})}}


def json_tool(index: int, name: str, schema: dict[str, Any], wrapped: InputGrammar | None) -> str:
    return _json_arguments(index, '{"name": ' + json.dumps(name) + ', "arguments": ', "}", schema, wrapped)


def mistral_tool(index: int, name: str, schema: dict[str, Any], wrapped: InputGrammar | None) -> str:
    return _json_arguments(index, f"{name}[ARGS]", "", schema, wrapped)


def _json_arguments(index: int, head: str, tail: str, schema: dict[str, Any], wrapped: InputGrammar | None) -> str:
    """Rule `tool{index}`: `head`, the arguments as JSON held to `schema` (or a wrapped custom tool's
    `{"input": "..."}`, its string's content held to the tool's grammar), then `tail`."""
    if wrapped is None:
        closing = f" {json.dumps(tail)}" if tail else ""
        return f"tool{index}: {json.dumps(head)} args{index}{closing}\nargs{index}: %json {json.dumps(compact(schema))}"
    opening, closing = json.dumps('{"input": "'), json.dumps('"}' + tail)
    return f"tool{index}: {json.dumps(head)} {opening} {wrapped.start} {closing}\n{wrapped.rules}"


def xml_tool(index: int, name: str, schema: dict[str, Any], wrapped: InputGrammar | None) -> str:
    """Rule `tool{index}` (from `<function=` to `</function>`) and the rules it uses."""
    properties = schema.get("properties")
    rules: list[str] = []
    parts: list[str] = []
    if not isinstance(properties, dict):
        # No declared parameters (an object schema the engine could not hold): any keys, text values.
        parts.append(f"any{index}*")
        rules += [f'any{index}: "<parameter=" KEY{index} ">\\n" ANY{index} "\\n"',
                  f"KEY{index}: /[^\\s<>]+/", _text(f"ANY{index}", {})]
    else:
        required = set(schema.get("required") or [])
        for number, (key, sub) in enumerate(properties.items()):
            rule, value = f"p{index}_{number}", f"{index}_{number}"
            opening = json.dumps(f"<parameter={key}>\n")
            parts.append(rule if key in required else f"{rule}?")
            sub = sub if isinstance(sub, dict) else {}
            if wrapped is not None and key == "input" and wrapped.raw_rules:
                rules += [f'{rule}: {opening} V{value} "\\n"',
                          f"V{value}: ({wrapped.start} {json.dumps(_CLOSE)}) & {_NO_EARLIER_CLOSE}",
                          wrapped.raw_rules]
            elif _is_json(sub):
                rules += [f'{rule}: {opening} v{value} {json.dumps(_CLOSE + chr(10))}',
                          f"v{value}: %json {json.dumps(compact(sub))}"]
            else:
                rules += [f'{rule}: {opening} V{value} "\\n"', _text(f"V{value}", sub)]
    head = json.dumps(f"<function={name}>\n")
    return "\n".join([" ".join([f"tool{index}:", head, *parts, '"</function>"']), *rules])


def _is_json(schema: dict[str, Any]) -> bool:
    """Whether the parser reads this parameter's value as JSON (mlx-lm's qwen3_coder `_convert_param_value`)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        return True  # read by literal_eval: a JSON literal of the value comes back as that value
    if isinstance(kind, str):
        return kind.strip().lower() in _JSON_TYPES
    if "enum" in schema or "const" in schema:
        return not all(isinstance(v, str) for v in _choices(schema))
    return "properties" in schema or "items" in schema  # untyped: objects and arrays are parsed from JSON


def _text(name: str, schema: dict[str, Any]) -> str:
    """Terminal `name`: a text value followed by its closing tag."""
    if "enum" in schema or "const" in schema:
        choices = " | ".join(json.dumps(v) for v in _choices(schema))
        return f"{name}: ({choices}) {json.dumps(_CLOSE)}"
    low = schema.get("minLength", 0)
    high = schema.get("maxLength", "")
    return f"{name}: (/(?s:.{{{low},{high}}})/ {json.dumps(_CLOSE)}) & {_NO_EARLIER_CLOSE}"


def _choices(schema: dict[str, Any]) -> list[Any]:
    return [schema["const"]] if "const" in schema else list(schema.get("enum") or [])


TOOL_RULES = {"json_tools": json_tool, "qwen3_coder": xml_tool, "mistral": mistral_tool}
