"""Inside the worker: load a model directory with mlx-lm and render prompts with its chat template.

Where the directory comes from (dummy, hf:, local, allowed paths) is `source.py`'s business; `resolve_source`
and `LoadError` are re-exported here for callers that load (`gateway pull`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gateway.adapters.base import GenerationRequest
from gateway.adapters.mlx import mlxlm
from gateway.adapters.mlx.detokenize import ByteDetokenizer
from gateway.adapters.mlx.parse import Markers
from gateway.adapters.mlx.render import (
    RenderRules,
    normalize_for_template,
    probe_rules,
    template_kwargs,
    tool_dicts,
)
from gateway.adapters.mlx.source import LoadError, resolve_source, unchanged_after_load
from gateway.adapters.mlx.wire import MemoryUse, ModelInfo
from gateway.config import MlxModel

__all__ = ["LoadError", "LoadedModel", "RenderError", "resolve_source"]


class RenderError(Exception):
    """The chat template rejected the conversation."""


class LoadedModel:
    """The model, its tokenizer and what was learned about its template; engine thread only.

    `path` is a resolved directory (`source.resolve_source`); it is loaded as it is, never looked up again."""

    def __init__(self, spec: MlxModel, path: Path) -> None:
        started = time.perf_counter()
        try:
            self.model, self.tokenizer = mlxlm.load(path)
        except Exception as exc:
            raise LoadError(f"mlx-lm could not load '{path}': {type(exc).__name__}: {exc}") from None
        unchanged_after_load(path)
        if not self.tokenizer.has_chat_template:
            raise LoadError(f"'{path}' has no chat template; the gateway needs one to render conversations")
        self.spec = spec
        self.path = path
        self.markers, self.parser_name = _markers(self.tokenizer, spec.tool_parser)
        self.rules: RenderRules = probe_rules(self._probe_render, spec.system_messages)
        self.eos = frozenset(self.tokenizer.eos_token_ids)
        self._token_bytes = mlxlm.token_bytes(self.tokenizer)  # built once: every request shares the table
        self.batchable, self.trimmable = _cache_traits(self.model)
        self.load_seconds = time.perf_counter() - started
        self.weights_bytes = mlxlm.weights_bytes(self.model)
        self.memory_bytes = self.memory_use(0).total

    def memory_use(self, prefix_cache_bytes: int) -> MemoryUse:
        """What the model holds now (engine thread: MLX's counters are the process's)."""
        import mlx.core as mx

        active, held = int(mx.get_active_memory()), int(mx.get_cache_memory())
        kv = max(0, active - self.weights_bytes - prefix_cache_bytes)
        return MemoryUse(total=active + held, weights=self.weights_bytes, kv=kv, prefix_cache=prefix_cache_bytes,
                         mlx_cache=held)

    def detokenizer(self) -> mlxlm.Detokenizer:
        """A fresh streaming detokenizer for one request (see detokenize.py for why not mlx-lm's, where it can)."""
        if self._token_bytes is None:
            return self.tokenizer.detokenizer
        table, trim_space = self._token_bytes
        return ByteDetokenizer(table, trim_space)

    def info(self) -> ModelInfo:
        return ModelInfo(
            path=str(self.path),
            tool_parser=self.parser_name if self.markers.call_start else None,
            thinking=bool(self.markers.think_start),
            memory_bytes=self.memory_bytes,
            load_seconds=round(self.load_seconds, 3),
            late_system=self.rules.late_system,
            system_role=self.rules.system_role,
            merge_users=self.rules.merge_users,
        )

    def _probe_render(self, messages: list[dict[str, Any]]) -> str:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
        return str(text)

    def render(self, request: GenerationRequest) -> tuple[str, list[int]]:
        messages = normalize_for_template(request.messages, self.rules)
        tools = tool_dicts(request.tools) or None
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=False, **template_kwargs(request)
            )
        except Exception as exc:
            raise RenderError(f"the model's chat template rejected the conversation: {exc}") from None
        return text, list(self.tokenizer.encode(text, add_special_tokens=False))

    def initial_state(self, prompt: list[int]) -> str:
        """A prompt that ends inside an open think block makes the answer start as reasoning."""
        if not self.markers.think_start:
            return "normal"
        return "reasoning" if mlxlm.prompt_ends_in_think(self.tokenizer, prompt) else "normal"


def _cache_traits(model: Any) -> tuple[bool, bool]:
    """(batchable, trimmable): batching needs caches that merge; leaving a batch for the solo
    decoder cuts one token off the cache, which only plain KV caches always allow."""
    layers = mlxlm.make_prompt_cache(model)
    return all(hasattr(layer, "merge") for layer in layers), all(mlxlm.is_kv_cache(layer) for layer in layers)


def _markers(tokenizer: mlxlm.Tokenizer, override: str | None) -> tuple[Markers, str | None]:
    think = mlxlm.think_markers(tokenizer)
    parser = mlxlm.named_tool_parser(override) if override is not None else mlxlm.tokenizer_tool_parser(tokenizer)
    markers = Markers(
        think_start=think[0] if think else None,
        think_end=think[1] if think else None,
        call_start=parser.call_start if parser else None,
        call_end=parser.call_end if parser else None,
        parse_call=parser.parse if parser else None,
    )
    return markers, parser.name if parser else None
