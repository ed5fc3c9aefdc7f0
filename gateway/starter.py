"""Starting without YAML surgery: `gateway init` (a commented starter manifest) and `gateway scan` (mlx-lm models
already on this machine, as manifest entries).

A directory qualifies as an mlx-lm model when it holds a `config.json` naming a `model_type`, at least one
`*.safetensors` file and a tokenizer (`tokenizer_config.json` with `tokenizer.json`, `tokenizer.model` or a
`*.tiktoken` file). Nothing is loaded or downloaded: the tool parser and thinking shown for each model come from
the same reading of its files the gateway does at start-up (adapters/mlx/traits.py).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STARTER_MANIFEST", "Found", "hf_cache_dir", "manifest_entries", "scan_directory", "scan_hf_cache",
           "write_starter"]

STARTER_MANIFEST = """\
# mlx-gateway manifest, written by `gateway init`. `gateway check` validates it, `gateway run` serves it.
# Every section is optional and unknown keys are errors; README.md ("The manifest") lists every key.

server:
  host: 127.0.0.1          # loopback only: another host needs API keys (auth) or allow_public_without_keys: true
  port: 8080

store:
  url: memory://           # in-process, forgotten on exit; redis://127.0.0.1:6379/0 keeps responses across restarts

models:
  # Answers on any machine without weights, to check that a client reaches the gateway ("model": "demo").
  - name: scripted
    aliases: [demo]
    adapter: scripted
    script:
      steps:
        - text: "Hello from mlx-gateway. Add a real model to the manifest to get real answers."

  # A real model: an mlx-lm model from the Hugging Face hub (or a local model directory as `source`).
  # `gateway pull qwen` downloads it before the first request; `gateway scan` prints entries like this one
  # for the models already in your Hugging Face cache.
  # - name: qwen
  #   adapter: mlx
  #   source: hf:mlx-community/Qwen3-0.6B-4bit
  #   context_length: 32768      # prompt + answer
  #   sampling: {temperature: 0.7, top_p: 0.95, max_output_tokens: 4096}
  #   idle_unload_seconds: 900   # free its memory after 15 idle minutes

mlx:
  max_loaded_models: 2     # the least recently used idle model is unloaded to make room for another

# Tool policies (how the tools agents declare reach a local model) default to what Codex and OpenCode need;
# see README.md ("Tool policies"). To require API keys, name the variables that hold them:
# auth:
#   keys:
#     - {name: me, env: MY_GATEWAY_KEY}
"""

MAX_DEPTH = 3  # a directory given to `gateway scan` is searched this deep
MAX_DIRECTORIES = 10000  # and no further than this many directories
DEFAULT_CONTEXT = 32768  # the manifest's default context_length
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


def write_starter(path: Path, *, force: bool = False) -> None:
    """Write the starter manifest; FileExistsError when `path` exists and `force` is not set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w" if force else "x", encoding="utf-8") as sink:
        sink.write(STARTER_MANIFEST)


@dataclass
class Found:
    source: str  # hf:<org>/<repo> or an absolute directory
    path: Path  # the files
    size: int  # bytes
    revision: str | None = None  # hf: a ref or commit other than main
    max_context: int | None = None  # config.json's max_position_embeddings
    tool_parser: str | None = None
    thinking: bool = False
    traits_known: bool = False


def is_model_dir(path: Path) -> bool:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        has_weights = any(path.glob("*.safetensors"))
        has_tokenizer = (path / "tokenizer_config.json").is_file() and (
            any((path / name).is_file() for name in _TOKENIZER_FILES) or any(path.glob("*.tiktoken")))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("model_type"), str) and has_weights and has_tokenizer


def _describe(found: Found) -> Found:
    from gateway.adapters.mlx.traits import folder_traits

    try:
        config = json.loads((found.path / "config.json").read_text(encoding="utf-8"))
        context = config.get("max_position_embeddings") or config.get("text_config", {}).get("max_position_embeddings")
        found.max_context = context if isinstance(context, int) and context > 0 else None
    except (OSError, ValueError, AttributeError):
        pass
    traits = folder_traits(found.path)
    if traits is not None:
        found.tool_parser, found.thinking, found.traits_known = traits.tool_parser, traits.thinking, True
    return found


def hf_cache_dir() -> Path:
    """The huggingface-hub cache, read from the environment now (huggingface-hub reads it once, at import)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def scan_hf_cache(cache_dir: Path) -> list[Found]:
    """mlx-lm models in a huggingface-hub cache: per repo, the snapshot `main` points at (else the newest)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound, CorruptedCacheException

    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, CorruptedCacheException, OSError):
        return []
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model":
            continue
        revisions = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified), reverse=True)
        for revision in revisions:
            if is_model_dir(revision.snapshot_path):
                refs = sorted(revision.refs)
                pinned = None if "main" in refs else (refs[0] if refs else revision.commit_hash)
                found.append(_describe(Found(source=f"hf:{repo.repo_id}", path=revision.snapshot_path,
                                             size=revision.size_on_disk, revision=pinned)))
                break
    return found


def scan_directory(root: Path) -> list[Found]:
    """mlx-lm model directories at `root` or below it (MAX_DEPTH levels, hidden directories skipped)."""
    return [_describe(Found(source=str(path), path=path, size=_size(path))) for path in _model_dirs(root.resolve())]


def _model_dirs(root: Path) -> Iterator[Path]:
    pending, seen = [(root, 0)], 0
    while pending and seen < MAX_DIRECTORIES:
        path, depth = pending.pop(0)
        seen += 1
        if is_model_dir(path):
            yield path
            continue  # a model's subdirectories are its own
        if depth >= MAX_DEPTH:
            continue
        try:
            children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
        pending += [(child, depth + 1) for child in children]


def _size(path: Path) -> int:
    total = 0
    for child in path.iterdir():
        try:
            if child.is_file():
                total += child.stat().st_size
        except OSError:
            pass
    return total


def _name(source: str, taken: set[str]) -> str:
    base = source.rstrip("/").rsplit("/", 1)[-1].lower()
    base = re.sub(r"[^a-z0-9._-]+", "-", base).strip("-._") or "model"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


def _capabilities(found: Found) -> str:
    if not found.traits_known:
        return "tools and thinking: known once loaded"
    tools = f"tool parser {found.tool_parser}" if found.tool_parser else "no tool calls (tools become a note)"
    return f"{tools}; {'thinks' if found.thinking else 'no thinking'}"


def manifest_entries(found: list[Found], where: str) -> str:
    """A `models:` section for `found`: valid YAML on its own, or to paste under an existing `models:`."""
    lines = [f"# {len(found)} mlx-lm model(s) in {where}.",
             "# Paste the entries under `models:` in your manifest (names are yours to change), then `gateway check`."]
    if not found:
        return "\n".join(lines) + "\n"
    lines.append("models:")
    taken: set[str] = set()
    for model in found:
        context = min(model.max_context or DEFAULT_CONTEXT, DEFAULT_CONTEXT)
        allows = f"  # the model allows {model.max_context}" if model.max_context else ""
        lines += [
            f"  - name: {_name(model.source.removeprefix('hf:'), taken)}",
            "    adapter: mlx",
            f"    source: {json.dumps(model.source)}",
        ]
        if model.revision is not None:
            lines.append(f"    revision: {json.dumps(model.revision)}")
        lines += [
            f"    context_length: {context}{allows}",
            f"    # {_size_text(model.size)}; {_capabilities(model)}",
        ]
    return "\n".join(lines) + "\n"


def _size_text(size: int) -> str:
    value: float = size
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # unreachable

