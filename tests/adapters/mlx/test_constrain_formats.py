"""The call formats added after json_tools, qwen3_coder and mistral, held to the tools' schemas and grammars: GLM-4.7's
`<arg_key>`/`<arg_value>` tags (mlx-lm's `glm47` parser), Kimi K2's tool-call section (`kimi_k2`) and LFM2's Python
calls (`pythonic`).

The grammar alone (byte tokenizer, call_formats.py) against the worker's own reader (parse.py's OutputParser with
mlx-lm's parser module): what the grammar lets through comes back as the calls written, with schema-valid arguments
(jsonschema), and malformed calls are kept out. Then through HTTP and a real worker: the random dummy model set to
each format makes 50 forced calls, every one parsed into schema-valid arguments, and a regex custom tool's input
always matches its regex (`re`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import llguidance
import pytest

from gateway.adapters.base import Constraint, ToolCallArguments, ToolCallStart
from gateway.adapters.mlx.constrain import ConstraintError, Constraints
from gateway.config import parse_config
from tests.adapters.mlx.test_constrain import MOVE, NESTED, READ, calls, many
from tests.adapters.mlx.test_constrain_grammar import assert_regex_tool_inputs_match
from tests.adapters.mlx.test_constrain_xml import MIXED
from tests.conftest import serve

BYTES = llguidance.LLTokenizer("byte")
NONE = {"type": "object", "properties": {}}  # a tool with no parameters
OPTIONAL = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string", "maxLength": 4}}}
# A strict function with a nested object, enums, an array and required parameters, besides test_constrain's two.
TOOLS = [{"type": "function", "name": "plan", "parameters": NESTED, "strict": True},
         {"type": "function", "name": "read_file", "parameters": READ, "strict": True},
         {"type": "function", "name": "move", "parameters": MOVE, "strict": False}]
SCHEMAS = {"plan": NESTED, "read_file": READ, "move": MOVE}


class _Bytes:  # the engine's byte tokenizer, seen as a HF tokenizer: one token per byte
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode())


def _grammar(parser: str, constraint: Constraint) -> str:
    constraints = Constraints(_Bytes(), parser, None)
    constraints._tokenizer = BYTES
    return constraints.grammar(constraint, thinking=False)


def accepts(parser: str, text: str, constraint: Constraint | None = None, /, **schemas: dict[str, Any]) -> bool:
    """The grammar for calls to `schemas` (or `constraint`) in `parser`'s format lets `text` through, whole."""
    grammar = _grammar(parser, constraint or Constraint(calls=schemas))
    matcher = llguidance.LLMatcher(BYTES, llguidance.grammar_from("lark", grammar), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return bool(matcher.consume_tokens(BYTES.tokenize_str(text))) and bool(matcher.is_accepting())


def read(parser: str, text: str, **schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """The calls the worker reads from `text` (parse.py with mlx-lm's parser module), each checked against its schema."""
    from gateway.adapters.mlx.mlxlm import named_tool_parser
    from gateway.adapters.mlx.parse import Markers, OutputParser

    module = named_tool_parser(parser)
    tools = [{"type": "function", "function": {"name": n, "description": None, "parameters": s}}
             for n, s in schemas.items()]
    reader = OutputParser(Markers(call_start=module.call_start, call_end=module.call_end, parse_call=module.parse),
                          tools=tools, stop=[])
    deltas = reader.feed(text) + reader.close()
    out: list[dict[str, Any]] = []
    for delta in deltas:  # a start and its arguments per call, and no text: every call read
        if isinstance(delta, ToolCallStart):
            out.append({"name": delta.name, "id": delta.call_id})
        else:
            assert isinstance(delta, ToolCallArguments) and "arguments" not in out[-1], deltas
            out[-1]["arguments"] = json.loads(delta.text)
    for call in out:
        jsonschema.validate(call["arguments"], schemas[call["name"]])
    return out


def both(parser: str, text: str, **schemas: dict[str, Any]) -> list[dict[str, Any]]:
    assert accepts(parser, text, **schemas), text
    return read(parser, text, **schemas)


# ---------------------------------------------------------------- glm47

def glm(name: str, **values: str) -> str:
    pairs = "".join(f"<arg_key>{k}</arg_key><arg_value>{v}</arg_value>" for k, v in values.items())
    return f"<tool_call>{name}{pairs}</tool_call>"


@pytest.mark.mlx
@pytest.mark.parametrize(("values", "expected"), [
    ({"path": "a b</c", "count": "12", "mode": "fast"}, {"path": "a b</c", "count": 12, "mode": "fast"}),
    ({"path": "12", "count": "-3", "mode": "slow", "flags": "[true, false]", "where": '{"x": 1.5}'},
     {"path": "12", "count": -3, "mode": "slow", "flags": [True, False], "where": {"x": 1.5}}),  # a string stays text
    ({"path": "", "count": "0", "mode": "fast"}, {"path": "", "count": 0, "mode": "fast"}),
    ({"path": "multi\nline", "count": "0", "mode": "fast", "where": '{"x": 2}'},
     {"path": "multi\nline", "count": 0, "mode": "fast", "where": {"x": 2}}),
])
def test_glm47_calls_the_grammar_lets_through_are_read_back_as_written(values: dict[str, str],
                                                                      expected: dict[str, Any]) -> None:
    assert both("glm47", glm("f", **values), f=MIXED) == [{"name": "f", "id": None, "arguments": expected}]


@pytest.mark.mlx
def test_glm47_reads_several_calls_one_without_arguments_and_quotes_words_it_would_not_read_back() -> None:
    two = glm("f", path="a", count="1", mode="fast") + glm("g")  # GLM-4.7 writes calls back to back
    assert [(c["name"], c["arguments"]) for c in both("glm47", two, f=MIXED, g=NONE)] == [
        ("f", {"path": "a", "count": 1, "mode": "fast"}), ("g", {})]
    assert not accepts("glm47", two, Constraint(calls={"f": MIXED, "g": NONE}, parallel=False))
    # A choice of a parameter not declared a string is read as JSON, then as a Python literal: "null" and "1" are
    # written quoted (unquoted they would come back None and 1), "yes" as the template writes it.
    choice = {"type": "object", "properties": {"k": {"enum": ["yes", "null", "1"]}}, "required": ["k"]}
    for written, value in [("yes", "yes"), ('"null"', "null"), ('"1"', "1")]:
        assert both("glm47", glm("c", k=written), c=choice)[0]["arguments"] == {"k": value}
    assert not accepts("glm47", glm("c", k="null"), c=choice)
    assert not accepts("glm47", glm("c", k="1"), c=choice)


@pytest.mark.parametrize("values", [
    {"path": "x</arg_value>y", "count": "1", "mode": "fast"},  # the parser would end the value there
    {"path": "x</tool_call>", "count": "1", "mode": "fast"},  # the gateway would end the call there
    {"path": " lead", "count": "1", "mode": "fast"},  # the parser strips values: a string would lose its spaces
    {"path": "trail\n", "count": "1", "mode": "fast"},
    {"path": "way too long a path", "count": "1", "mode": "fast"},
    {"path": "p", "count": "1.5", "mode": "fast"},
    {"path": "p", "count": "1", "mode": "medium"},
    {"path": "p", "mode": "fast"},  # a required parameter missing
    {"path": "p", "count": "1", "mode": "fast", "other": "x"},  # one the schema does not have
])
def test_glm47_calls_that_break_the_schema_or_the_format_are_kept_out(values: dict[str, str]) -> None:
    assert not accepts("glm47", glm("f", **values), f=MIXED)


def test_glm47_holds_values_to_what_strip_keeps() -> None:
    # str.strip()'s whitespace is the engine's \s and \x1c-\x1f: none of it may open or close a string value.
    spaces = [c for c in map(chr, range(0x3001)) if c.isspace()]
    assert len(spaces) == 29
    for space in spaces:
        assert not accepts("glm47", glm("f", path=f"{space}p", count="1", mode="fast"), f=MIXED), repr(space)
        assert not accepts("glm47", glm("f", path=f"p{space}", count="1", mode="fast"), f=MIXED), repr(space)
    for other in ["\x1b", "\u200b", "\ufeff"]:
        assert accepts("glm47", glm("f", path=f"{other}p{other}", count="1", mode="fast"), f=MIXED), repr(other)


# ---------------------------------------------------------------- kimi_k2

def kimi(*calls: tuple[str, str, str]) -> str:
    body = "".join(f"<|tool_call_begin|>functions.{name}:{number}<|tool_call_argument_begin|>{arguments}"
                   "<|tool_call_end|>" for name, number, arguments in calls)
    return f"<|tool_calls_section_begin|>{body}<|tool_calls_section_end|>"


@pytest.mark.mlx
def test_kimi_k2_calls_are_read_back_with_the_ids_the_model_numbered() -> None:
    one = kimi(("f", "0", '{"path": "a", "count": 1, "mode": "fast", "where": {"x": 2.5}}'))
    assert both("kimi_k2", one, f=MIXED) == [{"name": "f", "id": "functions.f:0", "arguments": {
        "path": "a", "count": 1, "mode": "fast", "where": {"x": 2.5}}}]
    two = kimi(("f", "3", '{"path": "b", "count": 2, "mode": "slow"}'), ("g", "4", "{}"))
    assert [(c["name"], c["id"]) for c in both("kimi_k2", two, f=MIXED, g=NONE)] == [
        ("f", "functions.f:3"), ("g", "functions.g:4")]
    assert not accepts("kimi_k2", two, Constraint(calls={"f": MIXED, "g": NONE}, parallel=False))


@pytest.mark.parametrize("text", [
    kimi(("f", "0", '{"path": "a", "count": 1}')),  # a required parameter missing
    kimi(("f", "0", '{"path": "a", "count": 1, "mode": "medium"}')),
    kimi(("f", "", '{"path": "a", "count": 1, "mode": "fast"}')),  # no call number: the parser finds no name
    kimi(("f", "123456", '{"path": "a", "count": 1, "mode": "fast"}')),
    '<|tool_calls_section_begin|><|tool_call_begin|>f:0<|tool_call_argument_begin|>{"path": "a", "count": 1, '
    '"mode": "fast"}<|tool_call_end|><|tool_calls_section_end|>',  # not as the model writes it
    kimi(("f", "0", '{"path": "a", "count": 1, "mode": "fast"}'))[:-len("<|tool_calls_section_end|>")],
])
def test_kimi_k2_calls_that_break_the_schema_or_the_format_are_kept_out(text: str) -> None:
    assert not accepts("kimi_k2", text, f=MIXED)


# ---------------------------------------------------------------- pythonic

def py(*calls: str) -> str:
    return f"<|tool_call_start|>[{', '.join(calls)}]<|tool_call_end|>"


@pytest.mark.mlx
@pytest.mark.parametrize(("call", "expected"), [
    ('f(path="a", count=1, mode="fast")', {"path": "a", "count": 1, "mode": "fast"}),
    ('f(path="q\\"\\\\\\n\\t\\u0001]", count=-3, mode="slow", flags=[true, false], where={"x": 1.5e3})',
     {"path": 'q"\\\n\t\x01]', "count": -3, "mode": "slow", "flags": [True, False], "where": {"x": 1500.0}}),
    ('f(path="é😀", count=0, mode="fast", where={"x": 2})', {"path": "é😀", "count": 0, "mode": "fast",
                                                              "where": {"x": 2}}),  # flags left out
])
def test_pythonic_calls_the_grammar_lets_through_are_read_back_as_written(call: str, expected: dict[str, Any]) -> None:
    assert both("pythonic", py(call), f=MIXED) == [{"name": "f", "id": None, "arguments": expected}]


@pytest.mark.mlx
def test_pythonic_reads_several_calls_and_any_optional_parameters() -> None:
    two = py('f(path="a", count=1, mode="fast")', "h()", 'h(b="x")', 'h(a=1, b="")')
    assert [c["arguments"] for c in both("pythonic", two, f=MIXED, h=OPTIONAL)] == [
        {"path": "a", "count": 1, "mode": "fast"}, {}, {"b": "x"}, {"a": 1, "b": ""}]
    assert not accepts("pythonic", two, Constraint(calls={"f": MIXED, "h": OPTIONAL}, max_calls=3))
    assert not accepts("pythonic", py('f(path="a", count=1, mode="fast")', "h()"),
                       Constraint(calls={"f": MIXED, "h": OPTIONAL}, parallel=False))


@pytest.mark.parametrize("call", [
    'f(path="a\\/b", count=1, mode="fast")',  # JSON reads \/ as /, Python as \/
    'f(path="\\ud83d\\ude00", count=1, mode="fast")',  # JSON reads one character, Python two surrogates
    'f(path="\\u00e9", count=1, mode="fast")',
    'f(path="a", count=1)',  # a required parameter missing
    'f(path="a", count=1, mode="medium")',
    'f(path="a", count=1.5, mode="fast")',
    'f(path="a", count=1, mode="fast", other=1)',  # one the schema does not have
    'f(path="a", count=1, mode="fast",)',
    'f(path="a", count=1, mode="fast"',
])
def test_pythonic_calls_that_break_the_schema_or_the_format_are_kept_out(call: str) -> None:
    assert not accepts("pythonic", py(call), f=MIXED)


def test_a_tool_the_format_cannot_name_is_left_out_and_said_so_when_nothing_is_left() -> None:
    keyword = {"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}}}
    assert accepts("pythonic", py('t(to="x")'), t=keyword)  # `from` cannot be a keyword argument: left out
    assert not accepts("pythonic", py('t(from="x")'), t=keyword)
    required = {**keyword, "required": ["from"]}
    assert accepts("pythonic", py('f(path="a", count=1, mode="fast")'), f=MIXED, t=required)
    assert not accepts("pythonic", py('t(from="x")'), f=MIXED, t=required)
    with pytest.raises(ConstraintError, match="None of the tools"):
        _grammar("pythonic", Constraint(calls={"read-file": READ, "t": required}))
    # Under tool_choice "auto" nothing is forced: the answer is text, and no call it could not name.
    held = Constraint(calls={"read-file": READ}, optional=True)
    assert accepts("pythonic", "just text", held)
    assert not accepts("pythonic", py('read_file(path="a")'), held)
    from mlx_lm.tool_parsers import glm47

    assert glm47.parse_tool_call("two words")["name"] == "two"  # GLM's call with no arguments: a name with no spaces
    with pytest.raises(ConstraintError):
        _grammar("glm47", Constraint(calls={"two words": NONE}))


# ---------------------------------------------------------------- through a real worker

FORMATS = ["glm47", "kimi_k2", "pythonic"]


@pytest.fixture(scope="module", params=FORMATS)
def served(request: pytest.FixtureRequest, mlx_cache: Path) -> Iterator[tuple[str, str]]:
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: tiny, adapter: mlx, source: dummy, prefix_cache_mb: 0, max_batch: 8, tool_parser: {request.param}}}
"""
    with serve(parse_config(manifest)) as url:
        yield url, request.param


@pytest.mark.mlx
def test_forced_calls_are_schema_valid(served: tuple[str, str]) -> None:
    base, parser = served
    budget = {"max_output_tokens": 300}
    found = calls(many(base, {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False, **budget}))
    assert len(found) == 50
    for call in found:
        jsonschema.validate(json.loads(call["arguments"]), SCHEMAS[call["name"]])
    named = calls(many(base, {"tools": TOOLS, "tool_choice": {"type": "function", "name": "plan"},
                              "parallel_tool_calls": False, **budget}))
    assert len(named) == 50 and {call["name"] for call in named} == {"plan"}
    for call in named:
        jsonschema.validate(json.loads(call["arguments"]), NESTED)
    assert httpx.get(f"{base}/health", timeout=10).json()["models"]["tiny"]["tool_parser"] == parser


@pytest.mark.mlx
def test_a_regex_tool_input_matches_it(served: tuple[str, str]) -> None:
    assert_regex_tool_inputs_match(served[0])  # glm47 carries it unescaped (the raw grammar), the others in JSON


@pytest.mark.mlx
def test_a_call_the_budget_cuts_is_no_call(served: tuple[str, str]) -> None:
    """A forced call cut short by max_output_tokens ends the answer incomplete with no function_call in it (these
    parsers would read a call without its end marker, arguments missing what the schema requires)."""
    base, _ = served
    answers = many(base, {"tools": TOOLS, "tool_choice": {"type": "function", "name": "plan"},
                          "parallel_tool_calls": False, "max_output_tokens": 12}, runs=10)
    for answer in answers:
        assert answer["status"] == "incomplete", answer
        assert [item for item in answer["output"] if item["type"] == "function_call"] == [], answer["output"]
