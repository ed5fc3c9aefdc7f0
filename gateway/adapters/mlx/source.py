"""Where a model's files are: `dummy` (built on first use), `hf:<org>/<repo>` (the huggingface-hub cache,
downloaded if allowed) or a local directory.

A local directory is resolved once, symlinks followed, and the resolved directory is both what is checked
against `mlx.allowed_paths` and what mlx-lm loads: a symlink swapped after the manifest was checked cannot point
the worker elsewhere. The manifest check (`gateway check`, reloads) uses the same containment test, but only the
worker's check at load time sees the files as they are. mlx-lm loads by path, so a directory inside the allowed
tree that is itself replaced between this resolution and mlx-lm opening its files is the one gap left; the
engine narrows it by resolving again after the load (`unchanged_after_load`).

mlx-lm treats a path that does not exist as a hub id, so local paths are checked here first and fail with a
message that says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.config import DummyArch, MlxModel

__all__ = [
    "LoadError", "cached_snapshot", "local_model_dir", "resolve_source", "unchanged_after_load", "within_allowed",
]

StatusFn = Callable[[str, int, int], None]

# The files mlx-lm needs; weights in other formats (.bin, .gguf) are never fetched.
HF_PATTERNS = ["*.json", "model*.safetensors", "*.py", "tokenizer.model", "*.tiktoken", "*.txt", "*.jsonl", "*.jinja"]


class LoadError(Exception):
    """The model cannot be loaded; the message is shown to clients as the reason."""


def within_allowed(path: Path, allowed: Sequence[str]) -> bool:
    """`path` (already resolved) is one of the `allowed` directories or lies inside one (resolved here too)."""
    roots = [Path(root).expanduser().resolve() for root in allowed]
    return any(path == root or root in path.parents for root in roots)


def local_model_dir(source: str, allowed: Sequence[str]) -> Path:
    """The resolved model directory of a local source, refused when it lies outside `allowed` (if any)."""
    path = Path(source).expanduser()
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a dangling or looping symlink, unreadable
        raise LoadError(f"no model directory at '{path}' (source: {source})") from None
    if not real.is_dir():
        raise LoadError(f"no model directory at '{path}' (source: {source})")
    if allowed and not within_allowed(real, allowed):
        shown = f"'{source}'" if str(real) == source else f"'{source}' (resolved: '{real}')"
        raise LoadError(f"{shown} is outside mlx.allowed_paths ({', '.join(allowed)})")
    if not (real / "config.json").is_file():
        raise LoadError(f"'{real}' has no config.json; is it an mlx-lm model directory?")
    return real


def unchanged_after_load(path: Path) -> None:
    """`path` was resolved before the load; a component swapped for a symlink since then shows here."""
    if path.resolve() != path:
        raise LoadError(f"'{path}' changed while it was being loaded (it now resolves to '{path.resolve()}')")


def resolve_source(spec: MlxModel, cache_dir: Path, status: StatusFn, allowed: Sequence[str] = ()) -> Path:
    """The resolved model directory, built or downloaded first if needed (the worker, `gateway pull`)."""
    if spec.source == "dummy":
        from gateway.adapters.mlx.dummy import ensure_dummy

        status("building dummy", 0, 0)
        return ensure_dummy(spec.dummy or DummyArch(), cache_dir).resolve()
    if spec.source.startswith("hf:"):
        return _download(spec.source[3:], spec.revision, status).resolve()
    return local_model_dir(spec.source, allowed)


def cached_snapshot(repo: str, revision: str | None) -> Path | None:
    """The directory of `repo`'s snapshot in the local huggingface-hub cache, if its tokenizer is there; no
    network. (The cache location is the one huggingface-hub read from the environment when first imported.)"""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "tokenizer_config.json", revision=revision)
    return Path(found).parent if isinstance(found, str) else None


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

    class Progress(tqdm):
        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            status("downloading", int(self.n), int(self.total or 0))
            return shown

    return Progress
