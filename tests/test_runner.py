from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gateway.adapters.base import Capabilities, Delta, Finish, GenerationRequest, TextDelta
from gateway.assemble import Assembler
from gateway.errors import GatewayError, ModelUnavailable
from gateway.policies.calls import CallMapper
from gateway.policies.tools import ToolPlan
from gateway.protocol import Response
from gateway.runner import RunStats, run_generation


class FakeAdapter:
    """Plays a list of (delay seconds, delta or exception); records whether it was cancelled."""

    capabilities = Capabilities()

    def __init__(self, script: list[tuple[float, Any]]) -> None:
        self.script = script
        self.cancelled = asyncio.Event()
        self.finished = False

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        try:
            for delay, item in self.script:
                if delay:
                    await asyncio.sleep(delay)
                if isinstance(item, BaseException):
                    raise item
                yield item
            self.finished = True
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def open(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        return self.generate(request)

    async def start(self) -> None: ...
    async def capabilities_ready(self) -> Capabilities:
        return self.capabilities

    async def count_input_tokens(self, request: Any) -> int:
        return 0
    async def aclose(self) -> None: ...
    def describe(self) -> dict[str, Any]:
        return {}


def start_run(adapter: FakeAdapter, keepalive: float = 5.0):  # type: ignore[no-untyped-def]
    assembler = Assembler(Response(id="resp_1", created_at=0, status="in_progress", model="m"))
    stats = RunStats()
    batches = run_generation(
        adapter, GenerationRequest(request_id="r", messages=[]), assembler, CallMapper(ToolPlan()),
        keepalive=keepalive, stats=stats,
    )
    return batches, assembler, stats


async def all_types(batches: AsyncIterator[list[Any]]) -> list[str]:
    return [e.__struct_config__.tag async for batch in batches for e in batch]


async def test_keepalive_events_while_the_model_is_silent() -> None:
    adapter = FakeAdapter([(0.35, TextDelta(text="x")), (0.0, Finish())])
    batches, _, stats = start_run(adapter, keepalive=0.1)
    seen = await all_types(batches)
    before_text = seen[: seen.index("response.output_item.added")]
    assert before_text[:2] == ["response.created", "response.in_progress"]
    assert before_text.count("response.in_progress") >= 3  # 0.35 s of silence at 0.1 s intervals
    assert seen[-1] == "response.completed" and stats.status == "completed"
    ttft = stats.ttft_ms()
    assert ttft is not None and 300 <= ttft < 5000  # the first text came after 0.35 s of silence


async def test_leaving_early_cancels_the_adapter_promptly() -> None:
    adapter = FakeAdapter([(0.0, TextDelta(text="a"))] + [(0.05, TextDelta(text="b"))] * 100 + [(0, Finish())])
    batches, assembler, stats = start_run(adapter)
    async for batch in batches:
        if any(e.__struct_config__.tag == "response.output_text.delta" for e in batch):
            break
    await batches.aclose()
    await asyncio.wait_for(adapter.cancelled.wait(), timeout=1)
    assert not adapter.finished
    assert assembler.response.status == "cancelled" and stats.status == "cancelled"


async def test_adapter_error_becomes_response_failed_with_its_code() -> None:
    adapter = FakeAdapter([(0, TextDelta(text="a")), (0, ModelUnavailable("worker died"))])
    batches, assembler, stats = start_run(adapter)
    seen = await all_types(batches)
    assert seen[-1] == "response.failed"
    assert assembler.response.error.code == "model_unavailable"
    assert isinstance(stats.error, ModelUnavailable)


async def test_unexpected_exception_is_contained() -> None:
    adapter = FakeAdapter([(0, RuntimeError("segfault-ish"))])
    batches, assembler, _ = start_run(adapter)
    seen = await all_types(batches)
    assert seen == ["response.created", "response.in_progress", "response.failed"]
    assert assembler.response.error.code == "server_error"
    assert "RuntimeError" in assembler.response.error.message


async def test_stream_without_finish_fails() -> None:
    adapter = FakeAdapter([(0, TextDelta(text="a"))])
    batches, assembler, _ = start_run(adapter)
    assert (await all_types(batches))[-1] == "response.failed"
    assert "without finishing" in assembler.response.error.message


async def test_ready_deltas_leave_in_one_batch() -> None:
    # After 0.05 s the fake yields 21 deltas without awaiting in between, so the pump queues them all
    # before the runner wakes: it must drain them into one batch. The Finish comes 0.05 s later: its own batch.
    adapter = FakeAdapter([(0.05, TextDelta(text="a"))] + [(0, TextDelta(text="b"))] * 20 + [(0.05, Finish())])
    batches, _, _ = start_run(adapter)
    seen = [batch async for batch in batches]
    kinds = [[e.__struct_config__.tag for e in batch] for batch in seen]
    assert kinds == [
        ["response.created", "response.in_progress"],
        ["response.output_item.added", "response.content_part.added"] + ["response.output_text.delta"] * 21,
        ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"],
    ]
    assert "".join(e.delta for e in seen[1][2:]) == "a" + "b" * 20


async def test_error_is_a_gateway_error_subclass_for_the_non_stream_path() -> None:
    adapter = FakeAdapter([(0, GatewayError("x", code="context_length_exceeded"))])
    batches, _, stats = start_run(adapter)
    await all_types(batches)
    assert stats.error is not None and stats.error.code == "context_length_exceeded"


async def test_a_call_past_max_tool_calls_stops_the_model() -> None:
    from gateway.adapters.base import Tally, TokenUsage, ToolCallArguments, ToolCallStart

    calls = [item for n in range(3) for item in (
        (0.0, ToolCallStart(name="f", call_id=f"c{n}")), (0.0, ToolCallArguments(text="{}")),
        (0.0, Tally(usage=TokenUsage(input_tokens=5, output_tokens=4 * (n + 1)))))]
    adapter = FakeAdapter([*calls, *[(0.05, TextDelta(text="more"))] * 100, (0.0, Finish())])
    assembler = Assembler(Response(id="resp_1", created_at=0, status="in_progress", model="m"))
    stats = RunStats()
    batches = run_generation(adapter, GenerationRequest(request_id="r", messages=[]), assembler,
                             CallMapper(ToolPlan(), max_tool_calls=2), keepalive=5.0, stats=stats)
    seen = await asyncio.wait_for(all_types(batches), timeout=2)  # it does not wait for the rest of the script
    await asyncio.wait_for(adapter.cancelled.wait(), timeout=1)
    assert seen[-1] == "response.completed" and not adapter.finished
    assert [item.call_id for item in assembler.output] == ["c0", "c1"]  # type: ignore[union-attr]
    assert assembler.response.usage is not None and assembler.response.usage.output_tokens == 8
