"""Constrained decoding through HTTP and a real worker: the random-weight dummy model (gibberish when free) answers
JSON that validates, and calls the tools it is told to with schema-valid arguments, every time; a constrained row
leaves an unconstrained one in the same batch unchanged. jsonschema is the independent checker."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from gateway.config import parse_config
from tests.conftest import serve

pytestmark = pytest.mark.mlx

RUNS = 50  # generations per case (sampled at temperature 1: each one a different path through the grammar)
BUDGET = 160

# Bounded values (integer ranges, string lengths, array sizes): a random model would otherwise write digits
# until its budget runs out, which is valid JSON but never a finished answer.
NESTED = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "level": {"enum": ["low", "mid", "high"]},
        "point": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 99},
                                                   "y": {"type": "boolean"}},
                  "required": ["x", "y"], "additionalProperties": False},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
    },
    "required": ["name", "level", "point", "tags"],
    "additionalProperties": False,
}
READ = {"type": "object", "properties": {"path": {"type": "string", "maxLength": 12}},
        "required": ["path"], "additionalProperties": False}
MOVE = {"type": "object", "properties": {"steps": {"type": "integer", "minimum": -9, "maximum": 9},
                                         "to": {"enum": ["north", "south"]}},
        "required": ["steps", "to"], "additionalProperties": False}
TOOLS = [
    {"type": "function", "name": "read_file", "parameters": READ, "strict": True},
    {"type": "function", "name": "move", "parameters": MOVE, "strict": False},
]
SCHEMAS = {"read_file": READ, "move": MOVE}


@pytest.fixture(scope="module")
def base(mlx_cache: Path) -> Iterator[str]:
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: tiny, adapter: mlx, source: dummy, prefix_cache_mb: 0, max_batch: 8}}
  - {{name: slow, adapter: mlx, source: dummy, prefix_cache_mb: 0, max_batch: 8, testing: {{step_delay_ms: 5}}}}
"""
    with serve(parse_config(manifest)) as url:
        yield url


def many(base: str, body: dict[str, Any], runs: int = RUNS, path: str = "/v1/responses",
         degraded: str = "") -> list[dict[str, Any]]:
    """`runs` answers to `body`, 8 at a time; `degraded` is the x-gateway-degraded header each must carry."""
    body = {"model": "tiny", "max_output_tokens": BUDGET, "reasoning": {"effort": "none"}, **body}
    if path != "/v1/responses":
        body.pop("reasoning")
        body["max_tokens"] = body.pop("max_output_tokens")
    with httpx.Client(base_url=base, timeout=120) as http:
        def one(i: int) -> dict[str, Any]:
            response = http.post(path, json={**body, **({"input": f"question {i}"} if "input" not in body else {})})
            assert response.status_code == 200, response.text
            assert response.headers.get("x-gateway-degraded", "") == degraded
            return dict(response.json())

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(runs)))


def texts(answers: list[dict[str, Any]]) -> list[str]:
    out = []
    for answer in answers:
        assert answer["status"] == "completed", answer
        (message,) = answer["output"]
        out.append(message["content"][0]["text"])
    return out


def test_a_nested_strict_schema_is_always_met(base: str) -> None:
    answers = many(base, {"text": {"format": {"type": "json_schema", "name": "thing", "schema": NESTED,
                                              "strict": True}}})
    values = [json.loads(text) for text in texts(answers)]
    for value in values:
        jsonschema.validate(value, NESTED)
    assert len({json.dumps(v, sort_keys=True) for v in values}) > 1  # sampled, not one forced answer


def test_a_non_strict_schema_is_met_too(base: str) -> None:
    answers = many(base, {"text": {"format": {"type": "json_schema", "name": "move", "schema": MOVE}}}, runs=10)
    for text in texts(answers):
        jsonschema.validate(json.loads(text), MOVE)


def test_json_object_answers_are_json_objects(base: str) -> None:
    for answer in many(base, {"text": {"format": {"type": "json_object"}}}, runs=10):
        # Unbounded JSON may run out of budget (a random model writes long strings); what it wrote is still
        # an object's start, and a finished one parses.
        text = answer["output"][0]["content"][0]["text"]
        assert text.startswith("{")
        if answer["status"] == "completed":
            assert isinstance(json.loads(text), dict)


def calls(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for answer in answers:
        assert answer["status"] == "completed", answer
        assert len(answer["output"]) == 1, answer["output"]  # parallel_tool_calls false: one call, no text
        (call,) = answer["output"]
        assert call["type"] == "function_call", answer
        out.append(call)
    return out


def test_tool_choice_required_makes_a_schema_valid_call(base: str) -> None:
    found = calls(many(base, {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False}))
    for call in found:
        jsonschema.validate(json.loads(call["arguments"]), SCHEMAS[call["name"]])
    assert {call["name"] for call in found} <= {"read_file", "move"}  # which one is the model's choice (below)


def test_every_forced_tool_is_open_to_the_model() -> None:
    # The grammar leaves the choice of tool to the model: after the shared start, both names may begin.
    import llguidance
    import numpy as np

    from gateway.adapters.base import Constraint
    from gateway.adapters.mlx.constrain import Constraints

    class Bytes:  # a byte-level tokenizer: one token per byte, as the engine's own "byte" tokenizer
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return list(text.encode())

    constraints = Constraints(Bytes(), "json_tools", None)
    constraints._tokenizer = llguidance.LLTokenizer("byte")
    grammar = constraints.grammar(Constraint(calls=SCHEMAS, parallel=False), thinking=False)
    matcher = llguidance.LLMatcher(constraints._tokenizer, llguidance.grammar_from("lark", grammar), log_level=0)
    assert matcher.consume_tokens(constraints._tokenizer.tokenize_str('<tool_call>\n{"name": "'))
    allowed = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
    assert {chr(i) for i in range(128) if allowed[i]} == {"r", "m"}


def test_a_named_function_is_the_one_called(base: str) -> None:
    choice = {"type": "function", "name": "move"}
    for call in calls(many(base, {"tools": TOOLS, "tool_choice": choice, "parallel_tool_calls": False}, runs=20)):
        assert call["name"] == "move"
        jsonschema.validate(json.loads(call["arguments"]), MOVE)


def test_chat_response_format_is_enforced(base: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "m", "schema": MOVE, "strict": True}}}
    for answer in many(base, body, runs=10, path="/v1/chat/completions"):
        (choice,) = answer["choices"]
        assert choice["finish_reason"] == "stop"
        jsonschema.validate(json.loads(choice["message"]["content"]), MOVE)


def test_the_budget_ends_a_constrained_answer_incomplete(base: str) -> None:
    (answer,) = many(base, {"max_output_tokens": 3, "text": {"format": {"type": "json_schema", "name": "n",
                                                                      "schema": NESTED}}}, runs=1)
    assert answer["status"] == "incomplete" and answer["incomplete_details"] == {"reason": "max_output_tokens"}


def test_unconstrained_rows_in_a_mixed_batch_answer_as_alone(base: str) -> None:
    free = {"model": "slow", "input": "Fix the failing test and report.", "temperature": 0, "max_output_tokens": 40}
    constrained = {"model": "slow", "input": "x", "max_output_tokens": BUDGET, "reasoning": {"effort": "none"},
                   "text": {"format": {"type": "json_schema", "name": "thing", "schema": NESTED}}}
    with httpx.Client(base_url=base, timeout=120) as http:
        alone = http.post("/v1/responses", json=free).json()["output"]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            others = [pool.submit(http.post, "/v1/responses", json=constrained) for _ in range(3)]
            together = pool.submit(http.post, "/v1/responses", json=free)
            for other in others:
                jsonschema.validate(json.loads(other.result().json()["output"][0]["content"][0]["text"]), NESTED)
            assert [i["content"] for i in together.result().json()["output"]] == [i["content"] for i in alone]


@pytest.mark.parametrize(("body", "param"), [
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "bogus"}}}}, "text.format.schema"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": "no"}}}, "text.format.schema"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "bogus"}, "strict": True}],
      "tool_choice": "required"}, "tools[0].parameters"),
])
def test_a_schema_the_engine_cannot_take_is_a_400_naming_it(base: str, body: dict[str, Any], param: str) -> None:
    response = httpx.post(f"{base}/v1/responses", timeout=30, json={"model": "tiny", "input": "x", **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
