"""One dummy model in a real worker, driven in-process: rendering, stop sequences, thinking."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from gateway.adapters.base import Finish, GenerationRequest, TemplateMessage, TextDelta
from gateway.adapters.mlx import MlxAdapter, WorkerPool
from gateway.config import GatewayConfig, parse_config
from gateway.normalize import decode_request
from gateway.service import prepare_response

pytestmark = [pytest.mark.mlx, pytest.mark.asyncio(loop_scope="module")]

BASE_PROMPT = "You are Codex, a coding agent. " * 40
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "exec_command", "description": "Runs a command.", "strict": False,
     "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}},
                    "required": ["cmd"]}},
    {"type": "namespace", "name": "multi_agent_v1", "tools": [
        {"type": "function", "name": "spawn_agent", "description": "Start a helper.", "strict": False,
         "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}}]},
    {"type": "web_search", "external_web_access": False},
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tiny(mlx_cache: Path) -> AsyncIterator[tuple[GatewayConfig, MlxAdapter]]:
    config = parse_config(
        f"mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}\n"
        "models: [{name: tiny, adapter: mlx, source: dummy, testing: {force: last_user}}]\n"
    )
    pool = WorkerPool(config.mlx)
    adapter = MlxAdapter(config.models[0], pool)  # type: ignore[arg-type]
    try:
        yield config, adapter
    finally:
        await adapter.aclose()
        await pool.aclose()


def message(role: str, text: str, item_id: str) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "id": item_id, "role": role, "content": [{"type": kind, "text": text}]}


def codex_bodies(turns: int) -> list[dict[str, Any]]:
    """Request bodies as Codex sends them turn after turn: its own items echoed back, with ids."""
    items = [
        message("developer", BASE_PROMPT, "msg_dev1"),
        message("developer", "<permissions>sandbox: workspace-write</permissions>", "msg_dev2"),
        message("user", "# AGENTS.md\nRun the tests.\n<environment_context>/work</environment_context>", "msg_u1"),
        message("user", "Fix the failing test, please. Ünïcödé ok 漢字.", "msg_u2"),
    ]
    bodies = []
    for turn in range(turns):
        bodies.append({
            "model": "tiny", "stream": True, "input": copy.deepcopy(items), "tools": TOOLS, "tool_choice": "auto",
            "parallel_tool_calls": True, "reasoning": {"summary": "auto"}, "store": False,
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": "thread-1",
            "client_metadata": {"thread_id": "thread-1", "turn": turn},
        })
        items += [
            {"type": "reasoning", "id": f"rs_{turn}", "content": None, "encrypted_content": "gAAAA-opaque",
             "summary": [{"type": "summary_text", "text": f"Step {turn}: look."}]},
            {"type": "function_call", "id": f"fc_{turn}", "status": "completed", "name": "exec_command",
             "arguments": json.dumps({"cmd": f"ls src/part{turn}"}), "call_id": f"call_{turn}"},
            {"type": "function_call_output", "id": f"fco_{turn}", "call_id": f"call_{turn}",
             "output": f"Chunk ID: c{turn}\nProcess exited with code 0\nOutput:\nfile{turn}.py\n"},
        ]
        if turn == 4:
            items += [message("assistant", "Half way there.", "msg_a4"), message("user", "Keep going.", "msg_u5")]
    return bodies


async def render(config: GatewayConfig, adapter: MlxAdapter, body: dict[str, Any]) -> tuple[str, list[int]]:
    request = decode_request(json.dumps(body).encode())
    prepared = prepare_response(config, {"tiny": adapter}, request, {"originator": "codex_exec"})
    rendered = await adapter.render(prepared.generation)
    return rendered.text, rendered.tokens


async def test_codex_history_renders_byte_stable_over_ten_turns(tiny: tuple[GatewayConfig, MlxAdapter]) -> None:
    config, adapter = tiny
    previous: tuple[str, list[int]] | None = None
    for turn, body in enumerate(codex_bodies(10)):
        text, tokens = await render(config, adapter, body)
        assert (text, tokens) == await render(config, adapter, body), f"turn {turn} renders differently twice"
        assert text.startswith("<|im_start|>system\n")
        assert text.count("<|im_start|>system") == 1  # developer messages merged into one leading system turn
        assert BASE_PROMPT in text and "sandbox: workspace-write" in text and '"name": "exec_command"' in text
        assert '"name": "multi_agent_v1__spawn_agent"' in text  # the namespace child, flattened by the policy
        if previous is not None:
            assert text.startswith(previous[0]), f"turn {turn} rewrote the history of turn {turn - 1}"
            assert tokens[: len(previous[1])] == previous[1], f"turn {turn} tokenizes the shared history differently"
            assert len(tokens) > len(previous[1])
        previous = (text, tokens)
    assert previous is not None
    assert previous[0].count('<tool_call>\n{"name": "exec_command"') == 9
    assert previous[0].count("<tool_response>") == 9
    assert previous[0].count("<think>\nStep ") == 9 and "Half way there." in previous[0]


def request(text: str, **fields: Any) -> GenerationRequest:
    messages = [TemplateMessage(role="user", content=text)]
    return GenerationRequest(request_id=fields.pop("request_id", "r1"), messages=messages, **fields)


async def collect(adapter: MlxAdapter, req: GenerationRequest) -> tuple[str, Finish]:
    text, finish = "", None
    async for delta in adapter.generate(req):
        if isinstance(delta, TextDelta):
            text += delta.text
        if isinstance(delta, Finish):
            finish = delta
    assert finish is not None
    return text, finish


async def test_stop_sequences_end_the_answer(tiny: tuple[GatewayConfig, MlxAdapter]) -> None:
    _, adapter = tiny
    full, finish = await collect(adapter, request("alpha beta STOP gamma delta"))
    assert full == "alpha beta STOP gamma delta" and finish.reason == "stop"
    text, finish = await collect(adapter, request("alpha beta STOP gamma delta", request_id="r2", stop=["ST", "OP g"]))
    assert text == "alpha beta " and finish.reason == "stop"
    assert finish.usage.output_tokens < full_tokens(adapter, "alpha beta STOP gamma delta")


def full_tokens(adapter: MlxAdapter, text: str) -> int:
    from tokenizers import Tokenizer

    assert adapter.describe()["state"] == "ready"
    path = Path(adapter._worker.info.path)  # type: ignore[union-attr]
    return len(Tokenizer.from_file(str(path / "tokenizer.json")).encode(text, add_special_tokens=False).ids) + 1


async def test_reasoning_effort_switches_thinking_in_the_prompt(tiny: tuple[GatewayConfig, MlxAdapter]) -> None:
    _, adapter = tiny
    on = await adapter.render(request("hi", reasoning_effort="high"))
    off = await adapter.render(request("hi", reasoning_effort="none"))
    manifest_off = msgspec.structs.replace(request("hi"), chat_template_kwargs={"enable_thinking": False})
    default = await adapter.render(manifest_off)
    assert on.text.endswith("<|im_start|>assistant\n")
    assert off.text == on.text + "<think>\n\n</think>\n\n" == default.text


async def test_a_template_rejection_is_a_clear_error(tiny: tuple[GatewayConfig, MlxAdapter]) -> None:
    _, adapter = tiny
    bad = GenerationRequest(request_id="r3", messages=[TemplateMessage(role="user", content="x")],
                            chat_template_kwargs={"add_generation_prompt": 3})
    with pytest.raises(Exception) as info:
        await collect(adapter, bad)
    assert "chat template" in str(info.value) and getattr(info.value, "status", None) == 400
    text, finish = await collect(adapter, request("still fine", request_id="r4"))
    assert text == "still fine" and finish.reason == "stop"


async def _cancelled(adapter: MlxAdapter, request_id: str) -> bool:
    worker = adapter._worker  # white box: the worker's own record of what it cancelled
    assert worker is not None
    for _ in range(200):  # 10 s at most
        if any(done.request_id == request_id for done in worker.cancels):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_request_sent_at_open_and_never_read_is_cancelled(tiny: tuple[GatewayConfig, MlxAdapter]) -> None:
    """A ready worker gets the request as the stream is opened; closed or dropped before its first delta, the
    request is cancelled in the worker and the model is idle again (nothing left counted in flight)."""
    _, adapter = tiny
    await collect(adapter, request("warm up", request_id="warm"))  # loaded and ready: open() sends at once
    long = "and so the stream goes on " * 120  # far longer than any wait below: it is still running when cancelled
    opened = await adapter.open(request(long, request_id="closed", max_tokens=400))
    assert adapter.busy
    await opened.aclose()  # type: ignore[attr-defined]
    assert not adapter.busy and await _cancelled(adapter, "closed")
    dropped = await adapter.open(request(long, request_id="dropped", max_tokens=400))
    del dropped  # its last reference: finalized at once, its give-back scheduled on the loop
    await asyncio.sleep(0)
    assert not adapter.busy and await _cancelled(adapter, "dropped")
    text, finish = await collect(adapter, request("still serving", request_id="after"))
    assert text == "still serving" and finish.reason == "stop"
