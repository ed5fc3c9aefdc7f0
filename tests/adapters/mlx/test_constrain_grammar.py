"""Custom tools' grammars and call limits, enforced while the random-weight dummy model decodes (through HTTP and a
real worker): Codex's apply_patch tool, forced, always yields a patch the `lark` package parses; a regex tool's
input always matches `re`; max_tool_calls bounds the calls the grammar lets the model write."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import parse_config
from tests.adapters.mlx.test_constrain import many
from tests.conftest import serve
from tests.test_grammars import lark_parser

pytestmark = pytest.mark.mlx

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
APPLY_PATCH: dict[str, Any] = json.loads((FIXTURES / "codex_apply_patch_tool.json").read_text())
# [0-9], not \d: the engine's Unicode tables are newer than Python's, and a random model finds the digits only
# one of them knows.
TICKET = {"type": "custom", "name": "ticket", "description": "File a ticket.",
          "format": {"type": "grammar", "syntax": "regex", "definition": r"(BUG|TASK)-[0-9]{1,4}: [a-z ]{1,12}"}}
MOVE = {"type": "function", "name": "move", "strict": True,
        "parameters": {"type": "object", "properties": {"to": {"enum": ["north", "south"]}}, "required": ["to"],
                       "additionalProperties": False}}
# A random model ends a free-text line only by chance: under Codex's grammar (lines of any length) it rarely
# finishes a patch within any budget. So the real grammar is checked on what the model wrote so far (each complete
# line keeps it a valid patch's start), and the same grammar with short lines on finished patches.
BOUNDED = (APPLY_PATCH["format"]["definition"]
           .replace("filename: /(.+)/", r"filename: /[a-z]{1,8}\.txt/")
           .replace('add_line: "+" /(.*)/', 'add_line: "+" /[a-z ]{1,12}/?')
           .replace('("+" | "-" | " ") /(.*)/', '("+" | "-" | " ") /[a-z ]{1,12}/?')
           .replace('"@@ " /(.+)/', '"@@ " /[a-z]{1,8}/'))
BOUNDED_PATCH = {**APPLY_PATCH, "format": {**APPLY_PATCH["format"], "definition": BOUNDED}}
ENDINGS = ["*** End Patch\n", "+x\n*** End Patch\n", "*** Add File: f\n+x\n*** End Patch\n"]


@pytest.fixture(scope="module")
def base(mlx_cache: Path) -> Iterator[str]:
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: tiny, adapter: mlx, source: dummy, prefix_cache_mb: 0, max_batch: 8}}
  - {{name: strict-tiny, adapter: mlx, source: dummy, prefix_cache_mb: 0, constraints: strict}}
"""
    with serve(parse_config(manifest)) as url:
        yield url


def custom_calls(answers: list[dict[str, Any]], name: str) -> list[str]:
    inputs = []
    for answer in answers:
        if answer["status"] == "incomplete":
            continue
        assert answer["status"] == "completed", answer
        assert [item["type"] for item in answer["output"]] == ["custom_tool_call"], answer["output"]
        assert answer["output"][0]["name"] == name
        inputs.append(answer["output"][0]["input"])
    return inputs


def test_a_forced_apply_patch_is_always_a_patch(base: str) -> None:
    assert BOUNDED != APPLY_PATCH["format"]["definition"]  # the lines were bounded
    parser = lark_parser(BOUNDED)
    answers = many(base, {"tools": [BOUNDED_PATCH, MOVE], "tool_choice": {"type": "custom", "name": "apply_patch"},
                          "max_output_tokens": 600, "parallel_tool_calls": False},
                   degraded="tool:apply_patch:wrap")
    patches = custom_calls(answers, "apply_patch")
    # A patch may take more hunks than the budget holds (the model chooses when to end it); those end
    # `incomplete` for that reason only, and most finish.
    assert all(a["incomplete_details"] == {"reason": "max_output_tokens"} for a in answers if a["status"] != "completed")
    assert len(patches) >= 30, f"only {len(patches)} of 50 finished"
    for patch in patches:
        parser.parse(patch)  # raises on anything the grammar does not accept
    assert len(set(patches)) > 1


def test_codex_apply_patch_grammar_holds_line_by_line(base: str) -> None:
    parser = lark_parser(APPLY_PATCH["format"]["definition"])
    answers = many(base, {"tools": [APPLY_PATCH], "tool_choice": "required", "max_output_tokens": 120,
                          "parallel_tool_calls": False},
                   runs=16, degraded="tool:apply_patch:wrap")
    for answer in answers:
        (item,) = answer["output"]
        if item["type"] == "custom_tool_call":  # finished
            parser.parse(item["input"])
            continue
        assert answer["status"] == "incomplete", answer
        text = item["content"][0]["text"]
        head = '<tool_call>\n{"name": "apply_patch", "arguments": {"input": "'
        assert text.startswith(head), text
        written = json.loads('"' + text[len(head):].rpartition("\\n")[0] + '\\n"')  # up to its last line end
        assert any(_parses(parser, written + ending) for ending in ENDINGS), written


def _parses(parser: Any, text: str) -> bool:
    try:
        parser.parse(text)
    except Exception:
        return False
    return True


def assert_regex_tool_inputs_match(base: str) -> None:
    """50 forced calls to the regex tool on `base`'s tiny model: every input matches the regex (Python's `re`)."""
    answers = many(base, {"tools": [TICKET], "tool_choice": "required", "parallel_tool_calls": False},
                   degraded="tool:ticket:wrap")
    inputs = custom_calls(answers, "ticket")
    assert len(inputs) == 50
    for text in inputs:
        assert re.fullmatch(TICKET["format"]["definition"], text), text


def test_a_regex_tool_input_always_matches(base: str) -> None:
    assert_regex_tool_inputs_match(base)


def test_max_tool_calls_bounds_forced_calls(base: str) -> None:
    answers = many(base, {"tools": [MOVE], "tool_choice": "required", "max_tool_calls": 2}, runs=20)
    counts = []
    for answer in answers:
        assert answer["status"] == "completed", answer
        assert {item["type"] for item in answer["output"]} == {"function_call"}
        counts.append(len(answer["output"]))
    assert set(counts) <= {1, 2}


RECURSIVE = {"type": "custom", "name": "nest", "format": {"type": "grammar", "syntax": "lark",
                                                          "definition": 'start: "(" start ")" | "x"'}}


def test_a_grammar_that_is_not_regular_is_answered_and_said_so(base: str) -> None:
    body = {"model": "tiny", "input": "go", "max_output_tokens": 40, "tools": [RECURSIVE],
            "tool_choice": {"type": "custom", "name": "nest"}}
    with httpx.Client(base_url=base, timeout=120) as http:
        answer = http.post("/v1/responses", json=body)
        assert answer.status_code == 200, answer.text
        assert "constraint:tools[0].format:ignore" in answer.headers["x-gateway-degraded"]
        refused = http.post("/v1/responses", json={**body, "model": "strict-tiny"})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "tools[0].format.definition"
    assert "circular" in refused.json()["error"]["message"]


@pytest.mark.parametrize(("fmt", "param"), [
    ({"type": "grammar", "syntax": "lark", "definition": "start: missing_rule"}, "tools[0].format.definition"),
    ({"type": "grammar", "syntax": "regex", "definition": "(unclosed"}, "tools[0].format.definition"),
    ({"type": "grammar", "syntax": "peg", "definition": "x"}, "tools[0].format.syntax"),
])
def test_a_grammar_that_does_not_compile_is_a_400_naming_it(base: str, fmt: dict[str, Any], param: str) -> None:
    body = {"model": "tiny", "input": "go", "tools": [{"type": "custom", "name": "t", "format": fmt}]}
    with httpx.Client(base_url=base, timeout=120) as http:
        answer = http.post("/v1/responses", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
