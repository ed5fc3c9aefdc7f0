"""Call formats other than json_tools held to the tools' schemas and grammars: Qwen3-Coder's XML (mlx-lm's
`qwen3_coder` parser) and Mistral's `[TOOL_CALLS]name[ARGS]{...}` (`mistral`).

The grammar alone (byte tokenizer, call_formats.py) against mlx-lm's own parser as the reader; then through HTTP and a
real worker: the random dummy model set to the qwen3_coder call format calls the tools it is forced to, and every
call parses into schema-valid arguments (jsonschema) or a custom tool input that matches its regex (`re`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import llguidance
import pytest
from mlx_lm.tool_parsers import qwen3_coder

from gateway.adapters.base import Constraint
from gateway.adapters.mlx.constrain import Constraints
from gateway.config import parse_config
from tests.adapters.mlx.test_constrain import SCHEMAS, TOOLS, calls, many
from tests.adapters.mlx.test_constrain_grammar import assert_regex_tool_inputs_match
from tests.conftest import serve

BYTES = llguidance.LLTokenizer("byte")
MIXED = {"type": "object", "additionalProperties": False, "required": ["path", "count", "mode"],
         "properties": {"path": {"type": "string", "maxLength": 12}, "count": {"type": "integer"},
                        "mode": {"enum": ["fast", "slow"]}, "flags": {"type": "array", "items": {"type": "boolean"}},
                        "where": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}}}


class _Bytes:  # the engine's byte tokenizer, seen as a HF tokenizer: one token per byte
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode())


def _accepts(constraint: Constraint, text: str) -> bool:
    constraints = Constraints(_Bytes(), "qwen3_coder", None)
    constraints._tokenizer = BYTES
    grammar = constraints.grammar(constraint, thinking=False)
    matcher = llguidance.LLMatcher(BYTES, llguidance.grammar_from("lark", grammar), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return bool(matcher.consume_tokens(BYTES.tokenize_str(text))) and bool(matcher.is_accepting())


def _call(name: str, **values: str) -> str:
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in values.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


def _parsed(text: str, schema: dict[str, Any]) -> Any:
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    return qwen3_coder.parse_tool_call(text.removeprefix("<tool_call>").removesuffix("</tool_call>"), tools)


@pytest.mark.parametrize("values", [
    {"path": "a b</c", "count": "12", "mode": "fast"},
    {"path": "", "count": "-3", "mode": "slow", "flags": "[true, false]", "where": '{"x": 1.5}'},
    {"path": "multi\nline", "count": "0", "mode": "fast", "where": '{"x": 2}'},
])
def test_what_the_grammar_lets_through_parses_into_schema_valid_arguments(values: dict[str, str]) -> None:
    text = _call("f", **values)
    assert _accepts(Constraint(calls={"f": MIXED}), text)
    parsed = _parsed(text, MIXED)
    assert parsed["name"] == "f"
    jsonschema.validate(parsed["arguments"], MIXED)


@pytest.mark.parametrize("values", [
    {"path": "x</parameter>y", "count": "1", "mode": "fast"},  # the parser would end the value there
    {"path": "x</tool_call>", "count": "1", "mode": "fast"},  # the gateway would end the call there
    {"path": "Null", "count": "1", "mode": "fast"},  # the parser would read None
    {"path": "way too long a path", "count": "1", "mode": "fast"},
    {"path": "p", "count": "1.5", "mode": "fast"},
    {"path": "p", "count": "1", "mode": "medium"},
    {"path": "p", "mode": "fast"},  # a required parameter missing
    {"path": "p", "count": "1", "mode": "fast", "other": "x"},  # one the schema does not have
])
def test_what_breaks_the_schema_or_the_format_is_kept_out(values: dict[str, str]) -> None:
    assert not _accepts(Constraint(calls={"f": MIXED}), _call("f", **values))


@pytest.fixture(scope="module")
def base(mlx_cache: Path) -> Iterator[str]:
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: tiny, adapter: mlx, source: dummy, prefix_cache_mb: 0, max_batch: 8, tool_parser: qwen3_coder}}
  - {{name: steered, adapter: mlx, source: dummy, prefix_cache_mb: 0, max_batch: 8, tool_parser: qwen3_coder,
      testing: {{force: last_user}}}}
  - {{name: mistral, adapter: mlx, source: dummy, prefix_cache_mb: 0, max_batch: 8, tool_parser: mistral}}
  - {{name: other-format, adapter: mlx, source: dummy, prefix_cache_mb: 0, tool_parser: minimax_m2}}
"""
    with serve(parse_config(manifest)) as url:
        yield url


@pytest.mark.mlx
def test_forced_calls_in_xml_are_schema_valid(base: str) -> None:
    found = calls(many(base, {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False}))
    assert len(found) == 50
    for call in found:
        jsonschema.validate(json.loads(call["arguments"]), SCHEMAS[call["name"]])
    named = calls(many(base, {"tools": TOOLS, "tool_choice": {"type": "function", "name": "move"},
                              "parallel_tool_calls": False}, runs=20))
    assert {call["name"] for call in named} == {"move"}
    assert httpx.get(f"{base}/health", timeout=10).json()["models"]["tiny"]["tool_parser"] == "qwen3_coder"


@pytest.mark.mlx
def test_nullable_types_in_xml_come_back_as_their_json_values(base: str) -> None:
    """A list `type` is JSON in the grammar; mlx-lm's parser reads it with literal_eval (no `true`, no `null` inside):
    the worker reads such a value back as JSON, so every forced call still validates."""
    schema = {"type": "object", "additionalProperties": False, "required": ["on", "opts"],
              "properties": {"on": {"type": ["boolean", "null"]},
                             "opts": {"type": ["object", "null"], "additionalProperties": False, "required": ["n"],
                                      "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9},
                                                     "quiet": {"type": ["boolean", "null"]}}}}}
    tool = {"type": "function", "name": "toggle", "parameters": schema, "strict": True}
    found = calls(many(base, {"tools": [tool], "tool_choice": "required", "parallel_tool_calls": False}, runs=20))
    assert len(found) == 20
    for call in found:
        jsonschema.validate(json.loads(call["arguments"]), schema)


@pytest.mark.mlx
def test_a_regex_tool_input_in_xml_is_its_text_unescaped(base: str) -> None:
    assert_regex_tool_inputs_match(base)  # held by the raw grammar: XML carries the input unescaped


@pytest.mark.mlx
def test_a_call_the_model_opens_under_auto_is_held_to_its_schema(base: str) -> None:
    # The test hook forces the call's opening (up to \x1e); the parameters are the model's own, under the grammar.
    body = {"model": "steered", "input": "<tool_call>\x1f\n<function=read_file>\n\x1e", "tools": TOOLS,
            "parallel_tool_calls": False}
    for answer in many(base, body):
        assert answer["status"] == "completed", answer
        (call,) = [item for item in answer["output"] if item["type"] != "reasoning"]
        assert call["type"] == "function_call" and call["name"] == "read_file", answer
        jsonschema.validate(json.loads(call["arguments"]), SCHEMAS["read_file"])


@pytest.mark.mlx
def test_a_call_format_with_no_grammar_says_the_call_was_not_enforced(base: str) -> None:
    body = {"model": "other-format", "input": "go", "max_output_tokens": 8, "tools": TOOLS,
            "tool_choice": "required"}
    answer = httpx.post(f"{base}/v1/responses", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-gateway-degraded"] == "constraint:tool_choice:ignore"


def _mistral_accepts(constraint: Constraint, text: str) -> bool:
    constraints = Constraints(_Bytes(), "mistral", None)
    constraints._tokenizer = BYTES
    matcher = llguidance.LLMatcher(BYTES, llguidance.grammar_from("lark", constraints.grammar(constraint, False)),
                                   log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return bool(matcher.consume_tokens(BYTES.tokenize_str(text))) and bool(matcher.is_accepting())


def test_mistral_calls_are_what_its_parser_reads() -> None:
    from mlx_lm.tool_parsers import mistral

    two = '[TOOL_CALLS]f[ARGS]{"path": "a", "count": 1, "mode": "fast"}f[ARGS]{"path": "b", "count": 2, "mode": "slow"}'
    assert _mistral_accepts(Constraint(calls={"f": MIXED}), two)
    calls = mistral.parse_tool_call(two.removeprefix("[TOOL_CALLS]"))
    assert [c["name"] for c in calls] == ["f", "f"]
    for call in calls:
        jsonschema.validate(call["arguments"], MIXED)
    assert not _mistral_accepts(Constraint(calls={"f": MIXED}, parallel=False), two)  # one call only
    assert not _mistral_accepts(Constraint(calls={"f": MIXED}), '[TOOL_CALLS]f[ARGS]{"path": "a"}')  # not valid


@pytest.mark.mlx
def test_forced_calls_in_mistral_format_are_schema_valid(base: str) -> None:
    found = calls(many(base, {"model": "mistral", "tools": TOOLS, "tool_choice": "required",
                              "parallel_tool_calls": False}))
    assert len(found) == 50
    for call in found:
        jsonschema.validate(json.loads(call["arguments"]), SCHEMAS[call["name"]])
    assert httpx.get(f"{base}/health", timeout=10).json()["models"]["mistral"]["tool_parser"] == "mistral"
