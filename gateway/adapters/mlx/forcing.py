"""Test hooks: make a random-weight model say exactly a given text (`testing: {force: last_user}`),
or never repeat a token (`testing: {distinct: true}`).

A logits processor leaves only the next token of a fixed script possible, then EOS.
Everything else (model forward, sampler, detokenizer, parsers) runs for real, which is
how tests drive reasoning, tool calls and multi-byte text through real generation.
`\\x1f` in the text splits tokenization, so a marker can be forced as several tokens; a piece `\\x1dXX`
forces the single byte token of byte 0xXX (byte-level BPE tokenizers), valid UTF-8 or not. A text ending in
`\\x1e` is a prefix: after it the model goes on by itself (with whatever constraint the request carries).
Only built when a manifest sets `testing`; production requests never reach this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.adapters.base import GenerationRequest
from gateway.adapters.mlx import mlxlm

__all__ = ["BYTE", "FREE", "SPLIT", "distinct_processor", "forced_tokens", "forcing_processor"]

SPLIT = "\x1f"
BYTE = "\x1d"  # a piece "\x1dFF" (between SPLITs) forces the byte-level BPE token of byte 0xFF
FREE = "\x1e"  # at the end of the text: force it as a prefix, then leave the model free


def forced_tokens(tokenizer: Any, request: GenerationRequest) -> tuple[list[int], bool]:
    """(the tokens to force, whether the model is free after them rather than made to stop)."""
    text = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    free = text.endswith(FREE)
    text = text.removesuffix(FREE)
    ids: list[int] = []
    for piece in text.split(SPLIT):
        if piece.startswith(BYTE) and len(piece) == 3:  # one byte-level token, e.g. an invalid UTF-8 byte
            ids.append(tokenizer.convert_tokens_to_ids(mlxlm.byte_level_char(int(piece[1:], 16))))
        else:
            ids += tokenizer.encode(piece, add_special_tokens=False)
    return ids, free


def forcing_processor(script: list[int], prompt_length: int, eos: int, free: bool = False) -> Callable[[Any, Any], Any]:
    import mlx.core as mx

    def force(tokens: Any, logits: Any) -> Any:
        step = tokens.size - prompt_length  # mlx-lm passes prompt + generated tokens
        if free and step >= len(script):
            return logits
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
