"""A deterministic model: plays scripted steps, or echoes the conversation it received.

Which step plays is decided by how many tool outputs the conversation holds, so a
client's tool loop walks through the script: step 0 calls a tool, step 1 sees one
tool output and answers, and so on (the last step repeats). One "token" here is one
streamed chunk of `chunk_chars` characters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec

from gateway.adapters.base import (
    Capabilities,
    Delta,
    Finish,
    FinishReason,
    GenerationRequest,
    ReasoningDelta,
    Tally,
    TextDelta,
    TokenUsage,
    ToolCallArguments,
    ToolCallStart,
)
from gateway.config import Script, ScriptCall, ScriptedModel, ScriptStep
from gateway.errors import GatewayError

__all__ = ["ScriptedAdapter", "select_step"]

_JSON = msgspec.json.Encoder()


class ScriptedModelError(GatewayError):
    code = "model_error"


def select_step(script: Script, request: GenerationRequest) -> ScriptStep:
    outputs = sum(1 for m in request.messages if m.role == "tool")
    return script.steps[min(outputs, len(script.steps) - 1)]


class ScriptedAdapter:
    def __init__(self, spec: ScriptedModel) -> None:
        self.spec = spec
        self.capabilities = Capabilities(tool_calling=True, vision=True, reasoning=True, decodes=False)
        self.active = 0
        self.served = 0

    async def start(self) -> None:
        return None

    async def capabilities_ready(self) -> Capabilities:
        return self.capabilities

    async def count_input_tokens(self, request: GenerationRequest) -> int:
        return estimate_input_tokens(request)

    async def aclose(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"adapter": "scripted", "state": "ready", "active": self.active, "served": self.served}

    async def open(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        return self.generate(request)  # nothing can fail before the first delta that is not also a model error

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        script = self.spec.script
        self.active += 1
        try:
            if script.first_delay_ms:
                await asyncio.sleep(script.first_delay_ms / 1000)
            budget = request.max_tokens if request.max_tokens is not None else 1 << 30
            produced = reasoning = 0
            step = _echo_step(request) if script.mode == "echo" else select_step(script, request)
            for delta in _deltas(step, script.chunk_chars):
                if isinstance(delta, (TextDelta, ReasoningDelta, ToolCallArguments)):
                    if produced >= budget:
                        yield Finish(reason="length", usage=_usage(request, produced, reasoning))
                        return
                    produced += 1
                    reasoning += isinstance(delta, ReasoningDelta)
                    if script.delay_ms:
                        await asyncio.sleep(script.delay_ms / 1000)
                yield delta
                if script.delay_ms:  # a slow script can be stopped midway: say what it has cost so far
                    yield Tally(usage=_usage(request, produced, reasoning))
            if step.error:
                raise ScriptedModelError(step.error)
            reason: FinishReason = "tool_calls" if step.calls else "stop"
            yield Finish(reason=reason, usage=_usage(request, produced, reasoning))
        finally:
            self.active -= 1
            self.served += 1


def _echo_step(request: GenerationRequest) -> ScriptStep:
    echoed = msgspec.structs.replace(request, request_id="")
    return ScriptStep(text=_JSON.encode(echoed).decode())


def _deltas(step: ScriptStep, size: int) -> Iterator[Delta]:
    for piece in _chunks(step.reasoning or "", size):
        yield ReasoningDelta(text=piece)
    for piece in _chunks(step.text or "", size):
        yield TextDelta(text=piece)
    for call in step.calls:
        yield from _call_deltas(call, size)


def _call_deltas(call: ScriptCall, size: int) -> Iterator[Delta]:
    if call.custom is not None:
        yield ToolCallStart(name=call.custom, call_id=call.call_id, custom=True)
        body = call.input or ""
    else:
        assert call.function is not None
        yield ToolCallStart(name=call.function, call_id=call.call_id)
        args = call.arguments if call.arguments is not None else {}
        body = args if isinstance(args, str) else _JSON.encode(args).decode()
    for piece in _chunks(body, size):
        yield ToolCallArguments(text=piece)


def _chunks(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def estimate_input_tokens(request: GenerationRequest) -> int:
    """A scripted model has no tokenizer: about four characters a token, as documented."""
    prompt_chars = sum(len(m.content) + len(m.reasoning or "") for m in request.messages)
    return max(1, prompt_chars // 4)


def _usage(request: GenerationRequest, produced: int, reasoning: int) -> TokenUsage:
    return TokenUsage(input_tokens=estimate_input_tokens(request), output_tokens=produced, reasoning_tokens=reasoning)
