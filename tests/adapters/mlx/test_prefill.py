"""Long prompts are computed in chunks: progress arrives between them and a cancel lands mid-prefill."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.adapters.base import ChatMessage, Finish, GenerationRequest, Progress, TextDelta
from gateway.adapters.mlx import MlxAdapter, WorkerPool
from gateway.config import parse_config

pytestmark = [pytest.mark.mlx, pytest.mark.asyncio(loop_scope="module")]

LONG = " ".join(f"w{i % 97} line {i}" for i in range(1200))  # several thousand tokens for the dummy tokenizer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def adapter(mlx_cache: Path) -> AsyncIterator[MlxAdapter]:
    config = parse_config(f"mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}\n"
                          "models: [{name: tiny, adapter: mlx, source: dummy, prefix_cache_mb: 0}]\n")
    pool = WorkerPool(config.mlx)
    model = MlxAdapter(config.models[0], pool)  # type: ignore[arg-type]
    try:
        yield model
    finally:
        await model.aclose()
        await pool.aclose()


def request(text: str, request_id: str) -> GenerationRequest:
    return GenerationRequest(request_id=request_id, messages=[ChatMessage(role="user", content=text)],
                             temperature=0, max_tokens=4)


async def test_a_long_prompt_reports_progress_between_chunks(adapter: MlxAdapter) -> None:
    progress: list[Progress] = []
    finish = None
    async for delta in adapter.generate(request(LONG, "long-1")):
        if isinstance(delta, Progress):
            progress.append(delta)
        elif isinstance(delta, Finish):
            finish = delta
    assert finish is not None and finish.usage.input_tokens > 5000
    assert len(progress) >= 2  # the first chunk is at most 768 tokens, later ones at most 2048
    assert all(p.total == finish.usage.input_tokens for p in progress)
    done = [p.done for p in progress]
    assert done == sorted(done) and len(set(done)) == len(done) and done[-1] < finish.usage.input_tokens


async def test_a_cancel_during_prefill_stops_before_any_token(adapter: MlxAdapter) -> None:
    stream = adapter.generate(request(LONG + " again", "long-2"))
    async with contextlib.aclosing(stream):
        async for delta in stream:
            assert not isinstance(delta, TextDelta)
            if isinstance(delta, Progress):
                break  # closing the stream cancels the request in the worker
    async with asyncio.timeout(10):  # the worker's answer to the cancel arrives on this loop
        while "last_cancel" not in (state := adapter.describe()):
            await asyncio.sleep(0.02)
    assert state["last_cancel"]["generated"] == 0 and state["active"] == 0
    text = ""
    async for delta in adapter.generate(request("short one", "short")):
        text += delta.text if isinstance(delta, TextDelta) else ""
    assert text  # the worker carries on
