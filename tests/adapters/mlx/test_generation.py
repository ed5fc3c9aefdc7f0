"""Real generation over HTTP: dummy models in worker processes, output forced token by token
(`testing.force`) so reasoning, tool calls and multi-byte text take the real decode path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import parse_config
from tests.conftest import serve
from tests.sse import iter_response_events

pytestmark = pytest.mark.mlx

SPLIT = "\x1f"  # the forcing hook encodes each piece separately: a marker arrives as several tokens
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def base(mlx_cache: Path) -> Iterator[str]:
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: forced, adapter: mlx, source: dummy, testing: {{force: last_user}}}}
  - {{name: paced, adapter: mlx, source: dummy, testing: {{force: last_user, step_delay_ms: 15}}}}
  - {{name: plain, adapter: mlx, source: dummy, context_length: 64}}
"""
    with serve(parse_config(manifest)) as url:
        yield url


def tokenizer(mlx_cache: Path):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    (model_dir,) = mlx_cache.glob("dummy-*")
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


def token_count(mlx_cache: Path, text: str) -> list[list[int]]:
    tok = tokenizer(mlx_cache)
    return [tok.encode(piece, add_special_tokens=False).ids for piece in text.split(SPLIT)]


def stream(base: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.Client(base_url=base, timeout=60) as http:
        with http.stream("POST", "/v1/responses", json={**body, "stream": True}) as response:
            assert response.status_code == 200
            return [event for _, event in iter_response_events(response)]


def test_reasoning_text_and_a_split_tool_call_through_real_generation(base: str, mlx_cache: Path) -> None:
    call = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    forced = f"<think>Need the weather first.</think>Checking now.\n<tool{SPLIT}_call>\n{call}\n</tool_{SPLIT}call>"
    pieces = token_count(mlx_cache, forced)
    added = tokenizer(mlx_cache).token_to_id("<tool_call>")
    assert added not in pieces[1] and len(pieces[1]) > 1  # the opening marker really is split into plain tokens

    events = stream(base, {"model": "forced", "input": forced, "tools": [WEATHER]})
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "response.completed"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [item["type"] for item in done] == ["reasoning", "message", "function_call"]
    assert "".join(p["text"] for p in done[0]["content"]) == "Need the weather first."
    assert done[1]["content"][0]["text"] == "Checking now.\n"
    call = done[2]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    assert call["call_id"].startswith("call_")
    text_deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text_deltas == "Checking now.\n" and "<" not in text_deltas
    usage = events[-1]["response"]["usage"]
    assert usage["output_tokens"] == sum(len(p) for p in pieces) + 1  # every forced token, then EOS
    assert 0 < usage["output_tokens_details"]["reasoning_tokens"] < usage["output_tokens"]
    assert usage["input_tokens"] > len(forced) // 8


def test_multibyte_text_streams_without_broken_characters(base: str, mlx_cache: Path) -> None:
    forced = "Grüße aus Köln: 漢字かな 🎉🚀 naïve café ✓"
    tok = tokenizer(mlx_cache)
    multi_token_chars = [ch for ch in forced if len(tok.encode(ch, add_special_tokens=False).ids) > 1]
    assert len(multi_token_chars) >= 5  # these characters arrive byte by byte from the model

    # Paced (15 ms a token) so that the deltas leave one by one even on a loaded machine, where a fast stream is
    # coalesced into fewer, larger deltas.
    events = stream(base, {"model": "paced", "input": forced})
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) > 5
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == forced
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == forced


def test_max_output_tokens_cuts_the_answer(base: str, mlx_cache: Path) -> None:
    forced = "one two three four five six seven eight nine ten eleven twelve"
    ids = token_count(mlx_cache, forced)[0]
    with httpx.Client(base_url=base, timeout=60) as http:
        body = http.post("/v1/responses", json={"model": "forced", "input": forced, "max_output_tokens": 5}).json()
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["output_tokens"] == 5
    assert body["output"][0]["content"][0]["text"] == tokenizer(mlx_cache).decode(ids[:5])


def test_a_real_models_speed_reaches_the_status_page(base: str) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        # (the `forced` model: a request to `plain` would warm the prefix cache another test counts on)
        body = http.post("/v1/responses", json={"model": "forced", "input": "one two three four"}).json()
        assert body["usage"]["output_tokens"] >= 2
        speed = http.get("/status.json").json()["models"]["forced"]["recent_tokens_per_second"]
    assert isinstance(speed, float) and speed > 0


def test_greedy_sampling_is_deterministic(base: str) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        answers = [
            http.post("/v1/responses", json={"model": "plain", "input": "hello", "temperature": 0,
                                             "max_output_tokens": 12}).json()
            for _ in range(2)
        ]
    texts = [[part["text"] for item in a["output"] for part in item.get("content", [])] for a in answers]
    assert texts[0] == texts[1]
    first, second = (dict(a["usage"]) for a in answers)
    # The repeat is served from the prefix cache (all but the last prompt token); nothing else differs.
    assert first.pop("input_tokens_details") == {"cached_tokens": 0}
    assert second.pop("input_tokens_details") == {"cached_tokens": second["input_tokens"] - 1}
    assert first == second
    assert 1 <= answers[0]["usage"]["output_tokens"] <= 12 and answers[0]["usage"]["input_tokens"] > 3


def test_a_conversation_longer_than_the_context_is_refused(base: str) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        response = http.post("/v1/responses", json={"model": "plain", "input": "word " * 200})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and "64 tokens" in error["message"]


def test_chat_completions_report_a_context_overflow_as_an_invalid_request(base: str) -> None:
    body = {"model": "plain", "messages": [{"role": "user", "content": "word " * 200}]}
    with httpx.Client(base_url=base, timeout=60) as http:
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert response.json()["error"]["code"] == "context_length_exceeded"
        # Streamed, the overflow is found after the headers: the error chunk carries the same type and code.
        lines = http.post("/v1/chat/completions", json={**body, "stream": True}).text.split("\n\n")
    errors = [json.loads(line[6:])["error"] for line in lines if line.startswith("data: {\"error\"")]
    assert errors == [{"message": errors[0]["message"], "type": "invalid_request_error", "param": None,
                       "code": "context_length_exceeded"}]
    assert lines[-2] == "data: [DONE]"
