"""Each tool-call format's grammar, keyed by mlx-lm parser name (`FORMATS`), for the call frame in constrain.py: how
the format frames its calls (`CallFormat`), and rule `tool{index}`, one call to one tool from its name to the end of
its arguments, written as the model's own parser (mlx_lm/tool_parsers/<name>.py) reads it back. A tool the parser
could not read back (a name or a required parameter the format cannot carry) gets no rule: it cannot be called.

- json_tools (Hermes / Qwen): `<tool_call>\n{"name": NAME, "arguments": {...}}\n</tool_call>`, a block per call
- mistral: `[TOOL_CALLS]NAME[ARGS]{...}`, further calls right after (no end marker)
- kimi_k2: `<|tool_calls_section_begin|>`, then per call
  `<|tool_call_begin|>functions.NAME:N<|tool_call_argument_begin|>{...}<|tool_call_end|>`, then
  `<|tool_calls_section_end|>`. The parser makes `functions.NAME:N` the call's id; N is the model's own running
  count of calls, so the grammar lets it write any (up to 5 digits).
- pythonic (LFM2): `<|tool_call_start|>[NAME(KEY=VALUE, ...), ...]<|tool_call_end|>`, read by `ast.parse` and
  `literal_eval` (true, false and null read as JSON's). Values are JSON: a JSON value the engine writes is a Python
  literal of the same value (its strings use only the escapes both languages read alike: never `\\/` nor a `\\u`
  escape beyond control characters, pinned in each schema's options). Names and keys must be Python identifiers.
  (Past Python's parser limits, an integer of over 4300 digits or some 200 nested brackets, the parser would fall back
  to its regexes: values no schema bounds could reach them within a long budget.)
- qwen3_coder (Qwen3-Coder's XML):

      <tool_call>
      <function=NAME>
      <parameter=KEY>
      VALUE
      </parameter>
      </function>
      </tool_call>

- glm47 (GLM-4.7's template): `<tool_call>NAME<arg_key>KEY</arg_key><arg_value>VALUE</arg_value>...</tool_call>`,
  a block per call, nothing between (a call with no arguments: `<tool_call>NAME</tool_call>`).

  In these two, values are written as they are and the parser converts each by its parameter's declared type: text
  stays text, other values are read as JSON (qwen3_coder: strings, by several type names; glm47: `"type": "string"`
  only; glm47 strips surrounding whitespace from every value). So a text parameter is free text (held to its enum,
  const or length), a wrapped custom tool's `input` is its own grammar unescaped, and every other parameter is JSON
  matching its schema. The parser ends a value at the first closing tag, and the gateway a block at its end marker, so
  a text value holds neither: a text value and its closing tag are one lexeme that contains no earlier closing tag (a
  lexeme that could run past the tag would never end there). (Not held: a string inside a JSON value holding them.)

In the JSON formats (pythonic's too) a wrapped custom tool's `input` is a JSON string whose content matches its
grammar (escaped).
"""

from __future__ import annotations

import ast
import json
import keyword
import re
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from gateway.adapters.base import InputGrammar
from gateway.grammars import literal_regex

__all__ = ["FORMATS", "CallFormat", "ToolRule", "compact", "sequence"]

# Compact JSON: a model (a random one above all) cannot spend its budget on whitespace between tokens.
COMPACT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

# A marker as the grammar names it: its special token where it is one, else its text (constrain.py's `_token`).
Mark = Callable[[str], str]
# (index, visible name, arguments schema, wrapped custom tool's grammar, Mark) -> rule `tool{index}` and the rules it
# uses, or None when the format cannot carry this call so its parser reads it back.
ToolRule = Callable[[int, str, dict[str, Any], InputGrammar | None, Mark], str | None]


class CallFormat(NamedTuple):
    """How a format frames its calls: a block is `start head CALLS tail end`. `shared`: every call in one block,
    `separator` between them; else one call per block and `separator` between blocks."""

    start: str
    end: str  # "" when the format has none
    tool: ToolRule
    head: str = ""
    tail: str = ""
    shared: bool = False
    separator: str = ""


def compact(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the engine told to write compact JSON (unless the schema says otherwise)."""
    return {**schema, "x-guidance": {**COMPACT, **schema.get("x-guidance", {})}}


def json_tool(index: int, name: str, schema: dict[str, Any], wrapped: InputGrammar | None, mark: Mark) -> str:
    head = json.dumps('{"name": ' + json.dumps(name) + ', "arguments": ')
    return _json_arguments(index, head, json.dumps("}"), schema, wrapped)


def mistral_tool(index: int, name: str, schema: dict[str, Any], wrapped: InputGrammar | None,
                 mark: Mark) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):  # the parser finds a call's name as `[\w-]+` before `[ARGS]`
        return None
    return _json_arguments(index, json.dumps(f"{name}[ARGS]"), "", schema, wrapped)


def kimi_tool(index: int, name: str, schema: dict[str, Any], wrapped: InputGrammar | None, mark: Mark) -> str | None:
    if not re.fullmatch(r"[^\s<>]+", name):  # the parser reads the name up to `:N<|tool_call_argument_begin|>`
        return None
    head = (f'{mark("<|tool_call_begin|>")} {json.dumps(f"functions.{name}:")} /[0-9]{{1,5}}/ '
            f'{mark("<|tool_call_argument_begin|>")}')
    return _json_arguments(index, head, mark("<|tool_call_end|>"), schema, wrapped)


def _json_arguments(index: int, head: str, tail: str, schema: dict[str, Any], wrapped: InputGrammar | None) -> str:
    """Rule `tool{index}`: `head`, the arguments as JSON held to `schema` (or a wrapped custom tool's
    `{"input": "..."}`, its string's content held to the tool's grammar), then `tail` (grammar expressions)."""
    if wrapped is None:
        return f"tool{index}: {sequence(head, f'args{index}', tail)}\nargs{index}: %json {json.dumps(compact(schema))}"
    opening, closing = json.dumps('{"input": "'), json.dumps('"}')
    return f"tool{index}: {sequence(head, opening, wrapped.start, closing, tail)}\n{wrapped.rules}"


def pythonic_tool(index: int, name: str, schema: dict[str, Any], wrapped: InputGrammar | None,
                  mark: Mark) -> str | None:
    """`NAME(KEY=VALUE, ...)`: the declared parameters in order, the optional ones left out or not, each value JSON
    held to its schema (a wrapped custom tool: `NAME(input="...")`)."""
    if not all(_python_name(part) for part in name.split(".")):  # `a.b(...)` is read as the dotted name
        return None
    if wrapped is not None:
        opening, closing = json.dumps(f'{name}(input="'), json.dumps('")')
        return f"tool{index}: {sequence(opening, wrapped.start, closing)}\n{wrapped.rules}"
    listed = _parameters(schema)
    if listed is None:
        return None
    items: list[tuple[str, bool]] = []
    rules: list[str] = []
    for number, (key, sub, required) in enumerate(listed):
        if not _python_name(key):  # not a keyword argument Python reads
            if required:
                return None
            continue
        rules.append(f"v{index}_{number}: %json {json.dumps(_python_safe(sub))}")
        items.append((f"{json.dumps(key + '=')} v{index}_{number}", required))
    arguments, more = _in_order(f"a{index}", items, ", ")
    return "\n".join([f"tool{index}: {sequence(json.dumps(name + '('), arguments, json.dumps(')'))}", *more, *rules])


def _parameters(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]] | None:
    """(key, schema, required) of each parameter a call may write, declared ones in order and then required ones
    declared nowhere else (any value); None when a required one can have no value (a `false` schema)."""
    properties = schema.get("properties")
    properties = dict(properties) if isinstance(properties, dict) else {}
    required = [key for key in schema.get("required") or [] if isinstance(key, str)]
    for key in required:
        properties.setdefault(key, {})
    out: list[tuple[str, dict[str, Any], bool]] = []
    for key, sub in properties.items():
        if sub is False:
            if key in required:
                return None
            continue
        out.append((key, sub if isinstance(sub, dict) else {}, key in required))
    return out


def _python_name(name: str) -> bool:
    """An identifier Python reads as it is written (ASCII, so not NFKC-normalized) and can take as a keyword
    argument."""
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)) and not keyword.iskeyword(name) \
        and name != "__debug__"


def _python_safe(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` for a value that must also be a Python literal: compact, strings with no `\\u` escapes but those of
    control characters (JSON reads a surrogate pair as one character, Python as two), no custom whitespace."""
    held = compact(schema)
    options = {key: value for key, value in held["x-guidance"].items() if key != "whitespace_pattern"}
    return {**held, "x-guidance": {**options, "json_allow_general_unicode_escapes": False}}


def _in_order(name: str, items: list[tuple[str, bool]], separator: str) -> tuple[str, list[str]]:
    """`items` (grammar expression, required) in their order, each optional one there or not, `separator` between
    those written: (the expression for the list, "" when there are none; the rules it uses). Rule `name_k` is the
    items from k on after one already written."""
    if not items:
        return "", []
    sep = json.dumps(separator)
    rules: list[str] = []
    for k in range(1, len(items)):
        expr, required = items[k]
        step = f"{sep} {expr}" if required else f"({sep} {expr})?"
        rules.append(f"{name}_{k}: {sequence(step, f'{name}_{k + 1}' if k + 1 < len(items) else '')}")
    firsts: list[str] = []
    for k, (expr, required) in enumerate(items):  # the first one written: any up to the first required one
        firsts.append(sequence(expr, f"{name}_{k + 1}" if k + 1 < len(items) else ""))
        if required:
            return name, [f"{name}: {' | '.join(firsts)}", *rules]
    return f"{name}?", [f"{name}: {' | '.join(firsts)}", *rules]


class _Tags(NamedTuple):
    """A tagged-parameter layout: a call is `call` around its name, then its parameters, then `end`; a parameter is
    `key` around its key, the value, `close`, then `after`. `stop` is the tag the parser ends a value at."""

    call: tuple[str, str]
    end: str
    key: tuple[str, str]
    close: str
    stop: str
    after: str
    name: str  # the tool names the parser reads back as written (a Python regex)
    key_name: str  # the same for keys
    is_json: Callable[[dict[str, Any]], bool]
    strip: bool = False  # the parser strips surrounding whitespace off a value
    null: bool = False  # the parser reads "null" (any case) as None
    # How the parser reads a value it does not keep as text, where plain words come back as text (glm47): a string
    # choice is then written unquoted, as the model's template writes it, wherever it reads back as itself.
    reads: Callable[[str], Any] | None = None


# Python's str.strip() whitespace: the engine's \s (Unicode White_Space) and the four separators \x1c-\x1f.
_SPACE = r"[\s\x{1c}-\x{1f}]"
_END = "</tool_call>"  # where the gateway ends a block (parse.py): no value may hold it


def _tagged_tool(tags: _Tags, index: int, name: str, schema: dict[str, Any], wrapped: InputGrammar | None,
                 mark: Mark) -> str | None:
    """Rule `tool{index}` (from the tool's name to the end of its parameters) and the rules it uses."""
    if not re.fullmatch(tags.name, name):
        return None
    key_open, key_close = (json.dumps(tag) for tag in tags.key)
    after = json.dumps(tags.after) if tags.after else ""
    rules: list[str] = []
    parts: list[str] = []
    if not isinstance(schema.get("properties"), dict):
        # No declared parameters (an object schema the engine could not hold): any keys, text values.
        parts.append(f"any{index}*")
        any_text = _text(tags, f"ANY{index}", {})
        assert any_text is not None  # no enum to miss
        rules += [f"any{index}: {sequence(key_open, f'KEY{index}', key_close, f'ANY{index}', after)}",
                  f"KEY{index}: /[^<>\\s]+/", any_text]
    else:
        listed = _parameters(schema)
        if listed is None:
            return None
        for number, (key, sub, required) in enumerate(listed):
            rule, value = f"p{index}_{number}", f"{index}_{number}"
            opening = json.dumps(tags.key[0] + key + tags.key[1])
            if not re.fullmatch(tags.key_name, key):
                written = None
            elif wrapped is not None and key == "input" and wrapped.raw_rules:
                written = [f"{rule}: {sequence(opening, f'V{value}', after)}",
                           f"V{value}: ({wrapped.start} {json.dumps(tags.close)}){_guards(tags)}", wrapped.raw_rules]
            elif tags.is_json(sub) and not _words(tags, sub):
                written = [f"{rule}: {opening} v{value} {json.dumps(tags.close + tags.after)}",
                           f"v{value}: %json {json.dumps(compact(sub))}"]
            else:
                text = _text(tags, f"V{value}", sub, converted=tags.is_json(sub))
                written = None if text is None else [f"{rule}: {sequence(opening, f'V{value}', after)}", text]
            if written is None:  # the parser could not read it back: left out, and the tool too if it is required
                if required:
                    return None
                continue
            rules += written
            parts.append(rule if required else f"{rule}?")
    head = json.dumps(tags.call[0] + name + tags.call[1])
    return "\n".join([sequence(f"tool{index}:", head, *parts, json.dumps(tags.end) if tags.end else ""), *rules])


def _text(tags: _Tags, name: str, schema: dict[str, Any], converted: bool = False) -> str | None:
    """Terminal `name`: a text value followed by its closing tag (None when no text the parser reads back as it is
    meets the schema's enum or const). `converted`: string choices the parser reads with `tags.reads`."""
    close = json.dumps(tags.close)
    if "enum" in schema or "const" in schema:
        strings = [v for v in _choices(schema) if isinstance(v, str)]
        if converted and tags.reads is not None:
            strings = [v if tags.reads(v) == v else json.dumps(v) for v in strings]
        choices = [json.dumps(v) for v in strings if _kept(tags, v)]
        return f"{name}: ({' | '.join(choices)}) {close}" if choices else None
    low, high = schema.get("minLength", 0), schema.get("maxLength", "")
    return f"{name}: (/(?s:.{{{low},{high}}})/ {close}){_guards(tags)}"


def _kept(tags: _Tags, text: str) -> bool:
    """The parser reads `text` back as it is written."""
    return (tags.stop not in text and _END not in text and not (tags.strip and text != text.strip())
            and not (tags.null and text.lower() == "null"))


def _guards(tags: _Tags) -> str:
    """What a text lexeme (a value and its closing tag) must not be, as `& ~/.../` (the negations of `_kept`)."""
    stop, end, close = (literal_regex(tag) for tag in (tags.stop, _END, tags.close))
    guards = [f"(?s:.*{stop}.+)", f"(?s:.*{end}.*)"]
    if tags.strip:
        guards += [f"{_SPACE}(?s:.*)", f"(?s:.*){_SPACE}{close}"]
    if tags.null:
        guards.append(f"[nN][uU][lL][lL]{close}")
    return "".join(f" & ~/{guard}/" for guard in guards)


def _qwen_reads_json(schema: dict[str, Any]) -> bool:
    """Whether the parser reads this parameter's value as JSON (mlx-lm's qwen3_coder `_convert_param_value`)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        return True  # read by literal_eval: a JSON literal of the value comes back as that value
    if isinstance(kind, str):
        return kind.strip().lower() in _JSON_TYPES
    if "enum" in schema or "const" in schema:
        return not all(isinstance(v, str) for v in _choices(schema))
    return "properties" in schema or "items" in schema  # untyped: objects and arrays are parsed from JSON


def _words(tags: _Tags, schema: dict[str, Any]) -> bool:
    """A parameter read by `tags.reads` whose every choice is a string."""
    return tags.reads is not None and ("enum" in schema or "const" in schema) \
        and all(isinstance(v, str) for v in _choices(schema))


def _glm_reads(text: str) -> Any:
    """mlx-lm's glm47 `_deserialize`: JSON, else a Python literal, else the text."""
    for read in (json.loads, ast.literal_eval):
        try:
            return read(text)
        except Exception:
            pass
    return text


def _choices(schema: dict[str, Any]) -> list[Any]:
    return [schema["const"]] if "const" in schema else list(schema.get("enum") or [])


_JSON_TYPES = frozenset({"integer", "number", "boolean", "object", "array", "null"})
xml_tool = partial(_tagged_tool, _Tags(("<function=", ">\n"), "</function>", ("<parameter=", ">\n"), "\n</parameter>",
                                       "</parameter>", "\n", r"[^\s<>]+", r"[^\s<>]+", _qwen_reads_json, null=True))
glm_tool = partial(_tagged_tool, _Tags(("", ""), "", ("<arg_key>", "</arg_key><arg_value>"), "</arg_value>",
                                       "</arg_value>", "", r"[^\s<>\[{][^\s<>]*", r"[^\s<>](?:[^<>]*[^\s<>])?",
                                       lambda schema: schema.get("type") != "string", strip=True, reads=_glm_reads))


def sequence(*parts: str) -> str:
    """Grammar expressions one after another (empty ones left out)."""
    return " ".join(part for part in parts if part)


FORMATS = {
    "json_tools": CallFormat("<tool_call>", "</tool_call>", json_tool, "\n", "\n", separator="\n"),
    "qwen3_coder": CallFormat("<tool_call>", "</tool_call>", xml_tool, "\n", "\n", separator="\n"),
    "glm47": CallFormat("<tool_call>", "</tool_call>", glm_tool),  # GLM-4.7's template: no newlines, nor between
    "mistral": CallFormat("[TOOL_CALLS]", "", mistral_tool, shared=True),
    "kimi_k2": CallFormat("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", kimi_tool, shared=True),
    "pythonic": CallFormat("<|tool_call_start|>", "<|tool_call_end|>", pythonic_tool, "[", "]", True, ", "),
}
