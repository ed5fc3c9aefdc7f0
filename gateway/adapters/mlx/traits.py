"""What a model's files say about tool calls and thinking, known before its weights are loaded.

The policies plan a request's tools from the model's capabilities, so those must be the same for the first
request as for every later one, not learnt from the tokenizer once the first request has loaded it. mlx-lm
decides them from the tokenizer: a tool parser named in tokenizer_config.json (`tool_parser_type`) or inferred
from the chat template (else the vocabulary), think markers from the vocabulary. Reading the same files the way
transformers and mlx-lm do (tokenizer_config.json, chat_template.jinja, tokenizer.json) gives the same answer
without loading anything: the rules themselves are mirrored in `mlxlm.py`. The loaded worker still reports what
it found; should the two ever disagree, the adapter takes the worker's word and logs the difference.

Files cannot tell for an hf: model not in the local cache, a tokenizer without tokenizer.json, a template
mlx-lm supplies in Python (`chat_template_type`) or a model type with tokenizer defaults: `probe` returns None
and the model's first plan waits for its load (`MlxAdapter.capabilities_ready`).

Runs in the gateway process (in a thread): no MLX, no transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from gateway.adapters.mlx import mlxlm
from gateway.adapters.mlx.source import LoadError, cached_snapshot, local_model_dir
from gateway.config import MlxModel

__all__ = ["ModelTraits", "dummy_traits", "folder_traits", "probe"]


class ModelTraits(msgspec.Struct, frozen=True, kw_only=True):
    tool_parser: str | None  # the mlx-lm tool parser the worker will use; None: the model cannot call tools
    thinking: bool  # the tokenizer has think markers


def probe(spec: MlxModel, allowed_paths: Sequence[str]) -> ModelTraits | None:
    """The model's traits from its files, or None when only loading it can tell."""
    if spec.source == "dummy":
        traits: ModelTraits | None = dummy_traits()
    else:
        folder = _folder(spec, allowed_paths)
        traits = folder_traits(folder) if folder is not None else None
    if traits is not None and spec.tool_parser is not None:
        traits = ModelTraits(tool_parser=spec.tool_parser, thinking=traits.thinking)  # the manifest's choice wins
    return traits


def dummy_traits() -> ModelTraits:
    """Dummy models: their template and marker tokens are constants (the files may not be built yet)."""
    from gateway.adapters.mlx.dummy import CHAT_TEMPLATE, MARKER_TOKENS, SPECIAL_TOKENS

    vocab = {*SPECIAL_TOKENS, *MARKER_TOKENS}
    return ModelTraits(tool_parser=mlxlm.infer_tool_parser(CHAT_TEMPLATE, vocab),
                       thinking=mlxlm.infer_thinking(vocab))


def _folder(spec: MlxModel, allowed_paths: Sequence[str]) -> Path | None:
    if spec.source.startswith("hf:"):
        try:
            return cached_snapshot(spec.source[3:], spec.revision)
        except (OSError, ValueError):  # a malformed repo id or revision, an unreadable cache
            return None
    try:
        return local_model_dir(spec.source, allowed_paths)  # a directory the worker would refuse is not read
    except LoadError:
        return None


def folder_traits(folder: Path) -> ModelTraits | None:
    """Traits of an mlx-lm model directory, or None when its files do not settle them."""
    try:
        config = _json(folder / "tokenizer_config.json")
        model_type = _json(folder / "config.json").get("model_type")
        vocab = _vocabulary(folder, config)
    except (OSError, ValueError, msgspec.DecodeError):
        return None
    if vocab is None or "chat_template_type" in config:
        return None
    parser = config.get("tool_parser_type")
    if parser is None and model_type in mlxlm.MODEL_TYPES_WITH_TOKENIZER_DEFAULTS:
        return None
    if parser is None:
        parser = mlxlm.infer_tool_parser(_chat_template(folder, config), vocab)
    return ModelTraits(tool_parser=parser if isinstance(parser, str) else None, thinking=mlxlm.infer_thinking(vocab))


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def _chat_template(folder: Path, config: dict[str, Any]) -> str | None:
    """The template as transformers hands it to mlx-lm: a string, or None when it keeps several (a dict)."""
    extra = folder / "additional_chat_templates"
    if extra.is_dir() and any(extra.glob("*.jinja")):
        return None
    single = folder / "chat_template.jinja"
    if single.is_file():
        return single.read_text(encoding="utf-8")
    template = config.get("chat_template")
    return template if isinstance(template, str) else None


class _AddedToken(msgspec.Struct):
    content: str = ""


class _TokenizerModel(msgspec.Struct):
    vocab: dict[str, int] | list[Any] | None = None  # a dict (BPE, WordPiece) or [piece, score] pairs (Unigram)


class _TokenizerFile(msgspec.Struct):
    model: _TokenizerModel | None = None
    added_tokens: list[_AddedToken] = []


def _vocabulary(folder: Path, config: dict[str, Any]) -> set[str] | None:
    """Every token string (added tokens included), as the tokenizer's `get_vocab()` lists them; None without
    tokenizer.json (sentencepiece, tiktoken: only loading them tells)."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    parsed = msgspec.json.decode(path.read_bytes(), type=_TokenizerFile)
    vocab: set[str] = {token.content for token in parsed.added_tokens}
    listed = parsed.model.vocab if parsed.model is not None else None
    if isinstance(listed, dict):
        vocab.update(listed)
    elif isinstance(listed, list):
        vocab.update(str(entry[0]) for entry in listed if isinstance(entry, list) and entry)
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        vocab.update(str(token.get("content")) for token in decoder.values() if isinstance(token, dict))
    return vocab
