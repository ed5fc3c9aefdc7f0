"""Test hooks: make a random-weight model say exactly a given text (`testing: {force: last_user}`),
or never repeat a token (`testing: {distinct: true}`).

A logits processor leaves only the next token of a fixed script possible, then EOS.
Everything else (model forward, sampler, detokenizer, parsers) runs for real, which is
how tests drive reasoning, tool calls and multi-byte text through real generation.
`\\x1f` in the text splits tokenization, so a marker can be forced as several tokens.
Only built when a manifest sets `testing`; production requests never reach this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.adapters.base import GenerationRequest

__all__ = ["SPLIT", "distinct_processor", "forced_tokens", "forcing_processor"]

SPLIT = "\x1f"


def forced_tokens(tokenizer: Any, request: GenerationRequest) -> list[int]:
    text = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    ids: list[int] = []
    for piece in text.split(SPLIT):
        ids += tokenizer.encode(piece, add_special_tokens=False)
    return ids


def forcing_processor(script: list[int], prompt_length: int, eos: int) -> Callable[[Any, Any], Any]:
    import mlx.core as mx

    def force(tokens: Any, logits: Any) -> Any:
        step = tokens.size - prompt_length  # mlx-lm passes prompt + generated tokens
        target = script[step] if 0 <= step < len(script) else eos
        allowed = mx.arange(logits.shape[-1]) == target
        return mx.where(allowed, mx.zeros_like(logits), mx.full(logits.shape, -1e9, dtype=logits.dtype))

    return force


def distinct_processor(prompt_length: int) -> Callable[[Any, Any], Any]:
    """Bar every token generated so far. A random model's greedy output then keeps changing, so a
    wrong KV cache or a mixed-up batch row shows up in the text instead of hiding in a repeated token."""
    import mlx.core as mx

    def distinct(tokens: Any, logits: Any) -> Any:
        generated = tokens[prompt_length:]
        if generated.size == 0:
            return logits
        seen = (mx.arange(logits.shape[-1])[:, None] == generated[None, :]).any(axis=1)
        return mx.where(seen, mx.array(-1e9, dtype=logits.dtype), logits)

    return distinct
