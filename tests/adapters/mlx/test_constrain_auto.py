"""tool_choice "auto" with a strict function or a grammar-constrained custom tool: the model may answer in text or
call, and a call it makes is held to the schema or grammar. The random dummy model is steered into a call by the
test hook (`force: last_user` with a prefix ending in \\x1e: the call's opening is forced, the arguments are the
model's own, sampled under the constraint), 50 times per case through HTTP and the real worker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.config import parse_config
from tests.adapters.mlx.test_constrain import MOVE, READ, TOOLS, many
from tests.conftest import serve

pytestmark = pytest.mark.mlx

COLOURS = {"type": "custom", "name": "paint", "description": "Paint with one colour.",
           "format": {"type": "grammar", "syntax": "regex", "definition": "(red|green|blue)( please)?"}}


@pytest.fixture(scope="module")
def base(mlx_cache: Path) -> Iterator[str]:
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: tiny, adapter: mlx, source: dummy, prefix_cache_mb: 0, max_batch: 8, testing: {{force: last_user}}}}
"""
    with serve(parse_config(manifest)) as url:
        yield url


def opening(name: str) -> str:
    """The forced start of a call in the dummy's format (json_tools); the model writes the rest."""
    return '<tool_call>\x1f\n{"name": "' + name + '", "arguments": \x1e'


def only_call(answer: dict[str, Any], kind: str = "function_call") -> dict[str, Any]:
    assert answer["status"] == "completed", answer
    (call,) = [item for item in answer["output"] if item["type"] != "reasoning"]
    assert call["type"] == kind, answer
    return call


# read_file is strict; move is not, but once calls are held at all every call gets its schema, as under "required".
@pytest.mark.parametrize(("name", "schema"), [("read_file", READ), ("move", MOVE)])
def test_a_function_called_under_auto_has_schema_valid_arguments(base: str, name: str, schema: dict[str, Any]) -> None:
    answers = many(base, {"input": opening(name), "tools": TOOLS, "parallel_tool_calls": False})
    for answer in answers:
        call = only_call(answer)
        assert call["name"] == name
        jsonschema.validate(json.loads(call["arguments"]), schema)


def test_a_grammar_tool_called_under_auto_matches_its_grammar(base: str) -> None:
    answers = many(base, {"input": opening("paint"), "tools": [COLOURS], "parallel_tool_calls": False},
                   degraded="tool:paint:wrap")  # the model sees the custom tool as a one-string function
    seen = set()
    for answer in answers:
        call = only_call(answer, "custom_tool_call")
        assert call["name"] == "paint" and re.fullmatch(r"(red|green|blue)( please)?", call["input"]), call
        seen.add(call["input"])
    assert len(seen) > 1  # the model chose among the grammar's strings, not one forced answer


def test_text_stays_free_under_auto(base: str) -> None:
    text = "Just words, no call."
    for answer in many(base, {"input": text, "tools": TOOLS}, runs=8):
        assert answer["status"] == "completed"
        assert answer["output"][-1]["type"] == "message"
        assert answer["output"][-1]["content"][0]["text"] == text


def test_a_plain_text_call_opener_is_kept_out_of_free_text() -> None:
    """Where `<tool_call>` is ordinary text (Qwen's tokenizers: an added, non-special token), free text may not
    contain it: writing it starts a call that is held. One token per byte here, so the opener is plain text."""
    import llguidance
    import numpy as np

    from gateway.adapters.base import Constraint
    from gateway.adapters.mlx.constrain import Constraints
    from tests.adapters.mlx.test_constrain import SCHEMAS

    class Bytes:
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return list(text.encode())

    constraints = Constraints(Bytes(), "json_tools", None)
    tokenizer = constraints._tokenizer = llguidance.LLTokenizer("byte")
    grammar = constraints.grammar(Constraint(calls=SCHEMAS, optional=True, parallel=False), thinking=False)

    def matcher(text: str) -> llguidance.LLMatcher:
        held = llguidance.LLMatcher(tokenizer, llguidance.grammar_from("lark", grammar), log_level=0)
        assert held.consume_tokens(tokenizer.tokenize_str(text)), held.get_error()
        return held

    def allowed(held: llguidance.LLMatcher) -> set[str]:
        bits = np.unpackbits(np.frombuffer(held.compute_bitmask(), dtype=np.uint8), bitorder="little")
        return {chr(i) for i in range(128) if bits[i]}

    assert matcher("Plain text, with < and tool_call in it.").is_accepting()  # text alone may end
    assert allowed(matcher("First a word. <tool_call>\n{\"name\": \"")) == {"r", "m"}  # inside a held call
    assert allowed(matcher("Text <tool_call>")) == {"\n"}  # the opener is not text: the call's form follows
    assert {"l", "x"} <= allowed(matcher("Text <tool_cal"))  # until it is complete, the text is free


def test_held_calls_force_nothing_inside_an_open_think_block() -> None:
    """The model may end while still thinking (nothing is forced under auto); once the think block closes, a call it
    writes is held. The think end and the call marker are plain text here (one token per byte)."""
    import llguidance

    from gateway.adapters.base import Constraint
    from gateway.adapters.mlx.constrain import Constraints
    from tests.adapters.mlx.test_constrain import SCHEMAS

    class Bytes:
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return list(text.encode())

    constraints = Constraints(Bytes(), "json_tools", "</think>")
    tokenizer = constraints._tokenizer = llguidance.LLTokenizer("byte")
    grammar = constraints.grammar(Constraint(calls=SCHEMAS, optional=True), thinking=True)

    def matcher(text: str) -> llguidance.LLMatcher:
        held = llguidance.LLMatcher(tokenizer, llguidance.grammar_from("lark", grammar), log_level=0)
        assert held.consume_tokens(tokenizer.tokenize_str(text)), held.get_error()
        return held

    assert matcher("still thinking, <tool_call> is just words here").is_accepting()
    assert matcher("thought</think>Done.").is_accepting()
    after = matcher('thought</think>Now <tool_call>\n{"name": "')
    assert not after.is_accepting() and not after.consume_tokens(tokenizer.tokenize_str("x"))  # held: a tool name


@pytest.mark.parametrize("special", [False, True])
def test_a_think_block_the_model_opens_itself_stays_free(special: bool) -> None:
    """The template did not open a think block (thinking=False), but the model may: its thinking is free and the
    answer is held from the think end; a model that does not think is held from its first token. The markers are
    plain text (one token per byte) or special tokens."""
    import llguidance

    from gateway.adapters.base import Constraint
    from gateway.adapters.mlx.constrain import Constraints

    class Bytes:
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [0] if special and text in ("<think>", "</think>") else list(text.encode())

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
              "additionalProperties": False}
    constraints = Constraints(Bytes(), "json_tools", "</think>", "<think>")
    tokenizer = constraints._tokenizer = llguidance.LLTokenizer("byte")
    if special:  # the byte tokenizer's one special token stands for both markers
        constraints._special = lambda text: 0 if text in ("<think>", "</think>") else None  # type: ignore[method-assign]
    grammar = constraints.grammar(Constraint(schema=schema), thinking=False)

    def accepts(*pieces: str | int) -> bool:
        matcher = llguidance.LLMatcher(tokenizer, llguidance.grammar_from("lark", grammar), log_level=0)
        assert not matcher.is_error(), matcher.get_error()
        tokens = [t for p in pieces for t in ([p] if isinstance(p, int) else tokenizer.tokenize_str(p))]
        return bool(matcher.consume_tokens(tokens)) and bool(matcher.is_accepting())

    opening, closing = (0, 0) if special else ("<think>", "</think>")
    assert accepts('{"a": 1}')
    assert accepts(opening, "free { thoughts", closing, '{"a": 12}')
    assert not accepts(opening, "free", closing, "not json")
    assert not accepts("no think block: ", '{"a": 1}')


def test_a_json_answer_after_a_think_block_the_model_opened_itself(base: str) -> None:
    # The request asks for reasoning but the template opened no think block; the test hook makes the model open and
    # close one itself, then it writes the answer on its own, held to the schema.
    fmt = {"type": "json_schema", "name": "move", "schema": MOVE, "strict": True}
    body = {"input": "<think>\x1fI will move.\x1f</think>\x1e", "text": {"format": fmt}, "reasoning": {"effort": "low"}}
    answers = many(base, body, runs=20)
    for answer in answers:
        assert answer["status"] == "completed", answer
        reasoning, message = answer["output"]
        assert reasoning["type"] == "reasoning" and "I will move." in json.dumps(reasoning)
        jsonschema.validate(json.loads(message["content"][0]["text"]), MOVE)
