"""Long prompts are computed in chunks, one per engine step: other work (other streams, cancels) gets a turn
between them, and a cancel during the prefill stops the request before any token."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.adapters.base import Finish, GenerationRequest, TemplateMessage, TextDelta
from gateway.adapters.mlx import MlxAdapter, WorkerPool
from gateway.adapters.mlx.dummy import dummy_dir
from gateway.adapters.mlx.wire import Deltas, Done, WireMessage
from gateway.config import DummyArch, parse_config

pytestmark = pytest.mark.mlx

LONG = " ".join(f"w{i % 97} line {i}" for i in range(1200))  # about 9,500 tokens for the dummy tokenizer
MANIFEST = "models: [{name: tiny, adapter: mlx, source: dummy, prefix_cache_mb: 0%s}]\n"


def request(text: str, request_id: str) -> GenerationRequest:
    return GenerationRequest(request_id=request_id, messages=[TemplateMessage(role="user", content=text)],
                             temperature=0, max_tokens=4)


def test_a_long_prompt_is_computed_over_several_steps(mlx_cache: Path) -> None:
    from gateway.adapters.mlx.model import LoadedModel  # the engine's side, driven step by step in this process
    from gateway.adapters.mlx.scheduler import Scheduler
    from gateway.adapters.mlx.slot import Job

    spec = parse_config(MANIFEST % "").models[0]
    sent: list[WireMessage] = []
    scheduler = Scheduler(LoadedModel(spec, dummy_dir(DummyArch(), mlx_cache)), spec, sent.append)  # type: ignore[arg-type]
    slot = scheduler.add(Job(request(LONG, "long")))
    prefilled = []
    while not slot.decoding:
        assert not any(isinstance(message, Deltas) for message in sent)  # nothing to say before the first token
        scheduler.step()
        prefilled.append(slot.prefilled)
    while not any(isinstance(message, Done) for message in sent):
        scheduler.step()
    finish = [d for m in sent if isinstance(m, Deltas) for d in m.deltas if isinstance(d, Finish)]
    assert len(finish) == 1 and finish[0].usage.input_tokens == len(slot.prompt) > 5000
    chunks = [b - a for a, b in zip([0, *prefilled], prefilled, strict=False) if b > a]
    assert len(chunks) >= 3 and max(chunks) <= 2048 * 1.5  # bounded chunks (a short tail joins the last one)
    assert prefilled[-1] == len(slot.prompt) - 1  # the last prompt token is fed with the first decode step


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def adapter(mlx_cache: Path) -> AsyncIterator[MlxAdapter]:
    # Every step takes at least 0.3 s, so a prompt of several chunks is still prefilling when the cancel arrives.
    config = parse_config(f"mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}\n"
                          + MANIFEST % ", testing: {step_delay_ms: 300}")
    pool = WorkerPool(config.mlx)
    model = MlxAdapter(config.models[0], pool)  # type: ignore[arg-type]
    try:
        yield model
    finally:
        await model.aclose()
        await pool.aclose()


async def collect(adapter: MlxAdapter, req: GenerationRequest) -> str:
    return "".join([delta.text async for delta in adapter.generate(req) if isinstance(delta, TextDelta)])


@pytest.mark.asyncio(loop_scope="module")
async def test_a_cancel_during_prefill_stops_before_any_token(adapter: MlxAdapter) -> None:
    await collect(adapter, request("warm up", "warm"))  # loaded before the clock starts
    stream = adapter.generate(request(LONG + " again", "long"))
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.5)  # the worker is a chunk or two into a prompt of several
    assert not first.done()
    first.cancel()  # as when the client leaves: the stream's cleanup cancels the request in the worker
    with contextlib.suppress(asyncio.CancelledError):
        await first
    await stream.aclose()
    async with asyncio.timeout(10):
        while "last_cancel" not in (state := adapter.describe()):
            await asyncio.sleep(0.02)
    assert state["last_cancel"]["generated"] == 0 and state["active"] == 0
    assert await collect(adapter, request("short one", "short"))  # the worker carries on
