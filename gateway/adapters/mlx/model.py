"""Inside the worker: find the model's files, load them with mlx-lm, render prompts.

Sources: `dummy` (built on first use), `hf:<org>/<repo>` (huggingface-hub cache, downloaded
if allowed), or a local directory. mlx-lm treats a path that does not exist as a hub id,
so local paths are checked here first and fail with a message that says so.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.adapters.base import GenerationRequest
from gateway.adapters.mlx.parse import Markers
from gateway.adapters.mlx.render import RenderRules, normalize, probe_rules, template_kwargs, tool_dicts
from gateway.adapters.mlx.wire import ModelInfo
from gateway.config import DummyArch, MlxModel

__all__ = ["LoadError", "LoadedModel", "RenderError", "resolve_source"]

StatusFn = Callable[[str, int, int], None]

# The files mlx-lm needs; weights in other formats (.bin, .gguf) are never fetched.
HF_PATTERNS = ["*.json", "model*.safetensors", "*.py", "tokenizer.model", "*.tiktoken", "*.txt", "*.jsonl", "*.jinja"]


class LoadError(Exception):
    """The model cannot be loaded; the message is shown to clients as the reason."""


class RenderError(Exception):
    """The chat template rejected the conversation."""


def resolve_source(spec: MlxModel, cache_dir: Path, status: StatusFn) -> Path:
    if spec.source == "dummy":
        from gateway.adapters.mlx.dummy import ensure_dummy

        status("building dummy", 0, 0)
        return ensure_dummy(spec.dummy or DummyArch(), cache_dir)
    if spec.source.startswith("hf:"):
        return _download(spec.source[3:], spec.revision, status)
    path = Path(spec.source).expanduser()
    if not path.is_dir():
        raise LoadError(f"no model directory at '{path}' (source: {spec.source})")
    if not (path / "config.json").is_file():
        raise LoadError(f"'{path}' has no config.json; is it an mlx-lm model directory?")
    return path


def _download(repo: str, revision: str | None, status: StatusFn) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status("downloading", 0, 0)
    try:
        folder = snapshot_download(repo, revision=revision, allow_patterns=HF_PATTERNS, tqdm_class=_progress(status))
    except LocalEntryNotFoundError:
        raise LoadError(
            f"'{repo}' is not in the Hugging Face cache and the hub cannot be reached "
            "(offline, or HF_HUB_OFFLINE is set); download it once with network access"
        ) from None
    except GatedRepoError:
        raise LoadError(f"'{repo}' is gated on the Hugging Face hub; log in with a token that has access") from None
    except RepositoryNotFoundError:
        raise LoadError(f"'{repo}' does not exist on the Hugging Face hub (or is private)") from None
    except RevisionNotFoundError:
        raise LoadError(f"'{repo}' has no revision '{revision}'") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise LoadError(f"downloading '{repo}' failed: {exc}") from None
    return Path(str(folder))


def _progress(status: StatusFn) -> Any:
    """A tqdm that also reports to the gateway, so /health shows how far a download is."""
    from huggingface_hub.utils import tqdm

    class Progress(tqdm):  # type: ignore[misc, valid-type]
        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            status("downloading", int(self.n), int(self.total or 0))
            return shown

    return Progress


class LoadedModel:
    """The model, its tokenizer and what was learned about its template; engine thread only."""

    def __init__(self, spec: MlxModel, path: Path) -> None:
        import mlx.core as mx
        from mlx_lm import load

        started = time.perf_counter()
        try:
            self.model, self.tokenizer = load(str(path))
        except Exception as exc:  # noqa: BLE001 - mlx-lm raises many kinds; the reason matters
            raise LoadError(f"mlx-lm could not load '{path}': {type(exc).__name__}: {exc}") from None
        if not getattr(self.tokenizer, "has_chat_template", False):
            raise LoadError(f"'{path}' has no chat template; the gateway needs one to render conversations")
        self.spec = spec
        self.path = path
        self.markers, self.parser_name = _markers(self.tokenizer, spec.tool_parser)
        self.rules: RenderRules = probe_rules(self._probe_render, spec.system_messages)
        self.eos = frozenset(self.tokenizer.eos_token_ids)
        self.batchable, self.trimmable = _cache_traits(self.model)
        self.load_seconds = time.perf_counter() - started
        self.memory_bytes = int(mx.get_active_memory())

    def info(self) -> ModelInfo:
        return ModelInfo(
            path=str(self.path),
            tool_parser=self.parser_name if self.markers.call_start else None,
            thinking=bool(self.markers.think_start),
            memory_bytes=self.memory_bytes,
            load_seconds=round(self.load_seconds, 3),
            merge_system=self.rules.merge_system,
            system_role=self.rules.system_role,
            merge_users=self.rules.merge_users,
        )

    def _probe_render(self, messages: list[dict[str, Any]]) -> str:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
        return str(text)

    def render(self, request: GenerationRequest) -> tuple[str, list[int]]:
        messages = normalize(request.messages, self.rules)
        tools = tool_dicts(request.tools) or None
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=False, **template_kwargs(request)
            )
        except Exception as exc:  # noqa: BLE001 - jinja raises TemplateError, TypeError, ...
            raise RenderError(f"the model's chat template rejected the conversation: {exc}") from None
        return text, list(self.tokenizer.encode(text, add_special_tokens=False))

    def initial_state(self, prompt: list[int]) -> str:
        """A prompt that ends inside an open think block makes the answer start as reasoning."""
        if not self.markers.think_start or self.tokenizer.think_start_tokens is None:
            return "normal"
        start = self.tokenizer.rfind_think_start(prompt)
        end = self.tokenizer.rfind_think_end(prompt)
        return "reasoning" if start > end else "normal"


def _cache_traits(model: Any) -> tuple[bool, bool]:
    """(batchable, trimmable): batching needs caches that merge; leaving a batch for the solo
    decoder cuts one token off the cache, which only plain KV caches always allow."""
    from mlx_lm.models.cache import KVCache, make_prompt_cache

    layers = make_prompt_cache(model)
    return all(hasattr(layer, "merge") for layer in layers), all(type(layer) is KVCache for layer in layers)


def _markers(tokenizer: Any, override: str | None) -> tuple[Markers, str | None]:
    think_start = tokenizer.think_start if tokenizer.has_thinking else None
    think_end = tokenizer.think_end if tokenizer.has_thinking else None
    if override is not None:
        module = importlib.import_module(f"mlx_lm.tool_parsers.{override}")
        start, end, parse, name = module.tool_call_start, module.tool_call_end, module.parse_tool_call, override
    elif tokenizer.has_tool_calling:
        parse = tokenizer.tool_parser
        start, end = tokenizer.tool_call_start, tokenizer.tool_call_end
        name = getattr(parse, "__module__", "").rsplit(".", 1)[-1] or None
    else:
        start = end = parse = name = None
    markers = Markers(think_start=think_start, think_end=think_end, call_start=start, call_end=end, parse_call=parse)
    return markers, name
