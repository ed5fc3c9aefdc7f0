from __future__ import annotations

import asyncio
import json

import pytest

from gateway.adapters.base import (
    Finish,
    GenerationRequest,
    ReasoningDelta,
    TemplateMessage,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
)
from gateway.adapters.scripted import ScriptedAdapter, select_step
from gateway.config import parse_config
from gateway.errors import GatewayError

MANIFEST = """
models:
  - name: s
    adapter: scripted
    script:
      chunk_chars: 3
      steps:
        - reasoning: "abcd"
          text: "hello"
          calls:
            - function: f
              arguments: {a: 1}
              call_id: call_fixed
            - custom: apply_patch
              input: "PATCH"
        - text: "second"
        - text: "last"
          error: "scripted failure"
"""


def adapter(text: str = MANIFEST) -> ScriptedAdapter:
    return ScriptedAdapter(parse_config(text).models[0])


def request(tool_outputs: int = 0, **kw) -> GenerationRequest:  # type: ignore[no-untyped-def]
    messages = [TemplateMessage(role="user", content="hi")]
    messages += [TemplateMessage(role="tool", content="out", tool_call_id=f"c{i}") for i in range(tool_outputs)]
    return GenerationRequest(request_id="r", messages=messages, **kw)


async def collect(model: ScriptedAdapter, req: GenerationRequest) -> list:  # type: ignore[type-arg]
    return [d async for d in model.generate(req)]


async def test_first_step_streams_reasoning_text_and_calls_in_chunks() -> None:
    deltas = await collect(adapter(), request())
    assert deltas[:5] == [
        ReasoningDelta(text="abc"), ReasoningDelta(text="d"), TextDelta(text="hel"), TextDelta(text="lo"),
        ToolCallStart(name="f", call_id="call_fixed"),
    ]
    second = next(i for i, d in enumerate(deltas) if isinstance(d, ToolCallStart) and d.custom)
    assert "".join(d.text for d in deltas[5:second]) == '{"a":1}'
    assert deltas[second] == ToolCallStart(name="apply_patch", custom=True)
    assert "".join(d.text for d in deltas[second + 1 : -1]) == "PATCH"
    finish = deltas[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    assert finish.usage.output_tokens == sum(isinstance(d, (TextDelta, ReasoningDelta, ToolCallArguments)) for d in deltas)
    assert finish.usage.reasoning_tokens == 2


@pytest.mark.parametrize(("outputs", "expected"), [(0, None), (1, "second"), (2, "last"), (7, "last")])
def test_step_is_chosen_by_tool_outputs(outputs: int, expected: str | None) -> None:
    model = adapter()
    step = select_step(model.spec.script, request(outputs))
    assert step.text == (expected or "hello")


async def test_max_tokens_truncates_with_length() -> None:
    deltas = await collect(adapter(), request(1, max_tokens=1))
    assert deltas == [TextDelta(text="sec"), Finish(reason="length", usage=deltas[-1].usage)]
    assert deltas[-1].usage.output_tokens == 1


async def test_error_step_raises_after_its_output() -> None:
    model = adapter()
    seen = []
    with pytest.raises(GatewayError, match="scripted failure"):
        async for delta in model.generate(request(2)):
            seen.append(delta)
    assert "".join(d.text for d in seen) == "last"


async def test_echo_mode_replies_with_the_request_it_received() -> None:
    model = adapter("models: [{name: e, adapter: scripted, script: {mode: echo, chunk_chars: 10000}}]")
    deltas = await collect(model, request(1, temperature=0.3))
    echoed = json.loads("".join(d.text for d in deltas if isinstance(d, TextDelta)))
    assert echoed["messages"][0] == {"role": "user", "content": "hi"}
    assert echoed["messages"][1]["role"] == "tool"
    assert echoed["temperature"] == 0.3


async def test_closing_the_stream_cancels_generation() -> None:
    model = adapter("models: [{name: s, adapter: scripted, script: {delay_ms: 50, chunk_chars: 1, steps: [{text: abcdefghij}]}}]")
    stream = model.generate(request())
    assert await stream.__anext__() == TextDelta(text="a")
    assert model.active == 1
    await stream.aclose()
    assert model.active == 0


async def test_first_delay_holds_the_first_delta() -> None:
    model = adapter("models: [{name: s, adapter: scripted, script: {first_delay_ms: 200, steps: [{text: x}]}}]")
    loop = asyncio.get_running_loop()
    started = loop.time()
    deltas = await collect(model, request())
    assert loop.time() - started >= 0.19
    assert deltas[0] == TextDelta(text="x")
